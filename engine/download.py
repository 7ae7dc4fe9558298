"""Download the official ADE20K TopFormer checkpoints, resuming broken transfers.

Transfers go to ``<cache>/<file>.part`` and continue with an HTTP Range request after a
dropped connection (in the same run, and in a later run); the file is renamed to its final
name only when complete and recognisably a checkpoint. No third-party HTTP library needed.
"""
from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import StudioError

GOOGLE_DRIVE = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="
CHUNK = 1 << 16


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


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "topformer-studio" / "downloads"


def download_checkpoint(variant: str, base_url: str | None = None, cache_dir: str | Path | None = None,
                        progress: bool = True, retries: int = 5, timeout: float = 30.0) -> Path:
    """Path of the complete checkpoint file for ``variant``, downloading what is missing."""
    if variant not in OFFICIAL_CHECKPOINTS:
        raise StudioError(f"no official checkpoint for {variant!r}; choose tiny, small or base")
    official = OFFICIAL_CHECKPOINTS[variant]
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudioError(f"cannot create download folder {cache}: {exc.strerror}") from None
    final = cache / official.file_name
    if final.is_file():
        return final
    part = final.with_name(final.name + ".part")
    url = (base_url or GOOGLE_DRIVE) + official.file_id
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, progress, timeout, official.file_name)
            break
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code not in (408, 429, 500, 502, 503, 504):
                raise StudioError(f"download of {official.file_name} failed: HTTP {exc.code} {exc.reason}") from None
            if attempt == retries:
                have = part.stat().st_size if part.exists() else 0
                raise StudioError(
                    f"download of {official.file_name} failed after {retries + 1} tries ({_reason(exc)}); "
                    f"{have} bytes kept in {part}, run the command again to resume"
                ) from None
            time.sleep(min(2.0 ** attempt * 0.2, 5.0))
    _check_is_checkpoint(part, official.file_name)
    os.replace(part, final)
    return final


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def _fetch(url: str, part: Path, progress: bool, timeout: float, label: str) -> None:
    """Append the missing bytes of ``url`` to ``part``; raise on an incomplete transfer."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "topformer-studio"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - URL built from fixed ids
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # asked past the end: the file is already complete
            return
        raise
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored Range: start again
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        bar = _progress_bar(total, have, label) if progress else None
        received = have
        try:
            with open(part, "ab" if have else "wb") as fh:
                while block := response.read(CHUNK):
                    fh.write(block)
                    received += len(block)
                    if bar is not None:
                        bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
    if total is not None and received < total:
        raise ConnectionError(f"connection dropped at {received} of {total} bytes")


def _progress_bar(total: int | None, initial: int, label: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False, disable=None)  # None: no bar when not a terminal


def _check_is_checkpoint(path: Path, label: str) -> None:
    """A PyTorch checkpoint is a zip (new format) or a pickle; a web page is neither."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"PK\x03\x04") or head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return
    path.unlink(missing_ok=True)
    what = "a web page" if b"<html" in head.lower() or b"<!doctype" in head.lower() else "not a checkpoint"
    raise StudioError(f"the server sent {what} instead of {label} (quota exceeded, wrong id or a login page); nothing installed")
