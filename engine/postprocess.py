"""Logits -> class map with the official semantics, computed only where it matters (numpy/OpenCV).

Official TopFormer post-processing: bilinear upsample of the 1/8 logits to the frame
size (align_corners=False), then argmax. Doing that on every pixel costs C planes at
full resolution. Here:

1. argmax at the logits' resolution (``coarse``);
2. a cell (a logit pixel with its right, lower and lower-right neighbours, edges
   replicated) is *uniform* when its four classes agree: every output pixel blended
   from that cell gets that class (a convex blend of vectors sharing an argmax keeps
   it), carried to full size by one nearest lookup along precomputed row/column indices;
3. the output pixels of the other cells (class boundaries: 10 to 17 % of a street
   frame) are listed directly from the cells' row and column ranges (index sets, no
   scan of the full-size map, no NonZero) and blended exactly, but only for the classes
   that can win in their cell (usually 2 or 3 of C), then argmaxed.

The result equals full upsample + argmax (tests/test_export_segmenter.py against torch,
tests/test_backends.py against OpenCV on real logits). The per-frame
confidence (mean over logit pixels of the top softmax probability) comes from the
same low-resolution logits, nearly free.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True, eq=False)  # hashed by identity: instances come from the cached axis()
class Axis:
    """Bilinear source positions along one axis (align_corners=False), as torch computes them."""

    low: np.ndarray     # int64 [out]: lower source index
    high: np.ndarray    # int64 [out]: upper source index (clamped)
    weight: np.ndarray  # float32 [out]: weight of ``high``
    start: np.ndarray   # int64 [in]: first output position whose ``low`` is this source index
    count: np.ndarray   # int64 [in]: how many output positions have it


@lru_cache(maxsize=64)
def axis(out_len: int, in_len: int) -> Axis:
    scale = np.float32(in_len) / np.float32(out_len)
    pos = (np.arange(out_len, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    pos = np.maximum(pos, np.float32(0.0))
    low = np.floor(pos)
    weight = (pos - low).astype(np.float32)
    low = np.minimum(low.astype(np.int64), in_len - 1)
    high = np.minimum(low + 1, in_len - 1)
    count = np.bincount(low, minlength=in_len).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    for arr in (low, high, weight, start, count):
        arr.setflags(write=False)
    return Axis(low, high, weight, start, count)


def coarse_labels(logits: np.ndarray) -> np.ndarray:
    """argmax over classes at the logits' resolution: uint8 [h, w] (int16 beyond 255 classes)."""
    dtype = np.uint8 if logits.shape[0] <= 256 else np.int16
    best = logits[0].copy()
    arg = np.zeros(best.shape, dtype)
    for k in range(1, logits.shape[0]):  # faster than argmax(0) on [C, h, w]; first maximum wins
        better = logits[k] > best
        np.maximum(best, logits[k], out=best)
        arg[better] = k
    return arg


def uniform_cells(coarse: np.ndarray) -> np.ndarray:
    """bool [h, w]: the cell at (y, x) and its right/lower/lower-right neighbours share a class."""
    padded = np.pad(coarse, ((0, 1), (0, 1)), mode="edge")
    c = padded[:-1, :-1]
    return (c == padded[:-1, 1:]) & (c == padded[1:, :-1]) & (c == padded[1:, 1:])


def nearest_cells(grid: np.ndarray, ay: Axis, ax: Axis) -> np.ndarray:
    """``grid[ay.low][:, ax.low]`` (each output pixel's top-left bilinear neighbour), fast:
    columns are repeated at low resolution, then whole rows are copied."""
    return np.repeat(np.repeat(grid, ax.count, axis=1), ay.count, axis=0)


@dataclass(frozen=True, eq=False)
class Blocks:
    """Each source index's output positions along one axis, in segments of fixed width.

    Segment ``s`` (column of ``pos``) holds up to R positions whose lower bilinear
    neighbour is ``index[s]``, padded by repeating its last one, so a cell's output
    pixels become dense [R, R] blocks and a repeated position gets the same value
    written twice. R is the interior cells' count (8 or 9 at 1/8 logits); the edge
    indices, which own a few more positions, get two segments. Cached per size (the
    app segments at a fixed size): a call only gathers columns. Segments last, so the
    per-cell work runs in long inner loops over cells.
    """

    pos: np.ndarray      # int64 [R, S]: output positions (padded by repetition)
    weight: np.ndarray   # float32 [R, S]: weight of the upper neighbour at those positions
    inverse: np.ndarray  # float32 [R, S]: 1 - weight
    first: np.ndarray    # int64 [in]: first segment of each source index
    count: np.ndarray    # int64 [in]: its number of segments (0 without output positions)


@lru_cache(maxsize=64)
def blocks(ax: Axis) -> Blocks:
    inner = ax.count[1:-1] if len(ax.count) > 2 else ax.count
    width = max(int(inner.max()), 1)
    count = -(-ax.count // width)  # ceil
    index = np.repeat(np.arange(len(ax.count)), count)
    first = np.cumsum(count) - count
    part = np.arange(len(index)) - first[index]  # which segment of its index
    start = ax.start[index] + part * width
    stop = ax.start[index] + ax.count[index]  # exclusive
    pos = np.minimum(start[None, :] + np.arange(width)[:, None], stop[None, :] - 1)
    weight = ax.weight.take(pos)
    inverse = np.float32(1.0) - weight
    for arr in (pos, weight, inverse, first, count):
        arr.setflags(write=False)
    return Blocks(pos, weight, inverse, first, count)


def segments(cy: np.ndarray, cx: np.ndarray, by: Blocks, bx: Blocks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cells' (row segment, column segment) pairs, and each pair's cell: edge cells have 2 or 4."""
    ny, nx = by.count.take(cy), bx.count.take(cx)
    sy, sx = by.first.take(cy), bx.first.take(cx)
    if (ny == 1).all() and (nx == 1).all():
        return sy, sx, np.arange(len(cy))
    n = ny * nx
    cell = np.repeat(np.arange(len(cy)), n)
    part = np.arange(len(cell)) - (np.cumsum(n) - n)[cell]
    return sy[cell] + part // nx[cell], sx[cell] + part % nx[cell], cell


def candidates(corners: np.ndarray) -> np.ndarray:
    """bool [K, C]: classes that can win somewhere in each cell, from its corners [4, K, C].

    A blend of the four corners is at most the class's largest corner value, and the
    winner's blend is at least ``max_a min_corners l_a``; classes below that bound (with
    a margin for float rounding) cannot win. Usually 2 or 3 of C remain.
    """
    a, b, c, d = corners
    lower = np.minimum(np.minimum(a, b), np.minimum(c, d)).max(1)
    margin = np.float32(1e-4) * (np.abs(lower) + np.float32(1.0))
    return np.maximum(np.maximum(a, b), np.maximum(c, d)) >= (lower - margin)[:, None]


def blend_argmax(corners: np.ndarray, cand: np.ndarray, by: Blocks, bx: Blocks,
                 sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Winning class of the exact bilinear blend over each cell's output block: [Ry, Rx, K].

    ``corners`` [4, K, C] (top-left, top-right, bottom-left, bottom-right logits per
    cell), ``cand`` [K, m]: each cell's m candidate classes in class order. Blended
    vertically once per block row and horizontally per pixel, by broadcasting with the
    cells innermost; with two candidates only their difference is blended. The first
    maximum wins ties, like argmax.
    """
    k, c = corners.shape[1], corners.shape[2]
    pick = (cand.T + np.arange(k)[None, :] * c).reshape(-1)
    v0, v1, v2, v3 = (corner.reshape(-1).take(pick).reshape(-1, k) for corner in corners)  # [m, K]
    wy = by.weight.take(sy, 1)[:, None, :]   # [Ry, 1, K]
    wy0 = by.inverse.take(sy, 1)[:, None, :]
    wx = bx.weight.take(sx, 1)[None, :, :]   # [1, Rx, K]
    if cand.shape[1] == 2:  # the sign of the blended difference decides
        d0, d1, d2, d3 = (v[0] - v[1] for v in (v0, v1, v2, v3))
        d_left = d0 * wy0 + d2 * wy  # [Ry, 1, K]
        d_slope = d1 * wy0 + d3 * wy - d_left
        first = (d_left + d_slope * wx) >= 0
        second = cand[:, 1]  # second + first * (c0 - c1), wrapping in the labels' dtype: c0 or c1
        return first.view(np.uint8).astype(cand.dtype, copy=False) * (cand[:, 0] - second) + second
    left = v0[:, None, None, :] * wy0 + v2[:, None, None, :] * wy  # [m, Ry, 1, K]
    slope = v1[:, None, None, :] * wy0 + v3[:, None, None, :] * wy - left
    best = left[0] + slope[0] * wx
    result = np.broadcast_to(cand[:, 0], best.shape).copy()
    for j in range(1, cand.shape[1]):
        value = left[j] + slope[j] * wx
        better = value > best
        np.maximum(best, value, out=best)
        np.copyto(result, cand[:, j], where=better)
    return result


def refine_boundaries(labels: np.ndarray, logits: np.ndarray, uniform: np.ndarray, ay: Axis, ax: Axis) -> int:
    """Overwrite ``labels`` at the pixels of non-uniform cells with the exact blend's argmax.

    Cells are grouped by their number of candidate classes (2, 3, more) so little work
    is padded. Returns the number of refined pixels.
    """
    c, h, w = logits.shape
    uniform = uniform | (ay.count == 0)[:, None] | (ax.count == 0)[None, :]  # cells without output pixels
    cy, cx = np.nonzero(~uniform)  # low resolution: a few thousand cells at most
    if not len(cy):
        return 0
    by, bx = blocks(ay), blocks(ax)
    refined = int((ay.count[cy] * ax.count[cx]).sum())
    sy, sx, cell = segments(cy, cx, by, bx)
    cy, cx = cy[cell], cx[cell]
    rows = np.ascontiguousarray(logits.reshape(c, h * w).T)  # one contiguous row of C logits per pixel
    y1, x1 = np.minimum(cy + 1, h - 1), np.minimum(cx + 1, w - 1)
    corners = np.stack([rows.take(cy * w + cx, 0), rows.take(cy * w + x1, 0),
                        rows.take(y1 * w + cx, 0), rows.take(y1 * w + x1, 0)])  # [4, K, C]
    possible = candidates(corners)
    counts = possible.sum(1)
    out_w = len(ax.low)
    out = labels.reshape(-1)
    for group in (counts <= 2, counts == 3, counts >= 4):  # a non-uniform cell has at least 2
        sel = np.flatnonzero(group)
        if not len(sel):
            continue
        m = int(counts[sel].max())
        if int(counts[sel].min()) == m:
            cand = np.nonzero(possible[sel])[1].reshape(len(sel), m)  # row-major: class order
        else:  # candidates first, in class order; padding classes (below the bound) never win
            cand = np.argsort(~possible[sel], axis=1, kind="stable")[:, :m]
        gy, gx = sy[sel], sx[sel]
        flat = by.pos.take(gy, 1)[:, None, :] * out_w + bx.pos.take(gx, 1)[None, :, :]  # [Ry, Rx, K]
        out[flat] = blend_argmax(corners[:, sel], cand.astype(labels.dtype), by, bx, gy, gx)
    return refined


def labels_from_logits(logits: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """argmax(bilinear_upsample(logits, out_hw)) for logits [C, h, w] float32: [out_h, out_w] class ids."""
    logits = np.asarray(logits, dtype=np.float32)
    _, h, w = logits.shape
    ay, ax = axis(int(out_hw[0]), h), axis(int(out_hw[1]), w)
    coarse = coarse_labels(logits)
    labels = nearest_cells(coarse, ay, ax)
    refine_boundaries(labels, logits, uniform_cells(coarse), ay, ax)
    return labels


@lru_cache(maxsize=64)
def _nearest_rows(in_len: int, out_len: int) -> np.ndarray:
    """Per source row, how many output rows OpenCV's INTER_NEAREST gives it (its own map, so identical)."""
    src = cv2.resize(np.arange(in_len, dtype=np.uint16)[:, None], (1, out_len), interpolation=cv2.INTER_NEAREST)[:, 0]
    counts = np.bincount(src, minlength=in_len).astype(np.int64)
    counts.setflags(write=False)
    return counts


_WIDEN = {2: np.uint16, 4: np.uint32, 8: np.uint64}


@lru_cache(maxsize=64)
def _widening(w: int, out_w: int):
    """The integer type whose multiply by 0x0101... repeats each byte out_w/w times, when OpenCV's
    column map is exactly that; else None."""
    factor = out_w // w if w else 0
    if factor not in _WIDEN or out_w != factor * w or not np.array_equal(_nearest_rows(w, out_w), np.full(w, factor)):
        return None
    return _WIDEN[factor], _WIDEN[factor](int("01" * factor, 16))


def nearest_upscale(labels: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(labels, out, INTER_NEAREST)``, several times faster for the app's half scale.

    When the width grows by 2, 4 or 8 (the frame's width is a multiple of 32), every
    byte is repeated by one integer multiply (0x0101...) and the rows are copied whole
    by OpenCV's own row map; other cases go to OpenCV.
    """
    h, w = labels.shape
    out_h, out_w = int(out_hw[0]), int(out_hw[1])
    plan = _widening(w, out_w) if labels.dtype == np.uint8 and out_h >= h else None
    if plan is None:
        return cv2.resize(labels, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
    widened = np.multiply(labels, plan[1], dtype=plan[0]).view(np.uint8)  # [h, w * factor]
    return np.repeat(widened, _nearest_rows(h, out_h), axis=0)


def blocky_labels(logits: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """The public ONNX demos' shortcut: argmax at logit resolution, nearest resize (8x8 blocks)."""
    return cv2.resize(coarse_labels(logits), (int(out_hw[1]), int(out_hw[0])), interpolation=cv2.INTER_NEAREST)


def confidence(logits: np.ndarray) -> float:
    """Mean over logit pixels of the top softmax probability, in [1/C, 1].

    max_k softmax_k = 1 / sum_j exp(l_j - l_max). Models with many classes are sampled
    on every other row and column: the mean barely changes and it stays under a millisecond.
    """
    c = logits.shape[0]
    if c * logits.shape[1] * logits.shape[2] > 400_000:
        logits = logits[:, ::2, ::2]
    flat = np.ascontiguousarray(logits, dtype=np.float32).reshape(c, -1)
    top = flat.max(0)
    shifted = flat - top
    expo = cv2.exp(shifted.reshape(c, -1))
    return float(np.mean(1.0 / expo.sum(0)))
