"""The fingerprint index on generators no network of it saw: retrieval and links
across cases, on a codebase-held-out run's unseen GMs (issue 24, item 5).

    .venv/bin/python benchmarks/index_retrieval.py --run runs/eval_codebase_index
        [--method fused] [--cases-per-gm 2,4] [--seed 0] [--write]

The run (`gmtrace evaluate --holdout codebase`) kept, among its out-of-fold
answers, every unseen image's embedding by its own fold's network (which never saw
that GM's codebase), its GM and its fold. Per fold, separately (each fold's network
has its own embedding space):

* the cases: each GM's images are shuffled and cut into 2-4 parts (`--cases-per-gm`),
  the parts shuffled and packed into cases whose target sizes are drawn
  log-uniform in [50, min(5000, a quarter of the fold's images)] (at least about
  four cases, so that a GM can meet several: a fold's unseen images bound its
  cases; a case ends once its parts reach the target, the last takes what is
  left); the cases are added in that
  order, as an analyst would over weeks, each grouped first as `gmtrace group` does
  (the method's grouping of that fold: the fused model's density grouping with its
  nested `grouping_min_size`, or the silhouette cut), every image called generated
  (detection is measured elsewhere: this is the index given the generated images);
* the same-source map: fitted as `gmtrace index calibrate` fits it, on the other
  folds' unseen images only (never on this fold's: nested);
* retrieval: once every case is in, each image whose GM is in another case queries
  the index (its 10 nearest outside its own case, `FingerprintIndex.query`, the
  approximate search): hit@10 (a same-GM image among them), precision@10 (the share
  of the 10 of its GM);
* links at the calibrated threshold: over those (image, neighbour) pairs, a link
  where the same-source probability is at least 0.5: precision (linked pairs of the
  same GM) and recall (same-GM pairs linked);
* sources: of the GMs met again in a later case, the share whose images in that
  case mostly carry (by `gmtrace index add`'s linking, `link_sources`) a source id
  made for that GM in an earlier case; and the share carrying an earlier source made
  for another GM (a wrong link). A source id is made for the GM most of its first
  images are of.

Folds pooled by summing their counts; each fold's own figures beside.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

K = 10


def spread(gm: np.ndarray, rng, parts: tuple[int, int]) -> list[np.ndarray]:
    """The fold's images (indices) as cases, in the order they are added."""
    pieces = []
    for g in np.unique(gm):
        idx = rng.permutation(np.flatnonzero(gm == g))
        n = int(rng.integers(parts[0], parts[1] + 1))
        pieces += [p for p in np.array_split(idx, min(n, len(idx))) if len(p)]
    order = rng.permutation(len(pieces))
    top = min(5000, max(50, len(gm) // 4))  # at least four cases: a GM can meet several
    cases, current, target = [], [], _target(rng, top)
    for i in order:
        current.append(pieces[i])
        if sum(len(p) for p in current) >= target:
            cases.append(np.concatenate(current))
            current, target = [], _target(rng, top)
    if current:
        cases.append(np.concatenate(current))
    return cases


def _target(rng, top: int) -> int:
    return int(np.exp(rng.uniform(np.log(50), np.log(top))))


def rows_of(x: np.ndarray, gm: np.ndarray, idx: np.ndarray, case: str) -> list[dict]:
    return [
        {
            "path": f"{case}/gm{int(gm[i])}/{int(i)}.png",
            "sha256": f"image-{int(i)}",
            "ok": True,
            "verdict": "generated",
            "p_generated": 1.0,
            "embedding": x[i].tolist(),
            "model_id": "fold",
        }
        for i in idx
    ]


def groups_of(rows: list[dict], min_size: int) -> dict:
    """The rows grouped as `gmtrace group` groups them (`groups.group_numbers`), in
    its output's form."""
    from gmtrace.product.groups import group_numbers

    numbers = group_numbers(np.array([r["embedding"] for r in rows]), min_size)
    return {
        "groups": [
            {
                "group": k,
                "members": [r["path"] for r, n in zip(rows, numbers, strict=True) if n == k],
            }
            for k in range(1, int(numbers.max()) + 1)
        ]
    }


def gm_of(path: str) -> int:
    return int(path.split("/")[1][2:])


def min_size_of(run: Path, fold: int, method: str) -> int:
    """The fold's grouping as the method chose it (nested): the fused model's
    smallest density group, else 0 (the silhouette cut)."""
    f = run / f"fold{fold}" / "fused" / "fusion.json"
    if method == "fused" and f.is_file():
        return int(json.loads(f.read_text()).get("grouping_min_size") or 0)
    return 0


def one_fold(x, gm, same, fit: dict, fold: int | str, min_size: int, rng, parts) -> dict:
    """The cases of one embedding space (`x`, each image's GM `gm`), added and
    queried; `same`: the same-source map (fitted as `fit` says), `min_size`: the
    grouping's smallest density group (0: the silhouette cut)."""
    from gmtrace.index.index import FingerprintIndex

    cases = spread(gm, rng, parts)
    names = [f"case{j:03d}" for j in range(len(cases))]
    source_gm: dict[int, int] = {}  # a source id: the GM most of its first images are of
    met_again = linked = wrong = 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, FingerprintIndex(tmp, create=True) as index:
        for j, (name, idx) in enumerate(zip(names, cases, strict=True)):
            rows = rows_of(x, gm, idx, name)
            index.add(name, rows, groups_of(rows, min_size))
            src = index.store.case_sources(name)
            new = {s for s in set(src.values()) if s not in source_gm}
            for s in new:
                source_gm[s] = Counter(gm_of(p) for p, v in src.items() if v == s).most_common(1)[
                    0
                ][0]
            earlier = {int(g) for i in range(j) for g in np.unique(gm[cases[i]])}
            for g in np.unique(gm[idx]):
                if int(g) not in earlier:
                    continue
                met_again += 1
                carried = Counter(
                    src.get(r["path"]) for r in rows if gm_of(r["path"]) == g
                ).most_common(1)[0][0]
                old = carried is not None and carried not in new
                linked += int(old and source_gm[carried] == g)
                wrong += int(old and source_gm[carried] != g)
        add_s = time.perf_counter() - t0
        hits = prec = queried = 0
        pairs_same = pairs_linked = pairs_linked_same = 0
        per_gm_cases = {
            int(g): {j for j, c in enumerate(cases) if g in gm[c]} for g in np.unique(gm)
        }
        for j, (name, idx) in enumerate(zip(names, cases, strict=True)):
            rows = [
                r
                for r in rows_of(x, gm, idx, name)
                if len(per_gm_cases[gm_of(r["path"])] - {j}) > 0
            ]
            if not rows:
                continue
            ans = index.query(rows, k=K, exclude_case=name, same_source=same)
            for im in ans["images"]:
                g = gm_of(im["path"])
                ok = np.array([gm_of(n["path"]) == g for n in im["nearest"]], bool)
                link = np.array([n["same_source"] >= 0.5 for n in im["nearest"]], bool)
                queried += 1
                hits += int(ok.any())
                prec += float(ok.mean()) if len(ok) else 0.0
                pairs_same += int(ok.sum())
                pairs_linked += int(link.sum())
                pairs_linked_same += int((ok & link).sum())
    sizes = [len(c) for c in cases]
    return {
        "fold": fold,
        "gms": int(len(np.unique(gm))),
        "images": int(len(gm)),
        "cases": len(cases),
        "case_sizes": [int(min(sizes)), int(np.median(sizes)), int(max(sizes))],
        "cases_per_gm": float(np.mean([len(v) for v in per_gm_cases.values()])),
        "min_size": min_size,
        "same_source_fit": {"weight": same.weight, "bias": same.bias} | fit,
        "queried": queried,
        "hit_at_10": hits,
        "precision_at_10_sum": prec,
        "pairs_same": pairs_same,
        "pairs_linked": pairs_linked,
        "pairs_linked_same": pairs_linked_same,
        "met_again": met_again,
        "linked": linked,
        "wrong": wrong,
        "add_seconds": add_s,
    }


def figures(r: dict) -> dict:
    q, pl, ps = r["queried"], r["pairs_linked"], r["pairs_same"]
    return {
        "hit@10": r["hit_at_10"] / q if q else None,
        "precision@10": r["precision_at_10_sum"] / q if q else None,
        "link precision": r["pairs_linked_same"] / pl if pl else None,
        "link recall": r["pairs_linked_same"] / ps if ps else None,
        "GMs met again, linked": r["linked"] / r["met_again"] if r["met_again"] else None,
        "GMs met again, wrongly linked": r["wrong"] / r["met_again"] if r["met_again"] else None,
    }


def table(results: list[dict]) -> str:
    pooled = {
        k: sum(r[k] for r in results)
        for k in (
            "queried",
            "hit_at_10",
            "precision_at_10_sum",
            "pairs_same",
            "pairs_linked",
            "pairs_linked_same",
            "met_again",
            "linked",
            "wrong",
        )
    }
    cols = list(figures(pooled))
    head = (
        "| fold | unseen GMs (images) | cases (size min/median/max) | cases per GM | "
        + " | ".join(cols)
        + " |\n|---|---|---|---|"
        + "---|" * len(cols)
        + "\n"
    )

    def fmt(v) -> str:
        return "-" if v is None else f"{v:.3f}"

    body = ""
    for r in results:
        s = r["case_sizes"]
        body += (
            f"| {r['fold']} | {r['gms']} ({r['images']:,}) | {r['cases']} ({s[0]}/{s[1]}/{s[2]}) "
            f"| {r['cases_per_gm']:.1f} | "
            + " | ".join(fmt(v) for v in figures(r).values())
            + " |\n"
        )
    f = figures(pooled)
    body += (
        f"| pooled | {sum(r['gms'] for r in results)} ({sum(r['images'] for r in results):,}) "
        f"| {sum(r['cases'] for r in results)} | | "
        + " | ".join(fmt(v) for v in f.values())
        + " |\n"
    )
    return head + body


def from_run(a, rng, parts) -> list[dict]:
    """Each fold of a codebase-held-out run, in its own network's space."""
    from gmtrace.evaluation.adopt import read_out_of_fold
    from gmtrace.index.index import fit_on_run

    arrays = read_out_of_fold(a.run)
    if f"{a.method}.emb" not in arrays:
        raise SystemExit(
            f"{a.run}: no embeddings of {a.method!r} (a run made before they were kept)"
        )
    emb, gm = arrays[f"{a.method}.emb"], arrays["unseen.gm"].astype(int)
    fold = arrays["unseen.fold"].astype(int)
    results = []
    for f in np.unique(fold):
        here = fold == f
        same, fit = fit_on_run(arrays, a.method, set(fold.tolist()) - {f})  # nested
        ms = min_size_of(a.run, int(f), a.method)
        r = one_fold(emb[here], gm[here], same, fit, int(f), ms, rng, parts)
        results.append(r)
        print(json.dumps(r | figures(r)), flush=True)
    return results


def scan_rows(path: Path) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """A scan's analyzed rows: embeddings, each image's GM (its folder's name, as a
    number), the rows."""
    from gmtrace.product.scan import read_results

    rows = [r for r in read_results(path) if r.get("ok") and r.get("embedding")]
    names = sorted({Path(r["path"]).parent.name for r in rows})
    gm = np.array([names.index(Path(r["path"]).parent.name) for r in rows])
    return np.array([r["embedding"] for r in rows], dtype=np.float64), gm, rows


def from_scan(a, rng, parts) -> list[dict]:
    """A model's own scan of GMs it never saw (each image's GM: its folder's name),
    with a same-source map fitted on other GMs: the same model's scan `--map-scan`
    of other GMs it never saw, or the run's folds `--calibration-folds` (whose
    unseen GMs must not be the scan's; other networks); the grouping the product
    uses for that model."""
    from gmtrace.cli.product import _grouping_of
    from gmtrace.evaluation.adopt import read_out_of_fold
    from gmtrace.index.index import fit_on_run, fit_same_source

    x, gm, rows = scan_rows(a.scan)
    if a.map_scan:
        mx, mgm, _ = scan_rows(a.map_scan)
        same, fit = fit_same_source(mx, mgm, np.zeros(len(mgm), dtype=int))
        fit |= {"scan": str(a.map_scan)}
    else:
        folds = [int(v) for v in a.calibration_folds.split(",")]
        same, fit = fit_on_run(read_out_of_fold(a.run), a.method, folds)
        fit |= {"run": str(a.run), "folds": a.calibration_folds}
    ms = _grouping_of(a.model, rows)
    r = one_fold(x, gm, same, fit, Path(a.scan).name, ms, rng, parts)
    print(json.dumps(r | figures(r)), flush=True)
    return [r]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, help="a codebase-held-out run (its out-of-fold answers)")
    ap.add_argument("--method", default="fused")
    ap.add_argument("--scan", type=Path, help="a model's scan of GMs it never saw (.jsonl)")
    ap.add_argument("--model", type=Path, help="the model that made --scan")
    ap.add_argument("--calibration-folds", default="0", help="with --scan: the run's folds")
    ap.add_argument("--map-scan", type=Path, help="with --scan: the same model's scan of other GMs")
    ap.add_argument("--cases-per-gm", default="2,4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    if a.run is None and not (a.scan and a.map_scan):
        ap.error("give --run, or --scan with --map-scan")
    parts = tuple(int(v) for v in a.cases_per_gm.split(","))
    rng = np.random.default_rng(a.seed)
    results = from_scan(a, rng, parts) if a.scan else from_run(a, rng, parts)
    text = table(results)
    print(text)
    if a.write:
        import zoo_build  # benchmarks/: machine(), write_section(); it imports torch

        common = (
            "spread over cases added one after another (each GM cut into "
            f"{parts[0]}-{parts[1]} parts, cases of 50 to min(5,000, a quarter of the images) "
            "images), "
            "each case grouped as `gmtrace group` does and added; every image called "
            "generated. hit@10: a same-GM image among an image's 10 nearest in other "
            "cases; precision@10: the share of them; links: (image, neighbour) pairs at "
            "same-source p >= 0.5; GMs met again: of the GMs in a later case that an "
            "earlier case held, the share whose images there mostly carry the source id "
            "made for that GM earlier (linked) or one made for another GM (wrongly "
            "linked). Method and definitions: the script's docstring.\n\n"
        )
        if a.scan:
            fitted = (
                f"--map-scan {a.map_scan}"
                if a.map_scan
                else f"--run {a.run} --method {a.method} --calibration-folds {a.calibration_folds}"
            )
            cmd = (
                f"`.venv/bin/python benchmarks/index_retrieval.py --scan {a.scan} --model "
                f"{a.model} {fitted} --cases-per-gm {a.cases_per_gm} --seed {a.seed}`"
            )
            where = (
                f"the same model's scan {a.map_scan} (other GMs it never saw)"
                if a.map_scan
                else f"the run's fold(s) {a.calibration_folds} only (other GMs, other networks)"
            )
            head = (
                f"### {a.model} on {Path(a.scan).name}, its map fitted on {where}\n\n{cmd} "
                f"({zoo_build.machine()}). The images of {a.scan}, embedded by {a.model}, "
                "each image's GM its folder, "
            )
            section = f"index-retrieval-{Path(a.scan).stem}-{Path(a.map_scan or a.run).stem}"
        else:
            cmd = (
                f"`.venv/bin/python benchmarks/index_retrieval.py --run {a.run} "
                f"--method {a.method} --cases-per-gm {a.cases_per_gm} --seed {a.seed}`"
            )
            head = (
                f"## Fingerprint index on held-out codebases (issue 24)\n\n{cmd} "
                f"({zoo_build.machine()}). Each fold's unseen GMs (codebases its network "
                "never saw), embedded by that fold's network, the same-source map of a fold "
                "fitted on the other folds' unseen GMs only, "
            )
            section = "index-retrieval"
        zoo_build.write_section(section, head + common + text)


if __name__ == "__main__":
    main()
