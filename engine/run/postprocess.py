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
   frame) are blended exactly as dense per-cell blocks (positions and weights from
   tables cached per size, cells innermost so numpy runs long loops; no scan of the
   full-size map, no NonZero), but only for the classes that can win in their cell
   (usually 2 or 3 of C), then argmaxed. The cost is mostly numpy's per-call overhead,
   so the code keeps the number of calls low (two groups of cells, few temporaries).

When the output is exactly 8x the logits (half scale), ``labels_x8`` does steps 2 and 3
with one fixed [4, 64] weight matrix instead of per-size position tables.

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
    return coarse_and_top(logits)[0]


def coarse_and_top(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The argmax over classes and the max logit [h, w] (the confidence reuses it)."""
    dtype = np.uint8 if logits.shape[0] <= 256 else np.int16
    best = logits[0].copy()
    arg = np.zeros(best.shape, dtype)
    for k in range(1, logits.shape[0]):  # faster than argmax(0) on [C, h, w]; first maximum wins
        better = logits[k] > best
        np.maximum(best, logits[k], out=best)
        arg[better] = k
    return arg, best


_CELL = np.ones((2, 2), np.uint8)  # a cell: the pixel, its right, lower and lower-right neighbours


def uniform_cells(coarse: np.ndarray) -> np.ndarray:
    """bool [h, w]: the cell at (y, x) and its right/lower/lower-right neighbours share a class.

    Max and min over the cell (OpenCV 2x2 dilate/erode anchored at the top-left, edges
    replicated) are equal exactly there: 3 calls instead of a padded copy and 5 compares.
    """
    high = cv2.dilate(coarse, _CELL, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    low = cv2.erode(coarse, _CELL, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    return high == low


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
    """The cells' (row segment, column segment) pairs, and each pair's cell (None: one each); edge cells have 2 or 4."""
    ny, nx = by.count.take(cy), bx.count.take(cx)
    sy, sx = by.first.take(cy), bx.first.take(cx)
    if (ny == 1).all() and (nx == 1).all():
        return sy, sx, None
    n = ny * nx
    cell = np.repeat(np.arange(len(cy)), n)
    part = np.arange(len(cell)) - (np.cumsum(n) - n)[cell]
    return sy[cell] + part // nx[cell], sx[cell] + part % nx[cell], cell


def candidates(corners: np.ndarray) -> np.ndarray:
    """bool [C, K]: classes that can win somewhere in each cell, from its corners [C, 4, K].

    A blend of the four corners is at most the class's largest corner value, and the
    winner's blend is at least ``max_a min_corners l_a``; classes below that bound (with
    a margin for float rounding) cannot win. Usually 2 or 3 of C remain.
    """
    lower = corners.min(1).max(0)
    margin = np.float32(1e-4) * (np.abs(lower) + np.float32(1.0))
    return corners.max(1) >= lower - margin


def _weights(by: Blocks, bx: Blocks, sy: np.ndarray, sx: np.ndarray):
    """Per block row (1 - wy, wy) [Ry, 1, K] and per block column wx [1, Rx, K]."""
    return by.inverse.take(sy, 1)[:, None, :], by.weight.take(sy, 1)[:, None, :], bx.weight.take(sx, 1)[None, :, :]


def blend_two(diff: np.ndarray, first: np.ndarray, second: np.ndarray, by: Blocks, bx: Blocks,
              sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Cells with two candidate classes: the sign of their blended difference decides. [Ry, Rx, K].

    ``diff`` [4, K]: first minus second class logit at the top-left, top-right,
    bottom-left and bottom-right corners. Blended vertically once per block row, then
    horizontally per pixel, cells innermost; ties go to the first (lower) class, like argmax.
    """
    wy0, wy, wx = _weights(by, bx, sy, sx)
    d0, d1, d2, d3 = diff
    d_left = d0 * wy0 + d2 * wy  # [Ry, 1, K]
    d_slope = d1 * wy0 + d3 * wy - d_left
    wins = (d_left + d_slope * wx) >= 0
    # second + wins * (first - second), wrapping in the labels' dtype: first or second
    return wins.view(np.uint8).astype(first.dtype, copy=False) * (first - second) + second


def blend_many(values: np.ndarray, cand: np.ndarray, by: Blocks, bx: Blocks,
               sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Cells with m >= 3 candidates: argmax of the m blends (first maximum wins). [Ry, Rx, K].

    ``values`` [m, 4, K]: each candidate's logits at the cell's corners; ``cand`` [m, K]
    the candidates in class order (padding classes below the bound never win).
    """
    wy0, wy, wx = _weights(by, bx, sy, sx)
    v0, v1, v2, v3 = (values[:, i, None, None, :] for i in range(4))  # [m, 1, 1, K]
    left = v0 * wy0 + v2 * wy  # [m, Ry, 1, K]
    slope = v1 * wy0 + v3 * wy - left
    best = left[0] + slope[0] * wx  # [Ry, Rx, K]
    result = np.empty(best.shape, cand.dtype)
    result[...] = cand[0]
    for j in range(1, len(cand)):  # a loop beats argmax over a leading axis (a transposed copy)
        value = left[j] + slope[j] * wx
        better = value > best
        np.maximum(best, value, out=best)
        np.copyto(result, cand[j], where=better)
    return result


def refine_boundaries(labels: np.ndarray, logits: np.ndarray, uniform: np.ndarray, ay: Axis, ax: Axis) -> int:
    """Overwrite ``labels`` at the pixels of non-uniform cells with the exact blend's argmax.

    Cells are grouped by their number of candidate classes (2, 3, more) so little work
    is padded. Returns the number of refined pixels.
    """
    c, h, w = logits.shape
    if not (ay.count.all() and ax.count.all()):  # downscaling: cells without output pixels
        uniform = uniform | (ay.count == 0)[:, None] | (ax.count == 0)[None, :]
    cy, cx = np.nonzero(~uniform)  # low resolution: a few thousand cells at most
    if not len(cy):
        return 0
    by, bx = blocks(ay), blocks(ax)
    refined = int((ay.count.take(cy) * ax.count.take(cx)).sum())
    sy, sx, cell = segments(cy, cx, by, bx)
    if cell is not None:
        cy, cx = cy.take(cell), cx.take(cell)
    top, bottom = cy * w, np.minimum(cy + 1, h - 1) * w
    x1 = np.minimum(cx + 1, w - 1)
    corners = logits.reshape(c, h * w).take(np.stack([top + cx, top + x1, bottom + cx, bottom + x1]), 1)  # [C, 4, K]
    possible = candidates(corners)
    counts = possible.sum(0)
    out_w = len(ax.low)
    out = labels.reshape(-1)
    for index, group in enumerate((counts <= 2, counts >= 3)):  # a non-uniform cell has at least 2
        sel = np.flatnonzero(group)
        if not len(sel):
            continue
        gy, gx = sy.take(sel), sx.take(sel)
        flat = by.pos.take(gy, 1)[:, None, :] * out_w + bx.pos.take(gx, 1)[None, :, :]  # [Ry, Rx, K]
        chosen = possible[:, sel]
        if index == 0:
            first = chosen.argmax(0)
            second = (c - 1) - chosen[::-1].argmax(0)
            diff = corners[first, :, sel] - corners[second, :, sel]  # [K, 4]
            out[flat] = blend_two(diff.T, first.astype(labels.dtype), second.astype(labels.dtype), by, bx, gy, gx)
            continue
        m = int(counts.take(sel).max())
        cand = np.argsort(~chosen, axis=0, kind="stable")[:m]  # [m, K]: candidates first, in class order
        values = corners[cand[:, None, :], np.arange(4)[None, :, None], sel[None, None, :]]  # [m, 4, K]
        out[flat] = blend_many(values, cand.astype(labels.dtype), by, bx, gy, gx)
    return refined


# The x8 path: each pixel of an 8x8 block is a fixed blend of its cell's 4 corners.
_OFFSET = (np.arange(8, dtype=np.float32) + np.float32(0.5)) / np.float32(8)  # weight of the upper neighbour
_ROW = np.stack([np.float32(1) - _OFFSET, _OFFSET])  # [2, 8]: weights of (lower, upper) neighbour
X8_WEIGHTS = np.einsum("ar,bq->abrq", _ROW, _ROW).reshape(4, 64)  # [corner (tl, tr, bl, br), pixel]; exact in float32


def labels_x8(logits: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """``labels_from_logits`` when the output is exactly 8x the logits (every half-scale call),
    as a view into a slightly larger canvas.

    With a 4-pixel margin the output tiles into 8x8 blocks that each lie in one cell
    (between logit rows b-1 and b, edges replicated), all with the same 64 bilinear
    weights. So a block is one row of ``corners @ X8_WEIGHTS``: no per-call position
    tables, and the blocks are written through a [h+1, 8, w+1, 8] view of the canvas.
    Fewer numpy calls matter here: they run cold, right after the network.
    """
    c, h, w = logits.shape
    padded = cv2.copyMakeBorder(coarse, 1, 1, 1, 1, cv2.BORDER_REPLICATE)  # [h+2, w+2]
    uniform = uniform_cells(padded)[:h + 1, :w + 1]  # block (b, e) spans padded[b:b+2, e:e+2]
    canvas = np.repeat(np.repeat(padded[:h + 1, :w + 1], 8, axis=1), 8, axis=0)  # uniform blocks: their class
    by, bx = np.nonzero(~uniform)
    if len(by):
        y0, y1 = np.maximum(by - 1, 0) * w, np.minimum(by, h - 1) * w
        x0, x1 = np.maximum(bx - 1, 0), np.minimum(bx, w - 1)
        corners = logits.reshape(c, h * w).take(np.stack([y0 + x0, y0 + x1, y1 + x0, y1 + x1]), 1)  # [C, 4, K]
        possible = candidates(corners)
        two = possible.sum(0) <= 2
        block = np.empty((len(by), 64), canvas.dtype)  # each refined block's labels, written to the canvas once
        sel = np.flatnonzero(two)
        if len(sel):
            chosen = possible[:, sel]
            first = chosen.argmax(0).astype(canvas.dtype)
            second = ((c - 1) - chosen[::-1].argmax(0)).astype(canvas.dtype)
            wins = (corners[first, :, sel] - corners[second, :, sel]) @ X8_WEIGHTS >= 0  # [K, 64]; ties: first
            block[sel] = wins.view(np.uint8).astype(canvas.dtype, copy=False) * (first - second)[:, None] + second[:, None]
        sel = np.flatnonzero(~two)
        if len(sel):  # 3 or more candidates (about a third of the cells): every class, first maximum wins
            blend = corners[:, :, sel].transpose(0, 2, 1) @ X8_WEIGHTS  # [C, K, 64]
            best = blend[0].copy()
            arg = np.zeros(best.shape, canvas.dtype)
            for k in range(1, c):  # measured faster than cv2.reduceArgMax over [C, K * 64] (AVX2, 2 cores)
                better = blend[k] > best
                np.maximum(best, blend[k], out=best)
                arg[better] = k
            block[sel] = arg
        canvas.reshape(h + 1, 8, w + 1, 8)[by, :, bx, :] = block.reshape(-1, 8, 8)
    return canvas[4:4 + 8 * h, 4:4 + 8 * w]  # a view: callers copy it (or scale it up) once


def labels_from_logits(logits: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """argmax(bilinear_upsample(logits, out_hw)) for logits [C, h, w] float32: [out_h, out_w] class ids."""
    return labels_and_confidence(logits, out_hw, with_confidence=False)[0]


def labels_and_confidence(logits: np.ndarray, out_hw: tuple[int, int], with_confidence: bool = True,
                          contiguous: bool = True) -> tuple[np.ndarray, float | None]:
    """``labels_from_logits`` and ``confidence`` in one pass: the max logits are shared.

    ``contiguous=False`` allows a view (the caller scales the labels up anyway)."""
    logits = np.asarray(logits, dtype=np.float32)
    _, h, w = logits.shape
    coarse, top = coarse_and_top(logits)
    if out_hw[0] == 8 * h and out_hw[1] == 8 * w:
        labels = labels_x8(logits, coarse)
        if contiguous:
            labels = np.ascontiguousarray(labels)
    else:
        ay, ax = axis(int(out_hw[0]), h), axis(int(out_hw[1]), w)
        labels = nearest_cells(coarse, ay, ax)
        refine_boundaries(labels, logits, uniform_cells(coarse), ay, ax)
    return labels, (confidence(logits, top) if with_confidence else None)


def blocky_labels(logits: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """The public ONNX demos' shortcut: argmax at logit resolution, nearest resize (8x8 blocks)."""
    return cv2.resize(coarse_labels(logits), (int(out_hw[1]), int(out_hw[0])), interpolation=cv2.INTER_NEAREST)


SAMPLE_ABOVE = 30_000  # logit values; above this, confidence samples every other row and column


def confidence(logits: np.ndarray, top: np.ndarray | None = None) -> float:
    """Mean over logit pixels of the top softmax probability, in [1/C, 1].

    max_k softmax_k = 1 / sum_j exp(l_j - l_max); ``top`` is l_max when the caller has
    it (coarse_and_top). Logits of more than ``SAMPLE_ABOVE`` values (11 classes: any
    input from 512x320 up) are sampled on every other row and column: the mean moves by
    at most 0.005 on the shared clips, and its cost, paid on every frame right after the network, drops 4x.
    """
    c = logits.shape[0]
    if c * logits.shape[1] * logits.shape[2] > SAMPLE_ABOVE:
        logits, top = logits[:, ::2, ::2], (None if top is None else top[::2, ::2])
    flat = np.ascontiguousarray(logits, dtype=np.float32).reshape(c, -1)
    top = flat.max(0) if top is None else top.reshape(-1)
    expo = cv2.exp(flat - top)
    return float(np.mean(1.0 / expo.sum(0)))
