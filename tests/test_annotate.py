"""`main.py annotate`: masks, overlay video, stats, CVAT zip, resume after kill -9, bad inputs.

One real run of the CLI on a short clip (frames 5, 7, ... 33 of highway-1280x720-short.mp4 at
half scale) is shared by the output tests; the kill test compares a killed-and-resumed run with it.
"""
from __future__ import annotations

import csv
import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.jobs import annotate as ann
from engine.io import cvat, indexed_png
from engine.run import overlay

REPO = Path(__file__).resolve().parent.parent
CLIP = "highway-1280x720-short.mp4"  # 38 frames, 25 fps, 1280x720
# --start 0.2 --end 1.4 --every 2 -> source frames 5, 7, ..., 33
SELECT = ["--scale", "half", "--every", "2", "--start", "0.2", "--end", "1.4"]
INDICES = list(range(5, 35, 2))
NAMES = [f"frame_{i:06d}" for i in INDICES]
MODEL = "camvid-tiny"  # shipped in models/: no torch export needed


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "main.py"), "annotate", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def decode_frames(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """Frames by sequential decoding (independent of the job's reader)."""
    cap = cv2.VideoCapture(str(path))
    frames, index = {}, 0
    while index <= max(indices):
        ok, image = cap.read()
        assert ok, f"cannot read frame {index} of {path}"
        if index in indices:
            frames[index] = image
        index += 1
    cap.release()
    return frames


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(ann.TMP_PREFIX)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shipped_models_dir, videos):
    """One uninterrupted CLI run with --json; returns (out dir, JSON line, stderr)."""
    out = tmp_path_factory.mktemp("annotate") / "ref"
    proc = cli(videos / CLIP, "--model", MODEL, "--models-dir", shipped_models_dir, "--out", out, *SELECT, "--json")
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


# ---------------------------------------------------------------------------------------------
# pure helpers (no ../shared)
# ---------------------------------------------------------------------------------------------
def test_indexed_png_roundtrip_and_colours():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 150, (37, 53), dtype=np.uint8)
    labels[:10, :20] = 3  # some flat area
    palette = rng.integers(0, 256, (150, 3), dtype=np.uint8)
    data = indexed_png.encode_indexed_png(labels, palette)
    assert data[:8] == indexed_png.PNG_SIGNATURE and data[25] == 3  # IHDR colour type 3 = palette
    back, pal = indexed_png.decode_indexed_png(data)
    assert np.array_equal(back, labels) and np.array_equal(pal, palette)
    # an ordinary decoder expands the palette: the colours must be the palette's (BGR in OpenCV)
    expanded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert expanded.shape == (37, 53, 3)
    assert np.array_equal(expanded, palette[labels][..., ::-1])


def test_cvat_colours_are_unique_and_background_first():
    from engine.models.datasets import dataset_info

    info = dataset_info("ade20k")  # road and skyscraper share a colour in the official palette
    labels, changed = cvat.cvat_label_colors(list(info.classes), np.array(info.palette))
    assert labels[0] == ("background", (0, 0, 0))
    assert len(labels) == len(info.classes) + 1
    assert len({rgb for _, rgb in labels}) == len(labels)
    assert len({name for name, _ in labels}) == len(labels)  # ADE20K has two classes named "screen"
    assert list(changed["recolored"]) == ["skyscraper"] and len(changed["renamed"]) == 1
    assert np.array_equal(cvat.cvat_palette(labels)[1:][[0, 5]], np.array(info.palette)[[0, 5]])
    text = cvat.labelmap_text(labels)
    assert text.splitlines()[0] == "# label:color_rgb:parts:actions"
    assert text.splitlines()[1] == "background:0,0,0::"


def test_fast_colours_match_overlay_blend():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 12, (20, 30), dtype=np.uint8)
    frame = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (11, 3), dtype=np.uint8)  # id 11 is past the palette: black
    lut = overlay.color_lut(palette)  # what annotate passes per frame
    colors = overlay.colorize(labels, lut=lut)
    assert np.array_equal(colors, overlay.colorize(labels, palette))
    assert np.array_equal(overlay.blend(frame, labels, opacity=0.4, lut=lut), overlay.blend(frame, labels, palette, 0.4))


def test_parse_time():
    assert ann.parse_time("1:02.5") == 62.5 and ann.parse_time("12") == 12.0 and ann.parse_time(None) is None
    for bad in ("abc", "-1", "1:2:3:4"):
        with pytest.raises(ann.StudioError):
            ann.parse_time(bad)


# ---------------------------------------------------------------------------------------------
# one real run
# ---------------------------------------------------------------------------------------------
@pytest.mark.shared
def test_frame_count_names_and_summary(reference):
    out, line, stderr = reference
    assert sorted(p.stem for p in (out / "masks").glob("*.png")) == NAMES
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == len(NAMES) and summary["complete"]
    assert summary["first_frame"] == NAMES[0] and summary["last_frame"] == NAMES[-1]
    assert summary["model"]["name"] == MODEL and len(summary["model"]["sha256"]) == 64
    assert summary["settings"]["scale"] == "half" and summary["settings"]["every"] == 2
    assert summary["overlay"]["codec"] in ("avc1", "mp4v")
    assert f"overlay codec: {summary['overlay']['codec']}" in stderr
    assert abs(sum(c["mean_percent"] for c in summary["class_totals"]) - 100) < 0.01
    assert line["frames"] == len(NAMES) and line["segmented"] == len(NAMES)
    assert line["fps"] > 0 and line["segment_fps"] > 0 and line["ratio"] > 0
    assert not temp_files(out)


@pytest.mark.shared
def test_mask_png_equals_segmenter_output(reference, shipped_models_dir, videos):
    from engine.run.segmenter import Segmenter

    out, _, _ = reference
    seg = Segmenter.load(MODEL, shipped_models_dir)
    check = [INDICES[0], INDICES[-1]]
    frames = decode_frames(videos / CLIP, check)
    for index in check:
        path = out / "masks" / f"frame_{index:06d}.png"
        labels, palette = indexed_png.decode_indexed_png(path.read_bytes())
        expected = seg.segment(frames[index], "half").labels
        assert labels.shape == (720, 1280)
        assert np.array_equal(labels, expected), f"mask of frame {index} differs from Segmenter.segment"
        assert np.array_equal(palette, seg.palette_rgb)
        # read back by an ordinary decoder (OpenCV expands palettes to BGR): the model's colours
        assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), seg.palette_bgr[expected])


@pytest.mark.shared
def test_overlay_video_frames_and_size(reference, shipped_models_dir, videos):
    out, _, _ = reference
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert cap.isOpened()
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(NAMES)
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (1280, 720)
    assert abs(cap.get(cv2.CAP_PROP_FPS) - 12.5) < 0.01  # 25 fps / every 2
    cap.release()
    from engine.io.sources import VideoFileSource

    with VideoFileSource(out / "overlay.mp4") as video:
        decoded = [frame.image for frame in iter(video.read, None)]
    assert len(decoded) == len(NAMES)
    # the first frame is the blend of its source frame and its mask (lossy codec: close, not equal)
    from engine.run.segmenter import Segmenter

    palette = Segmenter.load(MODEL, shipped_models_dir).palette_bgr
    source = decode_frames(videos / CLIP, [INDICES[0]])[INDICES[0]]
    expected = overlay.blend(source, indexed_png.read_mask(out / "masks" / f"{NAMES[0]}.png"), palette, 0.5)
    assert np.abs(decoded[0].astype(int) - expected).mean() < 8


@pytest.mark.shared
def test_stats_rows_sum_to_100(reference):
    out, _, _ = reference
    rows = list(csv.reader((out / "stats.csv").open()))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["frame", "name", "timestamp_s"] and len(header) == 3 + 11
    assert [r[1] for r in body] == NAMES
    for row, index in zip(body, INDICES):
        assert int(row[0]) == index and abs(float(row[2]) - index / 25) < 1e-3
        assert abs(sum(float(v) for v in row[3:]) - 100.0) < 0.01


@pytest.mark.shared
def test_cvat_zip_layout_and_colours(reference):
    out, _, _ = reference
    with zipfile.ZipFile(out / "cvat.zip") as zf:
        names = set(zf.namelist())
        expected = {"labelmap.txt", "ImageSets/Segmentation/default.txt"} | {f"SegmentationClass/{n}.png" for n in NAMES}
        assert names == expected
        assert zf.read("ImageSets/Segmentation/default.txt").decode().split() == NAMES
        lines = zf.read("labelmap.txt").decode().splitlines()
        assert lines[0].startswith("# label:color_rgb:parts:actions")
        entries = [line.split(":") for line in lines[1:]]
        assert all(len(e) == 4 for e in entries) and entries[0][:2] == ["background", "0,0,0"]
        colors = [tuple(int(c) for c in e[1].split(",")) for e in entries]
        assert len(set(colors)) == len(colors) and len({e[0] for e in entries}) == len(entries)
        class_rgb = np.array(colors[1:], np.uint8)  # class id i is labelmap line i + 1
        for name in (NAMES[0], NAMES[-1]):
            data = zf.read(f"SegmentationClass/{name}.png")
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # colours, as CVAT reads it
            labels = indexed_png.read_mask(out / "masks" / f"{name}.png")
            assert bgr.shape == (720, 1280, 3)
            assert np.array_equal(bgr[..., ::-1], class_rgb[labels]), f"colours of {name} do not match labelmap.txt"
            # Pascal VOC form: the PNG is indexed by labelmap position (background 0, class i at i + 1)
            indices, palette = indexed_png.decode_indexed_png(data)
            assert np.array_equal(indices, labels + 1)
            assert np.array_equal(palette[: len(colors)], np.array(colors, np.uint8))


# ---------------------------------------------------------------------------------------------
# kill -9 half-way, then --resume: same outputs as the uninterrupted run
# ---------------------------------------------------------------------------------------------
@pytest.mark.shared
def test_killed_run_resumes_to_identical_outputs(reference, tmp_path, shipped_models_dir, videos):
    ref, _, _ = reference
    out = tmp_path / "killed"
    args = [sys.executable, str(REPO / "main.py"), "annotate", str(videos / CLIP), "--model", MODEL,
            "--models-dir", str(shipped_models_dir), "--out", str(out), *SELECT]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "masks").glob("frame_*.png"))) >= 3 if (out / "masks").is_dir() else False:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    kept = sorted(p.name for p in (out / "masks").glob("frame_*.png"))
    assert 3 <= len(kept) < len(NAMES) and not (out / "summary.json").exists()
    # the killed job's lock file stays (with its process id), but the kernel dropped its flock
    assert (out / ann.LOCK_FILE).read_text().strip() == str(proc.pid)

    resumed = cli(videos / CLIP, "--model", MODEL, "--models-dir", shipped_models_dir, "--out", out, *SELECT, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert not temp_files(out)
    for name in NAMES:
        assert (out / "masks" / f"{name}.png").read_bytes() == (ref / "masks" / f"{name}.png").read_bytes(), name
    for name in ("stats.csv", "cvat.zip", "overlay.mp4"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), f"{name} differs after resume"
    a, b = (json.loads((d / "summary.json").read_text()) for d in (out, ref))
    assert a["run"]["resumed_from_frame"] == len(kept) and a["run"]["inferred_frames"] == len(NAMES) - a["run"]["resumed_from_frame"]
    a.pop("run"), b.pop("run")
    assert a == b

    again = cli(videos / CLIP, "--model", MODEL, "--models-dir", shipped_models_dir, "--out", out, *SELECT, "--resume")
    assert again.returncode == 0 and "already complete" in again.stderr


@pytest.mark.shared
def test_ctrl_c_says_how_to_continue_and_exits_130(tmp_path, shipped_models_dir, videos):
    # The whole 1394-frame indoor clip: Ctrl-C comes after two masks, and the job must still be
    # running then on any machine (the 15 selected frames of CLIP took 0.6 s once and ended first).
    out = tmp_path / "interrupted"
    args = [sys.executable, str(REPO / "main.py"), "annotate", str(videos / "indoor-people-768x432.mp4"), "--model",
            MODEL, "--models-dir", str(shipped_models_dir), "--out", str(out), "--scale", "half"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "masks").is_dir() and len(list((out / "masks").glob("frame_*.png"))) >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"interrupted: finished frames are kept; continue with --resume --out {out}" in err
    assert "Traceback" not in err and not (out / "summary.json").exists()
    assert len(list((out / "masks").glob("frame_*.png"))) >= 2  # the finished masks are kept


# ---------------------------------------------------------------------------------------------
# bad inputs: exit 2, one line, nothing left behind
# ---------------------------------------------------------------------------------------------
@pytest.mark.shared
@pytest.mark.parametrize("case", ["missing", "truncated", "not-video", "unknown-model", "dir-in-file",
                                  "uncreatable", "existing-dir", "other-settings"])
def test_bad_input_one_line_exit_2(case, tmp_path, shipped_models_dir, videos, reference):
    video, model, out = videos / CLIP, MODEL, tmp_path / "out"
    before = None
    if case == "missing":
        video = tmp_path / "nope.mp4"
    elif case == "truncated":
        video = tmp_path / "cut.mp4"
        data = (videos / CLIP).read_bytes()
        video.write_bytes(data[: len(data) // 2])
    elif case == "not-video":
        video = tmp_path / "notes.mp4"
        video.write_text("this is not a video\n" * 100)
    elif case == "unknown-model":
        model = "no-such-model"
    elif case == "dir-in-file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"  # unwritable even for root: its parent is a regular file
    elif case == "uncreatable":  # /proc refuses new folders even to root, whose permission bits all pass
        if not Path("/proc/self").is_dir():
            pytest.skip("no /proc on this system")
        out = Path("/proc/studio-test-out")
    elif case in ("existing-dir", "other-settings"):
        out = reference[0]
        before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    extra = ["--resume", "--every", "3"] if case == "other-settings" else []
    proc = cli(video, "--model", model, "--models-dir", shipped_models_dir, "--out", out, *SELECT, *extra)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert proc.stdout == ""
    if before is not None:
        assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    elif case != "dir-in-file":
        assert not out.exists()
    if case == "uncreatable":  # refused before the job's header line, the only line is the error
        assert lines[0] == f"error: cannot create output folder {out}: No such file or directory"


@pytest.mark.shared
@pytest.mark.parametrize("fail_at", [0, 2])
def test_disk_full_leaves_only_complete_files(fail_at, tmp_path, shipped_models_dir, videos, monkeypatch, capsys):
    """ENOSPC while writing the mask of the ``fail_at``-th frame (in-process, real pipeline)."""
    from engine.cli import run_command

    from engine.jobs.annotate import sinks

    written = []
    real = sinks._write_all

    def write_all(fh, data):
        if "frame_" in os.path.basename(fh.name):
            if len(written) >= fail_at:
                fh.write(data[: len(data) // 2])  # a partial temp file exists when the error comes
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written.append(fh.name)
        real(fh, data)

    monkeypatch.setattr(sinks, "_write_all", write_all)
    out = tmp_path / "out"
    rc = run_command(["annotate", str(videos / CLIP), "--model", MODEL, "--models-dir", str(shipped_models_dir),
                      "--out", str(out), *SELECT])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    # the run had started (its header line came first); the failure itself is one line
    assert len(lines) == 2 and lines[0].startswith("annotating "), lines
    err = lines[1:]
    assert err[0].startswith("error: ") and "No space left on device" in err[0], err
    if fail_at == 0:
        assert not out.exists()  # nothing finished: the new folder is removed again
        return
    assert "--resume" in err[0]
    assert not temp_files(out)
    assert not any((out / name).exists() for name in ("overlay.mp4", "cvat.zip", "stats.csv", "summary.json"))
    masks = sorted((out / "masks").glob("*.png"))
    assert [m.stem for m in masks] == NAMES[:fail_at]
    for mask in masks:
        assert indexed_png.read_mask(mask).shape == (720, 1280)


# ---------------------------------------------------------------------------------------------
# writes that fail for real: a file size limit (EFBIG) on the job's process
# ---------------------------------------------------------------------------------------------
@pytest.mark.shared
@pytest.mark.parametrize("formats, limit_kib, failing", [("overlay", 100, "overlay.mp4"), ("cvat", 60, "cvat.zip"),
                                                           ("masks", 2, "frame_000000.png")])
def test_file_size_limit_is_one_line_and_leaves_no_partial_file(formats, limit_kib, failing, tmp_path,
                                                                 shipped_models_dir, videos):
    """``ulimit -f``: every write past the limit fails with EFBIG (Python ignores SIGXFSZ)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_kib * 1024, limit_kib * 1024))

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), "annotate", str(videos / CLIP), "--model", MODEL,
                           "--models-dir", str(shipped_models_dir), "--out", str(out), "--scale", "half",
                           "--end", "1.2", "--formats", formats, "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 2 and lines[0].startswith("annotating ") and lines[1].startswith("error: cannot write "), lines
    assert failing in lines[1] and "Traceback" not in proc.stderr
    if formats == "masks":  # the first mask failed: nothing finished, nothing left
        assert "File too large" in lines[1] and not out.exists()
        return
    assert "--resume" in lines[1]
    left = {p.name for p in out.iterdir()}
    assert left == {"masks", ann.JOB_FILE, ann.LOCK_FILE}, left  # no partial video/zip, no summary
    masks = sorted(p.stem for p in (out / "masks").iterdir())
    assert masks and masks == [f"frame_{i:06d}" for i in range(len(masks))]  # complete masks, in order
    for name in masks:
        indexed_png.read_mask(out / "masks" / f"{name}.png")


# ---------------------------------------------------------------------------------------------
# the folder lock and the resume fingerprint
# ---------------------------------------------------------------------------------------------
def options(video, models_dir, out, **kw) -> "ann.AnnotateOptions":
    base = dict(model=MODEL, models_dir=models_dir, scale="half", end=0.2)
    base.update(kw)
    return ann.AnnotateOptions(video=video, out=out, **base)


@pytest.mark.shared
def test_folder_in_use_is_refused_and_a_killed_jobs_lock_does_not_block_resume(tmp_path, shipped_models_dir, videos):
    video, out = videos / "dashcam-highway-960x540.mp4", tmp_path / "busy"
    opts = dict(scale="full", end=None, formats="masks")
    args = [sys.executable, str(REPO / "main.py"), "annotate", str(video), "--model", MODEL, "--models-dir",
            str(shipped_models_dir), "--out", str(out), "--formats", "masks", "--no-progress"]
    first = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and first.poll() is None:
            if (out / "masks").is_dir() and len(list((out / "masks").glob("frame_*.png"))) >= 2:
                break
            time.sleep(0.01)
        # a second run is refused before it touches a file: --overwrite, --resume and plain alike
        second = subprocess.run(args + ["--overwrite"], cwd=REPO, capture_output=True, text=True, timeout=120)
        for flags in ({"resume": True}, {}):
            with pytest.raises(ann.FolderInUse, match=f"in use by process {first.pid}"):
                ann.AnnotateJob(options(video, shipped_models_dir, out, **opts, **flags)).prepare()
        still_running = first.poll() is None
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=30)
    assert still_running, "the first job ended before the second was tried: the test proved nothing"
    assert second.returncode == 2 and second.stderr.strip().splitlines()[-1] == (
        f"error: output folder {out} is in use by process {first.pid} (another annotate job); "
        "wait for it to end or choose another folder"), second.stderr
    kept = len(list((out / "masks").glob("frame_*.png")))
    assert kept >= 2 and (out / ann.LOCK_FILE).read_text().strip() == str(first.pid)

    job = ann.AnnotateJob(options(video, shipped_models_dir, out, resume=True, **opts)).prepare()
    try:
        assert job.resuming and not job.is_complete()
        with pytest.raises(ann.FolderInUse, match=f"in use by process {os.getpid()}"):  # now held by us
            ann.AnnotateJob(options(video, shipped_models_dir, out, overwrite=True, **opts)).prepare()
    finally:
        job.close()
    ann.AnnotateJob(options(video, shipped_models_dir, out, overwrite=True, **opts)).prepare().close()


def test_video_digest_reads_the_first_and_last_mib(tmp_path):
    path = tmp_path / "v.bin"
    data = bytearray(np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes())
    path.write_bytes(data)
    base = ann.video_digest(path)
    assert base == ann.video_digest(path) and base.startswith("sha256-ends:")
    for offset in (0, (1 << 20) - 1, len(data) - (1 << 20), len(data) - 1):
        data[offset] ^= 1
        path.write_bytes(data)
        assert ann.video_digest(path) != base, offset
        data[offset] ^= 1
    data[(3 << 20) // 2] ^= 1  # the middle of a long video is not read (documented: speed)
    path.write_bytes(data)
    assert ann.video_digest(path) == base
    path.write_bytes(data + b"\0")
    assert ann.video_digest(path) != base


@pytest.mark.shared
def test_resume_refused_when_the_video_bytes_or_a_setting_change(tmp_path, shipped_models_dir, videos):
    video, out = tmp_path / CLIP, tmp_path / "out"
    shutil.copyfile(videos / CLIP, video)
    first = ann.AnnotateJob(options(video, shipped_models_dir, out)).prepare()
    first.run()
    assert first.plan.settings()["video_digest"] == ann.video_digest(video)

    def resume(**kw):
        return ann.AnnotateJob(options(video, shipped_models_dir, out, resume=True, **kw)).prepare()

    same = resume()
    assert same.is_complete()
    same.close()
    resume(scale=0.5).close()  # the same scale spelled differently is the same job
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    for change, words in [({"opacity": 0.3}, "opacity: 0.5, now 0.3"), ({"scale": "full"}, "scale: 'half', now 'full'"),
                          ({"every": 2}, "every: 1, now 2"), ({"model": "camvid-small"}, "model: 'camvid-tiny'")]:
        with pytest.raises(ann.StudioError, match=f"other settings \\({words}"):
            resume(**change)
    # same name, size and frame count, one byte changed: the old fingerprint would have resumed it
    data = bytearray(video.read_bytes())
    data[400_000] ^= 0xFF
    video.write_bytes(data)
    with pytest.raises(ann.StudioError, match="other settings \\(the video's content changed\\)"):
        resume()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # refused jobs wrote nothing


@pytest.mark.shared
def test_two_jobs_prepared_before_the_folder_exists_do_not_mix(tmp_path, shipped_models_dir, videos):
    """The folder check is repeated under the lock when the folder appeared after prepare()."""
    out = tmp_path / "new"
    first = ann.AnnotateJob(options(videos / CLIP, shipped_models_dir, out)).prepare()
    second = ann.AnnotateJob(options(videos / CLIP, shipped_models_dir, out, opacity=0.3)).prepare()
    assert first.run().frames == 5
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name != ann.LOCK_FILE}
    with pytest.raises(ann.StudioError, match="already exists and is not empty"):
        second.run()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name != ann.LOCK_FILE} == before


@pytest.mark.shared
def test_a_loaded_segmenter_is_reused_and_must_match_the_model(tmp_path, shipped_models_dir, videos):
    from engine.run.segmenter import Segmenter

    seg = Segmenter.load(MODEL, shipped_models_dir)
    job = ann.AnnotateJob(options(videos / CLIP, shipped_models_dir, tmp_path / "a"), segmenter=seg).prepare()
    assert job.segmenter is seg and job.run().frames == 5
    with pytest.raises(ann.StudioError, match="the loaded model is 'camvid-tiny', the job asks for 'camvid-small'"):
        ann.AnnotateJob(options(videos / CLIP, shipped_models_dir, tmp_path / "b", model="camvid-small"),
                        segmenter=seg).prepare()
    assert not (tmp_path / "b").exists()
