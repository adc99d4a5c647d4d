"""Pure pixel operations: resizing objects, the three blends (no halo, alignment), mixup, codecs."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import DEMO

from ltaug.pixels.functional import decode_image, encode_jpeg, feather_alpha, mix, paste_object, resize_object

IMAGES = sorted((DEMO / "images" / "train").iterdir())


def photo(i: int = 0) -> np.ndarray:
    return cv2.imread(str(IMAGES[i]), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)


def ellipse_mask(h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (w // 2, h // 2), (max(1, w // 2 - 1), max(1, h // 2 - 1)), 0, 0, 360, 1, -1)
    return m


def laplacian(img: np.ndarray) -> np.ndarray:
    return cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32), cv2.CV_32F)


def test_resize_object_same_size_and_flip():
    img = photo()[:30, :40].copy()
    mask = ellipse_mask(30, 40)
    crop, m = resize_object(img, mask, 40, 30)
    assert np.array_equal(crop, img) and np.array_equal(m, mask)
    crop, m = resize_object(img, mask, 40, 30, flip=True)
    assert np.array_equal(crop, img[:, ::-1]) and np.array_equal(m, mask[:, ::-1])
    crop, m = resize_object(img, mask, 80, 60)
    assert crop.shape == (60, 80, 3) and m.shape == (60, 80) and set(np.unique(m)) <= {0, 1}
    # the doubled mask covers about 4x the pixels
    assert abs(m.sum() / (4 * mask.sum()) - 1) < 0.05


def test_feather_alpha_is_zero_outside_and_one_deep_inside():
    mask = ellipse_mask(60, 80)
    alpha = feather_alpha(mask, 2.0)
    assert alpha.dtype == np.float32 and alpha.max() <= 1.0
    assert np.all(alpha[mask == 0] == 0)
    deep = cv2.erode(mask, np.ones((17, 17), np.uint8)).astype(bool)  # 8 px = 4 sigma inside
    assert np.all(alpha[deep] > 0.999)
    edge = mask.astype(bool) & ~cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
    assert alpha[edge].max() < 0.9  # the boundary is feathered
    assert np.array_equal(feather_alpha(mask, 0), mask.astype(np.float32))


@pytest.mark.parametrize("blend", ["hard", "gaussian", "poisson"])
def test_no_pixel_outside_the_mask_changes(blend):
    dst, src = photo(0), photo(1)
    h, w, x, y = 70, 90, 120, 100
    obj, mask = src[40:40 + h, 50:50 + w].copy(), ellipse_mask(h, w)
    before = dst.copy()
    used = paste_object(dst, obj, mask, x, y, blend, sigma=1.5)
    assert used == blend
    outside = np.ones(dst.shape[:2], bool)
    outside[y:y + h, x:x + w] = mask == 0
    assert np.array_equal(dst[outside], before[outside])  # no halo of the source background
    region = dst[y:y + h, x:x + w]
    if blend == "hard":
        assert np.array_equal(region[mask == 1], obj[mask == 1])
    if blend == "gaussian":
        deep = cv2.erode(mask, np.ones((13, 13), np.uint8)).astype(bool)
        assert np.abs(region[deep].astype(int) - obj[deep]).max() <= 1


def test_poisson_keeps_the_object_in_place():
    """Poisson blending transfers the object's gradients at the right place: the pasted region's
    Laplacian matches the object's far better than the untouched background's does."""
    dst, src = photo(0), photo(1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        h, w = (int(v) for v in rng.integers(20, 80, 2))
        x, y = int(rng.integers(3, dst.shape[1] - w - 3)), int(rng.integers(3, dst.shape[0] - h - 3))
        obj, mask = src[10:10 + h, 20:20 + w].copy(), ellipse_mask(h, w)
        inner = cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(bool)
        out = dst.copy()
        assert paste_object(out, obj, mask, x, y, "poisson") == "poisson"
        err = np.abs(laplacian(out[y:y + h, x:x + w])[inner] - laplacian(obj)[inner]).mean()
        untouched = np.abs(laplacian(dst[y:y + h, x:x + w])[inner] - laplacian(obj)[inner]).mean()
        assert err < 0.5 * untouched


def test_poisson_falls_back_at_the_border():
    dst = photo(0)
    obj, mask = photo(1)[:20, :20].copy(), ellipse_mask(20, 20)
    assert paste_object(dst, obj, mask, 0, 5, "poisson") == "gaussian"
    assert paste_object(dst, obj, mask, dst.shape[1] - 21, 5, "poisson") == "gaussian"
    tiny = np.ones((1, 5), np.uint8)  # OpenCV 5.0 seamlessClone asserts on a mask one pixel high
    assert paste_object(dst, obj[:1, :5].copy(), tiny, 50, 50, "poisson") == "gaussian"
    with pytest.raises(ValueError, match="not inside"):
        paste_object(dst, obj, mask, dst.shape[1] - 10, 5, "hard")


def test_mix_endpoints_and_midpoint():
    a, b = photo(0)[:100, :100], photo(1)[:100, :100]
    assert np.array_equal(mix(a, b, 1.0), a) and np.array_equal(mix(a, b, 0.0), b)
    mid = mix(a, b, 0.5).astype(int)
    assert np.abs(mid - (a.astype(int) + b) / 2).max() <= 1


def test_jpeg_round_trip_is_close_and_deterministic():
    img = photo(2)
    data = encode_jpeg(img)
    assert data == encode_jpeg(img)
    back = decode_image(data)
    mse = np.mean((back.astype(float) - img) ** 2)
    assert back.shape == img.shape and 10 * np.log10(255 ** 2 / mse) > 30  # PSNR in dB
    assert decode_image(b"not a jpeg") is None
