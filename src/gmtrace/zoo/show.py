"""Look at a zoo: a table of its GMs and a contact sheet of their images and spectra.

`show(zoo_dir)` backs the CLI command `gmtrace zoo show DIR`: it prints one row per
GM (family, image count, the 15 architecture values, losses) and writes a PNG
with one row per GM - name and family, a few sample images, and the GM's mean
residual spectrum, where periodic up-sampling traces show as bright peaks - plus
one row per real content domain at the bottom for comparison.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from gmtrace.core.files import atomic_path
from gmtrace.core.schema import ARCH_FIELDS, format_count
from gmtrace.core.spectrum import mean_spectrum
from gmtrace.data.dataset import GMDataset
from gmtrace.data.images import ImageError, load_rgb

SPECTRUM_IMAGES = 64  # images averaged into each row's spectrum
MAX_ROWS_PER_COLUMN = 32  # longer sheets are laid out in several columns of rows
DPI = 100  # figure inches * DPI = canvas pixels: tiles are drawn 1:1
FONT_PT = 8.0
_PAD = 2  # pixels between tiles
_HEADER = 22  # pixels above each column of rows for its titles
_SPEC_TITLE = "mean spectrum"
_FIELD_KIND = {f.name: f.kind for f in ARCH_FIELDS}
# Short column headers and values so that the table fits a terminal.
_SHORT = {
    "n_images": "imgs",
    "n_layers": "lay",
    "n_conv": "conv",
    "n_fc": "fc",
    "n_pool": "pool",
    "n_norm": "norm",
    "n_filters": "filt",
    "n_blocks": "blk",
    "n_layers_per_block": "l/b",
    "n_params": "params",
    "norm_type": "norm",
    "last_activation": "last",
    "block_activation": "act",
    "upsampling": "up",
    "skip_connection": "skip",
    "downsampling": "down",
}
_VALUE_SHORT = {"layer_group": "layer", "leaky_relu": "lrelu", "learned": "learn"}


# ---------------------------------------------------------------- table


def zoo_table(dataset: GMDataset) -> list[dict]:
    """One dict per GM: name, family, n_images (files on disk), the 15 architecture
    values as text (counts through `schema.format_count`, classes by name) and
    losses joined with "+"."""
    rows = []
    for g in dataset.gms:
        row: dict = {"name": g.name, "family": g.family, "n_images": len(g.images())}
        for f in ARCH_FIELDS:
            v = g.arch[f.name]
            row[f.name] = format_count(f.name, float(v)) if f.kind == "continuous" else str(v)
        row["losses"] = "+".join(g.losses)
        rows.append(row)
    return rows


def render_table(rows: list[dict], console: Console | None = None) -> None:
    """Print `zoo_table` rows as two rich tables that fit an 80-column terminal:
    the counts, then the classes and losses."""
    console = console or Console()
    if not rows:
        console.print(Table(title="zoo: 0 GMs"))
        return
    keys = list(rows[0])
    counts = ["name", "n_images"] + [k for k in keys if _FIELD_KIND.get(k) == "continuous"]
    classes = ["name"] + [k for k in keys if _FIELD_KIND.get(k) == "discrete"]
    classes.append("losses")
    for title, cols in (
        (f"zoo: {len(rows)} GMs - counts", counts),
        (f"zoo: {len(rows)} GMs - classes and losses", classes),
    ):
        table = Table(title=title, header_style="bold", pad_edge=False)
        for key in cols:
            numeric = key == "n_images" or _FIELD_KIND.get(key) == "continuous"
            table.add_column(
                _SHORT.get(key, key),
                justify="right" if numeric else "left",
                no_wrap=key != "losses",
                overflow="fold",
            )
        for row in rows:
            table.add_row(
                *(_VALUE_SHORT.get(str(row[k]), str(row[k])) if row[k] != "" else "-" for k in cols)
            )
        console.print(table)


# ---------------------------------------------------------------- contact sheet


@dataclass
class _Row:
    """One row of the sheet: a GM or a real domain, its tiles and what was skipped."""

    key: str  # GM name, or "real:<domain>"
    label: str
    sublabel: str
    real: bool
    samples: list[np.ndarray] = field(default_factory=list)  # [size, size, 3] uint8
    spectrum: np.ndarray | None = None  # mean log spectrum [s, s]; RGB uint8 once drawn
    n_spectrum: int = 0
    skipped: list[Path] = field(default_factory=list)


@dataclass
class SheetResult:
    path: Path
    n_gm_rows: int
    n_real_rows: int
    skipped: dict[str, int]  # row label (GM name or "real:<domain>") -> unreadable files met
    tile: int


def contact_sheet(
    dataset: GMDataset,
    out_png: str | Path,
    per_gm: int = 4,
    size: int | None = None,
    max_gms: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a PNG with one row per GM and one per real domain; returns its path.

    Each row: the GM's name and family, `per_gm` random sample images (seeded by
    `seed` and the row, so a GM shows the same samples however many GMs are
    drawn), and its mean residual log spectrum (`gmtrace.core.spectrum.mean_spectrum`
    over up to 64 of its images) in the magma colormap. Tiles are `size` pixels
    (default: the zoo's image side, at most 128). Unreadable image files are
    skipped and counted in the row's label; `max_gms` keeps the first GMs.
    """
    return _contact_sheet(dataset, out_png, per_gm, size, max_gms, seed).path


def _contact_sheet(
    dataset: GMDataset,
    out_png: str | Path,
    per_gm: int = 4,
    size: int | None = None,
    max_gms: int | None = None,
    seed: int = 0,
) -> SheetResult:
    if per_gm < 0:
        raise ValueError(f"per_gm must be >= 0, got {per_gm}")
    if size is not None and size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    out_png = Path(out_png)
    gms = dataset.gms if max_gms is None else dataset.gms[: max(max_gms, 0)]
    by_domain: dict[str, list[Path]] = defaultdict(list)
    for r in dataset.real:
        by_domain[r.domain].append(r.path)
    if not gms and not by_domain:
        raise ValueError("contact_sheet: the dataset has no GMs and no real images to show")

    rows = []
    for i, g in enumerate(gms):
        rng = np.random.default_rng([seed, i])
        rows.append(_read_row(_Row(g.name, g.name, g.family, False), g.images(), per_gm, rng))
    for j, (domain, paths) in enumerate(sorted(by_domain.items())):
        rng = np.random.default_rng([seed, len(dataset.gms) + j])
        row = _Row(f"real:{domain}", f"real: {domain}", f"{len(paths)} crops", True)
        rows.append(_read_row(row, sorted(paths), per_gm, rng))

    tile = size or _default_tile(rows)
    for row in rows:
        row.samples = [_square(a, tile) for a in row.samples]
        if row.spectrum is not None:
            row.spectrum = _square(_colormap(row.spectrum, tile), tile, smooth=False)
    _draw(rows, tile, per_gm, out_png)
    skipped = {r.key: len(r.skipped) for r in rows if r.skipped}
    return SheetResult(out_png, len(gms), len(by_domain), skipped, tile)


def _read_row(row: _Row, paths: list[Path], per_gm: int, rng: np.random.Generator) -> _Row:
    """Decode up to SPECTRUM_IMAGES images in random order (unreadable ones are
    skipped, at most as many again tried), keep `per_gm` as samples and compute
    the row's mean spectrum at the first readable image's square side."""
    order = rng.permutation(len(paths)) if paths else np.zeros(0, dtype=np.int64)
    want = max(SPECTRUM_IMAGES, per_gm)
    crops: list[np.ndarray] = []
    side = 0
    for k in order[: 2 * want]:
        if len(crops) == want:
            break
        try:
            a = load_rgb(paths[int(k)])
        except ImageError:
            row.skipped.append(paths[int(k)])
            continue
        side = side or min(a.shape[:2])
        crops.append(_square(a, side))
    row.samples = crops[:per_gm]
    if crops:
        row.spectrum = mean_spectrum(crops[:SPECTRUM_IMAGES])
        row.n_spectrum = min(len(crops), SPECTRUM_IMAGES)
    return row


def _default_tile(rows: list[_Row]) -> int:
    for row in rows:
        if row.samples or row.spectrum is not None:
            side = (row.samples[0] if row.samples else row.spectrum).shape[0]
            return int(min(max(side, 32), 128))
    return 64


def _square(a: np.ndarray, side: int, smooth: bool = True) -> np.ndarray:
    """Centre-crop to a square, then resize to `side` (nearest when enlarging, so
    pixel-scale traces stay visible; box filter when shrinking)."""
    h, w = a.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    a = a[top : top + s, left : left + s]
    if s == side:
        return np.ascontiguousarray(a)
    resample = Image.Resampling.BOX if (smooth and s > side) else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(a).resize((side, side), resample))


def _colormap(spec: np.ndarray, tile: int) -> np.ndarray:
    """Log spectrum -> magma RGB uint8, stretched from its 2nd percentile (the
    residual's zero-frequency hole would otherwise take the whole range) to its
    maximum, so that periodic peaks stand out from the broadband plateau. For display
    only, a maximum filter widens one-pixel peaks to 3x3 tile pixels, so they are
    seen at 1:1 and survive shrinking to the tile (nearest neighbour)."""
    from matplotlib import colormaps
    from scipy import ndimage

    shrink = -(-spec.shape[0] // tile)
    spec = ndimage.maximum_filter(spec, size=3 * shrink, mode="nearest")
    lo, hi = float(np.percentile(spec, 2.0)), float(spec.max())
    x = np.clip((spec - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(spec)
    return (colormaps["magma"](x)[..., :3] * 255.0 + 0.5).astype(np.uint8)


def _draw(rows: list[_Row], tile: int, per_gm: int, out_png: Path) -> None:
    """Compose all tiles into one canvas, label it with matplotlib (Agg, object
    API, so no global backend is switched) and save it 1:1 at DPI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    px_per_pt = DPI / 72.0
    char_px = 0.56 * FONT_PT * px_per_pt
    longest = max(max(len(r.label), len(r.sublabel)) for r in rows)
    label_w = int(min(longest, 48) * char_px) + 10
    row_h = max(tile, int(2.6 * FONT_PT * px_per_pt)) + _PAD
    n_tiles = per_gm + 1
    gutter = max(16, int(len(_SPEC_TITLE) * char_px) - tile + 8)  # room for the title too
    col_w = label_w + n_tiles * (tile + _PAD) + 3 * _PAD + gutter
    n_cols = -(-len(rows) // MAX_ROWS_PER_COLUMN)
    per_col = -(-len(rows) // n_cols)
    height = _HEADER + per_col * row_h + _PAD
    width = n_cols * col_w

    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    texts: list[tuple[float, float, str, dict]] = []
    families = sorted({r.sublabel for r in rows if not r.real})
    palette = _palette(len(families))
    colour = {fam: palette[k] for k, fam in enumerate(families)}

    for c in range(n_cols):
        x0 = c * col_w
        tiles_x = x0 + label_w
        texts.append((tiles_x, _HEADER / 2, "samples", {"ha": "left"}))
        spec_x = tiles_x + per_gm * (tile + _PAD) + 2 * _PAD
        texts.append((spec_x, _HEADER / 2, _SPEC_TITLE, {"ha": "left"}))
    for k, row in enumerate(rows):
        c, r = divmod(k, per_col)
        x0, y0 = c * col_w, _HEADER + r * row_h
        x = x0 + label_w
        for a in row.samples:
            canvas[y0 : y0 + tile, x : x + tile] = a
            x += tile + _PAD
        x = x0 + label_w + per_gm * (tile + _PAD) + 2 * _PAD
        if row.spectrum is not None:
            canvas[y0 : y0 + tile, x : x + tile] = row.spectrum
        else:
            canvas[y0 : y0 + tile, x : x + tile] = 200
        if row.real:
            canvas[y0 : y0 + tile, x0 : x0 + 3] = (40, 120, 40)
        else:
            canvas[y0 : y0 + tile, x0 : x0 + 3] = colour[row.sublabel]
        sub = row.sublabel
        if not row.samples and row.spectrum is None:
            sub += ", no readable image"
        if row.skipped:
            sub += f", {len(row.skipped)} unreadable"
        mid = y0 + tile / 2
        weight = {"fontweight": "bold"} if row.real else {}
        texts.append((x0 + 6, mid - 0.65 * FONT_PT * px_per_pt, row.label, weight))
        texts.append((x0 + 6, mid + 0.65 * FONT_PT * px_per_pt, sub, {"color": "0.35"}))

    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(canvas, interpolation="nearest", extent=(0, width, height, 0))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    for x, y, s, kw in texts:
        ax.text(x, y, s, fontsize=FONT_PT, va="center", clip_on=True, **{"ha": "left", **kw})
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")


def _palette(n: int) -> list[tuple[int, int, int]]:
    from matplotlib import colormaps

    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return [tuple(int(255 * v) for v in cmap(k % cmap.N)[:3]) for k in range(n)]


# ---------------------------------------------------------------- both


def show(
    zoo_dir: str | Path, out_png: str | Path | None = None, console: Console | None = None
) -> dict:
    """Print the zoo's table and write its contact sheet (default
    `zoo_dir/contact_sheet.png`); returns a summary dict for the CLI."""
    console = console or Console()
    zoo_dir = Path(zoo_dir)
    dataset = GMDataset.from_zoo(zoo_dir)
    rows = zoo_table(dataset)
    render_table(rows, console)
    summary: dict = {
        "zoo": str(zoo_dir),
        "n_gms": len(rows),
        "n_families": len({r["family"] for r in rows}),
        "n_images": sum(r["n_images"] for r in rows),
        "n_real": len(dataset.real),
        "real_domains": sorted({r.domain for r in dataset.real}),
        "contact_sheet": None,
        "skipped": {},
        "n_skipped": 0,
        "table": rows,
    }
    if rows or dataset.real:
        sheet = _contact_sheet(dataset, out_png or zoo_dir / "contact_sheet.png")
        summary.update(
            contact_sheet=sheet.path, skipped=sheet.skipped, n_skipped=sum(sheet.skipped.values())
        )
    end = Table(title="zoo show", show_header=False)
    end.add_column("", style="bold")
    end.add_column("")
    end.add_row("GMs", f"{summary['n_gms']} in {summary['n_families']} families")
    end.add_row("generated images", str(summary["n_images"]))
    end.add_row("real images", f"{summary['n_real']} in {len(summary['real_domains'])} domains")
    end.add_row("unreadable (skipped)", str(summary["n_skipped"]))
    end.add_row("contact sheet", str(summary["contact_sheet"] or "- (nothing to draw)"))
    console.print(end)
    return summary
