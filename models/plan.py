"""Where every reused head comes from, and what each layer must keep: static facts, derived once per model.

The reuse rule (Bhojanapalli et al. 2021; TF Model Garden's ReuseMultiHeadAttention): a layer hands
on [its H-K new heads, then the first K heads it received], and the next reader takes the first K
of that. Following the rule once over (layer, head) names instead of tensors gives each reused
head's *origin*: the layer and new head whose probabilities it ends up using. From the origins
follow which new heads some later layer reads (those must be materialized, or their q and k kept)
and when what a layer handed on can be freed. The model (models/transformer.py) and the cost model
(models/cost.py) both read this plan, so they cannot disagree about which head is computed how.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.config import TransformerConfig

Origin = tuple[int, int]     # (layer, new head of that layer) whose probabilities a reused head uses
Run = tuple[int, int, int]   # (layer, first head, stop): origins that are consecutive heads of one layer


@dataclass(frozen=True)
class ReusePlan:
    new_heads: tuple[int, ...]              # heads whose probabilities layer l computes from its own q, k
    reused_heads: tuple[int, ...]           # K for reusing layers, else 0
    origins: tuple[tuple[Origin, ...], ...]  # per layer, the origin of each reused head, in head order
    origin_runs: tuple[tuple[Run, ...], ...]  # the same as runs of consecutive heads: one slice of a kept q each
    read_later: tuple[int, ...]             # leading new heads of layer l that some later layer reuses
    materialized: tuple[int, ...]           # leading new heads whose (B, h, T, T) probabilities layer l keeps
    source: tuple[int | None, ...]          # materialize: the layer whose handed-on probabilities l reads
    reads: tuple[tuple[int, ...], ...]      # layers whose handed-on tensors layer l reads
    hands_on: tuple[bool, ...]              # whether some later layer reads what layer l hands on

    @classmethod
    def from_config(cls, cfg: TransformerConfig) -> "ReusePlan":
        L, K = cfg.n_layers, cfg.k
        new = tuple(cfg.new_heads(l) for l in range(L))
        reused = tuple(K if cfg.reuses(l) else 0 for l in range(L))
        source = tuple((l - 1 if cfg.reuse_source == "previous" else 0) if cfg.reuses(l) else None
                       for l in range(L))
        handed: list[list[Origin]] = []     # what each layer hands on, as origins
        origins: list[tuple[Origin, ...]] = []
        for l in range(L):
            received = tuple(handed[source[l]][:K]) if source[l] is not None else ()
            origins.append(received)
            handed.append([(l, h) for h in range(new[l])] + list(received))
        read_later = tuple(max((h + 1 for o in origins for (j, h) in o if j == l), default=0) for l in range(L))
        origin_runs = tuple(_runs(o) for o in origins)
        if cfg.reuse_impl == "recompute":
            # Every head goes through SDPA; a reader takes q and k from each of its origins' layers.
            materialized = (0,) * L
            reads = tuple(tuple(dict.fromkeys(j for j, _, _ in r)) for r in origin_runs)
        else:
            # Eager materializes every head; on sdpa only the heads a later layer reads.
            materialized = new if cfg.backend == "eager" else read_later
            reads = tuple((s,) if s is not None else () for s in source)
        hands_on = tuple(any(l in r for r in reads) for l in range(L))
        return cls(new, reused, tuple(origins), origin_runs, read_later, materialized, source, reads, hands_on)

    def qk_parts(self, layer: int) -> int:
        """Under recompute, how many tensors layer l's q (and k) are gathered from: its own new
        heads, if any, and one per origin run. Above 1 the layer copies them into one buffer."""
        return int(self.new_heads[layer] > 0) + len(self.origin_runs[layer])


def _runs(origins: tuple[Origin, ...]) -> tuple[Run, ...]:
    out: list[Run] = []
    for layer, head in origins:
        if out and out[-1][0] == layer and out[-1][2] == head:
            out[-1] = (layer, out[-1][1], head + 1)
        else:
            out.append((layer, head, head + 1))
    return tuple(out)
