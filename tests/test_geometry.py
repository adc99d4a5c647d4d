"""Property tests for the polygon / RLE / box helpers, against direct numpy computations."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltaug.io import geometry as g

H, W = 60, 80
settings.register_profile("ltaug", max_examples=60, deadline=None)
settings.load_profile("ltaug")


@st.composite
def masks(draw, min_pixels=1):
    """A random binary mask made of 1-3 filled rectangles."""
    m = np.zeros((H, W), np.uint8)
    for _ in range(draw(st.integers(1, 3))):
        x0 = draw(st.integers(0, W - 2)); y0 = draw(st.integers(0, H - 2))
        x1 = draw(st.integers(x0 + 1, W)); y1 = draw(st.integers(y0 + 1, H))
        m[y0:y1, x0:x1] = 1
    return m


@st.composite
def rectangles(draw):
    x0 = draw(st.integers(0, W - 3)); y0 = draw(st.integers(0, H - 3))
    x1 = draw(st.integers(x0 + 2, W)); y1 = draw(st.integers(y0 + 2, H))
    return x0, y0, x1, y1


def rect_polygon(x0, y0, x1, y1):
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


def uncompressed_rle(mask):
    """Direct reference: runs of the column-major flattened mask, starting with a run of zeros."""
    flat = mask.flatten(order="F")
    counts, prev, run = [], 0, 0
    for v in flat:
        if v != prev:
            counts.append(run); run, prev = 0, v
        run += 1
    counts.append(run)
    return {"counts": counts, "size": [H, W]}


@given(masks())
def test_uncompressed_and_compressed_rle_decode_to_the_mask(mask):
    rle = uncompressed_rle(mask)
    assert g.segmentation_kind(rle) == g.RLE
    assert np.array_equal(g.decode(rle, H, W), mask)
    compressed = g.rle_to_json(g.to_rle(rle, H, W))
    assert g.segmentation_kind(compressed) == g.COMPRESSED_RLE and isinstance(compressed["counts"], str)
    assert np.array_equal(g.decode(compressed, H, W), mask)
    assert g.mask_area(compressed, H, W) == int(mask.sum())


@given(rectangles())
def test_rectangle_polygon_area_bbox_and_raster(rect):
    x0, y0, x1, y1 = rect
    poly = [rect_polygon(*rect)]
    assert g.polygons_area(poly) == pytest.approx((x1 - x0) * (y1 - y0))
    assert g.polygons_bbox(poly) == [x0, y0, x1 - x0, y1 - y0]
    # pycocotools rasterises a corner-aligned rectangle to exactly its pixels
    m = g.decode(poly, H, W)
    assert m.sum() == (x1 - x0) * (y1 - y0) and m[y0:y1, x0:x1].all()


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100)), min_size=3, max_size=12))
def test_shoelace_matches_reference_and_is_orientation_free(points):
    poly = [c for p in points for c in p]
    rev = [c for p in points[::-1] for c in p]
    x = np.array([p[0] for p in points]); y = np.array([p[1] for p in points])
    ref = abs(sum(x[i] * y[(i + 1) % len(x)] - x[(i + 1) % len(x)] * y[i] for i in range(len(x)))) / 2
    assert g.polygons_area([poly]) == pytest.approx(ref, abs=1e-6)
    assert g.polygons_area([rev]) == pytest.approx(ref, abs=1e-6)


@given(masks())
def test_mask_to_polygons_rasterises_close_to_the_mask(mask):
    polys = g.mask_to_polygons(mask)
    assert polys and all(len(p) % 2 == 0 and len(p) >= 6 for p in polys)
    back = g.decode(polys, H, W).astype(bool)
    kernel = np.ones((3, 3), np.uint8)
    interior = cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    near = cv2.dilate(mask, kernel).astype(bool)
    assert not (interior & ~back).any()  # pixel-centre contours lose at most the outer ring
    assert not (back & ~near).any()      # and add nothing beyond one pixel (tiny-part rectangles)
    assert back.any()                    # no object vanishes


@given(st.lists(rectangles(), min_size=2, max_size=3))
def test_merged_parts_keep_every_vertex_and_the_union(rects):
    parts = [rect_polygon(*r) for r in rects]
    merged = g.merge_polygon_parts(parts)
    pts = {(merged[i], merged[i + 1]) for i in range(0, len(merged), 2)}
    for p in parts:
        assert {(p[i], p[i + 1]) for i in range(0, len(p), 2)} <= pts
    union = g.decode(parts, H, W).astype(bool)
    merged_mask = g.decode([merged], H, W).astype(bool)
    # bridges are zero-width: they may add a one-pixel line, nothing more; parts may overlap,
    # and an even-odd fill can drop overlaps, so compare against the union with that slack
    assert (merged_mask & ~union).sum() <= 2 * (W + H) * len(parts)
    assert (union & ~merged_mask).sum() <= sum((r[2] - r[0]) * (r[3] - r[1]) for r in rects) - union.sum() + 2 * (W + H) * len(parts)


def test_merge_rejects_parts_without_three_points():
    with pytest.raises(ValueError):
        g.merge_polygon_parts([[1, 2, 3, 4]])


@given(st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50), st.floats(0, 50), st.floats(0, 50)), min_size=1, max_size=5))
def test_xywh_to_xyxy(boxes):
    arr = np.array(boxes)
    out = g.xywh_to_xyxy(arr)
    assert np.allclose(out[:, :2], arr[:, :2]) and np.allclose(out[:, 2:], arr[:, :2] + arr[:, 2:])


def test_segmentation_kind_errors():
    assert g.segmentation_kind([]) == g.NONE and g.segmentation_kind(None) == g.NONE
    with pytest.raises(ValueError):
        g.segmentation_kind("abc")


def test_a_line_with_a_one_pixel_spur_does_not_vanish():
    """Found by hypothesis in CI: its contour (area 1, a sliver between pixel centres) rasterises to nothing."""
    mask = np.zeros((H, W), np.uint8)
    mask[8, 0:35] = 1
    mask[9, 33] = 1
    back = g.decode(g.mask_to_polygons(mask), H, W).astype(bool)
    assert back[8, 0:35].all() and back[9, 33]
    assert not (back & ~cv2.dilate(mask, np.ones((3, 3), np.uint8)).astype(bool)).any()


def test_an_l_shaped_sliver_keeps_exactly_its_pixels():
    """Found by hypothesis: a line with a two-pixel spur; its bounding rectangle would add a row."""
    mask = np.zeros((H, W), np.uint8)
    mask[8, 0:34] = 1
    mask[9:11, 33] = 1
    assert np.array_equal(g.decode(g.mask_to_polygons(mask), H, W), mask)
