#!/usr/bin/env bash
# TopFormer Studio on a Raspberry Pi 4 or 5 with Raspberry Pi OS 64-bit (Bookworm or Trixie).
#
# Installs the system libraries Qt needs (xcb, EGL), v4l-utils and python3-picamera2 (where
# the distribution has it), creates a venv that can see the system picamera2, installs the
# run-time dependencies only (no torch; wheels only, with constraints-bookworm.txt on glibc
# < 2.39) and, with --autostart, an XDG autostart entry that starts the kiosk at login.
# Safe to run again: installed packages are skipped, the venv is reused.
#
# usage: deploy/raspberry-pi/install.sh [--autostart] [--source 0|VIDEO] [--venv DIR]
#            [--no-apt] [--remove-autostart] [--dry-run] [--any-os]
#   --autostart         start `main.py --profile pi --kiosk` at desktop login
#   --source SPEC       what the kiosk shows (default 0: the first camera; a video file loops)
#   --venv DIR          virtual environment (default: REPO/.venv-pi)
#   --no-apt            skip system packages (no sudo needed)
#   --remove-autostart  remove the autostart entry and exit
#   --dry-run           print what would be done, change nothing
#   --any-os            do not stop on an untested OS or CPU (for trying the script elsewhere)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/deploy/raspberry-pi"
VENV="$ROOT/.venv-pi"
SOURCE="0"
AUTOSTART=0
REMOVE_AUTOSTART=0
APT=1
DRY=0
ANY_OS=0
AUTOSTART_FILE="${XDG_CONFIG_HOME:-$HOME/.config}/autostart/topformer-studio-kiosk.desktop"

# Qt 6 xcb platform plugin and EGL/GL, fonts, D-Bus; camera tools; the venv module.
APT_PACKAGES=(python3-venv python3-pip libegl1 libgl1 libopengl0 libxkbcommon0 libxkbcommon-x11-0
    libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
    libxcb-shape0 libxcb-xfixes0 libxcb-xinerama0 libxcb-xkb1 libfontconfig1 libdbus-1-3 v4l-utils)
OPTIONAL_APT_PACKAGES=(python3-picamera2)  # Raspberry Pi OS archive only

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 2; }
run() {  # run CMD...: execute, or print under --dry-run
    if [ "$DRY" -eq 1 ]; then printf '  would run: %s\n' "$*"; else "$@"; fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        --autostart) AUTOSTART=1; shift ;;
        --remove-autostart) REMOVE_AUTOSTART=1; shift ;;
        --source) [ $# -ge 2 ] || die "--source needs a value (0 or a video file)"; SOURCE="$2"; shift 2 ;;
        --venv) [ $# -ge 2 ] || die "--venv needs a folder"; VENV="$2"; shift 2 ;;
        --no-apt) APT=0; shift ;;
        --dry-run) DRY=1; shift ;;
        --any-os) ANY_OS=1; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

if [ "$REMOVE_AUTOSTART" -eq 1 ]; then
    if [ -f "$AUTOSTART_FILE" ]; then run rm -f "$AUTOSTART_FILE"; say "removed $AUTOSTART_FILE"
    else say "no autostart entry at $AUTOSTART_FILE"; fi
    exit 0
fi

# --- what are we running on? ---------------------------------------------------------
KERNEL_ARCH="$(uname -m)"
USER_ARCH="$(dpkg --print-architecture 2>/dev/null || echo unknown)"
MODEL="$( { tr -d '\0' </proc/device-tree/model; } 2>/dev/null || true)"
case "$KERNEL_ARCH/$USER_ARCH" in
    aarch64/arm64) ;;
    aarch64/armhf|armv7l/*|armv6l/*|*/armhf|*/armel)
        die "32-bit system ($KERNEL_ARCH kernel, $USER_ARCH packages): onnxruntime and PySide6 publish 64-bit ARM wheels only. Install Raspberry Pi OS (64-bit) Bookworm or newer, then run this again." ;;
    *)
        [ "$ANY_OS" -eq 1 ] || die "this is a $KERNEL_ARCH/$USER_ARCH machine, not a 64-bit Raspberry Pi (use 'make setup-runtime' on a desktop, or --any-os to try anyway)" ;;
esac
[ -n "$MODEL" ] && say "board: $MODEL"

OS_ID="" OS_CODENAME="" OS_LIKE=""
if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    . /etc/os-release
    OS_ID="${ID:-}" OS_CODENAME="${VERSION_CODENAME:-}" OS_LIKE="${ID_LIKE:-}"
fi
case "$OS_ID/$OS_LIKE" in
    debian/*|raspbian/*|*/*debian*) ;;
    *) die "unsupported OS '${PRETTY_NAME:-unknown}': this script needs Raspberry Pi OS or Debian (apt)" ;;
esac
case "$OS_CODENAME" in
    bookworm|trixie) say "OS: ${PRETTY_NAME:-$OS_CODENAME}" ;;
    bullseye|buster|stretch)
        die "${PRETTY_NAME:-$OS_CODENAME} is too old (Python and glibc): use Raspberry Pi OS Bookworm (64-bit) or newer" ;;
    *) [ "$ANY_OS" -eq 1 ] || die "untested OS release '${OS_CODENAME:-unknown}' (tested: bookworm, trixie); --any-os to try anyway"
       say "warning: untested OS release ${OS_CODENAME:-unknown}" ;;
esac

PY="$(command -v python3 || true)"
[ -n "$PY" ] || die "python3 not found (sudo apt-get install python3)"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "$("$PY" -V 2>&1) is too old: Python 3.10 or newer is needed"
GLIBC="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
say "$("$PY" -V 2>&1), glibc ${GLIBC:-unknown}"

# --- system packages -------------------------------------------------------------------
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ "$APT" -eq 1 ]; then
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    for pkg in "${OPTIONAL_APT_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            if apt-cache show "$pkg" >/dev/null 2>&1; then missing+=("$pkg")
            else say "$pkg is not in this distribution's archive: cameras will be used through V4L2 (OpenCV)"; fi
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing system packages: ${missing[*]}"
        run $SUDO apt-get update -qq
        run $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
    else
        say "system packages: all present"
    fi
fi

# --- virtual environment ---------------------------------------------------------------
if [ -x "$VENV/bin/python" ]; then
    if ! grep -qiE '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" 2>/dev/null; then
        die "$VENV exists but cannot see system packages (picamera2): remove it or pass --venv OTHER_DIR"
    fi
    say "reusing venv $VENV"
else
    say "creating venv $VENV (with system site packages, for picamera2)"
    run "$PY" -m venv --system-site-packages "$VENV"
fi

CONSTRAINTS=("-c" "$HERE/constraints-bookworm.txt")
GLIBC_MINOR="${GLIBC#2.}"
if [[ "$GLIBC_MINOR" =~ ^[0-9]+$ ]] && [ "$GLIBC_MINOR" -ge 39 ]; then
    CONSTRAINTS=()  # Trixie and newer: the newest PySide6 wheels fit
fi
EXTRA=()
# Debian's picamera2 stack (simplejpeg, av) is built against the system numpy: if that is
# numpy 1.x, a numpy 2 in the venv would break `import picamera2`.
SYS_NUMPY="$("$PY" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)"
if [ -n "$SYS_NUMPY" ] && [ "${SYS_NUMPY%%.*}" = 1 ]; then
    EXTRA=("numpy<2")
    say "system numpy $SYS_NUMPY (picamera2 is built against it): keeping numpy < 2 in the venv"
fi
mapfile -t DEPS < <("$PY" - "$ROOT/pyproject.toml" <<'PY'
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import re
    text = open(sys.argv[1]).read()
    block = re.search(r"^dependencies = \[(.*?)\]", text, re.S | re.M).group(1)
    print("\n".join(re.findall(r'"([^"]+)"', block)))
    raise SystemExit
with open(sys.argv[1], "rb") as fh:
    print("\n".join(tomllib.load(fh)["project"]["dependencies"]))
PY
)
[ "${#DEPS[@]}" -gt 0 ] || die "no dependencies found in $ROOT/pyproject.toml"
say "installing run-time dependencies (wheels only, no torch): ${DEPS[*]} ${EXTRA[*]}"
run "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    ${CONSTRAINTS[@]+"${CONSTRAINTS[@]}"} "${DEPS[@]}" ${EXTRA[@]+"${EXTRA[@]}"} \
    || die "pip could not install the run-time dependencies (see above); deploy/raspberry-pi/check-wheels.sh shows which package lacks a wheel"

if [ "$DRY" -eq 0 ]; then
    "$VENV/bin/python" - <<'PY' || die "the installed packages do not import (see above)"
import cv2, numpy, onnxruntime, PySide6
print(f"install: onnxruntime {onnxruntime.__version__}, opencv {cv2.__version__}, numpy {numpy.__version__}, "
      f"PySide6 {PySide6.__version__}")
try:
    import picamera2  # noqa: F401
    print("install: picamera2 available")
except Exception as exc:  # absent, or broken by a numpy mismatch
    print(f"install: picamera2 not usable ({type(exc).__name__}): cameras go through V4L2")
PY
fi

# --- autostart ---------------------------------------------------------------------------
if [ "$AUTOSTART" -eq 1 ]; then
    case "$SOURCE" in
        ''|*[!0-9]*) SOURCE="$(cd "$(dirname "$SOURCE")" 2>/dev/null && pwd)/$(basename "$SOURCE")" || die "--source $SOURCE: folder not found"
                     [ -f "$SOURCE" ] || die "--source $SOURCE: file not found" ;;
    esac
    quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"`$]/\\&/g')"; }
    entry="[Desktop Entry]
Type=Application
Name=TopFormer Studio kiosk
Comment=Live semantic segmentation, full screen (Esc or a long press quits)
Exec=$(quote "$VENV/bin/python") $(quote "$ROOT/main.py") --profile pi --kiosk --source $(quote "$SOURCE")
Path=$ROOT
Terminal=false
X-GNOME-Autostart-enabled=true"
    if [ -f "$AUTOSTART_FILE" ] && [ "$(cat "$AUTOSTART_FILE")" = "$entry" ]; then
        say "autostart entry up to date: $AUTOSTART_FILE"
    elif [ "$DRY" -eq 1 ]; then
        printf '  would write %s:\n%s\n' "$AUTOSTART_FILE" "$entry"
    else
        mkdir -p "$(dirname "$AUTOSTART_FILE")"
        printf '%s\n' "$entry" >"$AUTOSTART_FILE.tmp"
        mv "$AUTOSTART_FILE.tmp" "$AUTOSTART_FILE"
        say "kiosk starts at login: $AUTOSTART_FILE (remove with --remove-autostart)"
    fi
fi

say "done. Start it with: $VENV/bin/python $ROOT/main.py --profile pi [--kiosk] [--source 0|VIDEO]"
