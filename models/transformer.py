"""The Transformer family: a standard pre-LN Transformer and the Reuse Transformer, one code path.

Reuse (Bhojanapalli et al. 2021, arXiv 2110.06821; TF Model Garden's ReuseMultiHeadAttention):
a reusing layer takes the post-softmax probabilities of K heads from an earlier layer instead of
computing them. It has Q/K projections only for its H-K new heads, V for all H heads and one
output projection over all H. The probabilities a layer hands on are

    handed_on(l) = [ new heads of l (H-K) ,  first K heads it received ]

and the next layer reuses the first K of that. With K = 0 this file *is* the baseline: same
parameters, created in the same order, and the same outputs for the same seed.

Speed: fused kernels (SDPA) never materialize probabilities, so a head whose probabilities some
later layer reads must be computed the slow, materialized way. `ReusePlan` works out, once per
model, exactly which heads those are; every other head goes through SDPA when backend="sdpa".
Handed-on probabilities travel as `AttentionProbs`, a list of per-head-group chunks, so taking
"the first K heads" or prepending new heads never copies an n x n tensor.

Precision: `cfg.dtype` is the dtype parameters and activations are stored in (native dtype, not
autocast). Autocast would keep float32 weights and re-cast them every step, and it runs softmax in
float32, so the probabilities a reusing layer keeps would be float32 even in a bfloat16 model:
twice the bytes of what a bfloat16 deployment keeps, on exactly the tensor reuse is about. Native
dtype is how attention is deployed on GPUs, what FlashAttention needs (q, k, v in half precision)
and makes every activation's size the dtype's. Softmax and layer norm accumulate in float32 inside
torch's kernels either way; the loss is computed in float32 (`loss_fn`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from models.config import TransformerConfig


# ---------------------------------------------------------------------------------------------
# Probabilities handed between layers
# ---------------------------------------------------------------------------------------------
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
class LayerOutput:
    hidden: Tensor                         # (B, T, C)
    handed_on: AttentionProbs | None       # None when no later layer reads this layer's probabilities


# ---------------------------------------------------------------------------------------------
# Which heads must be materialized
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReusePlan:
    """Static per-layer facts derived from the config; computed once per model."""

    new_heads: tuple[int, ...]        # heads whose probabilities layer l computes
    reused_heads: tuple[int, ...]     # K for reusing layers, else 0
    materialize: tuple[int, ...]      # leading new heads whose probabilities some later layer reads
    hands_on: tuple[bool, ...]        # whether layer l must hand on probabilities at all
    source: tuple[int | None, ...]    # which layer's handed-on probabilities layer l reads

    @classmethod
    def from_config(cls, cfg: TransformerConfig) -> "ReusePlan":
        L, K = cfg.n_layers, cfg.k
        new = tuple(cfg.new_heads(l) for l in range(L))
        reused = tuple(K if cfg.reuses(l) else 0 for l in range(L))
        source = tuple((l - 1 if cfg.reuse_source == "previous" else 0) if cfg.reuses(l) else None
                       for l in range(L))
        # Provenance: handed_on[l] lists (layer, head) for each head layer l hands on.
        handed: list[list[tuple[int, int]]] = []
        read: set[tuple[int, int]] = set()
        for l in range(L):
            own = [(l, h) for h in range(new[l])]
            received = handed[source[l]][:K] if source[l] is not None else []
            read.update(received)
            handed.append(own + received)
        materialize = tuple(max((h + 1 for (j, h) in read if j == l), default=0) for l in range(L))
        hands_on = tuple(any(s == l for s in source) for l in range(L))
        return cls(new, reused, materialize, hands_on, source)


# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------
class ReuseAttention(nn.Module):
    """Multi-head self-attention whose first `n_reused` output heads use probabilities handed in."""

    def __init__(self, cfg: TransformerConfig, layer: int, plan: ReusePlan) -> None:
        super().__init__()
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_head
        self.n_new, self.n_reused = plan.new_heads[layer], plan.reused_heads[layer]
        # Materialize every head on the eager backend; on sdpa only the heads a later layer reads.
        self.n_materialized = self.n_new if cfg.backend == "eager" else plan.materialize[layer]
        self.hands_on = plan.hands_on[layer]
        self.k_read = cfg.k  # heads each reader takes from what this layer hands on
        self.causal, self.attn_dropout = cfg.causal, cfg.attn_dropout
        # One fused projection: [q (new heads), k (new heads), v (all heads)]. With K = 0 this is
        # exactly the baseline's 3*C projection, created with the same RNG draws.
        self.qkv = nn.Linear(cfg.d_model, (2 * self.n_new + self.n_heads) * self.d_head)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: Tensor, received: AttentionProbs | None) -> tuple[Tensor, AttentionProbs | None]:
        B, T, _ = x.shape
        hs, n_new, n_mat = self.d_head, self.n_new, self.n_materialized
        q, k, v = (self.qkv(x)
                   .view(B, T, 2 * n_new + self.n_heads, hs)
                   .transpose(1, 2)                                # (B, nh_total, T, hs)
                   .split([n_new, n_new, self.n_heads], dim=1))
        drop = self.attn_dropout if self.training else 0.0
        outs: list[Tensor] = []
        own: AttentionProbs | None = None

        if n_mat > 0:  # new heads whose probabilities are materialized (all of them on eager)
            probs = self._probabilities(q[:, :n_mat], k[:, :n_mat])   # (B, n_mat, T, T)
            outs.append(_dropout(probs, drop) @ v[:, :n_mat])
            own = AttentionProbs((probs,))
        if n_mat < n_new:  # the rest of the new heads go through the fused kernel
            outs.append(F.scaled_dot_product_attention(
                q[:, n_mat:], k[:, n_mat:], v[:, n_mat:n_new], dropout_p=drop, is_causal=self.causal))
        reused: AttentionProbs | None = None
        if self.n_reused > 0:
            assert received is not None, "a reusing layer needs probabilities from an earlier layer"
            reused = received.first(self.n_reused)
            start = n_new
            for chunk in reused.chunks:  # P·V per handed-on chunk: no n x n concatenation
                stop = start + chunk.shape[1]
                outs.append(_dropout(chunk, drop) @ v[:, start:stop])
                start = stop

        # Concatenate as (B, T, nh, hs): one copy, after which the reshape to (B, T, C) is a view.
        # (Concatenating over heads first and then transposing would copy twice.)
        y = torch.cat([o.transpose(1, 2) for o in outs], dim=2) if len(outs) > 1 else outs[0].transpose(1, 2)
        y = self.proj(y.reshape(B, T, self.n_heads * hs))
        return y, self._hand_on(own, reused)

    def _probabilities(self, q: Tensor, k: Tensor) -> Tensor:
        """softmax(q kᵀ / sqrt(hs) + causal mask) for (B, h, T, hs) q and k -> (B, h, T, T)."""
        B, h, T, hs = q.shape
        bias = self._causal_bias(T, q) if self.causal else None
        probs = _Probabilities.apply(q.reshape(B * h, T, hs), k.reshape(B * h, T, hs), bias, 1.0 / math.sqrt(hs))
        return probs.view(B, h, T, T)

    def _causal_bias(self, T: int, like: Tensor) -> Tensor:
        # Added inside the matmul kernel (baddbmm), so the mask costs no extra pass over T x T.
        bias = getattr(self, "_bias_cache", None)
        if bias is None or bias.shape[-1] != T or bias.device != like.device or bias.dtype != like.dtype:
            bias = torch.full((T, T), float("-inf"), device=like.device, dtype=like.dtype).triu_(1)
            self._bias_cache = bias
        return bias

    def _hand_on(self, own: AttentionProbs | None, reused: AttentionProbs | None) -> AttentionProbs | None:
        if not self.hands_on:
            return None
        # Handed on: [new heads, then the first K received]. Every reader takes only the first K,
        # so nothing past them is kept: a longer tail would pin earlier layers' probabilities in
        # memory for the whole forward. When only a prefix of the new heads was materialized, the
        # plan guarantees that prefix is all anyone reads.
        if own is not None and (own.n_heads < self.n_new or own.n_heads >= self.k_read):
            return own
        if own is None or reused is None:
            return own if reused is None else reused
        return own.then(reused.first(self.k_read - own.n_heads))


class _Probabilities(torch.autograd.Function):
    """P = softmax(scale · q kᵀ + bias) for (N, T, hs) q, k, built in a single (N, T, T) buffer.

    Autograd's matmul -> softmax chain allocates a scores buffer and then a probabilities buffer.
    On CPU each fresh T x T allocation is large enough for the allocator to map new pages, and
    faulting them in costs about as much as the matmul itself; here softmax runs in place on the
    scores and the scale rides in the matmul (alpha). Backward runs the two matmuls autograd would.
    """

    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, bias: Tensor | None, scale: float) -> Tensor:
        # beta = 0 ignores the (scalar) input: no bias pass over T x T when not causal.
        base, beta = (bias, 1.0) if bias is not None else (q.new_zeros(()), 0.0)
        scores = torch.baddbmm(base, q, k.transpose(-2, -1), beta=beta, alpha=scale)   # (N, T, T)
        probs = torch.softmax(scores, dim=-1, out=scores)
        ctx.save_for_backward(q, k, probs)
        ctx.scale = scale
        return probs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_probs: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        q, k, probs = ctx.saved_tensors
        grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        zero = grad_scores.new_zeros(())
        grad_q = grad_k = None
        if ctx.needs_input_grad[0]:
            grad_q = torch.baddbmm(zero, grad_scores, k, beta=0.0, alpha=ctx.scale)
        if ctx.needs_input_grad[1]:
            grad_k = torch.baddbmm(zero, grad_scores.transpose(-2, -1), q, beta=0.0, alpha=ctx.scale)
        return grad_q, grad_k, None, None


def _dropout(probs: Tensor, p: float) -> Tensor:
    # Skipped outright at p = 0: F.dropout in training mode would still copy the T x T tensor.
    return F.dropout(probs, p, training=True) if p > 0 else probs


# ---------------------------------------------------------------------------------------------
# Blocks and the model
# ---------------------------------------------------------------------------------------------
class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig, layer: int, plan: ReusePlan) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.attn = ReuseAttention(cfg, layer, plan)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, received: AttentionProbs | None) -> LayerOutput:
        a, handed_on = self.attn(self.ln_1(x), received)
        x = x + self.dropout(a)
        x = x + self.mlp(self.ln_2(x))
        return LayerOutput(x, handed_on)


class Transformer(nn.Module):
    """Baseline when cfg.k == 0, Reuse Transformer otherwise. Returns logits."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.config = cfg
        self.plan = ReusePlan.from_config(cfg)
        # The last layer reading each layer's handed-on probabilities (a later reader overwrites).
        self._last_reader = {src: layer for layer, src in enumerate(self.plan.source) if src is not None}
        if cfg.input_kind == "tokens":
            self.embed: nn.Module = nn.Embedding(cfg.vocab_size, cfg.d_model)
        else:
            self.embed = nn.Linear(cfg.patch_dim, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, l, self.plan) for l in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        out = cfg.n_classes if cfg.task_head == "classify" else cfg.vocab_size
        self.head = nn.Linear(cfg.d_model, out)
        # Initialised in float32 and rounded: the same seed gives the same weights in every dtype.
        self.to(torch_dtype(cfg))

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[1]
        if T > self.config.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len={self.config.max_len}")
        if x.is_floating_point():  # patches made in float32 elsewhere (an accuracy task) join the model's dtype
            x = x.to(self.pos.weight.dtype)
        h = self.drop(self.embed(x) + self.pos.weight[:T])              # (B, T, C)
        handed: list[AttentionProbs | None] = []
        for layer, block in enumerate(self.blocks):
            src = self.plan.source[layer]
            out = block(h, handed[src] if src is not None else None)
            h = out.hidden
            handed.append(out.handed_on)
            if src is not None and self._last_reader[src] == layer:
                # Without grad nothing else holds them: keeping every layer's probabilities to the
                # end made inference peak at L x (B, K, T, T) instead of about two layers' worth.
                handed[src] = None
        h = self.ln_f(h)
        if self.config.task_head == "lm":
            return self.head(h)                                          # (B, T, vocab)
        # Classification pools over positions a causal model may read: the last token when causal.
        pooled = h[:, -1] if self.config.causal else h.mean(dim=1)       # (B, C)
        return self.head(pooled)                                         # (B, n_classes)


def torch_dtype(cfg: TransformerConfig) -> torch.dtype:
    return getattr(torch, cfg.dtype)


def loss_fn(cfg: TransformerConfig, logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy for either head: per-token for lm, per-sequence for classify.

    Computed in float32: a log-softmax over a vocabulary rounded to bfloat16's 8 mantissa bits
    visibly moves the loss. For a float32 model `.float()` returns the logits themselves (no copy).
    """
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def make_inputs(cfg: TransformerConfig, batch_size: int, seq_len: int, *, seed: int = 0,
                device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
    """Random, never all-zero inputs and targets of the right kind for a benchmark step.

    Patches are drawn in float32 and rounded to the model's dtype (same values in every dtype), so
    the model never casts its input inside a timed step.
    """
    g = torch.Generator().manual_seed(seed)
    if cfg.input_kind == "tokens":
        x = torch.randint(1, cfg.vocab_size, (batch_size, seq_len), generator=g)
    else:
        x = torch.randn(batch_size, seq_len, cfg.patch_dim, generator=g).to(torch_dtype(cfg))
    if cfg.task_head == "lm":
        y = torch.randint(0, cfg.vocab_size, (batch_size, seq_len), generator=g)
    else:
        y = torch.randint(0, cfg.n_classes, (batch_size,), generator=g)
    return x.to(device), y.to(device)
