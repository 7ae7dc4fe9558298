"""The headless commands as a user runs them: models import/list/download, segment, bench."""
from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.models.download import OFFICIAL_CHECKPOINTS
from engine.models.registry import Registry

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.shared
@pytest.mark.torch
def test_import_list_and_bad_checkpoints(tmp_path, shared_dir):
    models = tmp_path / "m"
    proc = cli("models", "import", str(shared_dir / "reference" / "random-small.pth"), "--dataset", "ade20k",
               "--name", "s", "--models-dir", str(models))
    assert proc.returncode == 0, proc.stderr
    entry = Registry(models).get("s")
    assert entry.variant == "small" and entry.num_classes == 150 and len(entry.palette) == 150
    assert "models import random-small.pth" in entry.made_by
    listing = cli("models", "list", "--models-dir", str(models))
    assert listing.returncode == 0 and "small" in listing.stdout and "ade20k" in listing.stdout

    before = sorted(p.name for p in models.iterdir())
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes((shared_dir / "reference" / "random-tiny.pth").read_bytes()[:100_000])
    assert "not a readable PyTorch checkpoint" in one_line_error(
        cli("models", "import", str(corrupt), "--dataset", "ade20k", "--models-dir", str(models)))
    assert "class-count mismatch" in one_line_error(
        cli("models", "import", str(shared_dir / "reference" / "random-tiny.pth"), "--dataset", "camvid",
            "--models-dir", str(models)))
    assert "does not exist" in one_line_error(
        cli("models", "import", str(tmp_path / "missing.pth"), "--dataset", "ade20k", "--models-dir", str(models)))
    import torch

    other = tmp_path / "other.pth"
    torch.save({"state_dict": {"decode_head.conv_seg.weight": torch.zeros(150, 64, 1, 1)}}, other)
    assert "unknown layout" in one_line_error(
        cli("models", "import", str(other), "--dataset", "ade20k", "--models-dir", str(models)))
    assert sorted(p.name for p in models.iterdir()) == before  # nothing half-written


@pytest.mark.shared
@pytest.mark.torch
def test_segment_image_video_and_errors(tmp_path, random_models_dir, shared_dir, videos):
    sample = shared_dir / "datasets" / "ade20k" / "samples" / "ADE_val_00000001.jpg"
    out, labels = tmp_path / "o.png", tmp_path / "l.png"
    proc = cli("segment", str(sample), "--model", "ade20k-tiny", "--models-dir", str(random_models_dir),
               "--out", str(out), "--labels", str(labels))
    assert proc.returncode == 0, proc.stderr
    image = cv2.imread(str(sample))
    ids = cv2.imread(str(labels), cv2.IMREAD_UNCHANGED)
    assert ids.shape == image.shape[:2] and ids.dtype == np.uint8 and ids.max() < 150
    assert cv2.imread(str(out)).shape == image.shape

    video = tmp_path / "o.mp4"
    proc = cli("segment", str(videos / "highway-1280x720-short.mp4"), "--model", "tiny-random", "--scale", "half",
               "--models-dir", str(random_models_dir), "--out", str(video))
    assert proc.returncode == 0, proc.stderr
    cap = cv2.VideoCapture(str(video))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (1280, 720)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 38
    cap.release()

    not_video = tmp_path / "notes.mp4"
    not_video.write_text("hello")
    for args, message in [
        ([str(tmp_path / "missing.mp4")], "does not exist"),
        ([str(not_video)], "not a readable video"),
        ([str(tmp_path)], "is a folder, not a video file"),
        ([str(sample), "--model", "nope"], "no model named 'nope'"),
    ]:
        base = ["segment", *args[:1], "--models-dir", str(random_models_dir), "--out", str(tmp_path / "x.mp4")]
        extra = args[1:] or ["--model", "tiny-random"]
        assert message in one_line_error(cli(*base, *extra))
    assert "does not exist" in one_line_error(cli("segment", str(sample), "--model", "tiny-random", "--models-dir",
                                                  str(random_models_dir), "--out", str(tmp_path / "no" / "x.png")))
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.shared
@pytest.mark.torch
def test_bench_json(random_models_dir):
    proc = cli("bench", "--json", "--models", "tiny-random", "--repeat", "1", "--models-dir", str(random_models_dir),
               "--backends", "onnxruntime")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["cpu"].startswith("CPU: ")
    rows = report["rows"]
    assert {(r["frame"], r["scale"]) for r in rows} == {(f, s) for f in ("1280x720", "768x432") for s in ("full", "half")}
    for r in rows:
        assert r["network_ms"] > 0 and r["pipeline_ms"] > 0 and r["naive_ms"] > 0 and r["blocky_ms"] > 0
        assert r["ratio"] == pytest.approx(r["pipeline_ms"] / r["network_ms"], rel=0.01)
        assert r["backend"] == "onnxruntime" and r["precision"] == "f32"
    full = {r["frame"]: r["input"] for r in rows if r["scale"] == "full"}
    assert full == {"1280x720": "1280x704", "768x432": "768x448"}
    assert all(0 < r["boundary_share"] < 1 for r in rows if r["scale"] == "full")
    # A misspelt model name: one line naming what is installed, before any table line.
    proc = cli("bench", "--models", "tiny-random,tiny-randon", "--models-dir", str(random_models_dir))
    assert proc.returncode == 2 and proc.stdout == ""
    assert "no model named 'tiny-randon'" in one_line_error(proc) and "tiny-random" in proc.stderr


class _CheckpointServer(http.server.BaseHTTPRequestHandler):
    """Serves one file at /<id>, honouring Range; can drop the first transfer or send HTML."""

    payload = b""
    mode = "ok"
    drops_left = 0

    def do_GET(self):  # noqa: N802 - http.server naming
        cls = type(self)
        if cls.mode == "html":
            body = b"<!DOCTYPE html><html><body>Google Drive - Quota exceeded</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        start = 0
        if (rng := self.headers.get("Range")) and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
        body = cls.payload[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(cls.payload) - 1}/{len(cls.payload)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cls.drops_left > 0:
            cls.drops_left -= 1
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def checkpoint_server(shared_dir):
    _CheckpointServer.payload = (shared_dir / "reference" / "topformer-tiny-ade20k.pth").read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CheckpointServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.mark.shared
@pytest.mark.torch
def test_download_resumes_after_dropped_connection(tmp_path, checkpoint_server):
    _, url = checkpoint_server
    _CheckpointServer.mode, _CheckpointServer.drops_left = "ok", 2
    models, cache = tmp_path / "m", tmp_path / "cache"
    proc = cli("models", "download", "tiny", "--base-url", url, "--cache-dir", str(cache), "--models-dir", str(models))
    assert proc.returncode == 0, proc.stderr
    assert _CheckpointServer.drops_left == 0
    entry = Registry(models).get("ade20k-tiny")
    assert entry.variant == "tiny" and entry.accuracy["miou"] == pytest.approx(0.346)
    assert OFFICIAL_CHECKPOINTS["tiny"].file_id in entry.made_by
    saved = cache / OFFICIAL_CHECKPOINTS["tiny"].file_name
    assert saved.read_bytes() == _CheckpointServer.payload


@pytest.mark.shared
@pytest.mark.torch
def test_download_resumes_a_partial_file_from_an_earlier_run(tmp_path, checkpoint_server):
    _, url = checkpoint_server
    _CheckpointServer.mode, _CheckpointServer.drops_left = "ok", 0
    cache = tmp_path / "cache"
    cache.mkdir()
    part = cache / (OFFICIAL_CHECKPOINTS["tiny"].file_name + ".part")
    part.write_bytes(_CheckpointServer.payload[:1_000_000])
    from engine.models.download import download_checkpoint

    path = download_checkpoint("tiny", base_url=url, cache_dir=cache, progress=False)
    assert path.read_bytes() == _CheckpointServer.payload and not part.exists()


@pytest.mark.shared
@pytest.mark.torch
def test_download_rejects_a_web_page(tmp_path, checkpoint_server):
    _, url = checkpoint_server
    _CheckpointServer.mode = "html"
    models = tmp_path / "m"
    proc = cli("models", "download", "small", "--base-url", url, "--cache-dir", str(tmp_path / "c"),
               "--models-dir", str(models))
    assert "web page" in one_line_error(proc)
    assert not models.exists() or not any(models.iterdir())
    assert not any((tmp_path / "c").iterdir())


def test_models_list_says_how_each_model_does_on_a_drive_it_never_saw(shipped_models_dir):
    """Val flatters (it shares a drive with training): the list and the app also give the
    unseen-drive figure, measured on the model itself or estimated by a held-out run of its recipe."""
    from dataclasses import asdict

    from engine.models.registry import ModelEntry

    registry = Registry(shipped_models_dir)
    tiny, small, base = (registry.get(f"camvid-{v}") for v in ("tiny", "small", "base"))
    for refit in (tiny, small, base):  # refits on every drive: the mean of their recipe's held-out runs, two seeds or more a drive
        drives, runs = refit.training["unseen_drives"]["drives"], refit.training["unseen_drives"]["runs"]
        assert list(drives) == ["0006R0", "0001TP", "0016E5"]
        assert refit.training["selection"]["last"]["miou_holdout"] in runs["0006R0"].values()
        for drive, by_seed in runs.items():
            assert len(by_seed) >= 2 and drives[drive] == pytest.approx(sum(by_seed.values()) / len(by_seed), abs=1e-6)
        mean = round(sum(drives.values()) / 3, 6)
        assert refit.unseen_drive_miou == (mean, "0006R0+0001TP+0016E5", True)
        assert refit.unseen_drive_miou[0] > 0.47  # the from-scratch Small and Base scored about 0.36 on 0006R0
        assert refit.unseen_text() == f"unseen drives 0006R0, 0001TP, 0016E5: mean mIoU {100 * mean:.1f} (estimate)"
    # An INT8 copy carries its FP32 source's figure.
    for fp32 in (tiny, small, base):
        int8 = registry.get(f"{fp32.name}-int8")
        assert int8.unseen_drive_miou == (round(fp32.unseen_drive_miou[0], 6), "0006R0+0001TP+0016E5", True)
    # A model trained with a drive held out has its own measured figure, which wins.
    measured = ModelEntry.from_dict({**asdict(small), "accuracy": {**small.accuracy, "holdout": {"drive": "0001TP", "miou": 0.4}}})
    assert measured.unseen_drive_miou == (0.4, "0001TP", False)
    assert measured.unseen_text() == "unseen drive 0001TP mIoU 40.0"
    listing = cli("models", "list", "--models-dir", str(shipped_models_dir))
    assert listing.returncode == 0
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert rows["camvid-tiny"].endswith(f"0006R0+0001TP+0016E5 mIoU {100 * tiny.unseen_drive_miou[0]:.1f} (est.)")
    assert rows["camvid-tiny-int8"].endswith(f"0006R0+0001TP+0016E5 mIoU {100 * tiny.unseen_drive_miou[0]:.1f} (est.)")


@pytest.mark.shared
@pytest.mark.torch
def test_import_finds_the_dataset_from_the_class_count(tmp_path, shared_dir):
    import torch

    models = tmp_path / "m"
    proc = cli("models", "import", str(shared_dir / "reference" / "random-base-cityscapes.pth"),
               "--models-dir", str(models))  # no --dataset: 19 classes are Cityscapes'
    assert proc.returncode == 0, proc.stderr
    (entry,) = Registry(models).entries()
    assert entry.name == f"cityscapes-{entry.variant}" and entry.dataset == "cityscapes" and entry.num_classes == 19 and entry.classes[0] == "road"
    assert "--dataset" not in entry.made_by  # what the user typed, so the command runs again as given
    state = torch.load(shared_dir / "reference" / "random-tiny.pth", map_location="cpu", weights_only=False)
    weights = state.get("state_dict", state)
    for key in ("decode_head.conv_seg.weight", "decode_head.conv_seg.bias"):
        weights[key] = weights[key][:7]
    seven = tmp_path / "seven.pth"
    torch.save(state, seven)
    error = one_line_error(cli("models", "import", str(seven), "--models-dir", str(models)))
    assert "seven.pth predicts 7 classes" in error and "--dataset" in error
    proc = cli("models", "import", str(seven), "--dataset", "ade20k", "--models-dir", str(models))
    assert "class-count mismatch" in one_line_error(proc)
    assert [e.name for e in Registry(models).entries()] == [entry.name]  # the refused ones wrote nothing


@pytest.mark.shared
def test_short_model_names_work_in_every_command(tmp_path, shipped_models_dir, shared_dir, videos):
    """``tiny`` is ``camvid-tiny`` wherever a model is named, as in the compare panes; ambiguity is refused."""
    models = ["--models-dir", str(shipped_models_dir)]
    picture = shared_dir / "datasets" / "ade20k" / "samples" / "ADE_val_00000002.jpg"
    proc = cli("segment", str(picture), "--model", "base", "--out", str(tmp_path / "o.png"), *models)
    assert proc.returncode == 0 and "model camvid-base" in proc.stdout, proc.stderr
    proc = cli("eval", "--model", "Small", "--limit", "2", "--json", *models)
    assert proc.returncode == 0 and json.loads(proc.stdout)["model"] == "camvid-small", proc.stderr
    proc = cli("annotate", str(videos / "indoor-people-768x432.mp4"), "--model", "tiny-int8", "--end", "0.3",
               "--formats", "stats", "--no-progress", "--out", str(tmp_path / "a"), *models)
    assert proc.returncode == 0 and "with camvid-tiny-int8" in proc.stderr, proc.stderr
    proc = cli("bench", "--models", "tiny", "--sizes", "320x180", "--scales", "half", "--repeat", "1",
               "--backends", "onnxruntime", "--no-naive", "--json", *models)
    assert proc.returncode == 0 and {r["model"] for r in json.loads(proc.stdout)["rows"]} == {"camvid-tiny"}, proc.stderr
    error = one_line_error(cli("segment", str(picture), "--model", "int8", "--out", str(tmp_path / "x.png"), *models))
    assert "'int8' is ambiguous: camvid-tiny-int8, camvid-small-int8, camvid-base-int8" in error
    assert "no model named 'huge'" in one_line_error(
        cli("segment", str(picture), "--model", "huge", "--out", str(tmp_path / "x.png"), *models))
    assert not (tmp_path / "x.png").exists()


def test_network_streams_are_refused_in_one_line(tmp_path):
    """``Path()`` folded ``rtsp://`` into ``rtsp:/`` and the error blamed a missing file."""
    url = "rtsp://127.0.0.1:9/stream"
    for args in (("segment", url, "--out", str(tmp_path / "o.mp4")),
                 ("annotate", url, "--model", "tiny", "--out", str(tmp_path / "a")),
                 ("compare", url, "--models", "tiny,base"),
                 ("--source", url, "--benchmark-frames", "2")):
        error = one_line_error(cli(*args))
        assert error == f"error: {url}: network streams are not supported; open a camera (0, 1, ...) or a video file"
    assert list(tmp_path.iterdir()) == []
