"""`gmtrace report`: a case as one self-contained HTML file.

Everything is inside the file (images as base64 PNG, styles and the table's
sorting and filtering script inline); nothing is fetched when it is opened, so it
can be mailed, archived or opened offline. Sections:

* summary: images, called generated / real, failed, groups, the model;
* verdicts: one row per file (path, verdict, p(generated), nearest known GM or
  "unknown GM", group, error), sortable by any column and filtered by a text box;
* per group: a contact sheet of its images, the mean fingerprint (the model's
  fingerprint network over the images' centre crops) and the mean log spectrum of
  the images' high-pass residual (`gmtrace.core.spectrum`), the parse aggregated over
  the group with confidence bars, the loss types, and the nearest known GM;
* the model card: what the model was trained on and when, and, where the model
  folder holds a `card.json` (written from an evaluation, `report.model_card`),
  its measured figures and known limits.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from gmtrace.core.files import atomic_write_text
from gmtrace.core.schema import CONTINUOUS, DISCRETE, format_count
from gmtrace.data.images import ImageError, load_rgb
from gmtrace.product.views import image_views, png_data, set_views

MAX_TABLE_ROWS = 50_000
SHEET = 12  # thumbnails per group
THUMB = 96
FINGERPRINT_IMAGES = 8


def _centre(img: np.ndarray, size: int) -> np.ndarray | None:
    h, w = img.shape[:2]
    if h < size or w < size:
        return None
    y, x = (h - size) // 2, (w - size) // 2
    return img[y : y + size, x : x + size]


def _thumb(img: np.ndarray) -> str:
    im = Image.fromarray(img)
    im.thumbnail((THUMB, THUMB))
    return png_data(np.asarray(im))


def _load(path: str) -> np.ndarray | None:
    try:
        return load_rgb(path)
    except ImageError:
        return None


def image_views_data(img: np.ndarray, analyzer) -> dict[str, str]:
    """`views.image_views` as PNG data URLs (for the web page)."""
    return {k: png_data(v, 2) for k, v in image_views(img, analyzer).items()}


def group_views(members: list[str], analyzer=None) -> dict:
    """Thumbnails, mean fingerprint and mean spectrum of a group's images (those still
    readable; the others are skipped), as PNG data URLs."""
    images = [
        (p, a) for p in members[: max(SHEET, FINGERPRINT_IMAGES)] if (a := _load(p)) is not None
    ]
    out: dict = {"thumbs": [(p, _thumb(a)) for p, a in images[:SHEET]]}
    size = analyzer.image_size_ if analyzer is not None else 64
    crops = [c for _, a in images if (c := _centre(a, size)) is not None][:FINGERPRINT_IMAGES]
    if crops:
        out |= {k: png_data(v, 2) for k, v in set_views(crops, analyzer).items()}
    return out


def _bar(p: float | None) -> str:
    if p is None:
        return ""
    return f'<span class="bar"><span style="width:{100 * p:.0f}%"></span></span> {p:.2f}'


def _group_html(g: dict, views: dict) -> str:
    h = g["hyperparameters"]
    near = g["nearest_known_gm"]
    near_txt = (
        f"nearest known GM: <b>{html.escape(near['name'])}</b> ({near['share']:.0%} of its "
        f"images, mean probability {near['mean_probability']:.2f})"
        if near
        else "no known GM is close: <b>a GM the model was not trained on</b>"
    )
    rows = []
    for f in CONTINUOUS:
        v = h[f.name]
        rows.append(
            f"<tr><td>{f.name}</td><td>{format_count(f.name, v['value'])}</td>"
            f"<td>IQR {format_count(f.name, v['q25'])} to "
            f"{format_count(f.name, v['q75'])}</td></tr>"
        )
    for f in DISCRETE:
        v = h[f.name]
        rows.append(
            f"<tr><td>{f.name}</td><td>{html.escape(str(v['value']))}</td>"
            f"<td>agreement {_bar(v['agreement'])} &nbsp; "
            f"confidence {_bar(v['mean_confidence'])}</td></tr>"
        )
    losses = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{_bar(p)}</td></tr>"
        for t, p in sorted(g["loss_probabilities"].items(), key=lambda kv: -kv[1])
    )
    thumbs = "".join(
        f'<img src="{src}" title="{html.escape(p)}" alt="{html.escape(Path(p).name)}">'
        for p, src in views.get("thumbs", [])
    )
    pics = ""
    for key, label in (("fingerprint", "mean fingerprint"), ("spectrum", "mean residual spectrum")):
        if key in views:
            pics += (
                f'<figure><img src="{views[key]}" alt="{label}">'
                f"<figcaption>{label}</figcaption></figure>"
            )
    return f"""
<section class="group" id="group-{g["group"]}">
<h3>Group {g["group"]}: {g["size"]} images</h3>
<p>{near_txt}; mean p(generated) {g["mean_p_generated"]:.2f};
flagged "unknown GM": {g["unknown_share"]:.0%}</p>
<div class="sheet">{thumbs}</div>
<div class="views">{pics}</div>
<div class="cols"><table class="hp">
<tr><th>hyperparameter</th><th>value</th><th>spread / confidence</th></tr>{"".join(rows)}</table>
<table class="hp"><tr><th>loss type</th><th>mean probability</th></tr>{losses}</table></div>
</section>"""


def _table_html(rows: list[dict], group_of: dict[str, int]) -> str:
    body = []
    for r in rows[:MAX_TABLE_ROWS]:
        top = (r.get("top_gms") or [{}])[0]
        src = "unknown GM" if r.get("unknown_gm") else top.get("name", "")
        if r.get("verdict") == "real" or not r.get("ok"):
            src = ""
        p = r.get("p_generated")
        cells = [
            html.escape(r["path"]),
            html.escape(r.get("verdict") or "error")
            + (f" ({html.escape(r['unsure_reason'])})" if r.get("unsure_reason") else ""),
            "" if p is None else f"{p:.3f}",
            html.escape(src),
            str(group_of.get(r["path"], "")),
            html.escape(r.get("error") or ""),
        ]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    more = (
        f"<p>Only the first {MAX_TABLE_ROWS} of {len(rows)} rows are listed here; the "
        "results file holds them all.</p>"
        if len(rows) > MAX_TABLE_ROWS
        else ""
    )
    head = "".join(
        f'<th onclick="sortBy({i})">{h}</th>'
        for i, h in enumerate(["file", "verdict", "p(generated)", "source GM", "group", "error"])
    )
    return (
        '<input id="filter" placeholder="filter rows (any text)" oninput="filterRows()">'
        f'<table id="verdicts"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{more}"
    )


def _card_html(analyzer, card: dict | None) -> str:
    if analyzer is None:
        return "<p>No model given: the verdicts are those in the results file.</p>"
    m = analyzer.meta_
    items = [
        ("model id", analyzer.model_id_),
        ("weights sha256", analyzer.weights_sha256_),
        ("gmtrace", m.get("gmtrace", "?")),
        # origin: every zoo the model trained on ("a+b+c"); zoo: the first
        ("trained on", f"{m.get('origin') or m.get('zoo', '?')}: {len(analyzer.gm_names_)} GMs"),
        ("training steps", m.get("steps_done", "?")),
        ("input", f"{analyzer.image_size_} px crops, native resolution (never resized)"),
    ]
    if m.get("trained_at"):
        items.append(("trained", m["trained_at"]))
    out = "<table class='hp'>" + "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in items
    )
    out += "</table>"
    if card:
        figs = card.get("figures", {})
        out += (
            f"<h3>Measured figures ({html.escape(card.get('protocol', ''))})</h3><table class='hp'>"
        )
        out += "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
            for k, v in figs.items()
        )
        out += "</table>"
        if card.get("trained_on"):
            out += f"<p>The shipped model: {html.escape(card['trained_on'])}.</p>"
        if card.get("measured_on"):
            out += f"<p>Measured on {html.escape(card['measured_on'])}.</p>"
        out += "<h3>Known limits</h3><ul>"
        out += "".join(f"<li>{html.escape(x)}</li>" for x in card.get("limits", []))
        out += "</ul>"
    else:
        out += (
            "<p>This model folder has no card.json: no measured figures travel with it. "
            "The evaluation protocol and its figures are in the project's docs/results.md.</p>"
        )
    return out


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}
th{background:#eee;cursor:pointer;position:sticky;top:0}
#verdicts td:first-child{word-break:break-all}
.bar{display:inline-block;width:80px;height:8px;background:#ddd;vertical-align:middle}
.bar span{display:block;height:8px;background:#3a7}.sheet img{margin:2px;border:1px solid #ccc}
.views figure{display:inline-block;margin:4px 12px 4px 0}.cols{display:flex;gap:2em;flex-wrap:wrap}
.group{border-top:2px solid #888;margin-top:1.5em}#filter{width:30em;padding:4px;margin:.5em 0}
.summary td:last-child{text-align:right}
"""

SCRIPT = """
function filterRows(){const q=document.getElementById('filter').value.toLowerCase();
for(const tr of document.querySelectorAll('#verdicts tbody tr')){
tr.style.display=tr.textContent.toLowerCase().includes(q)?'':'none';}}
let sortCol=-1,sortAsc=true;
function sortBy(c){const tb=document.querySelector('#verdicts tbody');
sortAsc=(sortCol===c)?!sortAsc:true;sortCol=c;
const rows=Array.from(tb.rows);const num=v=>v===''?NaN:Number(v);
rows.sort((a,b)=>{const x=a.cells[c].textContent,y=b.cells[c].textContent;
const nx=num(x),ny=num(y);let r=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);
return sortAsc?r:-r;});for(const r of rows)tb.appendChild(r);}
"""


def render_report(
    rows: list[dict], groups: dict, analyzer=None, card: dict | None = None, title: str = ""
) -> str:
    """The report as one HTML string (see the module doc)."""
    group_of = {m: g["group"] for g in groups["groups"] for m in g["members"]}
    ok = [r for r in rows if r.get("ok")]
    gen = sum(1 for r in ok if r.get("verdict") == "generated")
    unsure = sum(1 for r in ok if r.get("verdict") == "unsure")
    unknown = sum(1 for r in ok if r.get("verdict") == "generated" and r.get("unknown_gm"))
    summary = [
        ("files", len(rows)),
        ("analyzed", len(ok)),
        ("failed (unreadable)", len(rows) - len(ok)),
        ("called generated", gen),
        ("of those, from a GM the model does not know", unknown),
        ("unsure (a fused model's band, or its verdict changed under re-encoding)", unsure),
        ("called real", len(ok) - gen - unsure),
        ("groups of generated images (source GMs)", len(groups["groups"])),
    ]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>gmtrace report {html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>gmtrace report {html.escape(title)}</h1><p>written {when}</p>",
        "<h2>Summary</h2><table class='summary'>",
        "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in summary),
        "</table>",
        "<h2>Verdicts</h2>",
        _table_html(rows, group_of),
        "<h2>Groups</h2>",
    ]
    for g in groups["groups"]:
        parts.append(_group_html(g, group_views(g["members"], analyzer)))
    if not groups["groups"]:
        parts.append("<p>No generated images to group.</p>")
    parts += ["<h2>Model card</h2>", _card_html(analyzer, card), f"<script>{SCRIPT}</script>"]
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(
    rows: list[dict],
    out: str | Path,
    analyzer=None,
    groups: dict | None = None,
    title: str = "",
) -> Path:
    """Group `rows` (unless `groups` is given) and write the HTML report atomically."""

    from gmtrace.product.groups import group_rows

    groups = groups if groups is not None else group_rows(rows)
    card = None
    if analyzer is not None and analyzer.model_dir_ is not None:
        p = Path(analyzer.model_dir_) / "card.json"
        if p.is_file():
            card = json.loads(p.read_text())
    return atomic_write_text(out, render_report(rows, groups, analyzer, card, title))
