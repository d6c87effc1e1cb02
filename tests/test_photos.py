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


def test_native_crops_are_cut_from_the_file_at_full_size(tmp_path):
    """A photograph larger than MAX_SHORT_SIDE is loaded downscaled, but its native
    crops are the file's own pixels (a scan reads it so), the rest resized squares."""
    from gmtrace.zoo.real import real_crops

    path = tmp_path / "big.png"
    rng = np.random.default_rng(1)
    full = rng.integers(0, 256, (1300, 1400, 3), dtype=np.uint8)
    Image.fromarray(full).save(path)
    (photo,), _ = load_catalog(entries=[CatalogEntry("deb:fake", str(path), "textures", "CC0")])
    assert photo.file == str(path) and photo.pixels.shape[0] == MAX_SHORT_SIDE

    crops = real_crops([photo], 32, 40, seed=3, native_share=0.5)
    native = [c for c in crops if c[3]]
    assert 10 <= len(native) <= 30  # half of 40, drawn
    for _, pixels, (x, y, size), _ in native:
        assert size == 32
        np.testing.assert_array_equal(pixels, full[y : y + 32, x : x + 32])
    for _, pixels, (_x, _y, size), _ in (c for c in crops if not c[3]):
        assert pixels.shape == (32, 32, 3) and size >= 32
    # same seed, same crops; no share, no native crop
    again = real_crops([photo], 32, 40, seed=3, native_share=0.5)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(crops, again, strict=True))
    assert not any(c[3] for c in real_crops([photo], 32, 10, seed=3, native_share=0.0))


def test_a_photograph_smaller_than_the_crop_falls_back_to_a_resized_one(tmp_path):
    from gmtrace.zoo.real import real_crops

    small = Photo("s", "textures", np.zeros((20, 24, 3), np.uint8), "deb:fake")
    crops = real_crops([small], 32, 4, seed=0, native_share=1.0)
    assert [c[3] for c in crops] == [False] * 4
    assert all(c[1].shape == (32, 32, 3) for c in crops)


def test_zoo_real_recuts_the_real_crops_and_keeps_the_gms(tmp_path):
    """`gmtrace zoo real` writes as many real crops again, a share native, records the
    share in zoo.json and leaves the GMs' images alone; a folder that is not a zoo
    is refused in one line."""
    import csv
    import json

    from typer.testing import CliRunner

    from gmtrace.cli.main import app
    from gmtrace.zoo.builder import build_zoo

    zoo = tmp_path / "zoo"
    photos = tmp_path / "photos" / "scenes"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(
            photos / f"p{i}.png"
        )
    assert build_zoo(zoo, preset="tiny", seed=0, real=str(tmp_path / "photos")).ok
    fake_before = sorted(p.read_bytes() for p in (zoo / "fake").rglob("*.png"))
    with (zoo / "real" / "index.csv").open() as f:
        n_before = len(list(csv.DictReader(f)))

    runner = CliRunner()
    res = runner.invoke(
        app, ["zoo", "real", str(zoo), "--real", str(tmp_path / "photos"), "--native-share", "1"]
    )
    assert res.exit_code == 0, res.output
    with (zoo / "real" / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n_before and all(r["native"] == "1" for r in rows)
    assert all(
        r["size"] == str(json.loads((zoo / "zoo.json").read_text())["resolution"]) for r in rows
    )
    assert json.loads((zoo / "zoo.json").read_text())["real_native_share"] == 1.0
    assert sorted(p.read_bytes() for p in (zoo / "fake").rglob("*.png")) == fake_before

    res = runner.invoke(app, ["zoo", "real", str(tmp_path / "photos")])
    assert res.exit_code != 0 and "not a zoo" in res.output
