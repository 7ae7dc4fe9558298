"""Fault injection against the real CLI and app in subprocesses (issue 17; the list is docs/faults.md).

Every case asserts the exit code, a one-line message without a traceback, and exactly which
files exist afterwards (nothing partial, nothing outside the target).
"""
from __future__ import annotations

import http.server
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from engine.models.download import OFFICIAL_CHECKPOINTS, OFFLINE_MESSAGE

REPO = Path(__file__).resolve().parent.parent
VIDEO = "highway-1280x720-short.mp4"  # 38 frames
TINY_FILE = OFFICIAL_CHECKPOINTS["tiny"].file_name


def run_main(*args: str, cwd: Path, env: dict | None = None, ulimit_kb: int | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "main.py"), *args]
    if ulimit_kb is not None:  # a full disk: Python ignores SIGXFSZ, so writes fail with EFBIG
        cmd = ["bash", "-c", f'ulimit -f {ulimit_kb}; exec "$@"', "bash", *cmd]
    full_env = dict(os.environ, QT_QPA_PLATFORM="offscreen", **(env or {}))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=full_env)


def one_line_error(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "propagateSizeHints" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def work(tmp_path) -> Path:
    (tmp_path / "out").mkdir()
    return tmp_path


# -- model names and checkpoints ---------------------------------------------------------------

@pytest.mark.shared
@pytest.mark.torch
@pytest.mark.parametrize("name", ["../../x", "/tmp/studio-abs-name", "a/b", "..", ".hidden", "x y"])
def test_import_refuses_names_that_are_not_plain(work, shared_dir, name):
    before = tree(work)
    proc = run_main("models", "import", str(shared_dir / "reference" / "random-tiny.pth"), "--dataset", "ade20k",
                    "--name", name, "--models-dir", str(work / "m"), cwd=work / "out")
    assert "invalid model name" in one_line_error(proc)
    assert tree(work) == before and not Path("/tmp/studio-abs-name.onnx").exists()


def _damaged_copies(work: Path, reference: Path) -> dict[str, tuple[Path, str]]:
    import torch

    data = reference.read_bytes()
    mid = bytearray(data)
    mid[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    cases = {
        "crc": (bytes(mid), "fails its CRC check"),
        "text": (b"these are not the weights you are looking for\n" * 20, "is a text file"),
        "html": (b"<!DOCTYPE html><html><head><title>Google Drive</title></head></html>", "web page"),
        "truncated": (data[:100_000], "not a readable PyTorch checkpoint"),
    }
    out = {}
    for key, (blob, message) in cases.items():
        path = work / f"{key}.pth"
        path.write_bytes(blob)
        out[key] = (path, message)
    state = torch.load(reference, map_location="cpu", weights_only=True)
    sd = state.get("state_dict", state)
    key = next(k for k, v in sd.items() if v.is_floating_point() and v.numel() > 1)
    sd[key][0] = float("nan")
    torch.save(state, work / "nan.pth")
    out["nan"] = (work / "nan.pth", "NaN or infinite")
    return out


@pytest.mark.shared
@pytest.mark.torch
def test_import_refuses_damaged_checkpoints(work, shared_dir):
    models = work / "m"
    cases = _damaged_copies(work, shared_dir / "reference" / "random-tiny.pth")
    before = tree(work)
    for key, (path, message) in cases.items():
        proc = run_main("models", "import", str(path), "--dataset", "ade20k", "--models-dir", str(models), cwd=work / "out")
        assert message in one_line_error(proc), key
        assert tree(work) == before, key  # not even an empty models folder


@pytest.mark.shared
@pytest.mark.torch
def test_import_into_missing_or_readonly_folder(work, shared_dir):
    ckpt = str(shared_dir / "reference" / "random-tiny.pth")
    before = tree(work)
    proc = run_main("models", "import", ckpt, "--dataset", "ade20k", "--models-dir", str(work / "no" / "such"), cwd=work / "out")
    assert "does not exist" in one_line_error(proc)
    (work / "file").write_text("x")
    proc = run_main("models", "import", ckpt, "--dataset", "ade20k", "--models-dir", str(work / "file" / "m"), cwd=work / "out")
    one_line_error(proc)
    assert tree(work) == before | {"file"}
    ro = work / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes through file modes: make the folder immutable instead (ext4 and most local FSs)
        lock = subprocess.run(["chattr", "+i", str(ro)], capture_output=True, text=True)
        if lock.returncode != 0:
            pytest.skip(f"running as root and chattr +i is not available here: {lock.stderr.strip()}")
        unlock, reason = ["chattr", "-i", str(ro)], "Operation not permitted"
    else:
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        unlock, reason = None, "Permission denied"
    try:
        proc = run_main("models", "import", ckpt, "--dataset", "ade20k", "--models-dir", str(ro), cwd=work / "out")
        assert reason in one_line_error(proc)
        assert not any(ro.iterdir())
    finally:
        if unlock:
            subprocess.run(unlock, check=True)
        ro.chmod(stat.S_IRWXU)


# -- manifest ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fault,message", [
    ("no_sha", "model entry 'camvid-tiny': no 'sha256' field"),
    ("no_classes", "model entry 'camvid-tiny': no 'classes' field"),
    ("multiple_0", "'input.multiple' must be a positive integer, not 0"),
    ("palette", "'palette' has a bad colour"),
    ("palette_len", "'palette' must hold one colour per class"),
])
def test_manifest_problems_are_one_line_naming_the_entry(work, fault, message):
    entry = json.loads((REPO / "models" / "manifest.json").read_text())["models"][0]
    entry = dict(entry, name="camvid-tiny")
    if fault == "no_sha":
        del entry["sha256"]
    elif fault == "no_classes":
        del entry["classes"]
    elif fault == "multiple_0":
        entry["input"] = {"multiple": 0, "mode": "native"}
    elif fault == "palette":
        entry["palette"] = [[0, 0, 300]] * len(entry["classes"])
    else:
        entry["palette"] = entry["palette"][:-1]
    models = work / "m"
    models.mkdir()
    (models / "manifest.json").write_text(json.dumps({"schema_version": 1, "models": [entry]}))
    import cv2

    cv2.imwrite(str(work / "in.png"), np.zeros((64, 96, 3), np.uint8))
    before = tree(work)
    for args in (["models", "list"], ["segment", str(work / "in.png"), "--model", "camvid-tiny", "--out", "o.png"]):
        assert message in one_line_error(run_main(*args, "--models-dir", str(models), cwd=work / "out"))
    proc = run_main("--model", "camvid-tiny", "--models-dir", str(models), cwd=work / "out")
    assert message in one_line_error(proc)
    assert tree(work) == before


# -- segment: outputs, full disk, decoding -------------------------------------------------------

@pytest.mark.shared
def test_segment_refuses_bad_outputs_and_values(work, videos):
    clip = str(videos / VIDEO)
    out = work / "out"
    os.mkfifo(out / "fifo.mp4")
    (out / "folder.mp4").mkdir()
    cases = [
        (["--out", "/dev/null"], "cannot write /dev/null"),
        (["--out", "fifo.mp4"], "not a regular file"),
        (["--out", "folder.mp4"], "is a folder"),
        (["--out", "o.xyz"], "must be a video"),
        (["--out", "missing/o.mp4"], "does not exist"),
        (["--out", "o.mp4", "--opacity", "nan"], "opacity nan is outside 0..1"),
        (["--out", "o.mp4", "--opacity", "5"], "opacity 5 is outside 0..1"),
        (["--out", "o.mp4", "--opacity", "half"], "is not a number"),
        (["--out", "o.mp4", "--labels", "l.png"], "--labels is only for images"),
    ]
    before = tree(work)
    for args, message in cases:
        proc = run_main("segment", clip, "--scale", "half", *args, cwd=out)
        assert message in one_line_error(proc), args
    assert tree(work) == before
    assert stat.S_ISFIFO(os.stat(out / "fifo.mp4").st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.shared
def test_segment_image_outputs(work, shared_dir):
    image = str(shared_dir / "datasets" / "ade20k" / "samples" / "ADE_val_00000001.jpg")
    out = work / "out"
    before = tree(work)
    for args, message in [
        (["--out", "o.xyz"], "must be an image"),
        (["--out", "o.png", "--labels", "missing/l.png"], "does not exist"),
        (["--out", "o.png", "--labels", "l.jpg"], "must name a .png"),
    ]:
        assert message in one_line_error(run_main("segment", image, *args, cwd=out)), args
    assert tree(work) == before
    # full disk: neither the overlay nor a temporary file is left
    proc = run_main("segment", image, "--out", "o.png", "--labels", "l.png", cwd=out, ulimit_kb=20)
    assert "File too large" in one_line_error(proc)
    assert tree(work) == before


@pytest.mark.shared
def test_segment_video_to_a_full_disk_leaves_nothing(work, videos):
    out = work / "out"
    (out / "old.mp4").write_bytes(b"the user's earlier file")
    proc = run_main("segment", str(videos / VIDEO), "--scale", "half", "--out", "old.mp4", cwd=out, ulimit_kb=300)
    assert "cannot write video" in one_line_error(proc)
    assert tree(out) == {"old.mp4"} and (out / "old.mp4").read_bytes() == b"the user's earlier file"


@pytest.mark.shared
def test_segment_truncated_video_says_decoded_n_of_m(work, shared_dir):
    source = shared_dir / "videos" / "dashcam-highway-960x540.mp4"  # 221 frames, index at the start
    truncated = work / "trunc.mp4"
    truncated.write_bytes(source.read_bytes()[:1_000_000])
    proc = run_main("segment", str(truncated), "--scale", "half", "--out", "o.mp4", cwd=work / "out")
    line = one_line_error(proc)
    assert "decoded" in line and "of 221 frames" in line and "truncated or corrupt" in line
    assert not any((work / "out").iterdir())


@pytest.mark.shared
@pytest.mark.gui
def test_app_stops_on_a_truncated_video_instead_of_looping(work, shared_dir):
    truncated = work / "trunc.mp4"
    truncated.write_bytes((shared_dir / "videos" / "dashcam-highway-960x540.mp4").read_bytes()[:1_000_000])
    proc = run_main("--source", str(truncated), "--scale", "half", "--benchmark-frames", "5000", cwd=work / "out")
    assert "decoded" in one_line_error(proc) and "of 221 frames" in proc.stderr


@pytest.mark.slow
def test_huge_image_is_capped_and_stays_under_4_gb(work):
    import cv2

    y, x = np.mgrid[0:9000, 0:12000]
    cv2.imwrite(str(work / "big.jpg"), np.dstack([(x // 40) % 256, (y // 40) % 256, ((x + y) // 80) % 256]).astype(np.uint8))
    del x, y
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
    proc = subprocess.run([sys.executable, "-c", probe, sys.executable, str(REPO / "main.py"), "segment",
                           str(work / "big.jpg"), "--out", "o.png", "--labels", "l.png"],
                          cwd=work / "out", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    peak_gb = int(proc.stdout.strip().splitlines()[-1]) / 2**20
    print(f"\n12000x9000 segment at full: peak RSS {peak_gb:.2f} GB")
    assert peak_gb < 4.0
    labels = cv2.imread(str(work / "out" / "l.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (9000, 12000)


# -- CLI and app manners -----------------------------------------------------------------------

def test_unknown_command_suggests(work):
    assert one_line_error(run_main("segmnet", cwd=work)) == "error: unknown command 'segmnet'; did you mean 'segment'?"
    assert "commands: models, segment" in one_line_error(run_main("frobnicate", cwd=work))


def test_app_with_a_model_that_is_not_installed(work):
    line = one_line_error(run_main("--model", "no-such", cwd=work))
    assert "no model named 'no-such'" in line
    assert tree(work) == {"out"}


def test_app_without_a_display_says_how_to_run_headless(work):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    for view in ([], ["--compare", "tiny:half,tiny:full"]):  # the compare view aborted in Qt (exit 134)
        proc = subprocess.run([sys.executable, str(REPO / "main.py"), *view], capture_output=True, text=True,
                              cwd=work, env=env, timeout=60)
        line = one_line_error(proc)
        assert "no display" in line and "QT_QPA_PLATFORM=offscreen" in line


def test_missing_xcb_libraries_are_named_with_the_install_command(work):
    from app.window.preflight import debian_package, missing_libraries, xcb_plugin_path

    assert debian_package("libxcb-icccm.so.4") == "libxcb-icccm4"
    assert debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert debian_package("libEGL.so.1") == "libegl1"
    plugin = xcb_plugin_path()
    if plugin is None or shutil.which("ldd") is None:
        pytest.skip("no xcb plugin or no ldd here")
    missing = missing_libraries(plugin)
    if not missing:
        pytest.skip("every library of Qt's xcb plugin is installed here (the README's packages)")
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, str(REPO / "main.py")], capture_output=True, text=True, cwd=work,
                          env=dict(env, DISPLAY=":99"), timeout=60)
    line = one_line_error(proc)
    assert all(m in line for m in missing) and "sudo apt install" in line


# -- downloads ---------------------------------------------------------------------------------

class _Server(http.server.BaseHTTPRequestHandler):
    """One checkpoint at /<id>, with deliberate faults chosen by ``mode``."""

    payload = b""
    mode = "ok"
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server naming
        cls = type(self)
        rng = self.headers.get("Range")
        start = int(rng[6:].split("-")[0]) if rng and rng.startswith("bytes=") else 0
        cls.requests.append(f"{cls.mode} {start}")
        if cls.mode == "html":
            return self._send(200, b"<!DOCTYPE html><html><body>Quota exceeded</body></html>", length=True)
        if cls.mode == "early_close_no_length":
            return self._send(200, cls.payload[: len(cls.payload) // 2], length=False)
        if cls.mode == "wrong_206":
            if start == 0:  # the first transfer drops after a third
                cls.mode = "wrong_206_resume"
                return self._send(200, cls.payload, length=True, cut=len(cls.payload) // 3)
        if cls.mode == "wrong_206_resume":
            if start:  # a 206 that starts at 0 instead of the asked offset
                cls.mode = "ok"
                return self._send(206, cls.payload, length=True,
                                  content_range=f"bytes 0-{len(cls.payload) - 1}/{len(cls.payload)}")
        if start:
            body = cls.payload[start:]
            return self._send(206, body, length=True,
                              content_range=f"bytes {start}-{len(cls.payload) - 1}/{len(cls.payload)}")
        return self._send(200, cls.payload, length=True)

    def _send(self, code, body, length, content_range=None, cut=None):
        self.send_response(code)
        if length:
            self.send_header("Content-Length", str(len(body)))
        if content_range:
            self.send_header("Content-Range", content_range)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(shared_dir):
    _Server.payload = (shared_dir / "reference" / "topformer-tiny-ade20k.pth").read_bytes()  # read, never copied
    _Server.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _download(work: Path, url: str, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    args = ["models", "download", "tiny", "--cache-dir", str(work / "cache"), "--models-dir", str(work / "m"), *extra]
    if url:
        args += ["--base-url", url]
    return run_main(*args, cwd=work / "out", env=env)


@pytest.mark.shared
@pytest.mark.torch
@pytest.mark.parametrize("mode,message", [
    ("html", "is a web page"),
    ("early_close_no_length", "is incomplete or damaged"),
])
def test_download_faults_never_become_a_cached_file(work, server, mode, message):
    _Server.mode = mode
    line = one_line_error(_download(work, server))
    assert message in line and "nothing was saved" in line
    assert tree(work) == {"out", "cache"}  # no checkpoint, no .part, no models folder


@pytest.mark.shared
@pytest.mark.torch
def test_download_wrong_206_offset_is_discarded_and_sha256_recorded(work, server):
    _Server.mode = "wrong_206"
    proc = _download(work, "", env={"STUDIO_DOWNLOAD_URL": server})  # the URL override for tests and mirrors
    assert proc.returncode == 0, proc.stderr
    modes = [r.split() for r in _Server.requests]
    assert [m for m, _ in modes] == ["wrong_206", "wrong_206_resume", "ok"], _Server.requests
    assert int(modes[1][1]) > 0 and modes[2][1] == "0"  # resumed, got a wrong 206, started again
    cached = work / "cache" / TINY_FILE
    assert cached.read_bytes() == _Server.payload  # the wrongly placed bytes never became the file
    import hashlib

    digest = hashlib.sha256(_Server.payload).hexdigest()
    assert (work / "cache" / f"{TINY_FILE}.sha256").read_text().strip() == digest
    assert tree(work / "cache") == {TINY_FILE, f"{TINY_FILE}.sha256"}

    # on later use the recorded sha256 is checked: a changed cache file is refused, not installed
    data = bytearray(cached.read_bytes())
    data[-10] ^= 0xFF
    cached.write_bytes(bytes(data))
    manifest_before = (work / "m" / "manifest.json").read_text()
    assert "changed since it was downloaded" in one_line_error(_download(work, server, "--name", "again"))
    assert (work / "m" / "manifest.json").read_text() == manifest_before


@pytest.mark.shared
@pytest.mark.torch
def test_download_with_a_wrong_sha256_saves_nothing(work, server):
    _Server.mode = "ok"
    line = one_line_error(_download(work, server, "--sha256", "0" * 64))
    assert "not the 000" in line and "nothing was saved" in line
    assert tree(work) == {"out", "cache"}
    assert "64 hex digits" in one_line_error(_download(work, server, "--sha256", "abc"))


def test_download_offline(work):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _download(work, f"http://127.0.0.1:{port}/")
    assert one_line_error(proc) == f"error: {OFFLINE_MESSAGE}"
    assert tree(work) == {"out", "cache"}


@pytest.mark.shared
@pytest.mark.torch
def test_download_api_progress_and_cancel(work, server):
    from engine.models.download import DownloadCancelled, download

    _Server.mode = "ok"
    seen: list[tuple[int, int | None]] = []
    cancel = threading.Event()

    def progress(done, total):
        seen.append((done, total))
        if done > 500_000:
            cancel.set()

    with pytest.raises(DownloadCancelled):
        download("tiny", work / "cache", progress=progress, cancel=cancel, base_url=server)
    part = work / "cache" / f"{TINY_FILE}.part"
    assert part.is_file() and part.stat().st_size < len(_Server.payload)  # verified-resumable bytes kept
    path = download("tiny", work / "cache", progress=lambda d, t: seen.append((d, t)), base_url=server)
    assert path.read_bytes() == _Server.payload and not part.exists()
    assert seen[-1] == (len(_Server.payload), len(_Server.payload))


def test_decode_shortfall_allows_only_a_small_tolerance():
    from engine.io.sources import decode_shortfall

    assert not decode_shortfall(219, 221) and decode_shortfall(218, 221)  # 2 frames of slack
    assert not decode_shortfall(1381, 1394) and decode_shortfall(1380, 1394)  # 1 % of a long video
    assert not decode_shortfall(5, 0)  # unknown count (cameras, some streams)
