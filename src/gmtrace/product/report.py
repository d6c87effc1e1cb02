"""`gmtrace report`: a case as one self-contained HTML file.

Everything is inside the file (images as base64 PNG, styles and the table's
sorting and filtering script inline); nothing is fetched when it is opened, so it
can be mailed, archived or opened offline. Sections:

* overview: images, called generated / unsure / real, failed, groups; a histogram
  of p(generated) stacked by verdict (inline SVG); where the model's parsing
  abstains, which fields it answered; a strip of each group's thumbnails linking to
  its section;
* verdicts: one row per file (a thumbnail for the first `TABLE_THUMBS`, path,
  verdict and why unsure, p(generated), nearest known GM or "unknown GM", group,
  error), sortable by any column, filtered by a text box, `PAGE_ROWS` a page;
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
from gmtrace.readout.abstain import FIELD_NAMES

MAX_TABLE_ROWS = 50_000
TABLE_THUMBS = 300  # rows of the verdict table with a thumbnail (the file stays small)
TABLE_THUMB = 48
PAGE_ROWS = 100  # verdict table rows per page
HIST_BINS = 20
STRIP = 6  # thumbnails per group in the overview
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
        spread = (
            ""
            if v["q25"] is None
            else f"IQR {format_count(f.name, v['q25'])} to {format_count(f.name, v['q75'])}"
        )
        rows.append(
            f"<tr><td>{f.name}</td><td>{format_count(f.name, v['value'])}</td>"
            f"<td>{spread}</td></tr>"
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


def _histogram_svg(rows: list[dict]) -> str:
    """p(generated) of the analyzed images in `HIST_BINS` bins, stacked by verdict
    (generated, unsure, real), as inline SVG."""
    colours = {"generated": "#b30", "unsure": "#a70", "real": "#070"}
    counts = {v: np.zeros(HIST_BINS, int) for v in colours}
    for r in rows:
        if r.get("ok") and r.get("p_generated") is not None and r.get("verdict") in counts:
            b = min(int(r["p_generated"] * HIST_BINS), HIST_BINS - 1)
            counts[r["verdict"]][b] += 1
    top = max(1, int(sum(counts.values()).max()))
    w, h, bw = 420, 120, 420 / HIST_BINS
    bars = []
    for i in range(HIST_BINS):
        y = h
        for v, c in counts.items():
            if c[i]:
                dh = h * c[i] / top
                y -= dh
                bars.append(
                    f'<rect x="{i * bw:.1f}" y="{y:.1f}" width="{bw - 1:.1f}" height="{dh:.1f}" '
                    f'fill="{colours[v]}"><title>{v}: {c[i]} with p in '
                    f"[{i / HIST_BINS:.2f}, {(i + 1) / HIST_BINS:.2f})</title></rect>"
                )
    legend = " ".join(
        f'<span style="color:{c}">&#9632; {v} ({int(counts[v].sum())})</span>'
        for v, c in colours.items()
    )
    return (
        f'<svg class="hist" width="{w}" height="{h + 16}" role="img" '
        f'aria-label="histogram of p(generated)">{"".join(bars)}'
        f'<text x="0" y="{h + 14}" font-size="11">0</text>'
        f'<text x="{w / 2 - 6}" y="{h + 14}" font-size="11">0.5</text>'
        f'<text x="{w - 10}" y="{h + 14}" font-size="11">1</text></svg>'
        f"<p>p(generated) of every analyzed image: {legend}</p>"
    )


def _overview_html(rows: list[dict], groups: dict, views: dict[int, dict]) -> str:
    """The case at a glance: the histogram of p(generated) by verdict, and a strip of
    each group's thumbnails linking to its section."""
    strips = []
    for g in groups["groups"]:
        thumbs = "".join(
            f'<img src="{src}" title="{html.escape(p)}" alt="">'
            for p, src in views.get(g["group"], {}).get("thumbs", [])[:STRIP]
        )
        strips.append(
            f'<div class="strip"><a href="#group-{g["group"]}">group {g["group"]}</a> '
            f"({g['size']} images) {thumbs}</div>"
        )
    return _histogram_svg(rows) + _reliable_html(rows) + "".join(strips)


def _reliable_html(rows: list[dict]) -> str:
    """Which parsed fields the model answered for the images it did not call real,
    where its parsing abstains (rows' `parse_unknown`); nothing otherwise."""
    rows = [r for r in rows if r.get("ok") and r.get("verdict") != "real"]
    rows = [r for r in rows if r.get("parse_unknown") is not None]
    if not rows:
        return ""
    share = {n: sum(n not in r["parse_unknown"] for r in rows) / len(rows) for n in FIELD_NAMES}
    most = [n for n in FIELD_NAMES if share[n] >= 0.5]
    some = [n for n in FIELD_NAMES if 0 < share[n] < 0.5]
    never = [n for n in FIELD_NAMES if share[n] == 0]

    def names(ns: list[str]) -> str:
        return html.escape(", ".join(ns)) if ns else "none"

    return (
        f"<p class='reliable'>Parsing, of the {len(rows)} images not called real: answered "
        f"for most of them: {names(most)}; for some: {names(some)}; never (the model "
        f"abstains: its answers did not beat chance on held-out codebases): "
        f"{names(never)}.</p>"
    )


def _table_html(rows: list[dict], group_of: dict[str, int]) -> str:
    body = []
    for k, r in enumerate(rows[:MAX_TABLE_ROWS]):
        top = (r.get("top_gms") or [{}])[0]
        src = "unknown GM" if r.get("unknown_gm") else top.get("name", "")
        if r.get("verdict") == "real" or not r.get("ok"):
            src = ""
        p = r.get("p_generated")
        thumb = ""
        if k < TABLE_THUMBS and r.get("ok") and (a := _load(r["path"])) is not None:
            im = Image.fromarray(a)
            im.thumbnail((TABLE_THUMB, TABLE_THUMB))
            thumb = f'<img class="t" src="{png_data(np.asarray(im))}" alt="">'
        cells = [
            thumb + html.escape(r["path"]),
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
        f'<table id="verdicts" data-page-rows="{PAGE_ROWS}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
        '<p class="pager"><button onclick="turn(-1)">previous</button> '
        '<span id="page"></span> <button onclick="turn(1)">next</button></p>'
        f"{more}"
    )


def _gate_fields(gate) -> str:
    """The fields a parsing gate answers, each with the permutation p its answers
    reached where the gate was fitted (codebases the parsing network never saw)."""
    p = dict(zip(FIELD_NAMES, gate.p, strict=True))
    fields = [f"{n} (p {p[n]:.2g})" if np.isfinite(p[n]) else n for n in gate.reliable()]
    if not fields:
        return "no field"
    return ", ".join(fields) + (
        "; p: the field's answers against shuffled truth on the codebases the gate was "
        "fitted on, which the network that parsed them never saw"
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
    fusion = getattr(analyzer, "fusion_", None)
    if fusion is not None:
        items.append(("fused parts", "supervised detector + model of real photographs"))
        if fusion.final is not None:
            items.append(("p recalibrated", _adopted(analyzer.model_dir_, fusion.final)))
        if analyzer.calibration_ is not None:
            items.append(("calibration", analyzer.calibration_.tag))
        if fusion.gate is not None:
            items.append(("parsing answers", _gate_fields(fusion.gate)))
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


def _adopted(model_dir, final) -> str:
    """Where a model's final map of its fused p came from (`gmtrace evaluate adopt`,
    MODEL/adopted.json), or the map alone where that record is gone."""
    from gmtrace.readout.saved import ADOPTED, read_adopted

    w, b = float(final.weights[0]), final.bias
    try:
        rec = read_adopted(model_dir)
        return (
            f"on {rec['images']} out-of-fold images of the run {rec['run']} "
            f"(Platt map {w:.2f} x logit {b:+.2f}; `{rec['run_command']}`)"
        )
    except (ValueError, KeyError):
        return f"Platt map {w:.2f} x logit {b:+.2f} (its record, {ADOPTED}, is not here)"


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
.summary td:last-child{text-align:right}img.t{vertical-align:middle;margin-right:6px}
.strip img{height:40px;margin:1px}.strip{margin:2px 0}
"""

SCRIPT = """
let page=0;
function shown(){const q=document.getElementById('filter').value.toLowerCase();
return Array.from(document.querySelectorAll('#verdicts tbody tr')).filter(
tr=>tr.textContent.toLowerCase().includes(q));}
function paginate(){const n=+document.getElementById('verdicts').dataset.pageRows;
const all=document.querySelectorAll('#verdicts tbody tr'),keep=new Set(shown());
const pages=Math.max(1,Math.ceil(keep.size/n));page=Math.min(Math.max(page,0),pages-1);
let i=0;for(const tr of all){const on=keep.has(tr);
tr.style.display=on&&i>=page*n&&i<(page+1)*n?'':'none';if(on)i++;}
document.getElementById('page').textContent='page '+(page+1)+' of '+pages+' ('+keep.size+' rows)';}
function turn(d){page+=d;paginate();}
function filterRows(){page=0;paginate();}
paginate();
let sortCol=-1,sortAsc=true;
function sortBy(c){const tb=document.querySelector('#verdicts tbody');
sortAsc=(sortCol===c)?!sortAsc:true;sortCol=c;
const rows=Array.from(tb.rows);const num=v=>v===''?NaN:Number(v);
rows.sort((a,b)=>{const x=a.cells[c].textContent,y=b.cells[c].textContent;
const nx=num(x),ny=num(y);let r=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);
return sortAsc?r:-r;});for(const r of rows)tb.appendChild(r);paginate();}
"""


def _seen_html(seen: dict) -> str:
    """The section "seen before in other cases": an index query's answer
    (`gmtrace.index.index.FingerprintIndex.query`) for this case's rows."""
    left_out = seen.get("excluded_case")
    head = (
        f"<p>Asked of a fingerprint index of {seen['indexed']} images (model "
        f"{html.escape(str(seen['model_id']))})"
        + (f", this case's own rows ({html.escape(left_out)}) left out" if left_out else "")
        + ". "
        + (
            "Same source: the probability that two images share their generator, fitted on "
            "codebases the model's design never saw."
            if seen.get("same_source")
            else "Same source: not calibrated for this model (distances only)."
        )
        + "</p>"
    )
    rows = []
    for g in seen.get("groups", []):
        where = "; ".join(
            f"{html.escape(s['case'])} group {s['group'] if s['group'] is not None else '-'} "
            f"({s['share']:.0%} of its images, median distance {s['median_distance']:.3f})"
            for s in g["seen_in"]
        )
        rows.append(f"<tr><td>{g['group']}</td><td>{g['size']}</td><td>{where or '-'}</td></tr>")
    groups = (
        "<table><tr><th>group</th><th>images</th><th>its images' nearest, by case and group"
        "</th></tr>" + "".join(rows) + "</table>"
        if rows
        else "<p>No group of this case to trace.</p>"
    )
    reposts = [im for im in seen.get("images", []) if im["reposted"]]
    again = "".join(
        f"<tr><td>{html.escape(Path(im['path']).name)}</td><td>"
        + "; ".join(f"{html.escape(r['case'])}: {html.escape(r['path'])}" for r in im["reposted"])
        + "</td></tr>"
        for im in reposts[:200]
    )
    linked = sum(
        1
        for im in seen.get("images", [])
        if im["nearest"] and (im["nearest"][0]["same_source"] or 0) >= 0.5
    )
    tail = (
        f"<p>{len(reposts)} exact re-post(s) (the same file, by sha256, in another case)"
        + (
            f"; {linked} image(s) whose nearest indexed image has the same source at p >= 0.5"
            if seen.get("same_source")
            else ""
        )
        + ".</p>"
    )
    table = (
        "<table><tr><th>image</th><th>indexed before as</th></tr>" + again + "</table>"
        if again
        else ""
    )
    return head + groups + tail + table


def render_report(
    rows: list[dict],
    groups: dict,
    analyzer=None,
    card: dict | None = None,
    title: str = "",
    seen: dict | None = None,
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
    views = {g["group"]: group_views(g["members"], analyzer) for g in groups["groups"]}
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>gmtrace report {html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>gmtrace report {html.escape(title)}</h1><p>written {when}</p>",
        "<h2>Overview</h2><table class='summary'>",
        "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in summary),
        "</table>",
        _overview_html(rows, groups, views),
        "<h2>Verdicts</h2>",
        _table_html(rows, group_of),
        "<h2>Groups</h2>",
    ]
    for g in groups["groups"]:
        parts.append(_group_html(g, views[g["group"]]))
    if not groups["groups"]:
        parts.append("<p>No generated images to group.</p>")
    if seen is not None:
        parts += ["<h2>Seen before in other cases</h2>", _seen_html(seen)]
    parts += ["<h2>Model card</h2>", _card_html(analyzer, card), f"<script>{SCRIPT}</script>"]
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(
    rows: list[dict],
    out: str | Path,
    analyzer=None,
    groups: dict | None = None,
    title: str = "",
    seen: dict | None = None,
) -> Path:
    """Group `rows` (unless `groups` is given) and write the HTML report atomically;
    `seen`: a fingerprint index's answer for the rows (a section of its own)."""

    from gmtrace.product.groups import group_rows

    groups = groups if groups is not None else group_rows(rows)
    card = None
    if analyzer is not None and analyzer.model_dir_ is not None:
        p = Path(analyzer.model_dir_) / "card.json"
        if p.is_file():
            card = json.loads(p.read_text())
    return atomic_write_text(out, render_report(rows, groups, analyzer, card, title, seen))
