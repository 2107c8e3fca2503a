"""The Transformer family: a standard pre-LN Transformer and the Reuse Transformer, one code path.

Reuse (Bhojanapalli et al. 2021, arXiv 2110.06821; TF Model Garden's ReuseMultiHeadAttention):
a reusing layer takes the post-softmax probabilities of K heads from an earlier layer instead of
computing them. It has Q/K projections only for its H-K new heads, V for all H heads and one
output projection over all H. The probabilities a layer hands on are

    handed_on(l) = [ new heads of l (H-K) ,  first K heads it received ]

and the next layer reuses the first K of that. With K = 0 this file *is* the baseline: same
parameters, created in the same order, and the same outputs for the same seed.

Speed: fused kernels (SDPA) never materialize probabilities. A reused head can be computed two
ways (`cfg.reuse_impl`), with the same outputs up to float rounding:
  - materialize (the reference's way): a head whose probabilities some later layer reads is
    computed the slow, materialized way; `ReusePlan` (models/plan.py) works out, once per model,
    exactly which heads those are, and every other head goes through SDPA when backend="sdpa".
    Handed-on probabilities travel as `AttentionProbs` (models/handoff.py), a list of
    per-head-group chunks, so taking "the first K heads" or prepending new heads never copies an
    n x n tensor.
  - recompute: a reused row is softmax(q_src k_srcᵀ / sqrt(hs)), so P_src·v = SDPA(q_src, k_src, v).
    A layer keeps its origin heads' q and k (`QueryKey`, (B, T, h, hs)) instead of their
    probabilities and runs all H heads, new and reused, through one SDPA call: memory stays linear
    in T, QKᵀ and softmax are paid again, the reused heads' Q/K projections are still skipped.

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
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from models.config import TransformerConfig
from models.handoff import AttentionProbs, HandedOn, Inbox, QueryKey, Received
from models.plan import ReusePlan


@dataclass(frozen=True)
class LayerOutput:
    hidden: Tensor                         # (B, T, C)
    handed_on: HandedOn | None             # None when no later layer reads from this layer


# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------
class ReuseAttention(nn.Module):
    """Multi-head self-attention whose last `n_reused` heads reuse an earlier layer's attention."""

    def __init__(self, cfg: TransformerConfig, layer: int, plan: ReusePlan) -> None:
        super().__init__()
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_head
        self.n_new, self.n_reused = plan.new_heads[layer], plan.reused_heads[layer]
        self.n_materialized = plan.materialized[layer]
        self.n_read_later = plan.read_later[layer]
        self.hands_on = plan.hands_on[layer]
        self.k_read = cfg.k  # heads each reader takes from what this layer hands on
        self.causal, self.attn_dropout = cfg.causal, cfg.attn_dropout
        self.recompute = cfg.reuse_impl == "recompute"
        # Recompute gathers q and k from more than one tensor into one buffer: then v is projected
        # apart, so that the q, k projection output is freed after the copy and a training step keeps
        # q, k and v once each, as the baseline does, not the whole qkv output beside the copies.
        self.v_apart = self.recompute and plan.qk_parts(layer) > 1 and self.n_new > 0
        # One fused projection: [q (new heads), k (new heads), v (all heads)]. With K = 0 this is
        # exactly the baseline's 3*C projection, created with the same RNG draws.
        self.qkv = nn.Linear(cfg.d_model, (2 * self.n_new + self.n_heads) * self.d_head)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: Tensor, received: Received) -> tuple[Tensor, HandedOn | None]:
        B, T, C = x.shape
        drop = self.attn_dropout if self.training else 0.0
        # Each form projects for itself: only its own frame holds q, k and v, so recompute can free
        # the new heads' projection once it is copied (without grad).
        if self.recompute:
            y, handed = self._recomputed(x, received, drop)
        else:
            y, handed = self._materialized(x, received, drop)
        return self.proj(y.reshape(B, T, C)), handed                  # y: (B, T, nh, hs)

    def _project(self, x: Tensor) -> tuple[Tensor, ...]:
        B, T, _ = x.shape
        hs, n_new, nh = self.d_head, self.n_new, self.n_heads
        if not self.v_apart:
            return self.qkv(x).view(B, T, 2 * n_new + nh, hs).split([n_new, n_new, nh], dim=2)
        rows = 2 * n_new * hs  # the same weights, as two products: same FLOPs, same parameters
        qk = F.linear(x, self.qkv.weight[:rows], self.qkv.bias[:rows]).view(B, T, 2 * n_new, hs)
        v = F.linear(x, self.qkv.weight[rows:], self.qkv.bias[rows:]).view(B, T, nh, hs)
        return *qk.split([n_new, n_new], dim=2), v

    def _recomputed(self, x: Tensor, received: Received, drop: float) -> tuple[Tensor, QueryKey | None]:
        """Every head through one SDPA call: a reused head's probabilities are recomputed from its
        origin's q and k, so no T x T tensor ever exists."""
        assert isinstance(received, tuple), "recompute receives the q and k of its origin heads"
        q, k, v = self._project(x)                                  # (B, T, h, hs): new, new, all heads
        parts = [p for p in (QueryKey(q, k), *received) if p.n_heads]
        if len(parts) > 1:
            # One copy each into token-major (B, T, H, hs) buffers, as the baseline lays out q and k:
            # SDPA gives its output q's layout, so the reshape to (B, T, C) after it stays a view.
            q, k = torch.cat([p.q for p in parts], dim=2), torch.cat([p.k for p in parts], dim=2)
        else:
            q, k = parts[0].q, parts[0].k
        del parts  # without grad, the new heads' projection is free from here (see forward)
        # The layer's own new heads lead q and k; hand on those some later layer reads.
        handed = QueryKey(q, k).heads(0, self.n_read_later) if self.n_read_later else None
        if handed is not None and not torch.is_grad_enabled():
            # With grad, autograd keeps q and k for the backward anyway, and views cost nothing. Without,
            # a view would keep the whole buffer alive until its last reader (at an origin layer with
            # no copy, the whole qkv projection: +3 (B, T, C) through an inference pass); a compact
            # copy of the read heads keeps only what is read.
            handed = QueryKey(handed.q.contiguous(), handed.k.contiguous())
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           dropout_p=drop, is_causal=self.causal)   # (B, nh, T, hs)
        return y.transpose(1, 2), handed

    def _materialized(self, x: Tensor, received: Received, drop: float) -> tuple[Tensor, AttentionProbs | None]:
        """Materialized heads (all on eager; on sdpa those a later layer reads), the other new heads
        fused, reused heads as P·V on the probabilities handed in."""
        assert received is None or isinstance(received, AttentionProbs)
        q, k, v = (t.transpose(1, 2) for t in self._project(x))         # (B, h, T, hs): new, new, all heads
        n_new, n_mat = self.n_new, self.n_materialized
        outs: list[Tensor] = []
        own: AttentionProbs | None = None
        if n_mat > 0:
            probs = self._probabilities(q[:, :n_mat], k[:, :n_mat])   # (B, n_mat, T, T)
            outs.append(_dropout(probs, drop) @ v[:, :n_mat])
            own = AttentionProbs((probs,))
        if n_mat < n_new:
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
            if not torch.compiler.is_compiling():
                # Set inside a compiled call it would change the module it was traced on, and the
                # next call would compile again; there the graph builds the mask itself.
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

    def forward(self, x: Tensor, inbox: Inbox) -> LayerOutput:
        a, handed_on = self.attn(self.ln_1(x), inbox.take())  # received: freed here unless handed on
        x = x + self.dropout(a)
        x = x + self.mlp(self.ln_2(x))
        return LayerOutput(x, handed_on)


class Transformer(nn.Module):
    """Baseline when cfg.k == 0, Reuse Transformer otherwise. Returns logits."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.config = cfg
        self.plan = ReusePlan.from_config(cfg)
        # Per layer, the layers whose handed-on tensors it is the last to read (a later reader overwrites).
        last_reader = {src: layer for layer, reads in enumerate(self.plan.reads) for src in reads}
        self._last_read_at = tuple(tuple(src for src, last in last_reader.items() if last == layer)
                                   for layer in range(cfg.n_layers))
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
        handed: list[HandedOn | None] = []
        for layer, block in enumerate(self.blocks):
            inbox = Inbox(self._received(layer, handed))
            for src in self._last_read_at[layer]:
                # Without grad nothing else holds them once this layer has read them: keeping every
                # layer's probabilities to the end made inference peak at L x (B, K, T, T) instead
                # of about two layers' worth. Dropped before the block runs, so that what it
                # received dies after its attention, not after its FFN (see Inbox).
                handed[src] = None
            out = block(h, inbox)
            h = out.hidden
            handed.append(out.handed_on)
            del inbox, out  # a local left over would hold this layer's hand-off through the next block
        h = self.ln_f(h)
        if self.config.task_head == "lm":
            return self.head(h)                                          # (B, T, vocab)
        # Classification pools over positions a causal model may read: the last token when causal.
        pooled = h[:, -1] if self.config.causal else h.mean(dim=1)       # (B, C)
        return self.head(pooled)                                         # (B, n_classes)


    def _received(self, layer: int, handed: list[HandedOn | None]) -> Received:
        if self.config.reuse_impl == "recompute":  # a slice of each origin layer's q and k, as views
            return tuple(cast(QueryKey, handed[src]).heads(start, stop)
                         for src, start, stop in self.plan.origin_runs[layer])
        src = self.plan.source[layer]
        return handed[src] if src is not None else None


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
