"""Blending beyond feathering: mixed-gradient Poisson cloning, LAB colour harmonisation, mode comparison."""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
from conftest import DEMO

from ltaug import ops
from ltaug.pixels.blend_compare import MODES, blend_comparison, labelled_grid, parse_mode
from ltaug.pixels.blending import HARMONIZE, band_mask, harmonize, lab_stats
from ltaug.pixels.functional import BLENDS, paste_object

IMAGES = sorted((DEMO / "images" / "train").iterdir())


def photo(i: int) -> np.ndarray:
    return cv2.imread(str(IMAGES[i]), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)


def ellipse_mask(h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (w // 2, h // 2), (max(1, w // 2 - 1), max(1, h // 2 - 1)), 0, 0, 360, 1, -1)
    return m


def gradient_energy(img: np.ndarray, where: np.ndarray) -> float:
    """Mean squared Sobel gradient magnitude of the grey image over ``where``."""
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    return float((gx * gx + gy * gy)[where].mean())


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A grey grating with noise: strong gradients everywhere."""
    yy, xx = np.mgrid[:h, :w]
    noise = np.random.default_rng(seed).normal(0, 10, (h, w))
    tex = (128 + 60 * np.sin(xx / 2.0) * np.cos(yy / 3.0) + noise).clip(0, 255).astype(np.uint8)
    return cv2.merge([tex, tex, tex])


def scene(blend: str, **kw) -> tuple[np.ndarray, list[str]]:
    """Six objects of photo 1 pasted into photo 0 at seeded places (the last at x = 0)."""
    dst, src = photo(0), photo(1)
    rng = np.random.default_rng(7)
    used = []
    for k in range(6):
        h, w = (int(v) for v in rng.integers(12, 90, 2))
        x, y = int(rng.integers(0, dst.shape[1] - w + 1)), int(rng.integers(0, dst.shape[0] - h + 1))
        x = 0 if k == 5 else x
        sx, sy = int(rng.integers(0, src.shape[1] - w + 1)), int(rng.integers(0, src.shape[0] - h + 1))
        used.append(paste_object(dst, src[sy:sy + h, sx:sx + w].copy(), ellipse_mask(h, w), x, y, blend,
                                 sigma=1.5, **kw))
    return dst, used


# sha256 of scene(blend) from paste_object as it was before harmonisation and mixed cloning
# (commit e069ae8, OpenCV 5.1.0): harmonize="none" must leave every byte as it was.
PINNED = {"hard": "be1632a0ad12263e767fd197cbaa4ac92401aeb36755ff66c9253d6c03ab9bce",
          "gaussian": "f69f504fb86c285602aff34d8dee306ea34dc434256d71efe0781971639ea400",
          "poisson": "909e6566664823f277c6b53027bd967232599cf013d5728f9744e13971dec345"}


@pytest.mark.parametrize("blend", sorted(PINNED))
@pytest.mark.parametrize("kw", [{}, {"harmonize": "none"}, {"harmonize": "none", "band": 3}])
def test_harmonize_none_keeps_the_bytes(blend, kw):
    out, used = scene(blend, **kw)
    assert hashlib.sha256(out.tobytes()).hexdigest() == PINNED[blend]
    assert used[-1] == ("hard" if blend == "hard" else "gaussian")  # x = 0: poisson falls back


def test_new_choices_reach_the_registry():
    assert "poisson_mixed" in BLENDS and HARMONIZE == ("none", "lab")
    assert ops.Paste(blend="poisson_mixed").blend == "poisson_mixed"
    dst, obj, mask = photo(0), photo(1)[:20, :20].copy(), ellipse_mask(20, 20)
    with pytest.raises(ValueError, match="harmonize must be one of none, lab"):
        paste_object(dst, obj, mask, 50, 50, "gaussian", harmonize="reinhard")
    with pytest.raises(ValueError, match="poisson_mixed"):
        paste_object(dst, obj, mask, 50, 50, "feather")


@pytest.mark.parametrize("mode", ["poisson_mixed", "hard+lab", "gaussian+lab", "poisson+lab", "poisson_mixed+lab"])
def test_no_pixel_outside_the_mask_changes(mode):
    blend, harm = parse_mode(mode)
    dst, src = photo(0), photo(1)
    h, w, x, y = 70, 90, 120, 100
    obj, mask = src[40:40 + h, 50:50 + w].copy(), ellipse_mask(h, w)
    before = dst.copy()
    assert paste_object(dst, obj, mask, x, y, blend, 1.5, harmonize=harm) == blend
    outside = np.ones(dst.shape[:2], bool)
    outside[y:y + h, x:x + w] = mask == 0
    assert np.array_equal(dst[outside], before[outside])
    assert not np.array_equal(dst, before)


def test_mixed_clone_keeps_the_targets_texture():
    """A flat object on a textured target: normal cloning smooths the texture away inside the
    mask (the object has no gradients); mixed cloning keeps the target's stronger gradients."""
    target = textured(200, 300)
    h, w, x, y = 60, 80, 100, 70
    obj, mask = np.full((h, w, 3), (40, 90, 160), np.uint8), ellipse_mask(h, w)
    inner = cv2.erode(mask, np.ones((7, 7), np.uint8)).astype(bool)
    out = {}
    for blend in ("poisson", "poisson_mixed"):
        out[blend] = target.copy()
        assert paste_object(out[blend], obj, mask, x, y, blend) == blend
    e = {k: gradient_energy(v[y:y + h, x:x + w], inner) for k, v in out.items()}
    original = gradient_energy(target[y:y + h, x:x + w], inner)
    assert e["poisson_mixed"] > 5 * e["poisson"]
    assert e["poisson_mixed"] > 0.8 * original  # about all of it: measured 1.00x against 0.03x
    diff = np.abs(out["poisson_mixed"].astype(int) - out["poisson"])[y:y + h, x:x + w][inner]
    assert diff.mean() > 10


def test_mixed_clone_keeps_the_objects_strong_edges():
    """Where the object's gradients are the stronger (a textured object on a flat target), mixed
    cloning takes the object's: it then agrees with normal cloning inside the mask."""
    target = np.full((200, 300, 3), 120, np.uint8)
    h, w, x, y = 60, 80, 100, 70
    obj, mask = textured(h, w, seed=1), ellipse_mask(h, w)
    inner = cv2.erode(mask, np.ones((7, 7), np.uint8)).astype(bool)
    a, b = target.copy(), target.copy()
    paste_object(a, obj, mask, x, y, "poisson")
    paste_object(b, obj, mask, x, y, "poisson_mixed")
    ea, eb = gradient_energy(a[y:y + h, x:x + w], inner), gradient_energy(b[y:y + h, x:x + w], inner)
    assert abs(eb / ea - 1) < 0.05


def test_mixed_clone_falls_back_at_the_border():
    dst = photo(0)
    obj, mask = photo(1)[:20, :20].copy(), ellipse_mask(20, 20)
    for x, y in [(0, 5), (dst.shape[1] - 21, 5), (30, 1), (30, dst.shape[0] - 21)]:
        a, b = dst.copy(), dst.copy()
        assert paste_object(a, obj, mask, x, y, "poisson_mixed", 1.5) == "gaussian"
        paste_object(b, obj, mask, x, y, "gaussian", 1.5)
        assert np.array_equal(a, b)  # the fallback is exactly the gaussian blend
    assert paste_object(dst.copy(), obj, mask, 2, 2, "poisson_mixed") == "poisson_mixed"  # 2 px is enough
    tiny = np.ones((1, 5), np.uint8)  # OpenCV 5 seamlessClone asserts on a mask one pixel high
    assert paste_object(dst.copy(), obj[:1, :5].copy(), tiny, 50, 50, "poisson_mixed") == "gaussian"
    assert paste_object(dst.copy(), obj, np.zeros_like(mask), 50, 50, "poisson_mixed") == "gaussian"


def test_band_is_the_dilated_mask_minus_the_mask_inside_the_image():
    H, W, band = 120, 160, 6
    mask = ellipse_mask(30, 40)
    for x, y in [(0, 0), (W - 40, H - 30), (60, 45), (3, 80)]:
        (rows, cols), ring = band_mask(mask, x, y, H, W, band)
        full = np.zeros((H, W), np.uint8)
        full[y:y + 30, x:x + 40] = mask
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
        want = (cv2.dilate(full, disc) > 0) & (full == 0)  # on the whole image: no border to get wrong
        assert np.array_equal(ring, want[rows, cols]) and not want[~_window(H, W, rows, cols)].any()
        dist = cv2.distanceTransform(1 - full, cv2.DIST_L2, 5)
        assert dist[rows, cols][ring].max() <= band + 0.5 and dist[rows, cols][ring].min() >= 1


def _window(H, W, rows, cols):
    w = np.zeros((H, W), bool)
    w[rows, cols] = True
    return w


def test_lab_harmonisation_moves_the_object_toward_the_band():
    dst, src = photo(0), photo(1)
    h, w = 60, 80
    obj, mask = src[30:30 + h, 40:40 + w].copy(), ellipse_mask(h, w)
    inside = mask.astype(bool)
    lab = lambda img: cv2.cvtColor(img, cv2.COLOR_BGR2LAB)  # noqa: E731
    for x, y in [(100, 100), (300, 200), (0, 0)]:
        (rows, cols), ring = band_mask(mask, x, y, *dst.shape[:2], 8)
        mu_b, sd_b = lab_stats(lab(dst)[rows, cols], ring)
        mu0, sd0 = lab_stats(lab(obj), inside)
        out = harmonize(obj, mask, dst, x, y, 8)
        mu1, sd1 = lab_stats(lab(out), inside)
        assert np.linalg.norm(mu1 - mu_b) < 0.1 * np.linalg.norm(mu0 - mu_b)
        assert np.linalg.norm(sd1 - sd_b) < 0.5 * np.linalg.norm(sd0 - sd_b)
        # pasted: the object's pixels in the image are nearer the band than without harmonisation
        a, b = dst.copy(), dst.copy()
        paste_object(a, obj, mask, x, y, "gaussian")
        paste_object(b, obj, mask, x, y, "gaussian", harmonize="lab", band=8)
        deep = cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(bool)
        far = np.linalg.norm(lab_stats(lab(a[y:y + h, x:x + w]), deep)[0] - mu_b)
        near = np.linalg.norm(lab_stats(lab(b[y:y + h, x:x + w]), deep)[0] - mu_b)
        assert near < 0.2 * far


def test_lab_harmonisation_reads_only_the_band_and_guards_flat_objects():
    # the band sees one colour (the rest of the image is another): the object's mean becomes it
    img = np.zeros((100, 100, 3), np.uint8)
    img[:] = (200, 30, 30)  # far away, must not count
    img[:40, :50] = (40, 160, 90)  # the object at (0, 0) is 30 x 40 px; its 8 px band lies in here
    obj = textured(30, 40)
    mask = np.ones((30, 40), np.uint8)
    out = harmonize(obj, mask, img, 0, 0, 8)
    want = cv2.cvtColor(np.array([[[40, 160, 90]]], np.uint8), cv2.COLOR_BGR2LAB)[0, 0].astype(float)
    mu, sd = lab_stats(cv2.cvtColor(out, cv2.COLOR_BGR2LAB), mask.astype(bool))
    sd0 = lab_stats(cv2.cvtColor(obj, cv2.COLOR_BGR2LAB), mask.astype(bool))[1]
    assert np.abs(mu - want).max() < 2
    assert sd[0] == pytest.approx(sd0[0] / 2, abs=1)  # sigma_band = 0: s clipped at 1/2, not 0
    # a flat object in a busy band stays flat (s = 2 times nothing), its colour moves
    flat = np.full((30, 40, 3), (10, 200, 10), np.uint8)
    busy = textured(100, 100)
    out = harmonize(flat, mask, busy, 30, 30, 8)
    assert lab_stats(cv2.cvtColor(out, cv2.COLOR_BGR2LAB), mask.astype(bool))[1].max() < 1
    assert not np.array_equal(out, flat)


def test_lab_harmonisation_edge_cases_and_channel_order():
    dst, src = photo(2), photo(3)
    obj, mask = src[50:110, 60:140].copy(), ellipse_mask(60, 80)
    # nothing around the object to match: returned as it is
    whole = np.ones(dst.shape[:2], np.uint8)
    other = dst[::-1].copy()
    assert harmonize(other, whole, dst, 0, 0) is other
    with pytest.raises(ValueError, match="not inside"):
        harmonize(obj, mask, dst, dst.shape[1] - 10, 0)
    assert harmonize(obj, np.zeros_like(mask), dst, 10, 10) is obj
    with pytest.raises(ValueError, match="band"):
        harmonize(obj, mask, dst, 10, 10, 0)
    # RGB arrays give the RGB of the same result
    bgr = harmonize(obj, mask, dst, 200, 150, 10)
    rgb = harmonize(obj[..., ::-1].copy(), mask, dst[..., ::-1].copy(), 200, 150, 10, rgb=True)
    assert np.array_equal(rgb, bgr[..., ::-1])
    assert not np.array_equal(harmonize(obj[..., ::-1].copy(), mask, dst[..., ::-1].copy(), 200, 150, 10),
                              bgr[..., ::-1])  # the flag matters


@pytest.mark.parametrize("mode", MODES + ("poisson_mixed+lab", "hard"))
def test_every_mode_is_deterministic(mode):
    blend, harm = parse_mode(mode)
    a, used_a = scene(blend, harmonize=harm)
    b, used_b = scene(blend, harmonize=harm)
    assert np.array_equal(a, b) and used_a == used_b


def test_blend_comparison_pastes_the_same_objects_per_mode():
    image, src = photo(4), photo(5)
    objects = [(src[10:70, 20:100].copy(), ellipse_mask(60, 80), 40, 30),
               (src[100:140, 100:150].copy(), ellipse_mask(40, 50), 0, 100),  # at the border
               (src[150:200, 30:90].copy(), ellipse_mask(50, 60), 200, 150)]
    before = image.copy()
    modes = ("gaussian", "poisson", "poisson_mixed", "gaussian+lab")
    result = blend_comparison(image, objects, modes, sigma=1.5, band=6)
    assert np.array_equal(image, before) and len(result) == 4
    for mode, (out, used) in zip(modes, result):
        blend, harm = parse_mode(mode)
        want = image.copy()
        for obj, mask, x, y in objects:
            paste_object(want, obj, mask, x, y, blend, 1.5, harmonize=harm, band=6)
        assert np.array_equal(out, want)
        assert used == ([blend, "gaussian", blend] if blend.startswith("poisson") else [blend] * 3)
    assert len({r[0].tobytes() for r in result}) == 4  # four different pictures
    with pytest.raises(ValueError, match="BLEND or BLEND"):
        parse_mode("gaussian+hsv")
    grid = labelled_grid([r[0] for r in result], list(modes), cols=2, tile_width=200)
    th = round(image.shape[0] * 200 / image.shape[1])
    assert grid.shape == (2 * (22 + th), 400, 3) and grid.dtype == np.uint8
    assert labelled_grid([image] * 3, ["a", "b", "c"], cols=2, tile_width=100)[-5:, -50:].min() == 255  # blank cell
