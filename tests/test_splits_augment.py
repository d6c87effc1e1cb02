"""Evaluation splits and augmentations."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gmtrace.data.augment import CONDITIONS, Augmenter, blur, crop, format_neutral, jpeg, resize
from gmtrace.data.splits import collection_folds, family_folds, gm_folds, source_folds


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


def test_family_folds_hold_out_whole_families():
    sizes = {"dcgan": 6, "vae": 5, "unet": 4, "mmd": 3, "stylegan": 2}
    names = [f"{f}_{i}" for f, n in sizes.items() for i in range(n)]
    families = [n.rsplit("_", 1)[0] for n in names]
    folds = family_folds(names, families, k=3, seed=0)
    assert sorted(n for f in folds for n in f) == sorted(names)
    fams = [{n.rsplit("_", 1)[0] for n in f} for f in folds]
    for i, a in enumerate(fams):  # a family lies in one fold only
        for b in fams[i + 1 :]:
            assert not a & b
    # largest first to the smallest fold: {dcgan}, {vae, stylegan}, {unet, mmd}
    assert sorted(map(len, folds)) == [6, 7, 7]
    with pytest.raises(ValueError, match="number of families"):
        family_folds(names, families, k=6)


def test_collection_folds_hold_out_whole_collections():
    sources = [f"{c}.{i}" for c in ("deb_a", "deb_b", "embedded") for i in range(4)]
    colls = [s.split(".")[0] for s in sources]
    folds = collection_folds(sources, colls, k=3, seed=0)
    held = [{s.split(".")[0] for s in f} for f in folds]
    assert all(len(h) == 1 for h in held) and set().union(*held) == set(colls)
    assert all(len(f) == 4 for f in folds)  # every photo of the collection
    # more folds than collections: a collection is tested in more than one fold
    folds4 = collection_folds(sources, colls, k=4, seed=0)
    assert all(len({s.split(".")[0] for s in f}) == 1 for f in folds4)
    # more collections than folds: fold i holds out collections i, i + k, ...
    folds2 = collection_folds(sources, colls, k=2, seed=0)
    assert sorted(s for f in folds2 for s in f) == sorted(sources)
    with pytest.raises(ValueError, match="at least 2 collections"):
        collection_folds(["a", "b"], ["x", "x"], k=2)


def test_robustness_conditions_change_images_alike():
    rng = np.random.default_rng(0)
    img = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    assert set(CONDITIONS) == {"jpeg95", "jpeg75", "jpeg50", "resize50"}
    assert CONDITIONS["resize50"][1](img).shape == (32, 32, 3)
    err = {q: np.abs(CONDITIONS[f"jpeg{q}"][1](img).astype(int) - img).mean() for q in (95, 75, 50)}
    assert 0 < err[95] < err[75] < err[50]  # lower quality, larger change


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
