"""Headless command line: one module per command, imported only when that command runs.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``.
A :class:`~engine.errors.StudioError` becomes one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import StudioError
from ..fileio import os_reason

COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("models_cmd", "list, import or download models"),
    "segment": ("segment_cmd", "segment an image or a video file into an overlay"),
    "bench": ("bench_cmd", "measure inference speed of the installed models"),
    "annotate": ("annotate_cmd", "write masks, overlay video, statistics and CVAT export for a video"),
    "train": ("train_cmd", "train a TopFormer variant (needs torch)"),
    "eval": ("eval_cmd", "evaluate an installed ONNX model on a labelled dataset"),
    "compare": ("compare_cmd", "run several (model, scale) panes on the same frames: speed, agreement, side-by-side video"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``error: main.py segment: ...``), exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def run_command(argv: list[str]) -> int:
    """Run ``argv[0]`` (a key of COMMANDS) with the remaining arguments."""
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(f".{COMMANDS[name][0]}", __package__)
    parser = OneLineParser(prog=f"main.py {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        _full_model_name(args)
        return int(module.run(args) or 0)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an OS failure no command anticipated: still one line, the OS's words
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{os_reason(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def add_models_dir(parser: argparse.ArgumentParser) -> None:
    """Every command that loads models takes --models-dir (tests never touch models/), and the backend options."""
    parser.add_argument("--models-dir", default=None, help="model folder (default: the repository's models/)")
    add_backend(parser)


class _SetEnv(argparse.Action):
    """Stores the option and exports it for every Segmenter this process loads (engine.run.backends reads it)."""

    def __call__(self, parser, namespace, values, option_string=None):
        import os

        setattr(namespace, self.dest, values)
        os.environ[self.const] = values


def _full_model_name(args: argparse.Namespace) -> None:
    """``--model tiny`` means ``camvid-tiny`` when that is the one installed model it can be
    (``Registry.resolve``), as in the compare panes and the app; commands see the full name."""
    if isinstance(getattr(args, "model", None), str) and hasattr(args, "models_dir"):
        from ..models.registry import Registry

        try:
            args.model = Registry(args.models_dir).resolve(args.model).name
        except StudioError:
            pass  # unknown, ambiguous, or a broken folder: the command says so where it checks the model


def add_backend(parser: argparse.ArgumentParser) -> None:
    """--backend onnxruntime|openvino|auto and --precision f32|bf16|f16, for every command that loads models."""
    from ..run.backends import BACKENDS, PRECISIONS

    parser.add_argument("--backend", choices=BACKENDS, action=_SetEnv, const="STUDIO_BACKEND",
                        help="inference runtime (default onnxruntime; auto = OpenVINO when installed and measured "
                             "faster here at first use)")
    parser.add_argument("--precision", choices=PRECISIONS, action=_SetEnv, const="STUDIO_PRECISION",
                        help="OpenVINO inference precision (default f32: labels as ONNX Runtime's; bf16 is faster "
                             "on CPUs that have it, with slightly different labels: see `bench --precisions`)")


def unknown_command(name: str) -> int:
    """``unknown command 'segmnet'; did you mean 'segment'?`` on stderr, exit code 2."""
    close = difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"commands: {', '.join(COMMANDS)} (main.py --help)"
    print(f"error: unknown command {name!r}; {hint}", file=sys.stderr)
    return 2


T = TypeVar("T")


def run_resumable(run: Callable[[], T], kept: str, out: Path, cleanup: Callable[[], None], err=None) -> T | None:
    """Run a resumable job; ``cleanup`` (progress bars, worker pools) runs either way.

    On Ctrl+C it returns None after saying what is kept and how to continue (the
    command then exits 130): the message comes after the cleanup, so a progress bar
    does not garble it.
    """
    interrupted = False
    try:
        return run()
    except KeyboardInterrupt:
        interrupted = True
        return None
    finally:
        cleanup()
        if interrupted:
            print(f"interrupted: finished {kept} are kept; continue with --resume --out {out}", file=err or sys.stderr)
