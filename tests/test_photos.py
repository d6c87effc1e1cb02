"""The catalog of real photographs from Debian packages, and its loader."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gmtrace.zoo.photos import (
    CATALOG,
    MAX_SHORT_SIDE,
    CatalogEntry,
    Photo,
    catalog,
    load_catalog,
    photo_names,
    short_name,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install_photos.sh"
DOMAINS = {"people", "animals", "objects", "scenes", "textures", "science", "plants", "buildings"}
# Two wallpaper packages that independent checks use; they must stay out of the
# project, so not even their names are written here (SHA-256 of each name).
BANNED_SHA256 = {
    "bc15b2c541ef0fd531147a4b2273ebbdfd46766ed4e639a11b87d94f96fa8fe2",
    "1f4c7eefd27b2455ec9f7ddea8204a6d6cead380d22cdd3edfa1ab87c153d22c",
}


def is_banned(package: str) -> bool:
    return hashlib.sha256(package.encode()).hexdigest() in BANNED_SHA256


def script_packages() -> set[str]:
    m = re.search(r"^PACKAGES=\((.*?)^\)", SCRIPT.read_text(), re.S | re.M)
    assert m, "scripts/install_photos.sh has no PACKAGES=( ... ) list"
    return {line.strip() for line in m.group(1).splitlines() if line.strip()}


def test_catalog_parses_with_known_values():
    entries = catalog()
    assert entries and all(isinstance(e, CatalogEntry) for e in entries)
    for e in entries:
        assert re.fullmatch(r"(deb|pypi):[a-z0-9][a-z0-9.+-]*", e.collection), e
        assert e.domain in DOMAINS, e
        assert e.licence, e
        if e.collection.startswith("deb:"):
            assert Path(e.path).is_absolute(), e
        else:
            assert not Path(e.path).is_absolute(), e


def test_catalog_size_and_collections():
    entries = catalog()
    assert len(entries) >= 300
    assert len({e.collection for e in entries}) >= 3


def test_paths_and_names_unique():
    entries = catalog()
    paths = [e.path for e in entries]
    assert len(set(paths)) == len(paths)
    names = photo_names(entries)
    assert len(set(names)) == len(names)


def test_no_banned_package():
    used = {short_name(e.collection) for e in catalog()} | script_packages()
    assert not [p for p in used if is_banned(p)]
    words = re.split(r"[^A-Za-z0-9.+-]+", CATALOG.read_text() + SCRIPT.read_text())
    assert not [w for w in words if is_banned(w)]


def test_installed_files_belong_to_their_collection():
    present = [e for e in catalog() if e.collection.startswith("deb:") and Path(e.path).is_file()]
    if not present or shutil.which("dpkg-query") is None:
        pytest.skip("no photo package installed (run scripts/install_photos.sh)")
    out = subprocess.run(
        ["dpkg-query", "-S", *[e.path for e in present]], capture_output=True, text=True
    ).stdout
    owner = {}
    for line in out.splitlines():
        packages, _, path = line.partition(": ")
        owner[path] = {p.strip().split(":")[0] for p in packages.split(",")}
    for e in present:
        assert short_name(e.collection) in owner.get(e.path, set()), e
        assert not any(is_banned(p) for p in owner.get(e.path, set())), e


def test_every_deb_collection_is_installed_by_the_script():
    packages = script_packages()
    needed = {short_name(e.collection) for e in catalog() if e.collection.startswith("deb:")}
    assert needed <= packages, needed - packages
    assert packages <= needed, f"installed but unused: {packages - needed}"


def test_installed_files_are_distinct_and_large_enough():
    present = [e for e in catalog() if e.collection.startswith("deb:") and Path(e.path).is_file()]
    if not present:
        pytest.skip("no photo package installed (run scripts/install_photos.sh)")
    real = [os.path.realpath(e.path) for e in present]
    assert len(set(real)) == len(real), "two entries are the same file (symlinked resolutions)"
    for e in present:
        with Image.open(e.path) as im:
            assert min(im.size) >= 256, e


def test_load_catalog_a_few_entries():
    picks: dict[str, CatalogEntry] = {}  # the smallest installed file of each collection
    for e in catalog():
        if Path(e.path).is_file() and (
            e.collection not in picks
            or os.path.getsize(e.path) < os.path.getsize(picks[e.collection].path)
        ):
            picks[e.collection] = e
    if not picks:
        pytest.skip("no photo package installed (run scripts/install_photos.sh)")
    photos, failures = load_catalog(entries=list(picks.values()))
    assert failures == []
    assert [p.collection for p in photos] == list(picks)
    for p, e in zip(photos, picks.values(), strict=True):
        assert isinstance(p, Photo) and p.domain == e.domain
        assert p.name.startswith(short_name(e.collection) + ".")
        assert p.pixels.dtype == np.uint8 and p.pixels.ndim == 3 and p.pixels.shape[2] == 3
        assert min(p.pixels.shape[:2]) <= MAX_SHORT_SIDE


def test_load_catalog_filters_by_collection(tmp_path):
    for c in ("deb:a", "deb:b"):
        Image.new("RGB", (40, 50), (10, 20, 30)).save(tmp_path / f"{c[4:]}.png")
    entries = [
        CatalogEntry("deb:a", str(tmp_path / "a.png"), "objects", "CC0-1.0"),
        CatalogEntry("deb:b", str(tmp_path / "b.png"), "scenes", "CC0-1.0"),
    ]
    photos, failures = load_catalog(collections={"b"}, entries=entries)
    assert failures == [] and [(p.name, p.collection) for p in photos] == [("b.b", "deb:b")]
    photos, _ = load_catalog(collections={"deb:a"}, entries=entries)
    assert [p.name for p in photos] == ["a.a"]


def test_large_photo_downscaled(tmp_path):
    path = tmp_path / "big.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (1300, 2100, 3), dtype=np.uint8)).save(path)
    entry = CatalogEntry("deb:fake", str(path), "textures", "CC0-1.0")
    (photo,), failures = load_catalog(entries=[entry])
    assert failures == []
    assert photo.pixels.shape == (MAX_SHORT_SIDE, round(2100 * MAX_SHORT_SIDE / 1300), 3)


def test_missing_and_unreadable_files_give_one_line_failures(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 48), (200, 100, 0)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    missing = tmp_path / "nowhere" / "missing.jpg"
    entries = [
        CatalogEntry("deb:fake", str(good), "objects", "CC0-1.0"),
        CatalogEntry("deb:fake", str(missing), "objects", "CC0-1.0"),
        CatalogEntry("deb:fake", str(bad), "objects", "CC0-1.0"),
        CatalogEntry("pypi:no-such-package-xyz", "data/x.png", "objects", "MIT"),
    ]
    photos, failures = load_catalog(entries=entries)
    assert [p.name for p in photos] == ["fake.good"]
    assert len(failures) == 3 and all("\n" not in f for f in failures)
    assert str(missing) in failures[0] and "no such file" in failures[0]
    assert str(bad) in failures[1]
    assert "no-such-package-xyz" in failures[2]


def test_colliding_stems_get_distinct_names():
    entries = [
        CatalogEntry("deb:p", "/x/data/butterfly.jpg", "animals", "MIT"),
        CatalogEntry("deb:p", "/x/superres/butterfly.png", "animals", "MIT"),
        CatalogEntry("deb:p", "/x/data/home.jpg", "buildings", "MIT"),
        CatalogEntry("deb:p", "/x/data/home.png", "buildings", "MIT"),
        CatalogEntry("deb:q", "/y/butterfly.jpg", "animals", "MIT"),
    ]
    assert photo_names(entries) == [
        "p.data.butterfly",
        "p.superres.butterfly",
        "p.jpg.home",
        "p.png.home",
        "q.butterfly",
    ]
