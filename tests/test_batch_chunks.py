"""``--chunk-seconds``: time ranges of one video on several workers, merged into one folder.

The 20-frame indoor clip (10 frames/s) in chunks of 0.7 s is three chunks (7 + 7 + 6 frames);
every output file of the merged folder (masks, overlay.mp4, stats.csv, cvat.zip) is compared
byte for byte with an ordinary single-video run of the same clip.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.jobs import annotate as ann
from engine.jobs import batch as b
from engine.jobs.batch_chunks import CHUNKS_DIR, plan_chunks
from engine.jobs.batch_pool import LocalPool
from engine.errors import StudioError

from batch_clips import MODEL, REPO, SCALE, assert_same_folder, cli_args, clips  # noqa: F401

pytestmark = pytest.mark.shared

NAME = "indoor-people-768x432"
CHUNK_S = 0.7


@pytest.fixture(scope="module")
def reference(tmp_path_factory, clips) -> Path:
    """The clip annotated alone (all formats): what the merged folder must equal."""
    out = tmp_path_factory.mktemp("chunk-ref") / NAME
    ann.AnnotateJob(ann.AnnotateOptions(video=clips / f"{NAME}.mp4", model=MODEL, out=out, scale=SCALE)).prepare().run()
    return out


def test_chunks_partition_the_single_jobs_frames(clips):
    """Chunk boundaries go through the job's own start/end: together they are exactly its frames,
    with --every and --start too (no frame twice, none lost)."""
    video = clips / f"{NAME}.mp4"
    for start, end, every in ((None, None, 1), ("0.3", None, 2), (0.1, "1.7", 3)):
        chunks = plan_chunks(video, 0.5, start, end, every)
        assert chunks and len(chunks) >= 2
        frames = []
        for c in chunks:
            frames += ann.select_frames(10.0, 20, c["start_s"], c["end_s"], every)
            assert frames[-c["frames_total"]] == c["first_frame"] and frames[-1] == c["last_frame"]
        assert frames == ann.select_frames(10.0, 20, ann.parse_time(start), ann.parse_time(end), every)
    assert plan_chunks(video, 5.0, None, None, 1) is None  # fits in one chunk: not split
    assert plan_chunks(clips.parent / "broken.mp4", 0.5, None, None, 1) is None  # its whole-video task fails
    for bad in (0, -1.5):
        with pytest.raises(StudioError, match="--chunk-seconds must be more than 0"):
            b.BatchOptions(inputs=[str(video)], model=MODEL, out=clips / "unused", chunk_seconds=bad).check()


def test_pool_three_chunks_on_two_workers_identical_to_single_run(tmp_path, clips, reference):
    out = tmp_path / "out"
    proc = subprocess.run(cli_args(clips / f"{NAME}.mp4", "--model", MODEL, "--scale", SCALE, "--out", out,
                                   "--workers", "2", "--chunk-seconds", str(CHUNK_S)),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert_same_folder(out / NAME, reference)
    record = json.loads((out / b.BATCH_FILE).read_text())
    entry = record["videos"][0]
    assert record["status"] == "done" and entry["status"] == "done" and entry["frames"] == 20
    assert [(c["first_frame"], c["last_frame"], c["status"], c["frames"]) for c in entry["chunks"]] == [
        (0, 6, "done", 7), (7, 13, "done", 7), (14, 19, "done", 6)]
    assert sum(c["inferred"] for c in entry["chunks"]) == entry["inferred"] == 20
    run = json.loads((out / NAME / ann.SUMMARY_FILE).read_text())["run"]
    assert run["inferred_frames"] == 0 and run["resumed_from_frame"] == 20  # the merge segmented nothing
    assert not (out / CHUNKS_DIR).exists()  # the chunk folders are gone after the merge


def test_killed_chunk_is_retried_and_resume_skips_finished_chunks(tmp_path, clips, reference):
    """The worker on chunk 2 is SIGKILLed after 3 frames: a fresh worker resumes that chunk and the
    merged folder is still identical. Then a --resume of a batch whose merge was lost skips the chunks."""
    out = tmp_path / "out"
    opts = b.BatchOptions(inputs=[str(clips / f"{NAME}.mp4")], model=MODEL, out=out, scale=SCALE,
                          chunk_seconds=CHUNK_S, kill_first_attempt={f"{NAME}:1": 3})
    runs = []

    class Pool(LocalPool):  # records what the driver hands the pool
        def run(self, tasks, on_event):
            runs.append(sorted(t.get("kind") or f"chunk {t['chunk']}" for t in tasks))
            return super().run(tasks, on_event)

    state = b.run_batch(opts, Pool(workers=2))
    assert runs == [["chunk 0", "chunk 1", "chunk 2"]]  # the merge was queued into the same run
    entry = state.videos[0]
    assert entry["status"] == "done", entry
    assert [c["attempts"] for c in entry["chunks"]] == [1, 2, 1]
    assert "worker process died (exit code -9)" in entry["chunks"][1]["last_error"]
    assert entry["chunks"][1]["inferred"] < 7  # the second attempt kept the dead one's masks
    assert_same_folder(out / NAME, reference)

    # --resume: chunks recorded done are not run again; only the merge is (its folder was lost)
    record = json.loads((out / b.BATCH_FILE).read_text())
    record["videos"][0].update(status="pending")
    (out / b.BATCH_FILE).write_text(json.dumps(record))
    for path in (out / NAME).iterdir():
        if path.is_file():
            path.unlink()
    again = b.run_batch(b.BatchOptions(inputs=opts.inputs, model=MODEL, out=out, scale=SCALE, chunk_seconds=CHUNK_S,
                                       resume=True), LocalPool(workers=1))
    entry = again.videos[0]
    assert entry["status"] == "done" and [c["attempts"] for c in entry["chunks"]] == [1, 2, 1]
    assert_same_folder(out / NAME, reference)
