"""Spectra of known patterns, and `zoo show` on a hand-made three-GM zoo."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from gmtrace.core.schema import ARCH_FIELDS, LOSS_TYPES
from gmtrace.core.spectrum import azimuthal_average, log_spectrum, mean_spectrum, residual
from gmtrace.data.dataset import MODELS_COLUMNS, REAL_COLUMNS, GMDataset, write_csv
from gmtrace.data.images import load_rgb, save_png
from gmtrace.zoo.show import contact_sheet, render_table, show, zoo_table

SIDE = 32


def _smooth(rng: np.random.Generator, side: int = SIDE) -> np.ndarray:
    """Image content without pixel-scale structure: a random colour gradient, [0, 1]."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    a, b, c = rng.uniform(0.1, 0.4, size=(3, 3))
    return np.clip(a + b * yy[..., None] + c * xx[..., None], 0, 1)


def _blocks4(side: int = SIDE) -> np.ndarray:
    """Checkerboard of 2x2 blocks, period 4 on both axes: +-1, [side, side, 1]."""
    i = np.arange(side) // 2 % 2
    return np.where(i[:, None] ^ i[None, :], 1.0, -1.0)[..., None]


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- spectrum


def test_residual_removes_constant_and_keeps_nyquist():
    flat = np.full((16, 16, 3), 0.7)
    assert np.abs(residual(flat)).max() < 1e-12
    nyq = np.where(np.add.outer(np.arange(16), np.arange(16)) % 2, 1.0, -1.0)
    r = residual(nyq)
    # the 3x3 box passes 1/9 of the (1/2, 1/2) checkerboard: the residual keeps 8/9 of it
    assert np.allclose(r[1:-1, 1:-1], 8 / 9 * nyq[1:-1, 1:-1])
    stripes = np.where(np.arange(16) % 2, 1.0, -1.0)[None, :].repeat(16, axis=0)
    assert np.allclose(residual(stripes)[1:-1, 1:-1], 4 / 3 * stripes[1:-1, 1:-1])


def test_nyquist_checkerboard_peaks_in_the_corner():
    img = 0.5 + 0.1 * np.where(np.add.outer(np.arange(SIDE), np.arange(SIDE)) % 2, 1, -1)
    s = log_spectrum(np.repeat(img[..., None], 3, axis=2))
    assert s.shape == (SIDE, SIDE)
    # frequency -N/2 on both axes lands at index 0 after the shift
    assert np.unravel_index(np.argmax(s), s.shape) == (0, 0)


def test_period4_checkerboard_peaks_at_quarter_frequency():
    rng = np.random.default_rng(0)
    imgs = [_smooth(rng) + 0.08 * _blocks4() for _ in range(8)]
    s = mean_spectrum(imgs)
    c, q = SIDE // 2, SIDE // 4
    peaks = {(c + dy, c + dx) for dy in (-q, q) for dx in (-q, q)}
    assert np.unravel_index(np.argmax(s), s.shape) in peaks
    assert min(s[p] for p in peaks) > np.median(s) + 5  # e^5 ~ 150x the typical magnitude


def test_mean_spectrum_equals_mean_of_log_spectra_and_checks_sizes():
    rng = np.random.default_rng(1)
    imgs = [rng.random((12, 20, 3)) for _ in range(70)]  # more than one chunk of 64
    expected = np.mean([log_spectrum(a) for a in imgs], axis=0)
    assert np.allclose(mean_spectrum(iter(imgs)), expected)
    u8 = _u8(imgs[0])
    assert np.allclose(log_spectrum(u8), log_spectrum(u8 / 255.0))
    with pytest.raises(ValueError, match="shape"):
        mean_spectrum([imgs[0], rng.random((12, 12, 3))])
    with pytest.raises(ValueError, match="no images"):
        mean_spectrum([])


def test_azimuthal_average_of_known_inputs():
    h, w = 32, 48
    yy, xx = np.indices((h, w))
    r2 = (yy - h // 2) ** 2 + (xx - w // 2) ** 2.0
    prof = azimuthal_average(r2)
    assert prof.shape == (min(h, w) // 2 + 1,)
    assert prof[0] == 0 and np.all(np.diff(prof) > 0)
    assert np.allclose(np.sqrt(prof[1:]), np.arange(1, len(prof)), atol=0.25)
    assert np.allclose(azimuthal_average(np.full((9, 9), 2.5)), 2.5)
    # the residual is a high-pass filter: white noise's profile rises with frequency
    rng = np.random.default_rng(2)
    noise = azimuthal_average(mean_spectrum(rng.random((16, SIDE, SIDE, 3))))
    assert len(noise) == SIDE // 2 + 1
    assert noise[1] < noise[4] < noise[8] < noise[-1]


# ---------------------------------------------------------------- zoo show


def _arch(k: int) -> dict:
    row: dict = {}
    for i, f in enumerate(ARCH_FIELDS):
        row[f.name] = f.classes[(i + k) % f.n_classes] if f.kind == "discrete" else 3 + i + k
    row["n_params"] = [1_234_567, 8_900, 512][k]
    row["n_layers_per_block"] = [2.5, 2, 3][k]
    return row


GMS = [  # name, family, losses, pattern
    ("ckb_gan", "dcgan", ("adv",), "blocks4"),
    ("noisy_vae", "vae", ("mse", "kl"), "noise"),
    ("plain_ar", "pixelcnn", ("ce",), "smooth"),
]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("zoo")
    rng = np.random.default_rng(0)
    rows = []
    for k, (name, family, losses, pattern) in enumerate(GMS):
        d = root / "fake" / name
        d.mkdir(parents=True)
        for n in range(6):
            x = _smooth(rng)
            if pattern == "blocks4":
                x = x + 0.08 * _blocks4()
            elif pattern == "noise":
                x = x + 0.05 * rng.standard_normal(x.shape)
            save_png(_u8(x), d / f"{n:04d}.png")
        rows.append(
            {
                "name": name,
                "family": family,
                "seed": k,
                "domain": "faces",
                "resolution": SIDE,
                "n_images": 6,
                **_arch(k),
                "upsampling_kind": "transposed",
                "task": "unconditional",
                **{f"loss_{t}": int(t in losses) for t in LOSS_TYPES},
                "config": "{}",
            }
        )
    (root / "fake" / "noisy_vae" / "0006.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write_csv(root / "models.csv", MODELS_COLUMNS, rows)
    real_rows = []
    for domain in ("photos", "textures"):
        (root / "real" / domain).mkdir(parents=True)
        for n in range(3):
            f = f"real/{domain}/{n:03d}.png"
            save_png(_u8(_smooth(rng, 40)), root / f)
            real_rows.append(
                {"file": f, "domain": domain, "source": f"src{n}", "x": 0, "y": 0, "size": 40}
            )
    write_csv(root / "real" / "index.csv", REAL_COLUMNS, real_rows)
    (root / "zoo.json").write_text(json.dumps({"preset": "test"}))
    return root


def test_zoo_table_rows(zoo):
    rows = zoo_table(GMDataset.from_zoo(zoo))
    assert [r["name"] for r in rows] == ["ckb_gan", "noisy_vae", "plain_ar"]
    ckb, vae, ar = rows
    assert ckb["family"] == "dcgan" and ckb["losses"] == "adv"
    assert vae["losses"] == "mse+kl" and ar["losses"] == "ce"
    assert (ckb["n_images"], vae["n_images"], ar["n_images"]) == (6, 7, 6)  # files on disk
    assert (ckb["n_params"], vae["n_params"], ar["n_params"]) == ("1.23M", "8.9k", "512")
    assert ckb["n_layers"] == "3" and ckb["n_layers_per_block"] == "2.5"
    assert ckb["norm_type"] == "batch" and vae["norm_type"] == "instance"  # classes cycle
    assert ckb["upsampling"] == "fixed" and vae["upsampling"] == "learned"
    assert list(ckb) == ["name", "family", "n_images", *(f.name for f in ARCH_FIELDS), "losses"]

    console = Console(file=io.StringIO(), width=300, record=True)
    render_table(rows, console)
    text = console.export_text()
    assert "noisy_vae" in text and "1.23M" in text and "mse+kl" in text


def test_show_writes_a_readable_sheet_and_counts_the_corrupt_file(zoo, tmp_path):
    console = Console(file=io.StringIO(), width=300, record=True)
    out = tmp_path / "sheet.png"
    summary = show(zoo, out, console=console)
    assert summary["contact_sheet"] == out and out.is_file()
    assert summary["n_gms"] == 3 and summary["n_families"] == 3 and summary["n_images"] == 19
    assert summary["n_real"] == 6 and summary["real_domains"] == ["photos", "textures"]
    assert summary["skipped"] == {"noisy_vae": 1} and summary["n_skipped"] == 1
    assert "unreadable (skipped)" in console.export_text()

    img = load_rgb(out)
    h, w = img.shape[:2]
    # 5 rows (3 GMs + 2 real domains) of 32 px tiles, one column of rows
    assert 5 * SIDE <= h <= 5 * 2 * SIDE + 60
    assert 5 * SIDE <= w <= 800
    assert img.std() > 10  # tiles were drawn, not a blank page

    # the default output goes into the zoo folder
    summary = show(zoo, console=Console(file=io.StringIO()))
    assert summary["contact_sheet"] == zoo / "contact_sheet.png"
    (zoo / "contact_sheet.png").unlink()


def test_contact_sheet_is_seeded_and_wraps_many_gms_into_columns(zoo, tmp_path):
    ds = GMDataset.from_zoo(zoo)
    a = load_rgb(contact_sheet(ds, tmp_path / "a.png", per_gm=2, seed=3))
    b = load_rgb(contact_sheet(ds, tmp_path / "b.png", per_gm=2, seed=3))
    assert np.array_equal(a, b)

    many = GMDataset(gms=[ds.gms[k % 3] for k in range(70)], real=ds.real, root=zoo)
    sheet = load_rgb(contact_sheet(many, tmp_path / "many.png", per_gm=2, size=16))
    h, w = sheet.shape[:2]
    assert h < 30 * 24 + 60  # 72 rows in 3 columns of at most 24 rows, not one long strip
    assert w > 2 * a.shape[1]
    few = load_rgb(contact_sheet(many, tmp_path / "few.png", per_gm=2, size=16, max_gms=5))
    assert few.shape[0] < h and few.shape[1] < w


def test_spectrum_tile_keeps_peaks_when_shrunk():
    from gmtrace.zoo.show import _colormap, _square

    rng = np.random.default_rng(4)
    s = mean_spectrum([_smooth(rng, 64) + 0.08 * _blocks4(64) for _ in range(4)])
    for tile in (64, 16):
        rgb = _square(_colormap(s, tile), tile, smooth=False).astype(int).sum(axis=2)
        c, q = tile // 2, tile // 4
        brightest = rgb.max()
        for dy in (-q, q):
            for dx in (-q, q):
                y, x = c + dy, c + dx
                assert rgb[y - 1 : y + 2, x - 1 : x + 2].max() == brightest
