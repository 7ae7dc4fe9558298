"""Atomic, checked writes, in one place: a file is either complete at its path or not there.

Every output the project writes (images, videos, manifests, checkpoints, JSON state) is
written under a temporary name beside its target and renamed into place only when the
write succeeded, so an interrupted run, a full disk or a failed encoder never leaves a
half-written file. A target that exists but is not a regular file (a folder, a device
such as /dev/null, a FIFO) is refused, never replaced.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import StudioError

try:
    import fcntl
except ImportError:  # Windows: no flock; folder_lock does nothing there
    fcntl = None

TMP_PREFIX = ".tmp-"


def os_reason(exc: OSError) -> str:
    """The OS's own words for an error (``No space left on device``), without Python's decoration."""
    return exc.strerror or str(exc)


def same_file(a: Path | str, b: Path | str) -> bool:
    """Both name one existing file (through ``./``, a symlink or a hard link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing
        return False


def check_output_target(path: Path | str, inputs: Iterable[Path | str] = ()) -> Path:
    """Refuse an output path that exists and is not a regular file, that is one of ``inputs``
    (by any name: a link, ``./``; the atomic write would replace the input), or whose folder is
    missing/unwritable."""
    path = Path(path)
    for source in inputs:
        if same_file(path, source):
            raise StudioError(f"cannot write {path}: it is the input {source}; choose another output name")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise StudioError(f"cannot write {path}: {os_reason(exc)}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise StudioError(f"cannot write {path}: it exists and is {kind}; choose a file path")
    parent = path.parent
    if not parent.is_dir():
        raise StudioError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise StudioError(f"cannot write {path}: folder {parent} is not writable")
    return path


def check_folder_creatable(path: Path | str) -> Path:
    """Refuse an output folder that lies inside a file, or that cannot be created where it is asked.

    A missing folder is probed by creating (and at once removing) a uniquely named folder in its
    nearest existing ancestor: permission bits do not tell (root passes them; /proc and /sys
    refuse anyway), so a job finds out before it prints or computes anything.
    """
    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            raise StudioError(f"cannot use output folder {path}: {parent} is a file")
        if parent.exists():
            break
    if parent != path:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent))
        except OSError as exc:
            raise StudioError(f"cannot create output folder {path}: {os_reason(exc)}") from None
    return path


@contextlib.contextmanager
def folder_lock(folder: Path | str) -> Iterator[None]:
    """Hold an exclusive flock on ``folder`` itself while the block runs, waiting for other holders.

    Serialises read-modify-write cycles of a shared file in that folder between processes (the
    models manifest: a download in the app while ``models quantize`` runs in a terminal), so
    neither overwrites the other's change. It writes nothing. A missing folder (nothing to race
    on yet) and systems without flock run the block unlocked.
    """
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(folder, os.O_RDONLY)
        except FileNotFoundError:
            fd = None
        except OSError as exc:
            raise StudioError(f"cannot read {folder}: {os_reason(exc)}") from None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock


def temp_path_for(path: Path | str) -> Path:
    """The temporary name a file is written under before it is renamed over ``path``.

    The suffix is kept, so writers that choose a container by extension (cv2.VideoWriter) still work.
    """
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")


def remove_quietly(path: Path | str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_output(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any failure it is removed.

    OSErrors (full disk, EFBIG, permissions) become a one-line :class:`StudioError` naming ``path``.
    """
    path = check_output_target(path)
    tmp = temp_path_for(path)
    try:
        yield tmp
        check_output_target(path)  # still a regular file (or absent) at rename time
        os.replace(tmp, path)
    except OSError as exc:
        remove_quietly(tmp)
        raise StudioError(f"cannot write {path}: {os_reason(exc)}") from None
    except BaseException:
        remove_quietly(tmp)
        raise


def atomic_write_bytes(path: Path | str, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically; flushed and fsynced so ENOSPC/EFBIG surface here."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)


def atomic_write_text(path: Path | str, text: str, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)
