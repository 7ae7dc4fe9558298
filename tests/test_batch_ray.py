"""Batch annotation on a local Ray cluster (``ray.init(num_cpus=2)``, shared by the module).

Skipped with a reason when Ray is not installed (``pip install -e '.[ray]'``); CI installs it
(``make setup``), and there (STUDIO_REQUIRE_SHARED=1) a missing Ray is a failure.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from engine.jobs import batch as b
from engine.jobs.batch_ray import RayExecutor

from batch_clips import FRAMES, MODEL, REPO, SCALE, assert_identical, cli_args, clips, singles  # noqa: F401

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def ray_cluster():
    try:
        import ray
    except ImportError:
        if os.environ.get("STUDIO_REQUIRE_SHARED") == "1":
            pytest.fail("STUDIO_REQUIRE_SHARED=1 (CI) but ray is not installed: pip install -e '.[ray]'")
        pytest.skip("needs ray: pip install -e '.[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OPENCV_FFMPEG_LOGLEVEL": "-8"}})
    yield ray
    ray.shutdown()


def test_ray_batch_matches_single_runs(tmp_path, ray_cluster, clips, singles):
    opts = b.BatchOptions(inputs=[str(clips)], model=MODEL, out=tmp_path / "out", scale=SCALE)
    executor = RayExecutor()
    state = b.run_batch(opts, executor)
    assert executor.describe()["workers"] == 2 and executor.describe()["threads_per_worker"] == 1
    assert [v["status"] for v in state.videos] == ["done"] * 3
    assert_identical(tmp_path / "out", singles)
    record = json.loads((tmp_path / "out" / b.BATCH_FILE).read_text())
    assert record["status"] == "done" and record["executor"]["kind"] == "ray"
    assert record["totals"]["frames_done"] == sum(FRAMES.values())


def test_ray_killed_actor_is_restarted_and_its_video_identical(tmp_path, ray_cluster, clips, singles):
    name = "indoor-people-768x432"
    opts = b.BatchOptions(inputs=[str(clips / f"{name}.mp4")], model=MODEL, out=tmp_path / "out", scale=SCALE,
                          kill_first_attempt={name: 6})
    state = b.run_batch(opts, RayExecutor(workers=1))
    entry = state.videos[0]
    assert entry["status"] == "done" and entry["attempts"] == 2, entry  # started twice: killed, then retried
    summary = json.loads((tmp_path / "out" / name / "summary.json").read_text())
    assert summary["run"]["resumed_from_frame"] >= 1
    assert_identical(tmp_path / "out", singles, [name])


def test_ray_cli_starts_a_local_cluster(tmp_path, clips, singles):
    """``--ray`` without an address from the command line (its own short-lived cluster)."""
    pytest.importorskip("ray", reason="needs ray: pip install -e '.[ray]'")
    out = tmp_path / "out"
    proc = subprocess.run(cli_args(clips / "dash*.mp4", clips / "highway-1280x720-short.mp4", "--model", MODEL,
                                   "--scale", SCALE, "--out", out, "--ray", "--json"),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Ray cluster (local)" in proc.stderr
    totals = json.loads(proc.stdout.strip().splitlines()[-1])
    assert totals["status"] == "done" and totals["done"] == 2
    assert_identical(out, singles, ["dashcam-highway-960x540", "highway-1280x720-short"])


def test_ray_chunks_of_one_video_identical_to_single_run(tmp_path, ray_cluster, clips):
    """--chunk-seconds on two actors: three chunks of the indoor clip, merged byte-identical."""
    from engine.jobs import annotate as ann

    from batch_clips import assert_same_folder

    NAME, CHUNK_S = "indoor-people-768x432", 0.7  # 20 frames at 10 frames/s: chunks of 7 + 7 + 6
    ref = tmp_path / "ref"
    ann.AnnotateJob(ann.AnnotateOptions(video=clips / f"{NAME}.mp4", model=MODEL, out=ref, scale=SCALE)).prepare().run()
    opts = b.BatchOptions(inputs=[str(clips / f"{NAME}.mp4")], model=MODEL, out=tmp_path / "out", scale=SCALE,
                          chunk_seconds=CHUNK_S)
    state = b.run_batch(opts, RayExecutor(workers=2))
    entry = state.videos[0]
    assert entry["status"] == "done" and [c["status"] for c in entry["chunks"]] == ["done"] * 3, entry
    assert_same_folder(tmp_path / "out" / NAME, ref)
