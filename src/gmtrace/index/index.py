"""A persistent fingerprint index: the analyzed rows of every case added, so that
the images of a new case can be traced to the cases where their generator was
seen before.

`FingerprintIndex(location)` (a folder, or a PostgreSQL URL) joins the rows
(`store`, the record) and one nearest-neighbour structure per model id (`vectors`,
a cache of the record). A query answers per image its nearest images of other
cases (distance, case, date, the stored verdict and group, and where the model has
one, the probability that the two share their source GM: `SameSource`), and
whether the very file (its sha256) was indexed before: an exact re-post, told apart
from "same generator, other image". Per group of the query, the stored groups its
images' neighbours fall in. Embeddings of different models never meet: a query
whose rows are of a model the index does not hold is refused with what to do
(`IndexModelError`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gmtrace.index.store import AddSummary, IndexStoreError, open_store
from gmtrace.index.vectors import VectorCache

K = 10
SAME_SOURCE = "same_source"  # its key in a model's adopted.json


class IndexModelError(IndexStoreError):
    """Rows of a model whose embeddings the index does not hold."""


@dataclass(frozen=True)
class SameSource:
    """P(two images share their source GM | cosine distance d) = sigmoid(bias +
    weight * d), fitted on held-out codebases' images (`fit_same_source`)."""

    weight: float
    bias: float

    def __call__(self, distance: np.ndarray) -> np.ndarray:
        z = self.bias + self.weight * np.asarray(distance, dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))

    @classmethod
    def of_model(cls, model_dir: str | Path) -> SameSource | None:
        """The model folder's map (adopted.json), or None where it has none."""
        from gmtrace.readout.saved import read_adopted

        try:
            rec = read_adopted(model_dir)[SAME_SOURCE]
            return cls(float(rec["weight"]), float(rec["bias"]))
        except (ValueError, KeyError, TypeError):
            return None


def fit_same_source(
    emb: np.ndarray, gm: np.ndarray, fold: np.ndarray, k: int = K
) -> tuple[SameSource, dict]:
    """The same-source map from images of generators the network never saw: within
    each fold (its own network, its own embedding space), every image's `k` nearest
    other images, labelled by whether they share its GM, as a query meets them; a
    logistic fit of that label on the cosine distance (no reweighting: the share of
    same-GM neighbours is the prior a query has). Returns the map and what it was
    fitted on (pairs, the same-GM share, the precision and recall at p >= 0.5)."""
    from sklearn.linear_model import LogisticRegression

    dist, same = [], []
    for f in np.unique(fold):
        rows = np.flatnonzero(fold == f)
        if len(rows) < 2:
            continue
        x = np.asarray(emb[rows], dtype=np.float64)
        x /= np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
        kk = min(k, len(rows) - 1)
        for lo in range(0, len(rows), 2048):  # bounded memory: a block of rows at a time
            sim = x[lo : lo + 2048] @ x.T
            sim[np.arange(len(sim)), lo + np.arange(len(sim))] = -np.inf
            nn = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
            dist.append(1.0 - np.take_along_axis(sim, nn, 1).ravel())
            same.append((gm[rows][nn] == gm[rows][lo : lo + 2048, None]).ravel())
    d, y = np.concatenate(dist), np.concatenate(same).astype(int)
    if len(np.unique(y)) < 2:
        raise ValueError("every neighbour shares its image's GM, or none does: nothing to fit")
    lr = LogisticRegression(C=1e4).fit(d[:, None], y)
    m = SameSource(float(lr.coef_[0, 0]), float(lr.intercept_[0]))
    linked = m(d) >= 0.5
    record = {
        "pairs": int(len(d)),
        "k": k,
        "same_gm_share": round(float(y.mean()), 4),
        "precision_at_half": round(float(y[linked].mean()), 4) if linked.any() else None,
        "recall_at_half": round(float(linked[y == 1].mean()), 4),
        "distance_at_half": round(-m.bias / m.weight, 4) if m.weight else None,
    }
    return m, record


def fit_on_run(
    arrays: dict[str, np.ndarray], method: str, folds: Iterable[int] | None = None
) -> tuple[SameSource, dict]:
    """`fit_same_source` on a run's out-of-fold answers (`evaluation.protocol.
    save_out_of_fold`): `method`'s embeddings of the unseen images, their GMs and
    folds; only the images of `folds` where given."""
    fold = arrays["unseen.fold"].astype(int)
    keep = np.ones(len(fold), bool) if folds is None else np.isin(fold, list(folds))
    gm = arrays["unseen.gm"].astype(int)
    return fit_same_source(arrays[f"{method}.emb"][keep], gm[keep], fold[keep])


def _votes(ids: np.ndarray, dist: np.ndarray, radius, label) -> Counter:
    """How many images have each label among their neighbours (`ids`, `dist`, one
    row per image) no further than their own `radius`; `label(row id)` is None for
    a neighbour that counts for none."""
    votes: Counter = Counter()
    for row_ids, row_d, r in zip(ids, dist, radius, strict=True):
        votes.update(
            {
                lab
                for i, d in zip(row_ids, row_d, strict=True)
                if i >= 0 and d <= r and (lab := label(int(i))) is not None
            }
        )
    return votes


def _date(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")


class FingerprintIndex:
    def __init__(self, location: str | Path, create: bool = False) -> None:
        """`location`: an index folder (SQLite), or a PostgreSQL URL."""
        self.store = open_store(location, create=create)
        self._caches: dict[str, VectorCache] = {}

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> FingerprintIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def cache(self, model_id: str) -> VectorCache:
        if model_id not in self._caches:
            self._caches[model_id] = VectorCache(self.store, model_id)
        return self._caches[model_id]

    def add(self, case: str, rows: list[dict], groups: dict | None = None, **kw) -> AddSummary:
        """Add a scan's rows as case `case`; `groups`: a `gmtrace group` output whose
        group numbers the rows keep, each group with its source id: the one `gmtrace
        group --index` found (its "source"), else the one an earlier, interrupted add
        of the same case gave it, else the one `link_sources` finds now (where the
        index holds the rows' one model), else a new one."""
        by_path, source_of = {}, {}
        groups = groups or {}
        before = self.store.case_sources(case)  # an add of this case killed midway
        todo = [
            g
            for g in groups.get("groups", [])
            if "source" not in g and not any(m in before for m in g.get("members", []))
        ]
        models = {r["model_id"] for r in rows if r.get("ok") and r.get("embedding")}
        linkable = todo and len(models) == 1 and self.store.holds(next(iter(models)))
        found = self.link_sources(rows, {"groups": todo}, exclude_case=case) if linkable else {}
        for g in groups.get("groups", []):
            members = g.get("members", [])
            by_path |= dict.fromkeys(members, int(g["group"]))
            sid = (g.get("source") or found.get(g["group"]) or {}).get("id")
            if sid is None:
                sid = next((before[m] for m in members if m in before), None)
            sid = int(sid) if sid is not None else self.store.new_source(case)
            source_of |= dict.fromkeys(members, sid)
        summary = self.store.add(case, rows, by_path, sources=source_of, **kw)
        for cache in self._caches.values():  # the open caches take the new rows now
            cache.refresh()
        return summary

    def link_sources(
        self,
        rows: list[dict],
        groups: dict,
        exclude_case: str | None = None,
        k: int = 5,
        share: float = 0.5,
    ) -> dict[int, dict]:
        """Per group of `groups` (of these rows), the stored source (generator) it
        continues: the source id that at least `share` of its images have among
        their `k` nearest indexed images (outside `exclude_case`) within their own
        scale (no further than their k-th nearest image of their own group);
        {"id": None} where none does (a generator not seen before)."""
        usable = {r["path"]: r for r in rows if r.get("ok") and r.get("embedding")}
        out = {g["group"]: {"id": None, "share": 0.0, "seen_in": []} for g in groups["groups"]}
        if not usable or not out:
            return out
        model_id = self.check_model(list(usable.values()))
        for g in groups["groups"]:
            members = [m for m in g.get("members", []) if m in usable]
            answer = out[g["group"]]
            if len(members) < 2:
                continue  # an image alone has no scale of its own to judge by
            x = np.array([usable[m]["embedding"] for m in members], dtype=np.float64)
            x /= np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
            inner = 1.0 - x @ x.T
            np.fill_diagonal(inner, np.inf)
            kk = min(k, len(members) - 1)
            radius = np.sort(inner, axis=1)[:, kk - 1]
            ids, dist = self._nearest(model_id, x, k, exclude_case)
            src = self.store.sources_of(ids[ids >= 0].tolist())
            votes = _votes(ids, dist, radius, src.get)
            if votes:
                sid, n = votes.most_common(1)[0]
                if n >= share * len(members):
                    answer |= {"id": int(sid), "share": round(n / len(members), 4)}
                    answer["seen_in"] = self.store.cases_of_source(int(sid))
        return out

    def check_model(self, rows: list[dict]) -> str:
        """The one model id of `rows`' analyzed images, if the index holds it."""
        ids = sorted({r["model_id"] for r in rows if r.get("ok") and r.get("embedding")})
        if len(ids) > 1:
            raise IndexModelError(
                f"the rows are of {len(ids)} models ({', '.join(ids)}): one at a time"
            )
        if not ids:
            raise IndexModelError("no analyzed image with an embedding among the rows")
        if not self.store.holds(ids[0]) and (held := self.store.models()):
            listed = ", ".join(f"{m} ({n} images)" for m, n in held.items())
            raise IndexModelError(
                f"the index holds embeddings of {listed}; these rows are of model {ids[0]}, "
                "whose distances do not compare with them. Scan again with the index's model, "
                "or re-embed the indexed images whose files are still readable: "
                "`gmtrace index reembed --model MODEL_DIR`"
            )
        return ids[0]

    def query(
        self,
        rows: list[dict],
        k: int = K,
        exclude_case: str | None = None,
        same_source: SameSource | None = None,
        groups: dict | None = None,
    ) -> dict:
        """Per analyzed row, its `k` nearest indexed images outside case
        `exclude_case` and its exact re-posts; per group of `groups` (a `gmtrace
        group` output of these rows), the stored groups its images lead to."""
        model_id = self.check_model(rows)
        usable = [r for r in rows if r.get("ok") and r.get("embedding")]
        emb = np.array([r["embedding"] for r in usable], dtype=np.float64)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)
        ids, dist = self._nearest(model_id, emb, k, exclude_case)
        stored = self.store.rows(np.unique(ids[ids >= 0]))
        at = {int(i): j for j, i in enumerate(stored.ids)}
        reposts = self.store.same_files(r["sha256"] for r in usable if r.get("sha256"))
        images = []
        for r, row_ids, row_d in zip(usable, ids, dist, strict=True):
            near = []
            for i, d in zip(row_ids, row_d, strict=True):
                if i < 0:
                    continue
                j = at[int(i)]
                near.append(
                    {
                        "case": stored.case[j],
                        "path": stored.path[j],
                        "distance": round(float(d), 6),
                        "date": _date(stored.added[j]),
                        "verdict": stored.verdict[j],
                        "group": stored.group[j],
                        "same_source": None
                        if same_source is None
                        else round(float(same_source(np.array([d]))[0]), 4),
                        "same_file": stored.sha256[j] == r.get("sha256"),
                    }
                )
            again = [
                {"case": c, "path": p}
                for c, p in reposts.get(r.get("sha256"), [])
                if c != exclude_case
            ]
            images.append(
                {"path": r["path"], "sha256": r.get("sha256"), "reposted": again, "nearest": near}
            )
        out = {
            "model_id": model_id,
            "indexed": len(self.cache(model_id)),
            "k": k,
            "excluded_case": exclude_case,
            "same_source": None if same_source is None else vars(same_source),
            "images": images,
            "groups": self._group_links(images, groups) if groups else [],
        }
        return out

    def _nearest(
        self, model_id: str, emb: np.ndarray, k: int, exclude_case: str | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """[N, k] ids and distances of the nearest rows outside `exclude_case`: the
        approximate index asked for more, the rows of that case dropped; where too
        few remain, an exact search over the other cases' rows."""
        cache = self.cache(model_id)
        if exclude_case is None:
            return cache.search(emb, k)
        inside = self.store.case_size(exclude_case, model_id)
        ask = min(len(cache), k + min(inside, 4 * k) + 8)
        ids, dist = cache.search(emb, ask)
        out_ids = np.full((len(emb), k), -1, dtype=np.int64)
        out_d = np.full((len(emb), k), np.inf)
        outside = len(cache) - inside
        stored = self.store.rows(np.unique(ids[ids >= 0]))
        case_of = dict(zip(stored.ids.tolist(), stored.case, strict=True))
        exact = None
        for n in range(len(emb)):
            keep = [j for j in range(ask) if ids[n, j] >= 0 and case_of[ids[n, j]] != exclude_case]
            if len(keep) < min(k, outside):  # the case crowds the neighbourhood
                if exact is None:
                    exact = self.store.vectors(model_id, exclude_case)
                e_ids, e_vec = exact
                d = 1.0 - e_vec.astype(np.float64) @ emb[n]
                order = np.argsort(d, kind="stable")[:k]
                out_ids[n, : len(order)], out_d[n, : len(order)] = e_ids[order], d[order]
                continue
            keep = keep[:k]
            out_ids[n, : len(keep)], out_d[n, : len(keep)] = ids[n, keep], dist[n, keep]
        return out_ids, out_d

    @staticmethod
    def _group_links(images: list[dict], groups: dict, most: int = 3) -> list[dict]:
        """Per query group: the stored (case, group) its images' nearest neighbours
        fall in, by the share of its images with one there among their neighbours."""
        near_of = {im["path"]: im["nearest"] for im in images}
        out = []
        for g in groups.get("groups", []):
            members = [m for m in g.get("members", []) if m in near_of]
            hits: dict[tuple, list[float]] = defaultdict(list)
            for m in members:
                best: dict[tuple, float] = {}
                for nb in near_of[m]:
                    key = (nb["case"], nb["group"])
                    best[key] = min(best.get(key, math.inf), nb["distance"])
                for key, d in best.items():
                    hits[key].append(d)
            ranked = sorted(hits.items(), key=lambda kv: (-len(kv[1]), float(np.median(kv[1]))))
            out.append(
                {
                    "group": g["group"],
                    "size": len(members),
                    "seen_in": [
                        {
                            "case": case,
                            "group": grp,
                            "share": round(len(d) / max(len(members), 1), 4),
                            "median_distance": round(float(np.median(d)), 6),
                        }
                        for (case, grp), d in ranked[:most]
                    ],
                }
            )
        return out

    def show(self) -> dict:
        """The cases, the models, and the stored groups that recur across cases (a
        group of one case whose images' nearest neighbours in the other cases
        mostly fall in one group there)."""
        return {
            "schema_version": self.store.schema_version,
            "models": self.store.models(),
            "cases": self.store.cases(),
            "recurring": self.recurring(),
            "sources": self.store.recurring_sources(),
        }

    def recurring(self, k: int = 5, share: float = 0.5, most: int = 50) -> list[dict]:
        """Stored groups linked to a group of another case: for each (case, group),
        the other cases' group that most of its images have within their own scale
        (no further than their `k`-th nearest image of their own group), where at
        least `share` of its images do."""
        links = []
        for model_id in self.store.models():
            got = self.store.grouped(model_id)
            if not got:
                continue
            members: dict[tuple, list[int]] = defaultdict(list)
            for i, case, grp in got:
                members[(case, grp)].append(i)
            ids_all = [g[0] for g in got]
            vec_of = dict(zip(ids_all, self.store.embeddings(ids_all), strict=True))
            cache = self.cache(model_id)
            for (case, grp), ids in members.items():
                nids, nd = cache.search(np.stack([vec_of[i] for i in ids]), k + len(ids))
                stored = self.store.rows(np.unique(nids[nids >= 0]))
                place = {
                    int(i): (c, g)
                    for i, c, g in zip(stored.ids, stored.case, stored.group, strict=True)
                }
                # each image's own scale: its k-th nearest image of its own group
                radius = []
                for row, dist in zip(nids, nd, strict=True):
                    own = [
                        d
                        for i, d in zip(row, dist, strict=True)
                        if place.get(int(i)) == (case, grp)
                    ]
                    own = own[1:]  # itself first
                    radius.append(own[min(k, len(own)) - 1] if own else 0.0)

                # the groups of other cases
                elsewhere = {i: w for i, w in place.items() if w[0] != case and w[1] is not None}
                votes = _votes(nids, nd, radius, elsewhere.get)
                for (c2, g2), n in votes.most_common(1):
                    if n >= share * len(ids) and (c2, g2, case, grp) not in {
                        (x["case"], x["group"], x["linked_case"], x["linked_group"]) for x in links
                    }:
                        links.append(
                            {
                                "case": case,
                                "group": grp,
                                "size": len(ids),
                                "linked_case": c2,
                                "linked_group": g2,
                                "share": round(n / len(ids), 4),
                                "model_id": model_id,
                            }
                        )
        return sorted(links, key=lambda x: -x["share"] * x["size"])[:most]
