"""How alike two attention heads are, and what that says about a whole model: pure functions.

The similarity of two heads P and Q on one input batch, built on the distance Bhojanapalli et al.
2021 (arXiv 2110.06821) measure attention redundancy with, total variation:

    TV(p, q)  = ½ Σ_k |p_k − q_k|                 total variation between two attention rows
    sim(P, Q) = 1 − mean over counted queries (b, t) of TV(P[b, t, :], Q[b, t, :])

so 1 means identical distributions and 0 means disjoint supports. Which queries count is the
caller's `counted` mask (harness/measure/redundancy.py builds it): a padding query, or one whose row
a causal mask forces to a single key, carries no information about what a head learned.

From the head × head similarities of every pair of layers follow
- the layer × layer matrix: entry [l][s] is the mean over layer l's heads of the similarity of its
  best-matching head in layer s (1 on the diagonal, where every head matches itself);
- the ranked matches of a layer against a donor layer: one-to-one (donor head, own head) pairs,
  greedily the most similar first, so the first K are the K donor heads a reusing layer would best
  take, and the picks for K are the first K of those for K + 1.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

Matrix = list[list[float]]   # rows: heads of the first layer of a pair, columns: heads of the second


def tv_similarity(p: Tensor, q: Tensor, counted: Tensor) -> float:
    """1 − mean TV distance between the rows of two heads' (B, T, T) probabilities.

    `counted` is a (B, T) bool mask of the queries that count. Computed in float32 whatever the
    model's dtype: the sum over T keys of small differences is what rounding would spoil.
    """
    tv = 0.5 * (p.float() - q.float()).abs().sum(dim=-1)   # (B, T)
    picked = tv[counted]
    if picked.numel() == 0:
        raise ValueError("no query counts: every position is padding or masked")
    return 1.0 - float(picked.mean())


def head_similarity(a: Tensor, b: Tensor, counted: Tensor) -> Matrix:
    """(Ha, Hb) similarities of every head of `a` (B, Ha, T, T) with every head of `b` (B, Hb, T, T).

    One pair at a time: the temporary is one head's (B, T, T), not Ha × Hb of them.
    """
    return [[tv_similarity(a[:, i], b[:, j], counted) for j in range(b.shape[1])] for i in range(a.shape[1])]


@dataclass(frozen=True)
class Redundancy:
    """Head × head similarities of every pair of layers (i < j) of one model on one batch."""

    n_layers: int
    heads: dict[tuple[int, int], Matrix]

    def pair(self, first: int, second: int) -> Matrix:
        """Similarities with rows = heads of `first`, columns = heads of `second` (any order)."""
        if first < second:
            return self.heads[(first, second)]
        return [list(col) for col in zip(*self.heads[(second, first)])]

    def layer_matrix(self) -> Matrix:
        """[l][s]: mean over layer l's heads of its best match's similarity in layer s."""
        return [[1.0 if l == s else statistics.fmean(max(row) for row in self.pair(l, s))
                 for s in range(self.n_layers)] for l in range(self.n_layers)]

    def ranked_matches(self, layer: int, donor: int) -> list[tuple[int, int, float]]:
        """(donor head, own head, similarity), one-to-one, greedily most similar first (ties: lower
        indices first). A reused head stands in for one own head, so each is used at most once."""
        sims = self.pair(donor, layer)
        order = sorted(((s, d, o) for d, row in enumerate(sims) for o, s in enumerate(row)),
                       key=lambda item: (-item[0], item[1], item[2]))
        used_donor: set[int] = set()
        used_own: set[int] = set()
        picks = []
        for s, d, o in order:
            if d not in used_donor and o not in used_own:
                picks.append((d, o, s))
                used_donor.add(d)
                used_own.add(o)
        return picks

    def to_json(self, digits: int = 4) -> dict[str, Any]:
        """The stored form: layer matrix, head matrices keyed "i-j", and the ranked matches of each
        layer l >= 1 against the previous layer and layer 0 (the two donors reuse can take from)."""
        def r(x: float) -> float:
            return round(x, digits)

        return {
            "layers": [[r(x) for x in row] for row in self.layer_matrix()],
            "heads": {f"{i}-{j}": [[r(x) for x in row] for row in m] for (i, j), m in sorted(self.heads.items())},
            "matches": {source: {str(l): [[d, o, r(s)] for d, o, s in self.ranked_matches(l, donor(l))]
                                 for l in range(1, self.n_layers)}
                        for source, donor in DONORS.items()},
        }


# Where a reusing layer takes its heads from (models/config.py reuse_source).
DONORS: dict[str, Callable[[int], int]] = {"previous": lambda layer: layer - 1, "first": lambda layer: 0}


def by_distance(layers: Matrix) -> dict[int, float]:
    """Mean of layer-matrix entries [l][s] by layer distance |l − s| >= 1."""
    n = len(layers)
    return {d: statistics.fmean(layers[l][s] for l in range(n) for s in range(n) if abs(l - s) == d)
            for d in range(1, n)}


def summarize(measured: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Across seeds (each a `Redundancy.to_json()`): the mean layer matrix, similarity by layer
    distance, adjacent (distance 1) and non-adjacent (distance >= 2) means, and for each donor the
    mean similarity of the first K ranked matches for each K, per layer that could reuse
    (`picked_by_layer`) and over all of them (`picked`; list index K - 1).

    Head indices are not comparable across seeds (heads are unordered), so only quantities that
    do not depend on which head is which are averaged.
    """
    mats = [m["layers"] for m in measured]
    n = len(mats[0])
    layers = [[statistics.fmean(m[l][s] for m in mats) for s in range(n)] for l in range(n)]
    far = [layers[l][s] for l in range(n) for s in range(n) if abs(l - s) >= 2]
    by_layer: dict[str, dict[str, list[float]]] = {}
    for source in DONORS:
        by_layer[source] = {layer: _first_k_means([m["matches"][source][layer] for m in measured])
                            for layer in measured[0]["matches"][source]}
    picked = {source: [statistics.fmean(ks) for ks in zip(*per_layer.values())]
              for source, per_layer in by_layer.items()}
    distance = by_distance(layers)
    return {"layers": layers, "by_distance": {str(d): v for d, v in distance.items()},
            "adjacent": distance.get(1), "non_adjacent": statistics.fmean(far) if far else None,
            "picked": picked, "picked_by_layer": by_layer}


def _first_k_means(seeds: Sequence[Sequence[Sequence[float]]]) -> list[float]:
    """For K = 1, 2, ...: the mean over seeds of the mean similarity of the first K ranked matches."""
    k_max = min(len(ranked) for ranked in seeds)
    return [statistics.fmean(statistics.fmean(s for _, _, s in ranked[:k]) for ranked in seeds)
            for k in range(1, k_max + 1)]
