"""`gmtrace report`: one self-contained HTML file of a case."""

from __future__ import annotations

import html
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

from typer.testing import CliRunner

from gmtrace.cli.main import app
from gmtrace.product.scan import read_results

runner = CliRunner()


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_report_of_a_scanned_case(small_model_dir: Path, tiny_zoo_dir: Path, tmp_path: Path):
    case = tmp_path / "case"
    for gm in sorted((tiny_zoo_dir / "fake").glob("*"))[:3]:
        (case / gm.name).mkdir(parents=True)
        for p in sorted(gm.glob("*.png"))[:4]:
            shutil.copy(p, case / gm.name / p.name)
    (case / "broken.png").write_bytes(b"<html>not an image</html>")
    model = ["--model", str(small_model_dir)]
    scan_out, groups, out = tmp_path / "s.csv", tmp_path / "g.json", tmp_path / "r.html"
    assert runner.invoke(app, ["scan", str(case), "--out", str(scan_out), *model]).exit_code == 0
    r = runner.invoke(app, ["group", str(scan_out), "--out", str(groups), "--all"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        [
            "report",
            str(scan_out),
            "--out",
            str(out),
            "--groups",
            str(groups),
            "--title",
            "c<1>",
            *model,
        ],
    )
    assert r.exit_code == 0, r.output
    assert f"{out}" in r.output and "self-contained" in r.output
    text = out.read_text(encoding="utf-8")
    p = _Collect()
    p.feed(text)
    # nothing is fetched: every image is inline, no external script, style or link
    imgs = [a["src"] for t, a in p.tags if t == "img"]
    assert imgs and all(s.startswith("data:image/png;base64,") for s in imgs)
    assert not any(t in ("link", "iframe") or (t == "script" and "src" in a) for t, a in p.tags)
    assert "http://" not in text and "https://" not in text
    rows = read_results(scan_out)
    g = json.loads(groups.read_text())
    body = "".join(p.text)
    for row in rows:  # every file in the verdict table, the broken one with its error
        assert row["path"] in body
    assert "not an image" in body and "c<1>" in body and html.escape("c<1>") in text
    sections = [a for t, a in p.tags if t == "section" and a.get("class") == "group"]
    assert len(sections) == len(g["groups"]) >= 1
    assert body.count("mean residual spectrum") == len(g["groups"])
    assert body.count("mean fingerprint") == len(g["groups"])
    assert "Model card" in body and "weights sha256" in body and "sortBy(" in text
    # the overview before the verdicts: the histogram of p by verdict, a strip per group
    assert (
        text.index("<h2>Overview</h2>")
        < text.index('<svg class="hist"')
        < text.index("<h2>Verdicts</h2>")
    )
    ok = [r for r in rows if r["ok"]]
    called = {v: sum(r["verdict"] == v for r in ok) for v in ("generated", "unsure", "real")}
    for v, n in called.items():  # the histogram's legend counts every analyzed image
        assert f"{v} ({n})" in body
    assert sum(called.values()) == len(ok)
    links = [a["href"] for t, a in p.tags if t == "a"]
    assert sorted(links) == sorted(f"#group-{x['group']}" for x in g["groups"])
    # the table's rows carry thumbnails of readable files; the pager drives it
    thumbs = [a for t, a in p.tags if t == "img" and a.get("class") == "t"]
    assert len(thumbs) == len(ok)
    assert 'data-page-rows="100"' in text and "turn(1)" in text
