"""Annotate a video file: masks, overlay video, per-frame statistics and a CVAT export; resumable.

Qt-free: the CLI (``engine/cli/annotate_cmd.py``), the GUI dialog (``app/dialogs/annotate_dialog.py``) and
batch jobs drive :class:`AnnotateJob` and get progress through a callback.

Public API (stable; import it from ``engine.jobs.annotate``, not from the modules below)::

    from engine.jobs.annotate import AnnotateJob, AnnotateOptions

    job = AnnotateJob(AnnotateOptions(video="clip.mp4", model="camvid-tiny", out="out/",
                                      scale="full", every=1, start=None, end=None,
                                      formats="masks,overlay,stats,cvat", opacity=0.5,
                                      resume=False, overwrite=False, threads=None, models_dir=None,
                                      multiscale=None))   # or "1,2": averaged inputs, scale stays "full"
    AnnotateJob(options, segmenter=seg)   # optional: reuse a loaded Segmenter (named options.model)
    job.prepare()          # every check; raises StudioError (one line for the user); locks the folder
    job.indices, job.segmenter, job.width, job.height, job.fps, job.scale, job.multiscale, job.input_hw, job.out
    job.is_complete()      # --resume found a finished job: run() returns at once
    result = job.run(progress=callback, cancel=threading.Event())   # -> AnnotateResult
    job.close()            # only for a job that was prepared but will not run (releases the lock)

    callback(Progress(done, total, inferred, elapsed_s, stage))  # stage: frames, finishing, done
    AnnotateResult: out_dir, summary (dict of summary.json), frames, inferred, seconds, codec,
                    codec_name, already_complete, files, fps
    AnnotateCancelled (cancel was set), FolderInUse (another live job holds the folder): StudioErrors
    FORMATS, frame_name(index), parse_time(value), parse_formats(value), video_digest(path)
    select_frames(fps, frame_count, start_s, end_s, every)   # the source frame numbers a job takes
    layout names: MASKS_DIR, OVERLAY_FILE, STATS_FILE, CVAT_FILE, SUMMARY_FILE, JOB_FILE, LOCK_FILE,
                  TMP_PREFIX

Modules, one job each: ``plan`` (options -> checked plan; the resume fingerprint), ``folder``
(layout, flock lock, resume state), ``items`` (typed items between the threads), ``pipeline``
(reader -> inference -> writer threads), ``sinks`` (one per output format), ``job`` (prepare/run,
summary). Video frames come through ``engine.io.sources``, files go through ``engine.fileio``; the
speed helpers of ``annotate --json`` live in ``engine.jobs.bench``.

Safety: every file is written under a ``.tmp-`` name and renamed into place, so an interrupted run
(Ctrl-C, kill -9, disk full) leaves only complete files. ``resume=True`` keeps the masks before the
first missing one and rebuilds overlay.mp4, stats.csv and cvat.zip from them, provided the video's
bytes (first and last MiB), the model's sha256 and every setting that changes the output match.
"""
from __future__ import annotations

from ...errors import StudioError
from ...fileio import TMP_PREFIX
from .folder import (CVAT_FILE, JOB_FILE, LOCK_FILE, MASKS_DIR, OUTPUT_FILES, OVERLAY_FILE, STATS_FILE,
                     SUMMARY_FILE, FolderInUse, OutputError)
from .items import Progress
from .job import AnnotateJob, AnnotateResult
from .pipeline import AnnotateCancelled, ProgressCallback
from .plan import FORMATS, AnnotateOptions, frame_name, parse_formats, parse_time, select_frames, video_digest
from .sinks import CODECS, pick_codec

__all__ = [
    "AnnotateCancelled", "AnnotateJob", "AnnotateOptions", "AnnotateResult", "CODECS", "CVAT_FILE",
    "FORMATS", "FolderInUse", "JOB_FILE", "LOCK_FILE", "MASKS_DIR", "OUTPUT_FILES", "OVERLAY_FILE",
    "OutputError", "Progress", "ProgressCallback", "STATS_FILE", "SUMMARY_FILE", "StudioError", "TMP_PREFIX",
    "frame_name", "parse_formats", "parse_time", "pick_codec", "select_frames", "video_digest",
]


def __getattr__(name: str):
    """``sample_frames`` and ``segment_fps`` moved to engine.jobs.bench; still importable from here."""
    if name in ("sample_frames", "segment_fps"):
        from .. import bench

        return getattr(bench, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
