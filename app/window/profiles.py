"""Start-up profiles: ``--profile pi`` (small ARM boards) and ``desktop`` (the default).

A Raspberry Pi is recognised from /proc/device-tree/model, so the app started on one gets
the pi profile without flags; ``--profile desktop`` overrides that. The pi profile only
chooses defaults (an explicit --model or --scale still wins): Tiny, INT8 where the CPU has
8-bit dot-product instructions (Pi 5's Cortex-A76; the Pi 4's A72 lacks them and INT8
gains little or loses there), half input resolution, one ONNX Runtime thread per core,
and fewer UI effects (no animations, no class-boundary drawing).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.cpu import has_int8_dot

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
PI_MODEL = "camvid-tiny"


@dataclass(frozen=True)
class Profile:
    name: str  # "pi" | "desktop"
    model: str | None = None  # preferred model (None: the usual choice)
    scale: str | None = None
    threads: int | None = None  # ONNX Runtime intra-op threads (None: ORT's default)
    reduced_effects: bool = False
    board: str = ""  # what /proc/device-tree/model says, if anything
    reason: str = ""  # why this profile and model: shown in the log and the benchmark JSON


def board_model(path: Path = DEVICE_TREE_MODEL) -> str:
    """The device-tree model string ('Raspberry Pi 5 Model B Rev 1.0'), '' when there is none."""
    try:
        return path.read_bytes().rstrip(b"\0").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def is_raspberry_pi(board: str) -> bool:
    return board.startswith("Raspberry Pi")


def choose_profile(requested: str | None, board: str | None = None, int8_fast: bool | None = None,
                   installed: list[str] | None = None, cores: int | None = None) -> Profile:
    """The profile for ``--profile`` (None = auto: pi on a Raspberry Pi, else desktop)."""
    board = board_model() if board is None else board
    name = requested or ("pi" if is_raspberry_pi(board) else "desktop")
    if name == "desktop":
        return Profile("desktop", board=board, reason="requested" if requested else "not a Raspberry Pi")
    if name != "pi":
        raise ValueError(f"unknown profile {name!r}")
    int8_fast = has_int8_dot() if int8_fast is None else int8_fast
    model = PI_MODEL
    if int8_fast and (installed is None or f"{PI_MODEL}-int8" in installed):
        model = f"{PI_MODEL}-int8"
        why = "INT8: this CPU has 8-bit dot-product instructions"
    else:
        why = "FP32: no 8-bit dot-product instructions, INT8 would not be faster" if not int8_fast \
            else "FP32: no INT8 copy installed"
    origin = f"detected {board}" if not requested else "requested"
    return Profile("pi", model=model, scale="half", threads=cores or os.cpu_count() or 1, reduced_effects=True,
                   board=board, reason=f"{origin}; {why}")


def profile_for_args(args) -> Profile:
    """The profile for parsed app arguments; fills ``args.model`` and ``args.scale`` when unset."""
    installed = None
    try:
        from engine.models.registry import Registry

        installed = Registry(args.models_dir).names()
    except Exception:  # noqa: BLE001 - a broken manifest is reported by the window itself
        pass
    profile = choose_profile(args.profile, installed=installed)
    if profile.model and args.model is None and (installed is None or profile.model in installed):
        args.model = profile.model
    if profile.scale and args.scale is None:
        args.scale = profile.scale
    return profile


def apply_process_settings(profile: Profile) -> None:
    """Settings read when sessions are built: threads for every ONNX Runtime session.
    An explicit STUDIO_THREADS from the user wins."""
    if profile.threads:
        os.environ.setdefault("STUDIO_THREADS", str(profile.threads))


def apply_ui_settings(app, settings, profile: Profile) -> None:
    """Fewer effects on a small GPU: no animated widgets, no boundary drawing (a per-frame cost)."""
    if not profile.reduced_effects:
        return
    from PySide6.QtCore import Qt

    for effect in (Qt.UIEffect.UI_AnimateMenu, Qt.UIEffect.UI_FadeMenu, Qt.UIEffect.UI_AnimateCombo,
                   Qt.UIEffect.UI_AnimateTooltip, Qt.UIEffect.UI_FadeTooltip, Qt.UIEffect.UI_AnimateToolBox):
        app.setEffectEnabled(effect, False)
    app.setEffectEnabled(Qt.UIEffect.UI_General, False)
    settings.boundaries = False
