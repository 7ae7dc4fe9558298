#!/usr/bin/env bash
# Prove, without building or installing anything, that the app's run-time dependencies
# resolve to binary wheels for Raspberry Pi OS Bookworm 64-bit: CPython 3.11, aarch64,
# glibc 2.36. pip downloads wheels only (--only-binary=:all:) for every manylinux tag up
# to 2_36 into a temporary folder, which is deleted afterwards. A package that would
# need a source build or a newer glibc makes the check fail with its name.
#
# usage: deploy/raspberry-pi/check-wheels.sh [--glibc 2.36] [--python 3.11] [--keep DIR]
# env:   PYTHON (default python3): the interpreter whose pip is used (needs Python >= 3.11
#        for tomllib, or the tomli package).
#        PYSIDE_SPEC (default "PySide6-Essentials>=6.7,<6.8"): the PySide6 bound used on
#        Bookworm, replacing pyproject's (6.8 and newer wheels need glibc 2.39).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
PYSIDE_SPEC="${PYSIDE_SPEC:-PySide6-Essentials>=6.7,<6.8}"
GLIBC="2.36"
PYVER="3.11"
KEEP=""

while [ $# -gt 0 ]; do
    case "$1" in
        --glibc) GLIBC="$2"; shift 2 ;;
        --python) PYVER="$2"; shift 2 ;;
        --keep) KEEP="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "check-wheels: unknown argument $1" >&2; exit 2 ;;
    esac
done

GLIBC_MINOR="${GLIBC#2.}"
case "$GLIBC_MINOR" in (*[!0-9]*|'') echo "check-wheels: --glibc must look like 2.36, got $GLIBC" >&2; exit 2 ;; esac
if [ "$GLIBC_MINOR" -lt 17 ]; then echo "check-wheels: --glibc must be 2.17 or newer" >&2; exit 2; fi
ABI="cp${PYVER/./}"

# The run-time dependency set: pyproject.toml [project].dependencies, PySide6 bound replaced.
mapfile -t DEPS < <("$PYTHON" - "$ROOT/pyproject.toml" "$PYSIDE_SPEC" <<'PY'
import re, sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
with open(sys.argv[1], "rb") as fh:
    deps = tomllib.load(fh)["project"]["dependencies"]
for dep in deps:
    name = re.split(r"[<>=!~;\[ ]", dep, 1)[0]
    print(sys.argv[2] if name.lower().replace("_", "-") == "pyside6-essentials" else dep)
PY
)
if [ "${#DEPS[@]}" -eq 0 ]; then
    echo "check-wheels: no dependencies read from $ROOT/pyproject.toml" >&2
    exit 2
fi

PLATFORMS=(--platform manylinux2014_aarch64)
for ((minor = 17; minor <= GLIBC_MINOR; minor++)); do
    PLATFORMS+=(--platform "manylinux_2_${minor}_aarch64")
done

if [ -n "$KEEP" ]; then
    DEST="$KEEP"; mkdir -p "$DEST"
else
    DEST="$(mktemp -d "${TMPDIR:-/tmp}/check-wheels.XXXXXX")"
    trap 'rm -rf "$DEST"' EXIT
fi

pip_download() {  # pip_download DIR REQUIREMENT...
    local dir="$1"; shift
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-cache-dir \
        --only-binary=:all: "${PLATFORMS[@]}" --python-version "$PYVER" \
        --implementation cp --abi "$ABI" --abi abi3 --abi none --dest "$dir" "$@"
}

echo "check-wheels: CPython $PYVER ($ABI), aarch64, glibc <= $GLIBC, binary wheels only"
printf '  %s\n' "${DEPS[@]}"
LOG="$DEST/pip.log"
if ! pip_download "$DEST" "${DEPS[@]}" >"$LOG" 2>&1; then
    # Name the culprit(s): resolve each top-level requirement (with its dependencies) alone.
    failed=()
    for dep in "${DEPS[@]}"; do
        one="$(mktemp -d "$DEST/one.XXXXXX")"
        if ! pip_download "$one" "$dep" >"$one/pip.log" 2>&1; then
            culprit="$(grep -oE 'No matching distribution found for [^ ]+' "$one/pip.log" | head -n1 | sed 's/.* for //')"
            failed+=("$dep${culprit:+ (no wheel for $culprit)}")
        fi
    done
    echo "FAIL: no binary wheel for CPython $PYVER aarch64 glibc <= $GLIBC:" >&2
    if [ "${#failed[@]}" -gt 0 ]; then
        printf '  %s\n' "${failed[@]}" >&2
    else
        echo "  (each requirement resolves alone; together they conflict)" >&2
    fi
    echo "pip said:" >&2
    grep -E 'ERROR|No matching|Could not find' "$LOG" | sed 's/^/  /' >&2 || tail -n 5 "$LOG" >&2
    exit 1
fi

# pip already refused every other tag; list what it took, and re-check the glibc bound.
status=0
echo "resolved wheels:"
for whl in "$DEST"/*.whl; do
    file="$(basename "$whl")"
    echo "  $file"
    for tag in $(grep -oE 'manylinux_2_[0-9]+' <<<"$file" | sed 's/manylinux_2_//'); do
        if [ "$tag" -gt "$GLIBC_MINOR" ]; then
            echo "FAIL: $file needs glibc 2.$tag (> $GLIBC)" >&2
            status=1
        fi
    done
done
if ls "$DEST" | grep -qvE '\.whl$|^pip\.log$'; then
    echo "FAIL: pip fetched something that is not a wheel:" >&2
    ls "$DEST" | grep -vE '\.whl$|^pip\.log$' >&2
    status=1
fi
[ "$status" -eq 0 ] && echo "OK: every run-time dependency has a binary wheel for CPython $PYVER aarch64 glibc $GLIBC"
exit "$status"
