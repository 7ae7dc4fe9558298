"""engine/run/overlay.py and engine/io/indexed_png.py: fast unit tests (no models, no ../shared)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.io import indexed_png
from engine.run import overlay

RNG = np.random.default_rng(7)
LABELS = RNG.integers(0, 6, (24, 32), dtype=np.uint8)
FRAME = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)
PALETTE = RNG.integers(0, 256, (5, 3), dtype=np.uint8)  # id 5 is past the palette: black


def reference_colors(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """The definition: palette lookup, black past the palette."""
    table = np.zeros((256, 3), np.uint8)
    table[: len(palette)] = palette
    return table[labels]


def test_colorize_is_a_palette_lookup_with_palette_or_lut():
    expected = reference_colors(LABELS, PALETTE)
    assert np.array_equal(overlay.colorize(LABELS, PALETTE), expected)
    assert np.array_equal(overlay.colorize(LABELS, lut=overlay.color_lut(PALETTE)), expected)
    strided = LABELS[::2, 1::3]  # not contiguous
    assert np.array_equal(overlay.colorize(strided, PALETTE), reference_colors(strided, PALETTE))
    wide = LABELS.astype(np.int32)  # non-uint8 maps still work
    assert np.array_equal(overlay.colorize(wide, PALETTE), expected)
    with pytest.raises(TypeError):
        overlay.colorize(LABELS)


def test_blend_opacity_ends_and_middle():
    colors = reference_colors(LABELS, PALETTE)
    assert np.array_equal(overlay.blend(FRAME, LABELS, PALETTE, 0.0), FRAME)
    assert np.array_equal(overlay.blend(FRAME, LABELS, PALETTE, 1.0), colors)
    assert np.array_equal(overlay.blend(FRAME, LABELS, PALETTE, -3.0), FRAME)  # clamped
    assert np.array_equal(overlay.blend(FRAME, LABELS, PALETTE, 7.0), colors)
    half = overlay.blend(FRAME, LABELS, PALETTE, 0.5)
    assert np.abs(half.astype(int) - (colors.astype(int) + FRAME) / 2).max() <= 1
    lut = overlay.color_lut(PALETTE)
    assert np.array_equal(overlay.blend(FRAME, LABELS, opacity=0.3, lut=lut), overlay.blend(FRAME, LABELS, PALETTE, 0.3))


def test_blend_never_changes_the_frame_and_checks_shapes():
    before = FRAME.copy()
    out = overlay.blend(FRAME, LABELS, PALETTE, 0.0, boundaries=True)
    assert np.array_equal(FRAME, before) and out is not FRAME
    with pytest.raises(ValueError):
        overlay.blend(FRAME, LABELS[:-1], PALETTE)


def test_boundaries_are_painted_where_classes_change():
    labels = np.zeros((6, 8), np.uint8)
    labels[:, 4:] = 1
    frame = np.zeros((6, 8, 3), np.uint8)
    out = overlay.blend(frame, labels, PALETTE, 0.0, boundaries=True, boundary_color=(1, 2, 3))
    edges = overlay.boundary_mask(labels)
    assert edges[:, 3].all() and edges.sum() == 6  # the column left of the change
    assert (out[edges] == (1, 2, 3)).all() and (out[~edges] == 0).all()


def test_class_areas_sum_to_100_and_match_counts():
    areas = overlay.class_areas(LABELS, 6)
    assert areas.shape == (6,) and areas.dtype == np.float64
    assert abs(areas.sum() - 100.0) < 1e-9
    assert np.allclose(areas, np.bincount(LABELS.ravel(), minlength=6) * 100.0 / LABELS.size)
    assert overlay.class_areas(LABELS, 3).shape == (3,)  # ids past num_classes are not listed
    assert overlay.class_areas(LABELS, 300).shape == (300,)
    assert np.array_equal(overlay.class_areas(LABELS.astype(np.int64), 6), areas)


def test_present_classes_largest_first():
    labels = np.zeros((10, 10), np.uint8)
    labels[:, :3] = 2  # 30 %
    labels[:1, 3:] = 1  # 7 %
    names = ["a", "b", "c", "d"]
    assert overlay.present_classes(labels, names) == [(0, "a", 63.0), (2, "c", 30.0), (1, "b", 7.0)]
    assert [c[0] for c in overlay.present_classes(labels, names, min_percent=10.0)] == [0, 2]


def test_indexed_png_round_trip(tmp_path):
    labels = RNG.integers(0, 40, (19, 23), dtype=np.uint8)
    palette = RNG.integers(0, 256, (30, 3), dtype=np.uint8)  # ids 30..39 get black entries
    data = indexed_png.encode_indexed_png(labels, palette)
    back, pal = indexed_png.decode_indexed_png(data)
    assert np.array_equal(back, labels)
    assert np.array_equal(pal[:30], palette) and not pal[30:].any() and len(pal) == 40
    path = tmp_path / "mask.png"
    path.write_bytes(data)
    assert np.array_equal(indexed_png.read_mask(path), labels)
    assert np.array_equal(indexed_png.read_mask_palette(path), pal)
    expanded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # what other readers see
    assert np.array_equal(expanded, pal[labels][..., ::-1])


def test_indexed_png_rejects_other_pngs():
    ok, gray = cv2.imencode(".png", LABELS)
    with pytest.raises(ValueError):
        indexed_png.decode_indexed_png(gray.tobytes())  # not a palette PNG
    with pytest.raises(ValueError):
        indexed_png.decode_indexed_png(b"not a png")
    data = indexed_png.encode_indexed_png(LABELS, PALETTE)
    with pytest.raises(ValueError):
        indexed_png.decode_indexed_png(data[:-20])  # truncated
    with pytest.raises(ValueError):
        indexed_png.encode_indexed_png(LABELS.astype(np.int32), PALETTE)
