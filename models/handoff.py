"""What travels between the layers of a Reuse Transformer, and how a layer receives it.

A layer that some later layer reads hands on either the post-softmax probabilities of some heads
(`AttentionProbs`, reuse_impl materialize) or their queries and keys (`QueryKey`, recompute, from
which the reader recomputes the same probabilities inside one SDPA call). models/transformer.py
decides who hands what to whom (with models/plan.py); here are the containers, built so that
taking heads from them never copies a T x T tensor, and `Inbox`, which lets a layer drop what it
received as soon as its attention has read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class AttentionProbs:
    """Post-softmax attention probabilities of some heads, as chunks of shape (B, h_i, T, T)."""

    chunks: tuple[Tensor, ...]

    @property
    def n_heads(self) -> int:
        return sum(c.shape[1] for c in self.chunks)

    def first(self, k: int) -> "AttentionProbs":
        """The first k heads, as views (no copy)."""
        if k > self.n_heads:
            raise ValueError(f"asked for {k} heads, only {self.n_heads} were handed on")
        taken: list[Tensor] = []
        remaining = k
        for chunk in self.chunks:
            if remaining == 0:
                break
            take = min(remaining, chunk.shape[1])
            if take == chunk.shape[1]:
                taken.append(chunk)
            else:
                # A multi-head slice (B, take, T, T) of a wider chunk cannot fold B and heads into one
                # batch dim, so `@` would copy it whole; single-head views fold for free.
                taken.extend(chunk[:, h:h + 1] for h in range(take))
            remaining -= take
        return AttentionProbs(tuple(taken))

    def then(self, other: "AttentionProbs") -> "AttentionProbs":
        return AttentionProbs(self.chunks + other.chunks)


@dataclass(frozen=True)
class QueryKey:
    """Queries and keys of some heads, (B, T, h, hs) each: all a recomputed head needs of its origin."""

    q: Tensor
    k: Tensor

    @property
    def n_heads(self) -> int:
        return self.q.shape[2]

    def heads(self, start: int, stop: int) -> "QueryKey":
        return QueryKey(self.q[:, :, start:stop], self.k[:, :, start:stop])   # views


# What a layer hands on (materialize: probabilities; recompute: q and k of its read heads), and
# what a reusing layer receives (recompute: one QueryKey per run of consecutive origin heads).
HandedOn = AttentionProbs | QueryKey
Received = AttentionProbs | tuple[QueryKey, ...] | None


class Inbox:
    """What a layer receives, handed over once: `take()` gives it and forgets it.

    nn.Module.__call__ keeps its arguments alive until the call returns, so a received tensor passed
    plainly to a Block would live through the block's FFN. Without grad nothing else needs it after
    attention: at ratio 0.5 a layer's received q and k are (B, T, C), +8% of an inference pass's
    peak if they stay alive through the FFN. (With grad autograd keeps them either way.)
    """

    __slots__ = ("_value",)

    def __init__(self, value: Received) -> None:
        self._value = value

    def take(self) -> Received:
        value, self._value = self._value, None
        return value
