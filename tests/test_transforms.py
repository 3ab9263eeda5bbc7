"""Preprocessing and augmentation against references (Pillow for equalisation)."""
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageOps

from helpers import seeds
from nnzero.transforms import (Compose, MinMaxScaler, RandomCrop, RandomHorizontalFlip,
                               Standardize, equalize_hist, minmax_scale)


@given(h=st.integers(1, 30), w=st.integers(1, 30), kind=st.sampled_from(
    ["uniform", "narrow", "gauss", "two", "const"]), rgb=st.booleans(), seed=seeds())
def test_equalize_equals_pillow(h, w, kind, rgb, seed):
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if rgb else (h, w)
    img = {"uniform": lambda: rng.integers(0, 256, shape),
           "narrow": lambda: rng.integers(100, 110, shape),
           "gauss": lambda: np.clip(rng.normal(128, 30, shape), 0, 255),
           "two": lambda: rng.choice([3, 200], shape),
           "const": lambda: np.full(shape, 77)}[kind]().astype(np.uint8)
    expected = np.asarray(ImageOps.equalize(Image.fromarray(img)))
    np.testing.assert_array_equal(equalize_hist(img), expected)


def test_equalize_on_the_real_photo_and_errors():
    with Image.open(Path(__file__).parent.parent / "data" / "flower.jpg") as src:
        img = np.asarray(src.convert("L"))
    np.testing.assert_array_equal(equalize_hist(img),
                                  np.asarray(ImageOps.equalize(Image.fromarray(img))))
    with pytest.raises(TypeError, match="uint8"):
        equalize_hist(img.astype(np.float32))


def test_minmax_scaling():
    x = np.array([[2.0, 4.0, 6.0]])
    np.testing.assert_allclose(minmax_scale(x), [[0, 0.5, 1]])
    np.testing.assert_allclose(minmax_scale(x, (-1, 1)), [[-1, 0, 1]])
    np.testing.assert_allclose(minmax_scale(np.full((2, 2), 3.0)), 0)  # constant -> a
    train = np.random.default_rng(0).uniform(5, 9, (10, 2, 3, 3))
    scaler = MinMaxScaler().fit(train)
    out = scaler.transform(train)
    np.testing.assert_allclose(out.min(axis=(0, 2, 3)), 0)
    np.testing.assert_allclose(out.max(axis=(0, 2, 3)), 1)
    assert scaler.transform(np.full((1, 2, 1, 1), 100.0)).max() > 1  # test data: train's scale


def test_standardize_fits_on_train_and_inverts():
    rng = np.random.default_rng(0)
    train = rng.normal([[[[1.0]], [[5.0]]]], [[[[2.0]], [[0.5]]]], (200, 2, 4, 4))
    s = Standardize().fit(train)
    z = s.transform(train)
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, rtol=1e-12)
    np.testing.assert_allclose(s.inverse_transform(z), train)
    flat = Standardize().fit(np.ones((3, 1, 2, 2)))
    np.testing.assert_allclose(flat.std_, [1.0])  # fitted zero std -> 1
    with pytest.raises(ValueError, match="std must be non-zero"):
        Standardize(mean=[0.5], std=[0.0])
    fixed = Standardize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    np.testing.assert_allclose(fixed(np.full((1, 3, 1, 1), 0.485))[0, 0], 0, atol=1e-7)


def test_random_crop_and_flip():
    x = np.arange(2 * 1 * 4 * 4, dtype=np.float64).reshape(2, 1, 4, 4)
    same = RandomCrop(4, padding=0, rng=0)(x)
    np.testing.assert_array_equal(same, x)
    crops = RandomCrop(4, padding=1, rng=1)(np.repeat(x, 50, axis=0))
    assert crops.shape == (100, 1, 4, 4)
    # every crop is a shifted window of the zero-padded image
    padded = np.pad(np.repeat(x, 50, axis=0), ((0, 0), (0, 0), (1, 1), (1, 1)))
    for k in range(0, 100, 17):
        assert any(np.array_equal(crops[k, 0], padded[k, 0, a:a + 4, b:b + 4])
                   for a in range(3) for b in range(3))
    flips = RandomHorizontalFlip(p=1.0, rng=0)(x)
    np.testing.assert_array_equal(flips, x[..., ::-1])
    none = Compose([RandomHorizontalFlip(p=0.0, rng=0)])(x)
    np.testing.assert_array_equal(none, x)
    with pytest.raises(ValueError, match="larger than the padded input"):
        RandomCrop(7, padding=1)(x)
