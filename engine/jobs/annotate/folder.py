"""The output folder of an annotate job: its layout, its lock, and what a resume finds in it.

Layout::

    masks/frame_000000.png   indexed (palette) PNG per processed frame (pixel = class id)
    overlay.mp4              class colours blended over the video, at fps / every
    stats.csv                per frame: timestamp and % area of every class
    cvat.zip                 CVAT "Segmentation mask 1.1"
    summary.json             model, checksum, settings, frame count, class totals, time taken;
                             written last, so its presence (complete: true) means a finished job
    .annotate-job.json       the job's settings (the resume fingerprint)
    .annotate.lock           flock()ed by the running job; holds its process id

The lock is an advisory ``flock`` on ``.annotate.lock``: the kernel drops it when the process
ends in any way (kill -9 included), so a stale lock file never blocks ``--resume``, while a second
job on a folder that a live one writes (``--overwrite`` included) is refused before it touches a
file. The lock file itself is left in place: removing it would let two jobs lock two different
files of the same name.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ...errors import StudioError
from ...fileio import TMP_PREFIX, atomic_write_bytes, check_folder_creatable, remove_quietly, same_file
from .plan import frame_name

try:
    import fcntl
except ImportError:  # Windows: no flock; jobs are not locked there
    fcntl = None

MASKS_DIR = "masks"
OVERLAY_FILE = "overlay.mp4"
STATS_FILE = "stats.csv"
CVAT_FILE = "cvat.zip"
SUMMARY_FILE = "summary.json"
JOB_FILE = ".annotate-job.json"
LOCK_FILE = ".annotate.lock"
OUTPUT_FILES = {"overlay": OVERLAY_FILE, "stats": STATS_FILE, "cvat": CVAT_FILE}
TOOL = "topformer-studio annotate"


class OutputError(StudioError):
    """Writing an output failed (full disk, EFBIG, encoder); finished frames stay for a resume."""


class FolderInUse(StudioError):
    """Another live job holds the folder's lock."""


class FolderLock:
    """An exclusive, non-blocking flock on ``<folder>/.annotate.lock`` for the life of one job."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_FILE
        self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self, create: bool = True) -> bool:
        """Take the lock; False when there is no lock file and ``create`` is False.

        Raises FolderInUse naming the holder's process id. Taking the lock writes nothing, so a
        refused job leaves the folder exactly as it was; :meth:`claim` records our process id.
        """
        if self._fh is not None:
            return True
        if fcntl is None:
            return False
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileNotFoundError:
            if create:
                raise StudioError(f"cannot create output folder {self.path.parent}: it does not exist") from None
            return False
        except OSError as exc:
            raise StudioError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        fh = os.fdopen(fd, "r+b")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = fh.read(32).decode(errors="replace").strip() or "?"
            fh.close()
            raise FolderInUse(f"output folder {self.path.parent} is in use by process {pid} "
                              "(another annotate job); wait for it to end or choose another folder") from None
        except BaseException:
            fh.close()
            raise
        self._fh = fh
        return True

    def claim(self) -> None:
        """Write our process id into the lock file (read by a refused second job)."""
        if self._fh is None:
            self.acquire(create=True)
        if self._fh is not None:
            try:
                self._fh.seek(0)
                self._fh.truncate()
                self._fh.write(f"{os.getpid()}\n".encode())
                self._fh.flush()
            except OSError as exc:
                raise StudioError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def release(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()  # closing the last descriptor drops the flock
            except OSError:
                pass
            self._fh = None


class OutputFolder:
    """Paths and state of one output folder; every name the job writes or removes is listed here."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.lock = FolderLock(self.path)
        self.masks = self.path / MASKS_DIR

    def mask_path(self, index: int) -> Path:
        return self.masks / f"{frame_name(index)}.png"

    def check_parents(self) -> None:
        """Refuse an output folder that is, or lies inside, a file, or that cannot be created."""
        check_folder_creatable(self.path)

    def check_not_over(self, video: Path) -> None:
        """Refuse a folder where the job would replace or remove the video itself
        (``annotate overlay.mp4 --out . --overwrite`` deleted it)."""
        ours = (OVERLAY_FILE, STATS_FILE, CVAT_FILE, SUMMARY_FILE, JOB_FILE, LOCK_FILE)
        clash = next((f"is its {name}" for name in ours if same_file(self.path / name, video)), None)
        for where in {Path(os.path.abspath(video)), Path(video).resolve()}:
            for masks in {Path(os.path.abspath(self.masks)), self.masks.resolve()}:
                if clash is None and where.is_relative_to(masks):
                    clash = f"lies in its {MASKS_DIR}/"
        if clash is not None:
            raise StudioError(f"cannot use output folder {self.path}: the video {video} {clash}, which annotate "
                              "writes; move the video or choose another folder")

    def has_content(self) -> bool:
        """True when the folder holds anything besides our lock file."""
        return self.path.is_dir() and any(p.name != LOCK_FILE for p in self.path.iterdir())

    def done_count(self, indices: list[int]) -> int:
        """Frames before the first missing mask."""
        have = set(os.listdir(self.masks)) if self.masks.is_dir() else set()
        n = 0
        for index in indices:
            if f"{frame_name(index)}.png" not in have:
                break
            n += 1
        return n

    def read_job(self) -> dict:
        job = self.path / JOB_FILE
        if not job.is_file():
            raise StudioError(f"{self.path} does not hold an annotate job to resume (no {JOB_FILE}); "
                              "use --overwrite to start again or choose another folder")
        try:
            return json.loads(job.read_text())
        except (OSError, ValueError) as exc:
            raise StudioError(f"cannot read {job}: {exc}") from None

    def check_resumable(self, settings: dict) -> None:
        """Refuse a resume whose fingerprint differs from the one the folder was started with."""
        saved = self.read_job().get("settings", {})
        diff = [k for k in settings if saved.get(k) != settings[k]]
        if diff:
            k = diff[0]
            what = {"video_digest": "the video's content changed", "sha256": "the model file changed"}.get(k)
            detail = what or f"{k}: {saved.get(k)!r}, now {settings[k]!r}"
            raise StudioError(f"{self.path} was started with other settings ({detail}); use --overwrite to start again")

    def write_job(self, settings: dict, formats: tuple[str, ...]) -> None:
        self.write_json(JOB_FILE, {"tool": TOOL, "settings": settings, "formats": list(formats)})

    def write_json(self, name: str, data: dict) -> None:
        try:
            atomic_write_bytes(self.path / name, (json.dumps(data, indent=1) + "\n").encode())
        except StudioError as exc:
            raise OutputError(str(exc)) from None

    def read_summary(self) -> dict | None:
        try:
            return json.loads((self.path / SUMMARY_FILE).read_text())
        except (OSError, ValueError):
            return None

    def complete(self, settings: dict, formats: tuple[str, ...], indices: list[int]) -> bool:
        """A finished job with these settings, whose outputs for ``formats`` are all present."""
        data = self.read_summary()
        if not data or not data.get("complete") or data.get("settings") != settings:
            return False
        if "masks" in formats and self.done_count(indices) < data.get("frames", len(indices)):
            return False
        return all((self.path / OUTPUT_FILES[f]).is_file() for f in formats if f in OUTPUT_FILES)

    def cleanup_temps(self) -> None:
        """Remove temporary files that an interrupted write left (ours are named ``.tmp-*``)."""
        for folder in (self.path, self.masks):
            if folder.is_dir():
                for name in os.listdir(folder):
                    if name.startswith(TMP_PREFIX):
                        _remove(folder / name)

    def remove_outputs(self) -> None:
        """--overwrite: remove what a previous job wrote (only our own names)."""
        if self.masks.is_dir():
            shutil.rmtree(self.masks)
        for name in (OVERLAY_FILE, STATS_FILE, CVAT_FILE, SUMMARY_FILE, JOB_FILE):
            _remove(self.path / name)
        self.cleanup_temps()

    def files(self, formats: tuple[str, ...]) -> list[str]:
        """The outputs a finished job leaves, as listed to the user."""
        files = [f"{MASKS_DIR}/"] if "masks" in formats else []
        files += [OUTPUT_FILES[f] for f in formats if f in OUTPUT_FILES]
        return files + [SUMMARY_FILE]

    def undo_created(self, created: bool) -> None:
        """A new run that finished no frame leaves nothing behind (the folder too, if it made it)."""
        if not self.path.is_dir():
            return
        if self.masks.is_dir() and any(self.masks.iterdir()):
            return
        _remove(self.path / JOB_FILE)
        if created:
            self.lock.release()
            _remove(self.path / LOCK_FILE)
        for path in (self.masks, self.path) if created else (self.masks,):
            try:
                path.rmdir()
            except OSError:
                pass


def _remove(path: Path) -> None:
    """Cleanup never raises over the error that caused it."""
    try:
        remove_quietly(path)
    except OSError:
        pass
