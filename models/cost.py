"""Analytic cost of one step of any TransformerConfig: FLOPs by component, parameters, activation bytes.

The per-layer head split (materialized / fused / reused / recomputed) comes from `models.plan.ReusePlan`,
the same object the model is built from, so the model and this cost model cannot disagree about
which heads are computed how. `models.flops.count_flops` counts what actually runs; the tests hold
the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Mapping

from models.config import TransformerConfig
from models.plan import ReusePlan
from models.transformer import torch_dtype

Mode = Literal["forward", "train"]
MODES: tuple[str, ...] = ("forward", "train")
# How SDPA runs a fused head: one of torch's fused kernels (flash, memory-efficient, cuDNN, the CPU
# flash kernel: same matmuls, same saved tensors), or its unfused math path.
SdpaPath = Literal["fused", "math"]

FLOP_CONVENTION = (
    "FLOPs: a multiply-add counts as 2 FLOPs; only matrix products are counted (Q/K/V and output "
    "projections, QKᵀ, P·V, MLP, patch-embedding and head matmuls); softmax, layernorm, GELU, dropout, "
    "masking, embedding lookups and the optimizer's elementwise update are not. Causal attention is "
    "counted in full (T×T): the counted kernels compute the full product and it keeps FLOPs "
    "hardware-independent. A training step is forward + backward as it executes: a linear layer's "
    "backward is 2× its forward (grad input + grad weight), 1× for a patch-embedding layer whose input "
    "needs no grad; a materialized (eager) head's QKᵀ and P·V each take 2 matmuls backward; a fused "
    "(SDPA) head's backward recomputes the scores, 5 matmul-equivalents against 2 forward (torch's "
    "math path, taken on CPU when attention dropout is on, does 4); a reused head pays P·V only, "
    "1 forward and 2 backward, unless it is recomputed (reuse_impl: recompute), when its QKᵀ runs again "
    "in SDPA like a fused head's (its Q/K projections are still skipped). FLOPs do not depend on the "
    "dtype. A compiled variant's FLOPs are counted on its uncompiled module (the counter cannot see "
    "inside compiled kernels); compiling leaves the matrix products as they are."
)

# Stable names, in the order a layer runs them; `head` is the classifier / LM head.
COMPONENTS: tuple[str, ...] = ("embed", "q_proj", "k_proj", "v_proj", "o_proj", "qk", "pv", "mlp", "head")
ATTENTION_COMPONENTS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "qk", "pv")

FLOAT32_BYTES = 4
BOOL_BYTES = 1


@dataclass(frozen=True)
class HeadSplit:
    """How one layer's H heads are computed."""

    materialized: int  # new heads with probabilities in memory (eager; on sdpa only those a later layer reads)
    fused: int         # new heads through SDPA's fused kernel (probabilities never stored)
    reused: int        # heads using probabilities handed in from an earlier layer (P·V only)
    recomputed: int = 0  # reused heads run through SDPA from their origin's q and k (reuse_impl: recompute)

    @property
    def new(self) -> int:
        return self.materialized + self.fused

    @property
    def sdpa(self) -> int:
        """Heads in SDPA calls: the fused new heads and the recomputed ones (one call with them)."""
        return self.fused + self.recomputed


@dataclass(frozen=True)
class Cost:
    mode: Mode
    total: int                         # FLOPs of the whole step (forward, or forward + backward)
    by_component: Mapping[str, int]    # COMPONENTS -> FLOPs; sums to total
    forward: int                       # FLOPs of the forward pass alone (== total when mode == "forward")
    params: int                        # exact parameter count
    activation_bytes: int              # bytes a training step keeps for backward; 0 for "forward" (no_grad)

    def attention(self) -> int:
        """FLOPs of the attention sublayers (projections, QKᵀ, P·V)."""
        return sum(self.by_component[c] for c in ATTENTION_COMPONENTS)


def head_splits(cfg: TransformerConfig) -> tuple[HeadSplit, ...]:
    """Per-layer head split, exactly as `ReuseAttention` builds it from the ReusePlan."""
    plan = ReusePlan.from_config(cfg)
    recompute = cfg.reuse_impl == "recompute"
    splits = []
    for layer in range(cfg.n_layers):
        new, mat, k = plan.new_heads[layer], plan.materialized[layer], plan.reused_heads[layer]
        splits.append(HeadSplit(materialized=mat, fused=new - mat, reused=0 if recompute else k,
                                recomputed=k if recompute else 0))
    return tuple(splits)


def sdpa_path(cfg: TransformerConfig, mode: Mode, device_type: str) -> SdpaPath:
    """The path torch's SDPA dispatcher takes for fused heads when nothing forces one.

    torch's CPU flash kernel has no dropout, so with attention dropout in a training step SDPA falls
    back to the math path (scores, softmax, dropout, 2 bmm each way); CUDA's flash, efficient and
    cuDNN kernels support dropout.
    """
    return "math" if mode == "train" and cfg.attn_dropout > 0 and device_type == "cpu" else "fused"


def param_count(cfg: TransformerConfig) -> int:
    C, hs, H = cfg.d_model, cfg.d_head, cfg.n_heads
    embed = cfg.vocab_size * C if cfg.input_kind == "tokens" else cfg.patch_dim * C + C
    pos = cfg.max_len * C
    layers = 0
    for split in head_splits(cfg):
        qkv_out = (2 * split.new + H) * hs            # Q, K for new heads only; V for all heads
        layers += (2 * C                               # ln_1
                   + C * qkv_out + qkv_out             # qkv
                   + C * C + C                         # output projection
                   + 2 * C                             # ln_2
                   + C * cfg.d_ff + cfg.d_ff + cfg.d_ff * C + C)   # MLP
    out = cfg.n_classes if cfg.task_head == "classify" else cfg.vocab_size
    return embed + pos + layers + 2 * C + C * out + out   # + ln_f + head


def _flops(cfg: TransformerConfig, B: int, T: int, mode: Mode, sdpa: SdpaPath) -> tuple[dict[str, int], int]:
    """(by_component for `mode`, forward-only total)."""
    C, hs, N = cfg.d_model, cfg.d_head, B * T
    train = mode == "train"
    math_path = sdpa == "math"
    fwd = dict.fromkeys(COMPONENTS, 0)
    bwd = dict.fromkeys(COMPONENTS, 0)

    def linear(name: str, tokens: int, d_in: int, d_out: int, input_needs_grad: bool = True) -> None:
        f = 2 * tokens * d_in * d_out
        fwd[name] += f
        bwd[name] += 2 * f if input_needs_grad else f      # grad weight (+ grad input)

    if cfg.input_kind == "patches":
        linear("embed", N, cfg.patch_dim, C, input_needs_grad=False)
    unit = 2 * B * T * T * hs                                # one head's QKᵀ, or one head's P·V
    for split in head_splits(cfg):
        linear("q_proj", N, C, split.new * hs)
        linear("k_proj", N, C, split.new * hs)
        linear("v_proj", N, C, cfg.n_heads * hs)
        linear("o_proj", N, C, C)
        # QKᵀ: materialized heads 1 fwd + 2 bwd; fused and recomputed heads 1 fwd + recompute + 2 bwd.
        fused_qk_bwd = 2 if math_path else 3
        fwd["qk"] += (split.new + split.recomputed) * unit
        bwd["qk"] += (2 * split.materialized + fused_qk_bwd * split.sdpa) * unit
        # P·V: every head, reused ones included, 1 fwd + 2 bwd (grad P, grad V).
        fwd["pv"] += cfg.n_heads * unit
        bwd["pv"] += 2 * cfg.n_heads * unit
        linear("mlp", N, C, cfg.d_ff)
        linear("mlp", N, cfg.d_ff, C)
    if cfg.task_head == "lm":
        linear("head", N, C, cfg.vocab_size)
    else:
        linear("head", B, C, cfg.n_classes)                  # on the pooled (B, C) features
    forward_total = sum(fwd.values())
    if not train:
        return fwd, forward_total
    return {c: fwd[c] + bwd[c] for c in COMPONENTS}, forward_total


def reused_chunks(cfg: TransformerConfig) -> tuple[tuple[int, ...], ...]:
    """Head counts of the probability chunks each layer's reused heads arrive in.

    Mirrors models.handoff.AttentionProbs.first and ReuseAttention._hand_on: a chunk taken whole
    stays one chunk, a partly taken one arrives as single-head views. It decides what P·V keeps (a
    multi-head slice of v is copied, a single-head one is a view).
    """
    plan = ReusePlan.from_config(cfg)
    handed: list[list[int]] = []
    taken_by_layer: list[tuple[int, ...]] = []
    for layer, split in enumerate(head_splits(cfg)):
        src = plan.source[layer]
        received = handed[src] if src is not None else []
        taken, remaining = [], split.reused
        for chunk in received:
            if remaining == 0:
                break
            take = min(remaining, chunk)
            taken.extend([chunk] if take == chunk else [1] * take)
            remaining -= take
        taken_by_layer.append(tuple(taken))
        own = [split.materialized] if split.materialized else []
        if not plan.hands_on[layer]:
            handed.append([])
        elif own and split.materialized < split.new:
            handed.append(own)           # only a prefix is materialized: nothing past it is read
        else:
            handed.append(own + taken)
    return tuple(taken_by_layer)


@dataclass(frozen=True)
class _Widths:
    """Bytes per element of each kind of saved tensor, for one dtype on one device type."""

    act: int        # activations: the model's dtype
    stat: int       # layer norm's saved mean and rstd: the dtype on CPU, float32 on CUDA
    mask: int       # an attention or residual dropout mask: the dropped tensor's dtype on CPU, bool on CUDA
    math: int       # what the SDPA math path keeps: it upcasts half-precision q, k, v to float32
    math_mask: int  # its dropout mask


def _widths(cfg: TransformerConfig, device_type: str) -> _Widths:
    act = torch_dtype(cfg).itemsize
    if device_type == "cpu":
        # CPU dropout multiplies by a noise tensor of the input's dtype; CPU layer norm keeps its
        # statistics in the input's dtype when weights and input share it.
        return _Widths(act=act, stat=act, mask=act, math=FLOAT32_BYTES, math_mask=FLOAT32_BYTES)
    # CUDA: native_dropout keeps a bool mask; layer norm keeps float32 (accumulate-type) statistics.
    return _Widths(act=act, stat=FLOAT32_BYTES, mask=BOOL_BYTES, math=FLOAT32_BYTES, math_mask=BOOL_BYTES)


def activation_bytes(cfg: TransformerConfig, batch_size: int, seq_len: int, device_type: str = "cpu",
                     sdpa: SdpaPath | None = None) -> int:
    """Bytes of activations a training step keeps for backward (weights and inputs excluded).

    Follows what autograd saves in models/transformer.py; `models.flops.saved_activation_bytes`
    measures the same thing and the tests hold the two equal on CPU, per dtype. With N = B·T
    tokens, per layer, in the model's dtype unless said otherwise:
      - ln_1 and ln_2: their input (N·C) and per-token mean and rstd (2N; float32 on CUDA);
      - the inputs of the qkv projection, the output projection and the MLP (N·C each), the MLP's
        pre- and post-GELU hidden (2·N·d_ff); when the layer is one fused group, the output
        projection reads SDPA's output in place and that buffer is counted once;
      - materialized heads: probabilities (B·T² each) and q, k, v for the batched matmuls
        (3·N·d_h each): copies for a multi-head group, views of the qkv output otherwise;
      - fused (SDPA) heads: no T×T tensor; their q, k, v are views, which keeps the whole qkv
        output (N·(2·new+H)·d_h), plus the output (N·d_h) and a float32 logsumexp (B·T) per head
        (the flash kernels' layout; CUDA's rng state for dropout is a few bytes, not counted);
      - reused heads: their probabilities belong to the source layer (counted there); v as
        for materialized heads, per chunk (see `reused_chunks`);
      - recomputed heads (reuse_impl: recompute) join the layer's one SDPA call and are kept as
        fused heads are; a layer whose q and k come from more than one tensor keeps its gathered
        q and k (N·H·d_h each) and, its v projected apart, v instead of the whole qkv output;
      - attention dropout (p > 0): per materialized or reused head, the dropout mask and the
        dropped probabilities (B·T² each; the mask is in the dtype on CPU, bool on CUDA);
        residual dropout: a mask for each of the layer's 2 dropouts (N·C each), plus one after
        the embedding.
    Then ln_f (N·C + 2N), the head's input (causal pooling takes the last token as a view, which
    keeps ln_f's whole output), the loss's float32 log-softmax and its scalar weight. On the SDPA
    math path (`sdpa_path`) fused heads are kept like materialized ones, in float32 (the path
    upcasts half precision), with q and k always copied (it scales them first) and v copied when
    upcast.
    """
    B, T, C, hs, H = batch_size, seq_len, cfg.d_model, cfg.d_head, cfg.n_heads
    N, TT = batch_size * seq_len, batch_size * seq_len * seq_len
    w = _widths(cfg, device_type)
    math_path = (sdpa or sdpa_path(cfg, "train", device_type)) == "math"
    attn_drop = cfg.attn_dropout > 0

    def sliced_is_view(heads: int) -> bool:
        # (B, h, T, hs) slices of the (B, T, heads*hs) qkv output fold into (B*h, T, hs) without a
        # copy only when B or h is 1.
        return heads == 1 or B == 1

    total = N * C * w.mask if cfg.dropout > 0 else 0         # embedding dropout mask
    plan = ReusePlan.from_config(cfg)
    for layer, (split, chunks) in enumerate(zip(head_splits(cfg), reused_chunks(cfg))):
        qkv_kept = False
        # Recompute gathers q and k from several tensors into one copy each; v is then projected
        # apart (ReuseAttention.v_apart), so what stays of the projection is v alone.
        gathered = split.recomputed > 0 and plan.qk_parts(layer) > 1
        qkv_width = H if gathered else 2 * split.new + H
        total += 2 * (N * C * w.act + 2 * N * w.stat)         # ln_1, ln_2: input, mean, rstd
        total += (2 * N * C + 2 * N * cfg.d_ff) * w.act       # qkv and MLP inputs, pre/post GELU
        if split.materialized:
            m = split.materialized
            total += m * TT * (2 * w.act + w.mask if attn_drop else w.act)
            if sliced_is_view(m):
                qkv_kept = True
            else:
                total += 3 * m * N * hs * w.act
        if split.sdpa and math_path:
            f = split.sdpa
            # probabilities, mask and dropped probabilities; scaled q and k
            total += f * TT * (2 * w.math + w.math_mask if attn_drop else w.math) + 2 * f * N * hs * w.math
            if w.act < w.math:
                total += f * N * hs * w.math                  # v's upcast copy
            elif sliced_is_view(f):
                qkv_kept = True
            else:
                total += f * N * hs * w.act
        elif split.sdpa:
            qkv_kept = True
            total += split.sdpa * (N * hs * w.act + B * T * FLOAT32_BYTES)
            if gathered:
                total += 2 * N * H * hs * w.act               # the gathered q and k SDPA keeps
        for heads in chunks:
            total += heads * TT * (w.act + w.mask) if attn_drop else 0
            if sliced_is_view(heads):
                qkv_kept = True
            else:
                total += heads * N * hs * w.act
        if qkv_kept:
            total += N * qkv_width * hs * w.act
        single_fused_group = split.sdpa == H and not math_path
        total += 0 if single_fused_group else N * C * w.act   # output projection input
        if cfg.dropout > 0:
            total += 2 * N * C * w.mask
    total += N * C * w.act + 2 * N * w.stat                   # ln_f
    if cfg.task_head == "lm":
        total += N * C * w.act + N * cfg.vocab_size * FLOAT32_BYTES
    else:
        total += (N * C if cfg.causal else B * C) * w.act + B * cfg.n_classes * FLOAT32_BYTES
    return total + FLOAT32_BYTES                              # the loss's total weight


def analytic_cost(cfg: TransformerConfig, batch_size: int, seq_len: int, mode: Mode = "forward",
                  *, device_type: str = "cpu", sdpa: SdpaPath | None = None) -> Cost:
    """FLOPs (see FLOP_CONVENTION), exact parameter count and activation estimate of one step.

    `device_type` decides which SDPA path torch takes (`sdpa_path`) and the widths of what a
    training step keeps; `sdpa` overrides the path, for a caller that forces one of torch's SDPA
    backends (the math backend: "math", any fused one: "fused").
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if batch_size <= 0 or seq_len <= 0:
        raise ValueError(f"batch_size and seq_len must be positive, got {batch_size}, {seq_len}")
    path = sdpa or sdpa_path(cfg, mode, device_type)
    by_component, forward_total = _flops(cfg, batch_size, seq_len, mode, path)
    return Cost(
        mode=mode,
        total=sum(by_component.values()),
        by_component=MappingProxyType(by_component),
        forward=forward_total,
        params=param_count(cfg),
        activation_bytes=activation_bytes(cfg, batch_size, seq_len, device_type, path) if mode == "train" else 0,
    )


def flop_ideal_speedup(baseline: TransformerConfig, reuse: TransformerConfig, batch_size: int, seq_len: int,
                       mode: Mode = "forward", *, device_type: str = "cpu") -> float:
    """Speedup reuse would show if time were proportional to counted FLOPs: baseline ÷ reuse."""
    base = analytic_cost(baseline, batch_size, seq_len, mode, device_type=device_type).total
    return base / analytic_cost(reuse, batch_size, seq_len, mode, device_type=device_type).total


__all__ = ["ATTENTION_COMPONENTS", "COMPONENTS", "Cost", "FLOP_CONVENTION", "HeadSplit", "MODES", "Mode",
           "SdpaPath", "activation_bytes", "analytic_cost", "flop_ideal_speedup", "head_splits",
           "param_count", "reused_chunks", "sdpa_path"]
