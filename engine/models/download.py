"""Download the official ADE20K TopFormer checkpoints: resumable, and verified before use.

Transfers go to ``<dest>/<file>.part`` and continue with an HTTP Range request after a
dropped connection (in the same run or a later one). A file is moved to its final name only
after everything that can be checked was: the byte count against Content-Length /
Content-Range (a 206 must start exactly where we asked), the zip CRC of every member, the
official TopFormer layout (keys and shapes) and finite weights, and ``sha256`` when the user
gave one. The sha256 of every completed download is recorded beside it (``<file>.sha256``)
and checked on each later use. Early closes, wrong offsets and HTML pages never become a
cached file.

Qt-free and tqdm-free: progress goes to a ``progress(done, total)`` callback and a
``threading.Event`` cancels, so the CLI (tqdm) and the GUI (a dialog) share this code.
The server is ``base_url`` or ``$STUDIO_DOWNLOAD_URL`` (tests, mirrors), else Google Drive.
"""
from __future__ import annotations

import http.client
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import StudioError
from ..fileio import atomic_write_text, os_reason, remove_quietly

GOOGLE_DRIVE = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="
DOWNLOAD_URL_ENV = "STUDIO_DOWNLOAD_URL"
CHUNK = 1 << 16
OFFLINE_MESSAGE = "Could not reach the download server. Check the internet connection; nothing was saved."
RETRY_HTTP = (408, 429, 500, 502, 503, 504)

Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class OfficialCheckpoint:
    file_id: str  # Google Drive id from the official README
    file_name: str
    miou: float  # official single-scale ADE20K val mIoU


OFFICIAL_CHECKPOINTS = {
    "tiny": OfficialCheckpoint("1OnS3_PwjJuNMWCKisreNxw_Lma8uR8bV", "TopFormer-T_512x512_4x8_160k-34.6.pth", 34.6),
    "small": OfficialCheckpoint("19041fMb4HuDyNhIYdW1r5612FyzpexP0", "TopFormer-S_512x512_4x8_160k-37.0.pth", 37.0),
    "base": OfficialCheckpoint("1m7CxYKWAyJzl5W3cj1vwsW4DfqAb_rqz", "TopFormer-B_512x512_4x8_160k-39.2.pth", 39.2),
}


class DownloadCancelled(StudioError):
    """The caller's cancel event was set; verified-resumable bytes stay in the .part file."""


class _BadTransfer(Exception):
    """The server answered something that cannot be trusted (wrong range, too many bytes)."""


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "topformer-studio" / "downloads"


def check_sha256_arg(value: str) -> str:
    """A user's ``--sha256``: 64 hex digits (any case)."""
    text = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise StudioError(f"--sha256 wants 64 hex digits, not {value!r}")
    return text


def download(variant: str, dest_dir: str | Path | None = None, progress: Progress | None = None,
             cancel: threading.Event | None = None, sha256: str | None = None, base_url: str | None = None,
             retries: int = 5, timeout: float = 30.0) -> Path:
    """Path of the complete, verified checkpoint of ``variant`` in ``dest_dir`` (downloaded if needed)."""
    if variant not in OFFICIAL_CHECKPOINTS:
        raise StudioError(f"no official checkpoint for {variant!r}; choose tiny, small or base")
    official = OFFICIAL_CHECKPOINTS[variant]
    want = check_sha256_arg(sha256) if sha256 else None
    dest = Path(dest_dir) if dest_dir else default_cache_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudioError(f"cannot create download folder {dest}: {os_reason(exc)}") from None
    final = dest / official.file_name
    if final.is_file():
        return _check_cached(final, variant, want)
    part = final.with_name(final.name + ".part")
    url = (base_url or os.environ.get(DOWNLOAD_URL_ENV) or GOOGLE_DRIVE) + official.file_id
    label = official.file_name
    reached_server = False
    attempt = 0
    while True:
        try:
            _fetch(url, part, timeout, progress, cancel)
            break
        except DownloadCancelled:
            _keep_if_resumable(part)
            raise
        except _BadTransfer as exc:
            remove_quietly(part)  # bytes after a wrong offset cannot be trusted: start again
            reason = str(exc)
        except urllib.error.HTTPError as exc:
            reached_server = True
            if exc.code not in RETRY_HTTP:
                _keep_if_resumable(part)
                raise StudioError(f"download of {label} failed: HTTP {exc.code} {exc.reason}; "
                                  f"{_kept_words(part)}") from None
            reason = f"HTTP {exc.code}"
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            reached_server = reached_server or not isinstance(exc, urllib.error.URLError)
            reason = _reason(exc)
        except OSError as exc:  # writing the .part file: disk full, permissions
            remove_quietly(part)
            raise StudioError(f"cannot write {part}: {os_reason(exc)}; nothing was saved") from None
        attempt += 1
        if not reached_server and not part.exists() and attempt > min(retries, 2):
            raise StudioError(OFFLINE_MESSAGE)
        if attempt > retries:
            _keep_if_resumable(part)
            raise StudioError(f"download of {label} failed after {attempt} tries ({reason}); {_kept_words(part)}")
        time.sleep(min(2.0 ** (attempt - 1) * 0.2, 5.0))
    _verify(part, label, variant, want)
    try:
        digest = want or _sha256(part)
        os.replace(part, final)
        atomic_write_text(_sha_file(final), digest + "\n")
    except (OSError, StudioError) as exc:
        remove_quietly(part)
        remove_quietly(final)
        raise StudioError(f"cannot save {final}: {exc if isinstance(exc, StudioError) else os_reason(exc)}") from None
    return final


def download_checkpoint(variant: str, base_url: str | None = None, cache_dir: str | Path | None = None,
                        progress: bool = False, retries: int = 5, timeout: float = 30.0) -> Path:
    """Older name of :func:`download` (no callback)."""
    return download(variant, cache_dir, base_url=base_url, retries=retries, timeout=timeout)


def _sha_file(final: Path) -> Path:
    return final.with_name(final.name + ".sha256")


def _sha256(path: Path) -> str:
    from .registry import sha256_of

    return sha256_of(path)


def _check_cached(final: Path, variant: str, want: str | None) -> Path:
    """A file downloaded earlier is used only while it still has the sha256 recorded for it."""
    actual = _sha256(final)
    if want and actual != want:
        raise StudioError(f"{final} has sha256 {actual}, not the {want} given with --sha256; delete it to download again")
    sha_file = _sha_file(final)
    try:
        recorded = sha_file.read_text().split()[0].lower() if sha_file.is_file() else None
    except (OSError, IndexError):
        recorded = None
    if recorded is None:  # from an older version: verify it fully once, then record
        _verify(final, final.name, variant, want, remove=False)
        atomic_write_text(sha_file, actual + "\n")
    elif recorded != actual:
        raise StudioError(f"{final} changed since it was downloaded (sha256 {actual}, recorded {recorded}); "
                          f"delete it to download again")
    return final


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def _looks_like_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _keep_if_resumable(part: Path) -> None:
    """Keep a .part only when its bytes can be continued: a non-empty file that starts like a checkpoint."""
    if part.exists() and (part.stat().st_size == 0 or not _looks_like_zip(part)):
        remove_quietly(part)


def _kept_words(part: Path) -> str:
    if part.exists():
        return f"{part.stat().st_size} bytes kept in {part}, run the command again to resume"
    return "nothing was saved"


def _content_range(value: str | None) -> tuple[int, int | None]:
    """(first byte, total or None) of ``bytes FIRST-LAST/TOTAL``."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not match:
        raise _BadTransfer(f"a partial answer without a valid Content-Range ({value!r})")
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def _fetch(url: str, part: Path, timeout: float, progress: Progress | None, cancel: threading.Event | None) -> None:
    """Append the missing bytes of ``url`` to ``part``; raise on an incomplete or untrustworthy transfer."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "topformer-studio"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - fixed ids or the user's mirror
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # asked past the end: the file is complete (verified next)
            return
        raise
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if have and response.status == 206:
            first, total = _content_range(response.headers.get("Content-Range"))
            if first != have:
                raise _BadTransfer(f"asked to resume at byte {have}, the server answered from byte {first}")
        else:
            have = 0  # a full answer (the server ignored Range): start again
            total = length
        if total is None and length is not None:
            total = have + length
        received = have
        with open(part, "ab" if have else "wb") as fh:
            while True:
                if cancel is not None and cancel.is_set():
                    raise DownloadCancelled(f"download of {part.name.removesuffix('.part')} cancelled; "
                                            f"{received} bytes kept in {part} for resuming")
                block = response.read(CHUNK)
                if not block:
                    break
                fh.write(block)
                received += len(block)
                if total is not None and received > total:
                    raise _BadTransfer(f"the server sent more than the announced {total} bytes")
                if progress is not None:
                    progress(received, total)
            fh.flush()
            os.fsync(fh.fileno())
    if total is not None and received < total:
        raise ConnectionError(f"connection closed at {received} of {total} bytes")


def _verify(path: Path, label: str, variant: str, want: str | None, remove: bool = True) -> None:
    """Everything checkable before the file is trusted; on failure it is removed and nothing is saved."""
    from .checkpoint import check_container, detect_variant, read_state_dict

    def fail(reason: str) -> None:
        if remove:
            remove_quietly(path)
        raise StudioError(f"download of {label} {reason}; nothing was saved")

    try:
        with open(path, "rb") as fh:
            head = fh.read(512).lower()
    except OSError as exc:
        fail(f"cannot be read ({os_reason(exc)})")
    if b"<html" in head or b"<!doctype" in head:
        fail("is a web page, not a checkpoint (quota exceeded, wrong id or a login page)")
    if not head.startswith(b"pk\x03\x04"):
        fail("is not a checkpoint (not a zip archive)")
    try:
        check_container(path)
        found, _ = detect_variant(read_state_dict(path))
    except StudioError as exc:
        fail(f"is incomplete or damaged ({exc})")
    if found != variant:
        fail(f"holds a TopFormer-{found}, not the expected {variant}")
    if want and _sha256(path) != want:
        fail(f"has sha256 {_sha256(path)}, not the {want} given with --sha256")
