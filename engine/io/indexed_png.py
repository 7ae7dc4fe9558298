"""Indexed (palette) PNGs without Pillow: the annotate masks and the CVAT colour masks.

OpenCV encodes the class map as an 8-bit grayscale PNG, and the header is switched to colour
type 3 (palette) with a PLTE chunk. Both types store one byte per pixel with the same filters and
compression, so the image data (IDAT) is valid unchanged. Reading does the reverse, so libpng
decodes the indices instead of expanding them to colours.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import StudioError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(type, body, raw chunk bytes) for each chunk of a PNG."""
    if data[:8] != PNG_SIGNATURE:
        raise ValueError("not a PNG file")
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ValueError("truncated PNG")
        yield ctype, data[pos + 8:pos + 8 + length], data[pos:end]
        pos = end
        if ctype == b"IEND":
            return
    raise ValueError("truncated PNG (no IEND)")


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body and the CRC a rewritten header needs."""
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def encode_indexed_png(labels: np.ndarray, palette_rgb: np.ndarray) -> bytes:
    """An 8-bit palette PNG (mode "P") whose pixel values are ``labels`` and palette ``palette_rgb``."""
    labels = np.ascontiguousarray(labels)
    if labels.dtype != np.uint8 or labels.ndim != 2:
        raise ValueError("labels must be a 2-D uint8 array")
    palette = np.asarray(palette_rgb, dtype=np.uint8).reshape(-1, 3)[:256]
    top = int(labels.max()) + 1 if labels.size else 1
    if top > len(palette):  # every index must have a palette entry; extra ids show black
        palette = np.vstack([palette, np.zeros((top - len(palette), 3), np.uint8)])
    ok, buf = cv2.imencode(".png", labels)
    if not ok:
        raise StudioError("OpenCV could not encode a PNG")
    out = [PNG_SIGNATURE]
    for ctype, body, raw in _png_chunks(buf.tobytes()):
        if ctype == b"IHDR":
            width, height, depth, color, comp, filt, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or color != 0:
                raise StudioError(f"unexpected PNG from OpenCV (depth {depth}, colour type {color})")
            out.append(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, comp, filt, interlace)))
            out.append(_png_chunk(b"PLTE", palette.tobytes()))
        elif ctype in (b"IDAT", b"IEND"):
            out.append(raw)
    return b"".join(out)


def decode_indexed_png(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(class map uint8 HxW, palette uint8 [N,3] RGB) of an 8-bit palette PNG."""
    out = [PNG_SIGNATURE]
    palette = None
    for ctype, body, raw in _png_chunks(data):
        if ctype == b"IHDR":
            width, height, depth, color, comp, filt, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or color != 3:
                raise ValueError(f"not an 8-bit palette PNG (depth {depth}, colour type {color})")
            out.append(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, comp, filt, interlace)))
        elif ctype == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3).copy()
        elif ctype in (b"IDAT", b"IEND"):
            out.append(raw)
    if palette is None:
        raise ValueError("palette PNG without PLTE chunk")
    labels = cv2.imdecode(np.frombuffer(b"".join(out), np.uint8), cv2.IMREAD_UNCHANGED)
    if labels is None or labels.ndim != 2:
        raise ValueError("damaged PNG data")
    return labels, palette


def read_mask(path: str | Path) -> np.ndarray:
    """The class map stored in a mask PNG written by :func:`encode_indexed_png`."""
    return decode_indexed_png(Path(path).read_bytes())[0]


def read_mask_palette(path: str | Path) -> np.ndarray:
    """The RGB palette of a mask PNG (the model's colours, for checking what a mask was made with)."""
    return decode_indexed_png(Path(path).read_bytes())[1]
