"""Cross-validation splits of the evaluation protocol (DESIGN.md).

* GMs are held out per fold: a test GM contributes no image to training. Folds are
  stratified by family, so every fold tests every family it can.
* Real images are split by source photograph, never by crop: crops of one photo
  share content, and a crop-level split would leak it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def _deal(groups: dict[str, list[str]], k: int, rng: np.random.Generator) -> list[list[str]]:
    """Shuffle each group and deal its members round-robin over k folds, starting
    each group where the last one stopped, so fold sizes differ by at most one."""
    folds: list[list[str]] = [[] for _ in range(k)]
    start = 0
    for key in sorted(groups):
        members = [groups[key][i] for i in rng.permutation(len(groups[key]))]
        for j, m in enumerate(members):
            folds[(start + j) % k].append(m)
        start = (start + len(members)) % k
    return [sorted(f) for f in folds]


def gm_folds(
    names: Sequence[str], families: Sequence[str], k: int = 4, seed: int = 0
) -> list[list[str]]:
    """k disjoint sets of test GMs covering all GMs, stratified by family."""
    if len(names) != len(families):
        raise ValueError(f"{len(names)} names but {len(families)} families")
    if len(set(names)) != len(names):
        raise ValueError("GM names must be unique")
    if not 2 <= k <= len(names):
        raise ValueError(f"need 2 <= folds <= number of GMs ({len(names)}), got {k}")
    groups: dict[str, list[str]] = defaultdict(list)
    for n, f in zip(names, families, strict=True):
        groups[f].append(n)
    return _deal(groups, k, np.random.default_rng(seed))


def source_folds(
    sources: Sequence[str], domains: Sequence[str], k: int = 4, seed: int = 0
) -> list[list[str]]:
    """k disjoint sets of real source photographs, stratified by content domain.
    Every crop goes where its source goes."""
    if len(sources) != len(domains):
        raise ValueError(f"{len(sources)} sources but {len(domains)} domains")
    by_source = dict(zip(sources, domains, strict=True))
    if not 2 <= k <= len(by_source):
        raise ValueError(
            f"need 2 <= folds <= number of source photographs ({len(by_source)}), got {k}"
        )
    groups: dict[str, list[str]] = defaultdict(list)
    for s, d in sorted(by_source.items()):
        groups[d].append(s)
    return _deal(groups, k, np.random.default_rng(seed + 1))


def whole_folds(
    names: Sequence[str], keys: Sequence[str], k: int = 4, seed: int = 0, what: str = "families"
) -> list[list[str]]:
    """k disjoint sets of test GMs where every key (a family, a codebase, a tier)
    lies in exactly one fold: a test GM's key has no GM in training. Keys are dealt
    largest first to the fold with the fewest GMs so far (ties broken by a seeded
    shuffle), which keeps the folds' sizes close."""
    if len(names) != len(keys):
        raise ValueError(f"{len(names)} names but {len(keys)} {what}")
    if len(set(names)) != len(names):
        raise ValueError("GM names must be unique")
    groups: dict[str, list[str]] = defaultdict(list)
    for n, f in zip(names, keys, strict=True):
        groups[f].append(n)
    if not 2 <= k <= len(groups):
        raise ValueError(
            f"holding out whole {what} needs 2 <= folds <= number of {what} "
            f"({len(groups)}: {', '.join(sorted(groups))}), got {k}"
        )
    rng = np.random.default_rng(seed)
    order = sorted(groups, key=lambda f: (-len(groups[f]), rng.random()))
    folds: list[list[str]] = [[] for _ in range(k)]
    for key in order:
        smallest = min(range(k), key=lambda i: (len(folds[i]), i))
        folds[smallest].extend(groups[key])
    return [sorted(f) for f in folds]


def family_folds(
    names: Sequence[str], families: Sequence[str], k: int = 4, seed: int = 0
) -> list[list[str]]:
    """Leave-families-out folds (`whole_folds` by family)."""
    return whole_folds(names, families, k, seed, "families")


def collection_folds(
    sources: Sequence[str], collections: Sequence[str], k: int = 4, seed: int = 0
) -> list[list[str]]:
    """Real source photographs held out by collection: fold i tests every photograph
    of collection i mod C (the C collections in a seeded order), so a test photo's
    collection gives no photograph to that fold's training. With more collections
    than folds, fold i holds out collections i, i + k, i + 2k, ..."""
    if len(sources) != len(collections):
        raise ValueError(f"{len(sources)} sources but {len(collections)} collections")
    by_source = dict(zip(sources, collections, strict=True))
    names = sorted(set(by_source.values()))
    if len(names) < 2:
        raise ValueError(
            f"holding out real photographs by collection needs at least 2 collections, "
            f"got {len(names)} ({', '.join(names)})"
        )
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    rng = np.random.default_rng(seed + 2)
    names = [names[i] for i in rng.permutation(len(names))]
    held = [
        {names[j] for j in range(len(names)) if j % k == i} or {names[i % len(names)]}
        for i in range(k)
    ]
    return [sorted(s for s, c in by_source.items() if c in held[i]) for i in range(k)]


def most_common(keys: Sequence[str]) -> str:
    """The key that most items share (a fold's largest codebase); ties go to the
    first in sorted order."""
    counts: dict[str, int] = defaultdict(int)
    for k in keys:
        counts[k] += 1
    return max(sorted(counts), key=lambda k: counts[k])


def inner_validation(
    names: Sequence[str],
    codebases: Sequence[str],
    families: Sequence[str],
    seed: int = 0,
    largest_families: bool = False,
    tiers: Sequence[str] | None = None,
) -> list[str]:
    """The training GMs held out of an inner network so that what is fitted on its
    answers (the fusion, the unsure band, the parsing gate) sees code it never saw:
    never the largest codebase when it holds most GMs (gmtrace's own zoo: an inner
    network without it would not be the network it stands for); of the others, a
    third of the codebases by number (at least 2 where there are 3 or more), drawn
    at random among those that keep the validation within half of their GMs. Many
    codebases, not one large one: a validation of one codebase (19 upscalers of one
    package) has one architecture to tell apart, and tests neither the stacker nor
    the parse on the variety of unseen code. With two codebases, one; with a single
    codebase, a third of the families instead. With `largest_families`, a third of
    the largest codebase's families (at least one) are held back too, where that
    codebase is left out of the pool: the stacker then sees many more unseen GMs
    than the handful of the small codebases (docs/realmodel.md, "Why the shipped
    candidate fails"). With `tiers` (each GM's), every tier with codebases in the
    pool gets at least one of them held back, drawn at random, past the half-room
    rule where need be: the inner validation then holds a kind of generator the
    inner network never saw, as a tier held out whole (docs/realmodel.md, "Inner
    validation with a codebase of every tier")."""
    keys = list(codebases)
    counts: dict[str, int] = defaultdict(int)
    for c in keys:
        counts[c] += 1
    by_family = len(counts) < 2
    if by_family:
        keys = list(families)
        counts = defaultdict(int)
        for f in keys:
            counts[f] += 1
    if len(counts) < 2:
        raise ValueError("an inner validation split needs at least 2 codebases or families")
    largest = most_common(keys)
    pool = [(n, c) for n, c in zip(names, keys, strict=True)]
    if counts[largest] * 2 > len(pool) and len(counts) > 2:
        pool = [(n, c) for n, c in pool if c != largest]
    pool_keys = sorted({c for _, c in pool})
    extra: set[str] = set()
    # the largest codebase left out (by codebase: with one codebase, families are the keys)
    if largest_families and not by_family and len(pool) < len(names):
        fams = sorted({f for f, c in zip(families, codebases, strict=True) if c == largest})
        rng = np.random.default_rng(seed)
        held_fams = {str(f) for f in rng.choice(fams, max(1, len(fams) // 3), replace=False)}
        extra = {
            n
            for n, f, c in zip(names, families, codebases, strict=True)
            if c == largest and f in held_fams
        }
    held = set(_inner_pool(pool, pool_keys, counts, by_family, seed))
    if tiers is not None and not by_family:
        held |= _every_tier(pool, dict(zip(codebases, tiers, strict=True)), held, seed)
    return sorted(held | extra)


def _every_tier(pool, tier_of: dict[str, str], held: set[str], seed: int) -> set[str]:
    """The pool's GMs of one codebase, drawn at random, of each tier that none of
    the GMs `held` belongs to (`inner_validation`'s `tiers`)."""
    rng = np.random.default_rng(seed + 1)
    covered = {tier_of[c] for n, c in pool if n in held}
    add: set[str] = set()
    for tier in sorted({tier_of[c] for _, c in pool} - covered):
        options = sorted({c for _, c in pool if tier_of[c] == tier})
        pick = options[int(rng.integers(len(options)))]
        add |= {n for n, c in pool if c == pick}
    return add


def _inner_pool(pool, pool_keys, counts, by_family: bool, seed: int) -> list[str]:
    """`inner_validation`'s third of the pool's codebases (or families)."""
    if not by_family and len(pool_keys) >= 3:
        rng = np.random.default_rng(seed)
        want, room = max(2, -(-len(pool_keys) // 3)), len(pool) // 2
        held = set()
        for c in [pool_keys[i] for i in rng.permutation(len(pool_keys))]:
            if len(held) < want and sum(counts[h] for h in held) + counts[c] <= room:
                held.add(c)
        if len(held) >= 2:
            return sorted(n for n, c in pool if c in held)
    k = min(3, len(pool_keys))
    folds = whole_folds([n for n, _ in pool], [c for _, c in pool], k, seed, "codebases")
    return folds[0]
