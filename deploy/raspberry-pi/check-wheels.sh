#!/usr/bin/env bash
# Prove, without building or installing anything, that the app's run-time dependencies
# resolve to binary wheels for Raspberry Pi OS Bookworm 64-bit: CPython 3.11, aarch64,
# glibc 2.36. pip downloads wheels only (--only-binary=:all:) for every manylinux tag up
# to 2_36 into a temporary folder, which is deleted afterwards. A package that would
# need a source build or a newer glibc makes the check fail with its name.
#
# The dependency set is pyproject.toml's [project].dependencies under the constraints
# install.sh uses (constraints-bookworm.txt: PySide6 < 6.8, whose newer wheels need glibc
# 2.39), checked twice: as is, and with numpy < 2, which install.sh adds where the system
# picamera2 stack (built against Debian's numpy 1.x) is visible to the venv.
#
# usage: deploy/raspberry-pi/check-wheels.sh [--glibc 2.36] [--python 3.11] [--keep DIR]
# env:   PYTHON (default python3): the interpreter whose pip is used (needs Python >= 3.11
#        for tomllib, or the tomli package). CONSTRAINTS: another constraints file.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
CONSTRAINTS="${CONSTRAINTS:-$ROOT/deploy/raspberry-pi/constraints-bookworm.txt}"
GLIBC="2.36"
PYVER="3.11"
KEEP=""

while [ $# -gt 0 ]; do
    case "$1" in
        --glibc) GLIBC="$2"; shift 2 ;;
        --python) PYVER="$2"; shift 2 ;;
        --keep) KEEP="$2"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "check-wheels: unknown argument $1" >&2; exit 2 ;;
    esac
done

GLIBC_MINOR="${GLIBC#2.}"
case "$GLIBC_MINOR" in (*[!0-9]*|'') echo "check-wheels: --glibc must look like 2.36, got $GLIBC" >&2; exit 2 ;; esac
if [ "$GLIBC_MINOR" -lt 17 ]; then echo "check-wheels: --glibc must be 2.17 or newer" >&2; exit 2; fi
ABI="cp${PYVER/./}"

# The run-time dependency set: pyproject.toml [project].dependencies.
mapfile -t DEPS < <("$PYTHON" - "$ROOT/pyproject.toml" <<'PY'
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
with open(sys.argv[1], "rb") as fh:
    print("\n".join(tomllib.load(fh)["project"]["dependencies"]))
PY
)
if [ ! -f "$CONSTRAINTS" ]; then
    echo "check-wheels: constraints file not found: $CONSTRAINTS" >&2
    exit 2
fi
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
        --implementation cp --abi "$ABI" --abi abi3 --abi none -c "$CONSTRAINTS" --dest "$dir" "$@"
}

check_set() {  # check_set LABEL EXTRA_REQUIREMENT...: resolve DEPS (+ extras); 0 when all are wheels
    local label="$1"; shift
    local dir="$DEST/$label" dep one culprit whl file tags min ok=0
    local failed=()
    mkdir -p "$dir"
    echo "== $label: ${DEPS[*]} $* (constraints: $(basename "$CONSTRAINTS"))"
    if ! pip_download "$dir" "${DEPS[@]}" "$@" >"$dir/pip.log" 2>&1; then
        # Name the culprit(s): resolve each requirement (with its dependencies) alone.
        for dep in "${DEPS[@]}" "$@"; do
            one="$(mktemp -d "$DEST/one.XXXXXX")"
            if ! pip_download "$one" "$dep" "$@" >"$one/pip.log" 2>&1; then
                culprit="$(grep -oE 'No matching distribution found for [^ ]+' "$one/pip.log" | head -n1 | sed 's/.* for //')"
                failed+=("$dep${culprit:+ (no wheel for $culprit)}")
            fi
        done
        echo "FAIL ($label): no binary wheel for CPython $PYVER aarch64 glibc <= $GLIBC:" >&2
        if [ "${#failed[@]}" -gt 0 ]; then
            printf '  %s\n' "${failed[@]}" >&2
        else
            echo "  (each requirement resolves alone; together they conflict)" >&2
        fi
        echo "pip said:" >&2
        grep -E 'ERROR|No matching|Could not find' "$dir/pip.log" | sed 's/^/  /' >&2 || tail -n 5 "$dir/pip.log" >&2
        return 1
    fi
    # pip already refused every other tag; list what it took and re-check the glibc bound
    # (a wheel fits when its oldest manylinux tag does).
    for whl in "$dir"/*; do
        file="$(basename "$whl")"
        [ "$file" = pip.log ] && continue
        case "$file" in
            *.whl) ;;
            *) echo "FAIL ($label): pip fetched $file, which is not a wheel (a source build)" >&2; ok=1; continue ;;
        esac
        tags="$(grep -oE 'manylinux_2_[0-9]+' <<<"$file" | sed 's/manylinux_2_//' | sort -n | head -n1)"
        min="${tags:-17}"
        echo "  $file"
        if [ "$min" -gt "$GLIBC_MINOR" ]; then
            echo "FAIL ($label): $file needs glibc 2.$min (> $GLIBC)" >&2
            ok=1
        fi
    done
    return "$ok"
}

echo "check-wheels: CPython $PYVER ($ABI), aarch64, glibc <= $GLIBC, binary wheels only"
status=0
check_set default || status=1
check_set numpy1-for-system-picamera2 "numpy<2" || status=1
if [ "$status" -eq 0 ]; then
    echo "OK: the run-time dependencies have binary wheels for CPython $PYVER aarch64 glibc $GLIBC"
fi
exit "$status"
