"""Start the desktop app: ``python main.py [--source 0|PATH] [--model NAME] ...``.

Also the two measuring modes that run the real window and quit on their own:
``--benchmark-frames N`` (one JSON line of stats) and ``--screenshot OUT`` (a PNG).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from engine.cli import OneLineParser  # usage errors are one line, exit 2, like the commands
    from engine.scales import BEST, SCALE_NAMES

    parser = OneLineParser(prog="main.py", description="TopFormer Studio: live semantic segmentation")
    parser.add_argument("--source", help="camera index (0, 1, ...) or a video/image file to open at start")
    parser.add_argument("--model", help="installed model name (default: last used, camvid-tiny, or the first)")
    parser.add_argument("--models-dir", help="model folder (default: the repository's models/)")
    parser.add_argument("--scale", choices=(*SCALE_NAMES, BEST), help="network input resolution (best: the model's best input size)")
    parser.add_argument("--theme", choices=("dark", "light"), help="colour theme (default: the remembered one, dark)")
    parser.add_argument("--fullscreen", action="store_true", help="start in full screen (F or Esc leaves it)")
    parser.add_argument("--fast", action="store_true", help="play files as fast as possible, not at their fps")
    parser.add_argument("--benchmark-frames", type=int, metavar="N",
                        help="play N segmented frames, print stats and the worst UI stall as JSON, exit")
    parser.add_argument("--benchmark-seconds", type=float, default=0.0, metavar="S",
                        help="with --benchmark-frames: also play at least S seconds (a file source loops)")
    parser.add_argument("--health-every", type=float, default=0.0, metavar="S",
                        help="with --benchmark-frames: every S seconds print RSS and refcounts as JSON on stderr")
    parser.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window and exit")
    parser.add_argument("--screenshot-after", type=float, default=3.0, metavar="S",
                        help="seconds of playback before the screenshot (default 3)")
    parser.add_argument("--backend", choices=("onnxruntime", "openvino", "auto"),
                        help="inference runtime (default onnxruntime; auto = OpenVINO when installed and faster here)")
    parser.add_argument("--precision", choices=("f32", "bf16", "f16"), help="OpenVINO precision (default f32)")
    parser.add_argument("--unpaced", action="store_true",
                        help="with --benchmark-frames: decode file sources as fast as the engine takes them")
    parser.add_argument("--window-size", default="1440x900", metavar="WxH",
                        help="window size for --screenshot and --benchmark-frames (default 1440x900)")
    parser.add_argument("--profile", choices=("pi", "desktop"),
                        help="defaults for the hardware: pi = Tiny (INT8 where faster), half scale, threads = cores, "
                             "fewer effects (default: pi on a Raspberry Pi, else desktop)")
    parser.add_argument("--kiosk", action="store_true",
                        help="full screen, no window chrome, legend and FPS on the video; Esc or a long press quits")
    parser.add_argument("--fallback", metavar="VIDEO", help="--kiosk: video looped while the camera cannot be opened")
    parser.add_argument("--compare", metavar="MODEL:SCALE,...",
                        help="open the compare view: 2 to 4 panes, e.g. tiny:half,tiny:full,base:full")
    return parser


def _window_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        return max(w, 400), max(h, 300)
    except ValueError:
        raise SystemExit(f"error: --window-size wants WxH, e.g. 1440x900, not {text!r}") from None


def _startup_problem(args: argparse.Namespace) -> str | None:
    """Why the app cannot start (model not installed; for --benchmark-frames a source that does not
    open or no model at all; no display, missing X11 libraries), before Qt loads."""
    from engine.errors import StudioError
    from engine.models.registry import Registry

    from .window.preflight import startup_problem

    registry = Registry(args.models_dir)
    if args.model:
        try:
            args.model = registry.resolve(args.model).name  # short forms: tiny
        except StudioError as exc:
            return str(exc)
    if args.benchmark_frames is not None:  # the window would show an error or play unsegmented, never finish
        from engine.io.sources import open_source

        try:
            if not str(args.source).isdigit():  # a camera is left for the window: opening it twice may fail
                open_source(args.source).close()
            if not registry.entries():
                return f"--benchmark-frames: no model is installed in {registry.dir}; nothing to measure"
        except StudioError as exc:
            return str(exc)
    return startup_problem()


def launch(argv: list[str]) -> int:
    """Run the app until its window closes; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if args.compare is not None:
        from .compare.compare_launch import launch_compare

        return launch_compare(args, _window_size(args.window_size), preflight=_startup_problem)
    measuring = args.benchmark_frames is not None or args.screenshot is not None
    if args.fallback and not args.kiosk:
        print("error: --fallback VIDEO is for --kiosk (the video looped while the camera is missing)", file=sys.stderr)
        return 2
    if args.benchmark_frames is not None and (args.source is None or args.benchmark_frames < 1):
        print("error: --benchmark-frames N needs N >= 1 and --source 0|PATH", file=sys.stderr)
        return 2
    problem = _startup_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    if args.backend:  # read by engine.run.backends for every model this process loads
        os.environ["STUDIO_BACKEND"] = args.backend
    if args.precision:
        os.environ["STUDIO_PRECISION"] = args.precision
    if args.backend == "openvino":
        from engine.run.backends import openvino_available

        if not openvino_available():
            print("error: --backend openvino: OpenVINO is not installed (pip install openvino)", file=sys.stderr)
            return 2

    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow
    from .window.profiles import apply_process_settings, apply_ui_settings, profile_for_args
    from .measure.scripted_run import run_event_loop
    from .settings_store import APPLICATION, ORGANIZATION, SettingsStore
    from .theme import apply_theme

    profile = profile_for_args(args)  # fills --model/--scale left unset; threads before any session
    apply_process_settings(profile)
    if args.kiosk and args.source is None:
        args.source = "0"

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    settings = SettingsStore.ephemeral() if measuring else SettingsStore()
    if args.theme:
        settings.theme = args.theme
    apply_theme(app, settings.theme)
    if args.fast or args.unpaced:
        settings.realtime = False
    apply_ui_settings(app, settings, profile)
    window = MainWindow(settings, models_dir=args.models_dir, source=args.source, model=args.model,
                        scale=args.scale, probe_cameras=not measuring and not args.kiosk)
    window.profile = profile
    if args.kiosk:
        from .window.kiosk import KioskController

        window.kiosk = KioskController(window, args.source, fallback=args.fallback)
    if measuring:
        window.resize(*_window_size(args.window_size))
    runner = None
    if args.benchmark_frames is not None:
        from .measure.benchmark import BenchmarkRun

        runner = BenchmarkRun(window, args.benchmark_frames, min_seconds=args.benchmark_seconds,
                              health_every_s=args.health_every, unpaced=args.unpaced)
        runner.extra = {"profile": profile.name, "profile_reason": profile.reason,
                        "threads": int(os.environ.get("STUDIO_THREADS", "0") or 0) or None}
    elif args.screenshot is not None:
        from .measure.screenshot import ScreenshotRun

        runner = ScreenshotRun(window, Path(args.screenshot), args.screenshot_after, has_source=args.source is not None)
    window.show()
    if args.fullscreen:
        window.set_fullscreen_on_start()
    code = run_event_loop(app, window, runner)
    if os.environ.get("STUDIO_DEBUG_THREADS") == "1":
        print(f"threads alive at exit: {window.worker.threads_alive()}", file=sys.stderr)
    return code
