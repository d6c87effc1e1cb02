"""Evaluation splits and augmentations."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gmtrace.data.augment import Augmenter, blur, crop, format_neutral, jpeg, resize
from gmtrace.data.splits import gm_folds, source_folds


def test_gm_folds_partition_and_stratify():
    names = [f"{f}_{i}" for f in ("dcgan", "vae", "unet") for i in range(5)] + ["mmd_0"]
    families = [n.split("_")[0] for n in names]
    folds = gm_folds(names, families, k=4, seed=0)
    flat = [n for f in folds for n in f]
    assert sorted(flat) == sorted(names) and len(flat) == len(set(flat))
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    for f in folds:  # 5 GMs of a family over 4 folds: every fold holds 1 or 2
        counts = Counter(n.split("_")[0] for n in f)
        assert all(1 <= counts[fam] <= 2 for fam in ("dcgan", "vae", "unet"))
    assert gm_folds(names, families, k=4, seed=0) == folds
    assert gm_folds(names, families, k=4, seed=1) != folds
    with pytest.raises(ValueError, match="folds"):
        gm_folds(names, families, k=1)
    with pytest.raises(ValueError, match="unique"):
        gm_folds(["a", "a"], ["x", "x"], k=2)


def test_source_folds_keep_crops_of_a_photo_together():
    sources = ["p1", "p1", "p2", "p3", "p3", "p4", "p5", "p6"]
    domains = ["a", "a", "a", "b", "b", "b", "c", "c"]
    folds = source_folds(sources, domains, k=3)
    flat = [s for f in folds for s in f]
    assert sorted(flat) == ["p1", "p2", "p3", "p4", "p5", "p6"]  # each source once
    with pytest.raises(ValueError, match="source photographs"):
        source_folds(sources, domains, k=7)


def checker(size=64) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    img = (((x // 2 + y // 2) % 2) * 200 + 30).astype(np.uint8)
    return np.repeat(img[..., None], 3, axis=2)


def hf_energy(img: np.ndarray) -> float:
    g = img.astype(np.float64).mean(axis=2)
    return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())


def test_basic_transforms():
    img = checker()
    assert resize(img, 0.5).shape == (32, 32, 3) and resize(img, 1.5).shape == (96, 96, 3)
    assert blur(img, 1.0).shape == img.shape and hf_energy(blur(img, 1.0)) < hf_energy(img)
    assert blur(img, 0) is img
    err = [np.abs(jpeg(img, q).astype(int) - img).mean() for q in (30, 60, 95)]
    assert err[0] > err[1] > err[2] > 0
    assert crop(img, 16).shape == (16, 16, 3)
    assert np.array_equal(crop(img, 16), img[24:40, 24:40])
    small = img[:10, :12]
    assert crop(small, 16).shape == (16, 16, 3)


def test_augmenter_is_seeded_and_sized():
    img = checker(80)
    aug = Augmenter(size=48, p_resize=1.0, p_blur=1.0, p_jpeg=1.0)
    a = aug(img, np.random.default_rng(3))
    b = aug(img, np.random.default_rng(3))
    c = aug(img, np.random.default_rng(4))
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # a down-scale by 0.5 of an 80 px image still yields a 48 px crop (padding)
    tiny = Augmenter(size=48, p_resize=1.0, scale=(0.5, 0.5), p_blur=0, p_jpeg=0)
    assert tiny(img, np.random.default_rng(0)).shape == (48, 48, 3)


def test_format_neutral_treats_sizes_alike():
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (128, 160, 3), dtype=np.uint8)
    small = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for img in (big, small):
        out = format_neutral(img, 64, 90)
        assert out.shape == (64, 64, 3)
    # already 64 px: only the JPEG step changes it
    assert np.array_equal(format_neutral(small, 64, 90), jpeg(small, 90))
