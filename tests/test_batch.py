"""Batch annotation on the local process pool: several inputs, batch.json, faults, resume.

Real worker processes, real ONNX sessions (camvid-tiny), clips cut from ../shared/videos; every
batch's masks are compared byte for byte with single-video runs of the same clips.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.jobs import batch as b
from engine.jobs.batch_pool import LocalPool
from engine.errors import StudioError

from batch_clips import (CORRUPT, FRAMES, MODEL, REPO, SCALE, assert_identical, cli_args, clips,  # noqa: F401
                         cut_clip, singles)


# ---------------------------------------------------------------------------------------------
# inputs, names, budgets (no ../shared)
# ---------------------------------------------------------------------------------------------
def test_expand_inputs_files_folders_globs_in_order_without_duplicates(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "sub").mkdir()
    for rel in ("a/one.mp4", "a/sub/two.MKV", "a/notes.txt", "b.avi", "c.mp4"):
        (tmp_path / rel).write_bytes(b"x")
    got = b.expand_inputs([str(tmp_path / "c.mp4"), str(tmp_path / "a"), str(tmp_path / "*.avi"),
                           str(tmp_path / "a" / "one.mp4")])
    assert [p.relative_to(tmp_path).as_posix() for p in got] == ["c.mp4", "a/one.mp4", "a/sub/two.MKV", "b.avi"]
    # a file named explicitly is kept whatever it is (its task then fails alone)
    assert b.expand_inputs([str(tmp_path / "a" / "notes.txt")]) == [(tmp_path / "a" / "notes.txt").resolve()]
    for bad, words in ((tmp_path / "missing.mp4", "no such file"), (tmp_path / "*.mov", "no video file matches")):
        with pytest.raises(StudioError, match=words):
            b.expand_inputs([str(bad)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudioError, match="no video files in this folder"):
        b.expand_inputs([str(tmp_path / "empty")])
    assert b.is_batch_input([str(tmp_path / "a")]) and b.is_batch_input(["x.mp4", "y.mp4"])
    assert b.is_batch_input([str(tmp_path / "*.avi")]) and not b.is_batch_input([str(tmp_path / "c.mp4")])


def test_output_names_disambiguate_clashes():
    names = b.output_names([Path("/x/clip.mp4"), Path("/y/clip.avi"), Path("/z/Clip.mp4"), Path("/w/batch.json.mp4"),
                            Path("/v/other.mp4")])
    assert names == ["clip", "clip-2", "Clip-3", "batch.json-2", "other"]


@pytest.mark.parametrize("workers,cores,threads,want", [
    (1, 2, None, (1, 2)), (2, 2, None, (2, 1)), (4, 2, None, (2, 1)), (3, 8, None, (3, 2)),
    (2, 8, 3, (2, 3)), (2, 8, 16, (2, 4)), (1, 1, 4, (1, 1))])
def test_thread_budget_never_exceeds_cores(workers, cores, threads, want):
    got = b.thread_budget(workers, cores, threads)
    assert got == want and got[0] * got[1] <= cores


# ---------------------------------------------------------------------------------------------
# the pool, end to end
# ---------------------------------------------------------------------------------------------
@pytest.mark.shared
def test_pool_cli_matches_single_runs_and_a_corrupt_video_fails_alone(tmp_path, clips, singles):
    """Two workers on the three clips plus a corrupt file: exit 1, the three outputs byte-identical
    to single runs, the corrupt one failed with its reason in batch.json and on stderr."""
    out = tmp_path / "out"
    proc = subprocess.run(cli_args(clips / "*.mp4", clips.parent / CORRUPT, "--model", MODEL, "--scale", SCALE,
                                   "--out", out, "--workers", "2"), cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert_identical(out, singles)
    record = json.loads((out / b.BATCH_FILE).read_text())
    assert record["status"] == "failed" and record["executor"]["workers"] == min(2, b.available_cores())
    assert record["executor"]["workers"] * record["executor"]["threads_per_worker"] <= b.available_cores()
    by_name = {v["out"]: v for v in record["videos"]}
    assert set(by_name) == {Path(n).stem for n in FRAMES} | {"broken"}
    bad = by_name.pop("broken")
    assert bad["status"] == "failed" and bad["reason"] and "\n" not in bad["reason"]
    assert f"failed: {clips.parent / CORRUPT}: {bad['reason']}" in proc.stderr
    for name, entry in by_name.items():
        assert entry["status"] == "done" and entry["frames"] == FRAMES[name + ".mp4"] and entry["fps"] > 0
    assert record["totals"]["done"] == 3 and record["totals"]["failed"] == 1
    assert "1 failed" in proc.stderr.splitlines()[-1]
    # every video folder has the single-job layout
    for name in by_name:
        assert {"masks", "overlay.mp4", "stats.csv", "cvat.zip", "summary.json"} <= {p.name for p in (out / name).iterdir()}


@pytest.mark.shared
def test_killed_worker_video_is_retried_and_identical(tmp_path, clips, singles):
    """The worker running the long clip is SIGKILLed after 6 frames; a fresh worker resumes it."""
    name = "indoor-people-768x432"
    opts = b.BatchOptions(inputs=[str(clips / f"{name}.mp4"), str(clips / "dashcam-highway-960x540.mp4")],
                          model=MODEL, out=tmp_path / "out", scale=SCALE, kill_first_attempt={name: 6})
    pool = LocalPool(workers=1)
    state = b.run_batch(opts, pool)
    entry = next(v for v in state.videos if v["out"] == name)
    assert entry["status"] == "done" and entry["attempts"] == 2, entry
    assert "worker process died (exit code -9)" in entry["last_error"]
    summary = json.loads((tmp_path / "out" / name / "summary.json").read_text())
    assert summary["run"]["resumed_from_frame"] >= 1  # the second attempt kept the dead one's masks
    assert_identical(tmp_path / "out", singles, [name, "dashcam-highway-960x540"])


@pytest.mark.shared
def test_ctrl_c_then_resume_skips_finished_videos(tmp_path, clips, singles, videos):
    # Longest first: two long clips run before the three short ones, so when Ctrl-C comes (the
    # first video done) the second long one is still running on any machine (with the short
    # clips alone, all three once ended before the signal).
    longs = [tmp_path / "long-1.mp4", tmp_path / "long-2.mp4"]
    for clip in longs:
        cut_clip(videos / "indoor-people-768x432.mp4", clip, 600)
    out = tmp_path / "out"
    args = cli_args(clips, *longs, "--model", MODEL, "--scale", SCALE, "--out", out, "--workers", "1")
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    record_path = out / b.BATCH_FILE
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # Ctrl-C as soon as the first video is done
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = {"videos": []}
        if any(v["status"] == "done" for v in record["videos"]):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    record = json.loads(record_path.read_text())
    assert record["status"] == "interrupted"
    finished = [v["out"] for v in record["videos"] if v["status"] == "done"]
    assert finished == ["long-1"], record
    assert not any(v["status"] == "running" for v in record["videos"])
    assert [v["loaded_model"] for v in record["videos"] if v["status"] == "done"] == [True]  # once per worker
    stamps = {n: (out / n / "summary.json").stat().st_mtime_ns for n in finished}

    again = subprocess.run(args + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    record = json.loads(record_path.read_text())
    assert record["status"] == "done" and all(v["status"] == "done" for v in record["videos"])
    assert sum(v["loaded_model"] for v in record["videos"]) == 2  # the first run's worker, the resumed run's
    for n in finished:  # not run again
        assert (out / n / "summary.json").stat().st_mtime_ns == stamps[n]
        assert next(v for v in record["videos"] if v["out"] == n)["attempts"] == 1
    assert_identical(out, singles)


@pytest.mark.shared
def test_batch_refuses_a_used_folder_and_other_settings_on_resume(tmp_path, clips):
    out = tmp_path / "out"
    out.mkdir()
    (out / "something").write_text("x")
    proc = subprocess.run(cli_args(clips, "--model", MODEL, "--out", out), cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "already exists and is not empty" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (out / b.BATCH_FILE).exists()
    proc = subprocess.run(cli_args(clips, "--model", "no-such-model", "--out", tmp_path / "o2"), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no-such-model" in proc.stderr and not (tmp_path / "o2").exists()
    # a resume with another scale is refused before anything runs
    (tmp_path / "o3").mkdir()
    (tmp_path / "o3" / b.BATCH_FILE).write_text(json.dumps({"settings": {"model": MODEL, "scale": "full"}}))
    proc = subprocess.run(cli_args(clips, "--model", MODEL, "--scale", SCALE, "--out", tmp_path / "o3", "--resume"),
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "other settings" in proc.stderr


def test_ray_option_without_ray_is_one_line_and_writes_nothing(tmp_path):
    """--ray where Ray is not installed (simulated: the import fails): exit 2, one line, no --out."""
    video = tmp_path / "a.mp4"
    video.write_bytes(b"not really a video")
    code = ("import sys; sys.modules['ray'] = None; import main; "
            f"sys.exit(main.main(['annotate', {str(video)!r}, '--model', {MODEL!r}, '--out', "
            f"{str(tmp_path / 'out')!r}, '--ray']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: Ray is not installed: pip install '.[ray]' (or: pip install ray)"]
    assert not (tmp_path / "out").exists()
