"""Start-up checks that run before Qt is imported, so a missing display or missing system
libraries are one clear line (exit 2) instead of Qt's "could not load the Qt platform plugin" abort.

No Qt here: the checks must work exactly where Qt itself would crash.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HEADLESS_HINT = ("run the headless commands instead (python main.py segment|annotate|bench ...; "
                 "python main.py --help), or set QT_QPA_PLATFORM=offscreen")


def display_problem(environ: dict[str, str] | None = None, platform: str = sys.platform) -> str | None:
    """A one-line reason the window cannot be shown, or None when a display (or Qt platform) is set."""
    env = os.environ if environ is None else environ
    if not platform.startswith("linux"):
        return None  # Windows and macOS always have their native platform plugin
    if env.get("QT_QPA_PLATFORM") or env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    return f"no display: DISPLAY, WAYLAND_DISPLAY and QT_QPA_PLATFORM are all unset; {HEADLESS_HINT}"


def uses_xcb(environ: dict[str, str] | None = None) -> bool:
    """Whether Qt will pick its xcb (X11) platform plugin."""
    env = os.environ if environ is None else environ
    chosen = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    if chosen:
        return chosen == "xcb"
    return bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY")


def xcb_plugin_path() -> Path | None:
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if path.is_file():
            return path
    return None


def missing_libraries(plugin: Path) -> list[str]:
    """Shared libraries the plugin needs that the dynamic loader cannot find (``ldd``: "not found")."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = re.findall(r"^\s*(\S+)\s+=>\s+not found", out, flags=re.MULTILINE)
    return list(dict.fromkeys(found))


def debian_package(soname: str) -> str:
    """Debian/Ubuntu package of a library soname: libxcb-icccm.so.4 -> libxcb-icccm4, libdbus-1.so.3 -> libdbus-1-3."""
    match = re.match(r"^(lib.+?)\.so\.(\d+)", soname)
    if not match:
        return soname
    stem, major = match.group(1).lower(), match.group(2)
    return f"{stem}-{major}" if stem[-1].isdigit() else f"{stem}{major}"


def xcb_problem(environ: dict[str, str] | None = None) -> str | None:
    """One line naming the libraries Qt's xcb plugin is missing and the command that installs them."""
    if not sys.platform.startswith("linux") or not uses_xcb(environ):
        return None
    plugin = xcb_plugin_path()
    if plugin is None:
        return None
    missing = missing_libraries(plugin)
    if not missing:
        return None
    packages = " ".join(dict.fromkeys(debian_package(m) for m in missing))
    return (f"Qt's X11 (xcb) plugin cannot load: missing system libraries {', '.join(missing)}; "
            f"install them (Debian/Ubuntu: sudo apt install {packages}; see README 'System packages'), "
            f"or {HEADLESS_HINT}")


def startup_problem() -> str | None:
    """The first reason the desktop app cannot start on this machine, or None."""
    return display_problem() or xcb_problem()
