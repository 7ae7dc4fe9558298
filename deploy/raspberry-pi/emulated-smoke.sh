#!/usr/bin/env bash
# Emulated aarch64 proof: the headless `main.py segment` of this checkout, run by an arm64
# Debian Bookworm python3.11 (the Raspberry Pi OS base) with the aarch64 wheels, under
# qemu-user, gives the same class maps as on this x86 machine.
#
# Nothing is installed on this machine and no root is needed:
#   * qemu-user-static (Debian's amd64 package) is fetched with `apt-get download` and
#     unpacked with `dpkg -x`, unless qemu-aarch64-static is already on PATH;
#   * the arm64 root is python3.11 and its dependency closure, fetched with a private apt
#     configuration (APT::Architecture=arm64) and unpacked with `dpkg -x`; qemu runs its
#     interpreter with `-L ROOT` (no binfmt, no chroot);
#   * the aarch64 wheels (cp311, manylinux <= 2_36) are unpacked with
#     `pip install --target --platform ... --only-binary=:all:` and found via PYTHONPATH.
# Frames of the clip are decoded once on x86 into PNGs. Each is checked twice: resized on
# x86 to the network input size and segmented at full scale (no resize on either side: the
# network alone, FP32 must match exactly), and as decoded at --scale (the whole pipeline:
# OpenCV's bilinear resize rounds differently on x86 and aarch64, by 1 grey level on about
# a quarter of the values, which moves some boundary labels; reported, not required equal).
#
# usage: deploy/raspberry-pi/emulated-smoke.sh [--clip VIDEO] [--frames N] [--models a,b]
#            [--scale full|half] [--onnxruntime VERSION] [--work DIR]
# Defaults: the shared highway clip, 3 frames, camvid-tiny and camvid-tiny-int8, half,
# onnxruntime 1.27.0 (the newest that imports under Debian's qemu 7.2 here: 1.28 to 1.32 segfault
# there), work folder /tmp/studio-arm64 (reused between runs: about 850 MB, 370 MB of it the unpacked qemu).
# FP32 models must match exactly, except on frames that a model with an exposure target
# brightens (99.99 %: the gain comes from a float mean over the frame, summed in another
# order on aarch64); INT8 ones report their agreement (x86 VNNI and ARM integer kernels may
# round differently).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLIP="$ROOT/../shared/videos/highway-1280x720-short.mp4"
FRAMES=3
MODELS="camvid-tiny,camvid-tiny-int8"
SCALE="half"
ORT="1.27.0"
WORK="/tmp/studio-arm64"
SUITE="bookworm"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEFAULT_PY=python3; [ -x "$ROOT/.venv/bin/python" ] && DEFAULT_PY="$ROOT/.venv/bin/python"   # make setup's venv
HOST_PY="${PYTHON:-$DEFAULT_PY}"

while [ $# -gt 0 ]; do
    case "$1" in
        --clip) CLIP="$2"; shift 2 ;;
        --frames) FRAMES="$2"; shift 2 ;;
        --models) MODELS="$2"; shift 2 ;;
        --scale) SCALE="$2"; shift 2 ;;
        --onnxruntime) ORT="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "emulated-smoke: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -f "$CLIP" ] || { echo "emulated-smoke: clip not found: $CLIP" >&2; exit 2; }
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
ARMROOT="$WORK/root-arm64"
SITE="$WORK/site-ort$ORT"

# --- a private apt for one architecture --------------------------------------------------
apt_for() {  # apt_for ARCH: prints the apt-get/apt-cache options of a private apt state
    local arch="$1" dir="$WORK/apt-$1"
    if [ ! -f "$dir/updated" ]; then
        mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/etc/preferences.d" "$dir/etc/apt.conf.d"
        : >"$dir/status"
        echo "deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main" >"$dir/sources.list"
    fi
    echo "-o APT::Architecture=$arch -o APT::Architectures=$arch -o Dir::State=$dir -o Dir::State::Lists=$dir/lists" \
         "-o Dir::State::status=$dir/status -o Dir::Cache=$dir/cache -o Dir::Etc::SourceList=$dir/sources.list" \
         "-o Dir::Etc::SourceParts=$dir/none -o Dir::Etc::Preferences=$dir/none -o Dir::Etc::PreferencesParts=$dir/etc/preferences.d" \
         "-o Dir::Etc::Parts=$dir/etc/apt.conf.d -o Debug::NoLocking=1"
}
apt_update() {  # apt_update ARCH
    local dir="$WORK/apt-$1"
    # shellcheck disable=SC2046
    [ -f "$dir/updated" ] || { apt-get $(apt_for "$1") update -qq && touch "$dir/updated"; }
}
fetch_and_unpack() {  # fetch_and_unpack ARCH DEST PACKAGE...: the packages and their Depends closure
    local arch="$1" dest="$2"; shift 2
    local dir="$WORK/apt-$arch" debs="$WORK/debs-$arch"
    apt_update "$arch"
    mkdir -p "$debs" "$dest"
    local pkgs
    # shellcheck disable=SC2046
    pkgs="$(apt-cache $(apt_for "$arch") depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances "$@" | grep -E '^[a-z0-9]' | sed 's/:.*//' | sort -u)"
    local todo=()
    for p in $pkgs; do
        # virtual packages have no candidate: skip them (a real provider is in the closure)
        # shellcheck disable=SC2046
        apt-cache $(apt_for "$arch") show "$p" >/dev/null 2>&1 || continue
        compgen -G "$debs/${p}_*_${arch}.deb" >/dev/null || compgen -G "$debs/${p}_*_all.deb" >/dev/null || todo+=("$p")
    done
    if [ "${#todo[@]}" -gt 0 ]; then
        # shellcheck disable=SC2046
        (cd "$debs" && apt-get $(apt_for "$arch") download "${todo[@]}" -qq)
    fi
    for deb in "$debs"/*.deb; do
        [ -f "$dest/.unpacked.$(basename "$deb")" ] && continue
        dpkg -x "$deb" "$dest" && touch "$dest/.unpacked.$(basename "$deb")"
    done
}

# --- qemu ----------------------------------------------------------------------------------
QEMU="$(command -v qemu-aarch64-static || true)"
if [ -z "$QEMU" ]; then
    QEMU="$WORK/qemu/usr/bin/qemu-aarch64-static"
    if [ ! -x "$QEMU" ]; then
        log "fetching Debian's qemu-user-static (amd64), unpacking it with dpkg -x"
        mkdir -p "$WORK/qemu-deb"
        apt_update amd64
        # shellcheck disable=SC2046
        (cd "$WORK/qemu-deb" && apt-get $(apt_for amd64) download qemu-user-static -qq)
        dpkg -x "$WORK"/qemu-deb/qemu-user-static_*.deb "$WORK/qemu"
    fi
fi
log "qemu: $("$QEMU" --version | head -n1)"

# --- arm64 Bookworm python3.11 ---------------------------------------------------------------
if [ ! -x "$ARMROOT/usr/bin/python3.11" ]; then
    log "fetching arm64 $SUITE python3.11 and its dependencies (apt-get download), unpacking with dpkg -x"
    fetch_and_unpack arm64 "$ARMROOT" python3.11 libpython3.11-stdlib libstdc++6 libgcc-s1 libgomp1 zlib1g
fi
ARMPY=("$QEMU" -L "$ARMROOT" "$ARMROOT/usr/bin/python3.11")
log "arm64 python: $("${ARMPY[@]}" -c 'import platform, sys; print(sys.version.split()[0], platform.machine(), platform.libc_ver())')"

# --- aarch64 wheels ----------------------------------------------------------------------------
if [ ! -f "$SITE/.done" ]; then
    log "unpacking aarch64 wheels (onnxruntime $ORT) into $SITE"
    platforms=(--platform manylinux2014_aarch64)
    for ((m = 17; m <= 36; m++)); do platforms+=(--platform "manylinux_2_${m}_aarch64"); done
    "$HOST_PY" -m pip install --quiet --disable-pip-version-check --only-binary=:all: --target "$SITE" \
        "${platforms[@]}" --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
        "onnxruntime==$ORT" "numpy>=1.24" "opencv-python-headless>=4.8" "tqdm>=4.60"
    touch "$SITE/.done"
fi
armrun() { PYTHONPATH="$ROOT:$SITE" PYTHONNOUSERSITE=1 "${ARMPY[@]}" "$@"; }
if ! imports="$(armrun -c 'import numpy, cv2, onnxruntime as o; print("numpy", numpy.__version__, "opencv", cv2.__version__, "onnxruntime", o.__version__, o.get_available_providers())' 2>&1)"; then
    log "FAIL: the aarch64 wheels do not import under $("$QEMU" --version | head -n1) (onnxruntime $ORT):"
    printf '%s\n' "$imports" | tail -n 3
    exit 1
fi
log "arm64 imports: $(printf '%s\n' "$imports" | tail -n 1)"

# --- frames, x86 and arm64 labels -----------------------------------------------------------------
OUT="$WORK/run-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$OUT/frames"
"$HOST_PY" - "$CLIP" "$FRAMES" "$OUT/frames" "$SCALE" <<'PY'
import sys, cv2
clip, n, out, scale = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
factor = 0.5 if scale == "half" else 1.0
mult = lambda v: max(32, int(round(v * factor / 32)) * 32)
cap = cv2.VideoCapture(clip)
total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or n
step = max(1, total // n)
for i in range(n):
    cap.set(cv2.CAP_PROP_POS_FRAMES, i * step)
    ok, frame = cap.read()
    if not ok:
        sys.exit(f"cannot read frame {i * step} of {clip}")
    cv2.imwrite(f"{out}/frame{i:02d}.png", frame)
    h, w = frame.shape[:2]
    cv2.imwrite(f"{out}/net{i:02d}.png", cv2.resize(frame, (mult(w), mult(h)), interpolation=cv2.INTER_AREA))
PY
status=0
IFS=',' read -r -a MODEL_LIST <<<"$MODELS"
for model in "${MODEL_LIST[@]}"; do
    for frame in "$OUT"/frames/net*.png "$OUT"/frames/frame*.png; do
        name="$(basename "$frame" .png)"
        case "$name" in net*) scale=full; what="network only" ;; *) scale="$SCALE"; what="whole pipeline" ;; esac
        (cd "$ROOT" && "$HOST_PY" main.py segment "$frame" --model "$model" --scale "$scale" \
            --out "$OUT/$model-$name-x86.png" --labels "$OUT/$model-$name-x86-labels.png") >/dev/null
        start=$(date +%s)
        if ! (cd "$ROOT" && armrun main.py segment "$frame" --model "$model" --scale "$scale" \
                --out "$OUT/$model-$name-arm64.png" --labels "$OUT/$model-$name-arm64-labels.png") >"$OUT/$model-$name-arm64.log" 2>&1; then
            log "FAIL $model $name: the arm64 run failed:"; tail -n 5 "$OUT/$model-$name-arm64.log"; status=1; continue
        fi
        secs=$(( $(date +%s) - start ))
        result="$("$HOST_PY" - "$OUT/$model-$name-x86-labels.png" "$OUT/$model-$name-arm64-labels.png" \
            "$frame" "$ROOT" "$model" <<'PY'
import sys, cv2, numpy as np
a, b = (cv2.imread(p, cv2.IMREAD_UNCHANGED) for p in sys.argv[1:3])
same = float((a == b).mean()) if a.shape == b.shape else 0.0
verdict = "exact" if a.shape == b.shape and same == 1.0 else "differs"
# A model with an exposure target brightens a frame darker than it by target / mean: the
# mean is a float reduction over the whole frame, summed in another order by x86's and
# ARM's kernels, so a last-bit difference in the gain can move a value across a rounding
# edge. Such frames need 99.99 % agreement, the others stay exact.
if verdict == "differs" and same >= 0.9999:  # only then is the model's graph asked
    sys.path.insert(0, sys.argv[4])
    import onnxruntime as ort
    from engine.models.graph import decode_metadata
    from engine.models.registry import Registry
    registry = Registry()
    session = ort.InferenceSession(str(registry.onnx_path(registry.get(sys.argv[5]))), providers=["CPUExecutionProvider"])
    target = (decode_metadata(session.get_modelmeta().custom_metadata_map).get("exposure") or {}).get("target_mean")
    if target and cv2.imread(sys.argv[3]).mean() < target:
        verdict = "brightened"
print(f"{verdict} {100 * same:.4f}% of {a.size} pixels agree")
PY
)"
        log "$model $name ($what, $scale): $result (arm64 under qemu: ${secs}s)"
        case "$model:$name:$result" in
            *-int8:*) ;;             # INT8: x86 VNNI and ARM kernels may round differently; reported
            *:frame*) ;;             # whole pipeline: OpenCV's resize differs by 1 grey level; reported
            *:exact*) ;;
            *:brightened*) ;;        # a frame the model brightens: within 0.01 % (see above)
            *) status=1 ;;
        esac
    done
done
if [ "$status" -eq 0 ]; then
    log "OK: on the same network input, FP32 class maps of arm64 (qemu, onnxruntime $ORT) equal x86's (frames a model brightens: within 0.01 %); results in $OUT"
else
    log "FAIL: see $OUT"
fi
exit "$status"
