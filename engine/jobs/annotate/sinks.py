"""One sink per output format: each takes the labelled frames in order and commits its file at the end.

A sink's life: ``add(frame)`` for every frame in order, then ``finish()`` (the file is renamed into
place only now, after its writes were checked) or ``abort()`` (the temporary file is removed; never
raises). A new format is one more class with these three methods, listed in :func:`make_sinks`.
Every file goes through ``engine.fileio``: written under a ``.tmp-`` name, renamed when complete.
"""
from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ...run import overlay
from ...io.cvat import CvatZipWriter, Label
from ...errors import StudioError
from ...fileio import TMP_PREFIX, atomic_output, atomic_write_bytes, remove_quietly
from ...io.indexed_png import encode_indexed_png
from .folder import CVAT_FILE, OVERLAY_FILE, STATS_FILE, OutputError, OutputFolder
from .items import LabeledFrame
from .plan import frame_name

CODECS = (("avc1", "H.264"), ("mp4v", "MPEG-4 Part 2"))


class Sink(Protocol):
    def add(self, frame: LabeledFrame) -> None: ...
    def finish(self) -> None: ...
    def abort(self) -> None: ...


def _write_all(fh, data: bytes) -> None:
    """The one place mask bytes are written (tests replace it to simulate a full disk)."""
    fh.write(data)


class _Committed:
    """A file written under ``engine.fileio.atomic_output`` across many calls: rename on finish."""

    def __init__(self, path: Path):
        self.path = path
        self._stack = contextlib.ExitStack()
        try:
            self.tmp = self._stack.enter_context(atomic_output(path))
        except StudioError as exc:
            raise OutputError(str(exc)) from None

    def commit(self) -> None:
        try:
            self._stack.close()
        except StudioError as exc:
            raise OutputError(str(exc)) from None

    def abandon(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.__exit__(OutputError, OutputError("abandoned"), None)
        remove_quietly(self.tmp)


class MaskSink:
    """``masks/frame_NNNNNN.png``: the class map as an indexed PNG with the model's palette."""

    def __init__(self, folder: OutputFolder, palette_rgb: np.ndarray):
        self.folder = folder
        self.palette_rgb = palette_rgb

    def add(self, frame: LabeledFrame) -> None:
        if not frame.is_new:  # a mask kept from before
            return
        path = self.folder.mask_path(frame.index)
        data = encode_indexed_png(frame.labels, self.palette_rgb)
        try:
            with atomic_output(path) as tmp:
                with open(tmp, "wb") as fh:
                    _write_all(fh, data)
        except StudioError as exc:
            raise OutputError(str(exc)) from None

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass


class _FileSink:
    """A sink that writes one file across the whole run: committed on finish, removed on abort."""

    def __init__(self, path: Path):
        self.path = path
        self._file = _Committed(path)

    def _close_writer(self) -> None:
        """Close the format's writer without finishing it (after an error)."""

    def abort(self) -> None:
        self._close_writer()
        self._file.abandon()

    @contextlib.contextmanager
    def _reported(self):
        """OS errors of the writer (ENOSPC, EFBIG) as one line naming the output file."""
        try:
            yield
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None


class OverlaySink(_FileSink):
    """``overlay.mp4``: colours blended over each frame; every write and the result are checked."""

    def __init__(self, folder: OutputFolder, codec: tuple[str, str], fps: float, size: tuple[int, int],
                 opacity: float, lut: np.ndarray):
        super().__init__(folder.path / OVERLAY_FILE)
        self.opacity, self.lut, self.written = opacity, lut, 0
        self._video = cv2.VideoWriter(str(self._file.tmp), cv2.VideoWriter_fourcc(*codec[0]), fps, size)
        if not self._video.isOpened():
            self.abort()
            raise OutputError(f"cannot write {self.path} (OpenCV video writer failed to open)")

    def add(self, frame: LabeledFrame) -> None:
        image = overlay.blend(frame.image, frame.labels, opacity=self.opacity, lut=self.lut)
        if self._video.write(image) is False:  # OpenCV 5 reports each write; 4.x returns None
            raise OutputError(f"cannot write {self.path}: the video encoder refused frame {frame.index}")
        self.written += 1

    def finish(self) -> None:
        self._close_writer()
        check = cv2.VideoCapture(str(self._file.tmp))  # FFmpeg drops write errors: count what is there
        got = int(check.get(cv2.CAP_PROP_FRAME_COUNT)) if check.isOpened() else -1
        check.release()
        if got != self.written:
            raise OutputError(f"cannot write {self.path}: the video has {got} of {self.written} frames (disk full?)")
        self._file.commit()

    def _close_writer(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None


class CvatSink(_FileSink):
    """``cvat.zip``: CVAT "Segmentation mask 1.1", one member per frame, written as frames come."""

    def __init__(self, folder: OutputFolder, labels: list[Label]):
        super().__init__(folder.path / CVAT_FILE)
        self._zip: CvatZipWriter | None = None
        try:
            with self._reported():
                self._zip = CvatZipWriter(self._file.tmp, labels)
        except BaseException:
            self.abort()
            raise

    def add(self, frame: LabeledFrame) -> None:
        with self._reported():
            self._zip.add(frame_name(frame.index), frame.labels)

    def finish(self) -> None:
        with self._reported():
            self._zip.finish()
        self._zip = None
        self._file.commit()

    def _close_writer(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None


class StatsSink:
    """Class areas of every frame: ``stats.csv`` when asked for, and the totals of summary.json always."""

    def __init__(self, folder: OutputFolder, total: int, class_names: list[str], fps: float, write_csv: bool):
        self.path = folder.path / STATS_FILE
        self.class_names, self.fps, self.write_csv = class_names, fps, write_csv
        self.areas = np.zeros((total, len(class_names)), np.float64)
        self.indices: list[int] = []

    def add(self, frame: LabeledFrame) -> None:
        self.areas[frame.n] = overlay.class_areas(frame.labels, len(self.class_names))
        self.indices.append(frame.index)

    def finish(self) -> None:
        self.areas = self.areas[: len(self.indices)]
        if self.write_csv:
            try:
                atomic_write_bytes(self.path, self.csv_bytes())
            except StudioError as exc:
                raise OutputError(str(exc)) from None

    def csv_bytes(self) -> bytes:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["frame", "name", "timestamp_s", *self.class_names])
        for index, row in zip(self.indices, self.areas):
            w.writerow([index, frame_name(index), f"{index / self.fps:.3f}", *(f"{v:.4f}" for v in row)])
        return buf.getvalue().encode()

    def abort(self) -> None:
        pass


_codec_cache: dict[tuple[int, int], tuple[str, str]] = {}


def pick_codec(folder: Path, size: tuple[int, int], fps: float) -> tuple[str, str]:
    """(fourcc, name): H.264 ('avc1') when this OpenCV build can really write it, else 'mp4v'.

    Tested by opening a writer on a scratch file in ``folder`` and writing one frame.
    """
    w, h = size
    if (w, h) in _codec_cache:
        return _codec_cache[(w, h)]
    probe = folder / f"{TMP_PREFIX}codec-probe.mp4"
    chosen = CODECS[-1]
    old_level = None
    try:
        old_level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except Exception:  # noqa: BLE001 - logging control is optional
        pass
    try:
        for fourcc, name in CODECS[:-1]:
            writer = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
            try:
                if not writer.isOpened():
                    continue
                writer.write(np.zeros((h, w, 3), np.uint8))
            finally:
                writer.release()
            ok = probe.is_file() and probe.stat().st_size > 0
            if ok:
                cap = cv2.VideoCapture(str(probe))
                ok = cap.isOpened() and cap.read()[0]
                cap.release()
            remove_quietly(probe)
            if ok:
                chosen = (fourcc, name)
                break
    finally:
        remove_quietly(probe)
        if old_level is not None:
            cv2.utils.logging.setLogLevel(old_level)
    _codec_cache[(w, h)] = chosen
    return chosen
