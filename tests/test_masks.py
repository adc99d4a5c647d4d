"""RLE arithmetic of the engine, against pycocotools on full-size masks."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from ltaug.pixels import masks


def full_rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 20), st.integers(0, 20), st.integers(0, 2**32 - 1),
       st.floats(0.0, 1.0))
def test_local_rle_equals_encoding_the_full_mask(h, w, x, y, seed, density):
    H, W = h + y + 3, w + x + 2
    local = (np.random.default_rng(seed).random((h, w)) < density).astype(np.uint8)
    full = np.zeros((H, W), np.uint8)
    full[y:y + h, x:x + w] = local
    assert masks.local_rle(local, x, y, H, W) == full_rle(full)


def test_local_rle_at_the_corners():
    H, W = 7, 5
    for x, y in ((0, 0), (W - 2, H - 3)):
        local = np.ones((3, 2), np.uint8)
        full = np.zeros((H, W), np.uint8)
        full[y:y + 3, x:x + 2] = 1
        assert masks.local_rle(local, x, y, H, W) == full_rle(full)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 3), st.integers(0, 2**32 - 1))
def test_cover_and_its_complement_from_disjoint_runs(H, W, n, seed):
    """What the occlusion bookkeeping builds: the union of disjoint pasted parts, and its complement."""
    rng = np.random.default_rng(seed)
    cover = np.zeros((H, W), bool)
    parts = []
    for _ in range(n):  # each later object hides what lies under it, as render_paste does
        h, w = int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1))
        x, y = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
        m = rng.random((h, w)) < 0.7
        visible = m & ~cover[y:y + h, x:x + w]
        cover[y:y + h, x:x + w] |= m
        parts.append(masks.local_runs(visible.view(np.uint8), x, y, H, W))
    runs = masks.union_runs(parts) if parts else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert masks.rle_from_runs(*runs, H, W) == full_rle(cover)
    assert masks.rle_from_runs(*masks.complement_runs(*runs, H * W), H, W) == full_rle(~cover)


def test_box_only_annotation_mask_is_the_pycocotools_box():
    rle, box_only = masks.annotation_rle(None, [2.5, 3.2, 4.0, 5.1], 20, 30)
    assert box_only
    expected = mask_utils.decode(mask_utils.frPyObjects(np.array([[2.5, 3.2, 4.0, 5.1]]), 20, 30)[0])
    assert np.array_equal(mask_utils.decode(rle), expected)
    assert np.array_equal(masks.box_mask([2.5, 3.2, 4.0, 5.1], 20, 30), expected)


def test_warp_polygon_identity_and_scaled():
    poly = [[10.0, 10.0, 50.0, 10.0, 50.0, 40.0, 10.0, 40.0]]
    rle, bbox, visible = masks.warp_rle(poly, [10, 10, 40, 30], (60, 80), (1.0, 1.0), (0, 0), (0, 0, 80, 60), (60, 80))
    assert rle == mask_utils.merge(mask_utils.frPyObjects(poly, 60, 80))
    assert abs(visible - 1.0) < 0.05 and bbox == [10.0, 10.0, 40.0, 30.0]
    # half size, shifted by (5, 7), cut at x < 20 by the window
    rle, bbox, visible = masks.warp_rle(poly, [10, 10, 40, 30], (60, 80), (0.5, 0.5), (5, 7), (0, 0, 20, 60), (60, 80))
    assert bbox == [10.0, 12.0, 10.0, 15.0]  # x 10..20 (cut), y 12..27
    assert abs(visible - 0.5) < 0.1


def test_warp_rle_mask_resized_like_the_image():
    src = np.zeros((40, 60), np.uint8)
    src[10:30, 20:50] = 1
    seg = full_rle(src)
    seg = {"size": seg["size"], "counts": seg["counts"].decode()}
    rle, bbox, visible = masks.warp_rle(seg, [20, 10, 30, 20], (40, 60), (0.5, 0.5), (3, 4), (0, 0, 100, 100), (100, 100))
    assert bbox == [13.0, 9.0, 15.0, 10.0] and visible == 1.0
    # a window cutting off everything
    rle, bbox, visible = masks.warp_rle(seg, [20, 10, 30, 20], (40, 60), (0.5, 0.5), (3, 4), (50, 50, 100, 100), (100, 100))
    assert visible == 0.0 and masks.area(rle) == 0


def test_warp_box_is_clipped_with_its_visible_fraction():
    rle, bbox, visible = masks.warp_rle(None, [0, 0, 20, 10], (10, 20), (2.0, 2.0), (-10, 0), (0, 0, 100, 100), (100, 100))
    assert rle is None and bbox == [0, 0, 30, 20] and abs(visible - 0.75) < 1e-9
