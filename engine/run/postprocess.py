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


@dataclass(frozen=True)
class Runs:
    """Output pixels of some cells, as row runs (one output row of one cell) and flat indices."""

    cell_rows: np.ndarray  # int64 [K]: runs per cell (runs are in cell order)
    run_row: np.ndarray   # int64 [S]: the run's output row
    run_len: np.ndarray   # int64 [S]: pixels in the run
    flat: np.ndarray      # int64 [N]: each pixel's y * out_w + x, run after run
    wx: np.ndarray        # float32 [N]: each pixel's weight of the right source column


def cell_runs(cy: np.ndarray, cx: np.ndarray, ay: Axis, ax: Axis) -> Runs:
    """Every output pixel of the cells (cy, cx), from the cells' row and column ranges.

    Cells -> row runs -> pixels with repeats and one arange: work in proportion to the
    boundary pixels, never a pass over the full-size map.
    """
    rows_n = ay.count[cy]
    run_cell = np.repeat(np.arange(len(cy)), rows_n)
    run_first = np.cumsum(rows_n) - rows_n
    run_row = ay.start[cy][run_cell] + (np.arange(len(run_cell)) - run_first[run_cell])
    run_len = ax.count[cx][run_cell]
    run_col = ax.start[cx][run_cell]
    n = int(run_len.sum())
    pix_first = np.cumsum(run_len) - run_len
    flat = np.repeat(run_row * len(ax.low) + run_col - pix_first, run_len)
    flat += _steps(n)
    return Runs(cell_rows=rows_n, run_row=run_row, run_len=run_len, flat=flat,
                wx=_row_weights(len(ay.low), ax).take(flat))


_STEPS = np.arange(0, dtype=np.int64)


def _steps(n: int) -> np.ndarray:
    """``np.arange(n)`` from a cached, growing array (read-only view)."""
    global _STEPS
    if len(_STEPS) < n:
        _STEPS = np.arange(max(n, 2 * len(_STEPS)), dtype=np.int64)
        _STEPS.setflags(write=False)
    return _STEPS[:n]


@lru_cache(maxsize=8)
def _row_weights(out_h: int, ax: Axis) -> np.ndarray:
    """ax.weight tiled over out_h rows: a pixel's horizontal weight by its flat index."""
    table = np.tile(ax.weight, out_h)
    table.setflags(write=False)
    return table


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


def blend_argmax(corners: np.ndarray, cand: np.ndarray, runs: Runs, ay: Axis) -> np.ndarray:
    """Winning class of the exact bilinear blend at each pixel of ``runs``.

    ``corners`` [4, K, C] (top-left, top-right, bottom-left, bottom-right logits per
    cell), ``cand`` [K, m]: each cell's m candidate classes in class order. Values are
    picked per cell, blended vertically once per row run and horizontally per pixel;
    with two candidates only their difference is blended. The first maximum wins ties,
    like argmax.
    """
    k, c = corners.shape[1], corners.shape[2]
    pick = (np.arange(k)[:, None] * c + cand).reshape(-1)
    per_run = runs.cell_rows
    vals = [np.repeat(corner.reshape(-1).take(pick).reshape(k, -1), per_run, axis=0) for corner in corners]
    wy = ay.weight.take(runs.run_row)[:, None]
    wy0 = np.float32(1.0) - wy
    n, wx = runs.run_len, runs.wx
    if cand.shape[1] == 2:  # the sign of the blended difference decides
        diff = [v[:, 0] - v[:, 1] for v in vals]
        d_left = diff[0] * wy0[:, 0] + diff[2] * wy[:, 0]
        d_slope = diff[1] * wy0[:, 0] + diff[3] * wy[:, 0] - d_left
        first = (np.repeat(d_left, n) + np.repeat(d_slope, n) * wx) >= 0
        run_cls = np.repeat(cand, per_run, axis=0)
        return np.where(first, np.repeat(run_cls[:, 0], n), np.repeat(run_cls[:, 1], n))
    left = vals[0] * wy0 + vals[2] * wy  # [S, m]
    slope = vals[1] * wy0 + vals[3] * wy - left
    left_t, slope_t = np.ascontiguousarray(left.T), np.ascontiguousarray(slope.T)
    best = np.repeat(left_t[0], n) + np.repeat(slope_t[0], n) * wx
    pos = np.zeros(len(wx), np.intp)
    for j in range(1, cand.shape[1]):
        value = np.repeat(left_t[j], n) + np.repeat(slope_t[j], n) * wx
        better = value > best
        np.maximum(best, value, out=best)
        pos[better] = j
    pix_cls = np.repeat(np.repeat(cand, per_run, axis=0), n, axis=0)
    return pix_cls[np.arange(len(wx)), pos]


def refine_boundaries(labels: np.ndarray, logits: np.ndarray, uniform: np.ndarray, ay: Axis, ax: Axis) -> int:
    """Overwrite ``labels`` at the pixels of non-uniform cells with the exact blend's argmax.

    Cells are grouped by their number of candidate classes (2, 3, more) so little work
    is padded. Returns the number of refined pixels.
    """
    c, h, w = logits.shape
    cy, cx = np.nonzero(~uniform)  # low resolution: a few thousand cells at most
    if not len(cy):
        return 0
    rows = np.ascontiguousarray(logits.reshape(c, h * w).T)  # one contiguous row of C logits per pixel
    y1, x1 = np.minimum(cy + 1, h - 1), np.minimum(cx + 1, w - 1)
    corners = np.stack([rows.take(cy * w + cx, 0), rows.take(cy * w + x1, 0),
                        rows.take(y1 * w + cx, 0), rows.take(y1 * w + x1, 0)])  # [4, K, C]
    possible = candidates(corners)
    counts = possible.sum(1)
    out = labels.reshape(-1)
    refined = 0
    for group in (counts <= 2, counts == 3, counts >= 4):  # a non-uniform cell has at least 2
        sel = np.flatnonzero(group)
        if not len(sel):
            continue
        m = int(counts[sel].max())
        if int(counts[sel].min()) == m:
            cand = np.nonzero(possible[sel])[1].reshape(len(sel), m)  # row-major: class order
        else:  # candidates first, in class order; padding classes (below the bound) never win
            cand = np.argsort(~possible[sel], axis=1, kind="stable")[:, :m]
        runs = cell_runs(cy[sel], cx[sel], ay, ax)
        out[runs.flat] = blend_argmax(corners[:, sel], cand.astype(labels.dtype), runs, ay)
        refined += len(runs.flat)
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
