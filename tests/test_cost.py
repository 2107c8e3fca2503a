"""The analytic cost model against what actually runs: counted FLOPs, saved bytes, closed forms, limits."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from models.config import TransformerConfig
from models.cost import COMPONENTS, FLOP_CONVENTION, analytic_cost, flop_ideal_speedup, head_splits, param_count
from models.flops import (StepCounter, count_flops, flop_counter_mode, ops_run, saved_activation_bytes,
                          uncounted_matmul_ops)
from models.transformer import Transformer, make_inputs

aten = torch.ops.aten


# Tiny models on a shared 2-core machine: intra-op threads only add contention.
pytestmark = pytest.mark.usefixtures("one_thread")


def small(**overrides: Any) -> TransformerConfig:
    values: dict[str, Any] = dict(d_model=32, n_heads=4, n_layers=4, d_ff=48, vocab_size=50, max_len=64,
                                  patch_dim=6, n_classes=5)
    values.update(overrides)
    return TransformerConfig(**values)


def built(cfg: TransformerConfig, batch: int, seq: int) -> tuple[Transformer, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return Transformer(cfg), *make_inputs(cfg, batch, seq)


# (d_model, n_heads, n_layers, K, reuse_layers, source, input_kind, task_head)
SHAPES = [
    (32, 4, 3, 0, None, "previous", "tokens", "classify"),
    (32, 4, 4, 1, None, "previous", "patches", "lm"),
    (32, 4, 4, 2, None, "first", "tokens", "lm"),
    (32, 4, 4, 2, 2, "previous", "patches", "classify"),
    (32, 4, 3, 3, None, "previous", "tokens", "classify"),
    (32, 4, 3, 4, None, "first", "patches", "lm"),
    (48, 6, 3, 4, 1, "first", "tokens", "classify"),
    (24, 2, 2, 1, None, "previous", "patches", "classify"),
]


# How heads are computed: materialized or fused (eager, sdpa), or recomputed reuse (sdpa only).
IMPLS = [("eager", "materialize"), ("sdpa", "materialize"), ("sdpa", "recompute")]


@pytest.mark.parametrize("backend,impl", IMPLS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mode", ["forward", "train"])
def test_counted_flops_equal_analytic(backend: str, impl: str, causal: bool, mode: str) -> None:
    for d, h, n_layers, k, p, source, kind, head in SHAPES:
        cfg = small(d_model=d, n_heads=h, n_layers=n_layers, reuse_heads=k, reuse_layers=p, reuse_source=source,
                    input_kind=kind, task_head=head, backend=backend, reuse_impl=impl, causal=causal)
        model, x, y = built(cfg, 2, 11)
        counted = count_flops(model, x, y, mode)  # type: ignore[arg-type]
        analytic = analytic_cost(cfg, 2, 11, mode)  # type: ignore[arg-type]
        assert counted.total == analytic.total, (cfg, counted.by_op, dict(analytic.by_component))


@pytest.mark.parametrize("backend,impl", IMPLS)
def test_counted_flops_with_dropout_follow_the_kernel_torch_picks(backend: str, impl: str) -> None:
    # Attention dropout in a training step sends CPU SDPA to its math path (4 backward matmuls per
    # head, not the fused kernel's 5); residual dropout adds no matmul.
    cfg = small(backend=backend, reuse_impl=impl, reuse_heads=2, attn_dropout=0.2, dropout=0.1)
    model, x, y = built(cfg, 2, 9)
    for mode in ("forward", "train"):
        assert count_flops(model, x, y, mode).total == analytic_cost(cfg, 2, 9, mode).total
    # Without dropout each SDPA head's backward recomputes QKᵀ: one more T²·d_h matmul per head.
    sdpa_heads = sum(split.sdpa for split in head_splits(cfg))
    assert (sdpa_heads == 0) == (backend == "eager")
    no_dropout = analytic_cost(small(backend=backend, reuse_impl=impl, reuse_heads=2), 2, 9, "train").total
    assert no_dropout - analytic_cost(cfg, 2, 9, "train").total == sdpa_heads * 2 * 2 * 9 * 9 * cfg.d_head


@pytest.mark.parametrize("backend,impl", IMPLS)
def test_every_matmul_the_models_run_is_counted(backend: str, impl: str) -> None:
    cfg = small(backend=backend, reuse_impl=impl, reuse_heads=2, causal=True, input_kind="patches")
    model, x, y = built(cfg, 2, 8)
    ops = ops_run(model, x, y, "train")
    assert not uncounted_matmul_ops(ops)
    counted = count_flops(model, x, y, "train").by_op
    if backend == "sdpa":  # the CPU fused kernels run and carry FLOPs
        assert counted["aten._scaled_dot_product_flash_attention_for_cpu"] > 0
        assert counted["aten._scaled_dot_product_flash_attention_for_cpu_backward"] > 0
    assert "aten.matmul" not in ops
    assert ("aten.bmm" in ops) == (impl == "materialize")  # 4-D `@` reaches the counter as bmm; recompute has none


def test_uncounted_matmul_ops_flags_unknown_products() -> None:
    assert uncounted_matmul_ops({"aten.bmm", "aten.add", "aten.mv", "aten.addbmm"}) == {"aten.mv", "aten.addbmm"}


def test_the_step_counter_names_products_it_could_not_count() -> None:
    a, v = torch.randn(3, 4), torch.randn(4)
    with StepCounter() as counter:
        torch.mm(a, a.T)
        torch.mv(a, v)
    counted = counter.result()
    assert counted.total == 2 * 3 * 4 * 3 and counted.uncounted == ("aten.mv",)
    assert "aten.mv" in (counted.warning() or "")
    model, x, y = built(small(reuse_heads=2), 2, 8)
    assert count_flops(model, x, y, "train").warning() is None


class _CudnnKernels(TorchDispatchMode):
    """Outputs of the right shapes for cuDNN's attention ops, which this CPU build cannot run."""

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is aten._cudnn_attention_forward.default:
            q, empty = args[0], torch.empty(0, device="meta")
            return torch.empty_like(q), torch.empty(q.shape[:-1], device="meta"), empty, empty, 0, 0, empty, empty, empty
        if func is aten._cudnn_attention_backward.default:
            return tuple(torch.empty_like(t) for t in args[1:4])
        return func(*args, **(kwargs or {}))


def test_cudnn_attention_ops_are_counted() -> None:
    # torch's registry has no formula for cuDNN's own attention ops: SDPA's cuDNN path counted 0.
    b, h, t, d = 2, 4, 16, 8
    unit = 2 * b * h * t * t * d
    q = torch.empty(b, h, t, d, device="meta")
    with _CudnnKernels(), StepCounter() as counter:
        out, lse, *_, seed, offset, _ = aten._cudnn_attention_forward(q, q, q, None, None, None, t, t, True)
        aten._cudnn_attention_backward(out, q, q, q, out, lse, seed, offset, None, None, None, t, t, 0.0, False)
    counted = counter.result()
    assert counted.by_op == {"aten._cudnn_attention_forward": 2 * unit, "aten._cudnn_attention_backward": 5 * unit}
    assert counted.uncounted == ()
    # Packed sequences of lengths 4 and 12 (nested / varlen): counted per sequence.
    packed, lengths = torch.empty(16, h, d, device="meta"), torch.tensor([0, 4, 16])
    with _CudnnKernels(), StepCounter() as counter:
        aten._cudnn_attention_forward(packed, packed, packed, None, lengths, lengths, 12, 12, True)
    assert counter.result().total == 2 * 2 * h * d * (4 * 4 + 12 * 12)


def _fused_attention_calls(dev: str) -> Iterator[tuple[str, Any]]:
    def efficient(q: Any) -> None:
        out, lse, seed, off = aten._scaled_dot_product_efficient_attention(q, q, q, None, True)
        aten._scaled_dot_product_efficient_attention_backward(out, q, q, q, None, out, lse, seed, off, 0.0,
                                                              [True, True, True, False])

    def flash(q: Any) -> None:
        out, lse, cq, ck, mq, mk, seed, off, _ = aten._scaled_dot_product_flash_attention(q, q, q)
        aten._scaled_dot_product_flash_attention_backward(out, q, q, q, out, lse, cq, ck, mq, mk, 0.0, False,
                                                          seed, off)

    def cudnn(q: Any) -> None:
        out, lse, cq, ck, mq, mk, seed, off, _ = aten._scaled_dot_product_cudnn_attention(q, q, q, None, True)
        aten._scaled_dot_product_cudnn_attention_backward(out, q, q, q, out, lse, seed, off, None, cq, ck, mq, mk,
                                                          0.0, False)

    def overrideable(q: Any) -> None:
        out, lse, cq, ck, mq, mk, seed, off, _ = aten._scaled_dot_product_fused_attention_overrideable(q, q, q)
        aten._scaled_dot_product_fused_attention_overrideable_backward(
            out, q, q, q, torch.empty(0, device=q.device), [True, True, True, False], out, lse, cq, ck, mq, mk,
            0.0, False, seed, off)

    def cpu(q: Any) -> None:
        out, lse = aten._scaled_dot_product_flash_attention_for_cpu(q, q, q)
        aten._scaled_dot_product_flash_attention_for_cpu_backward(out, q, q, q, out, lse, 0.0, False)

    if dev == "cuda":
        yield from (("efficient", efficient), ("flash", flash), ("cudnn", cudnn), ("overrideable", overrideable))
    else:
        yield "cpu", cpu


@pytest.mark.parametrize("dev", ["cuda", "cpu"])
def test_every_fused_attention_kernel_is_counted(dev: str) -> None:
    # Fake tensors run each kernel's shape logic without the device, so the CUDA mapping is
    # checked on a CPU-only machine too. Forward: QKᵀ + P·V; backward: 5 matmul-equivalents.
    b, h, t, d = 2, 4, 16, 8
    unit = 2 * b * h * t * t * d
    for name, call in _fused_attention_calls(dev):
        with FakeTensorMode():
            q = torch.randn(b, h, t, d, device=dev, dtype=torch.float16 if dev == "cuda" else torch.float32)
            counter = flop_counter_mode()
            with counter:
                call(q)
        counts = sorted(counter.get_flop_counts()["Global"].values())
        assert counts == [2 * unit, 5 * unit], name


@pytest.mark.parametrize("mode", ["forward", "train"])
def test_breakdown_sums_to_total_and_components_are_stable(mode: str) -> None:
    for backend, k in itertools.product(["eager", "sdpa"], [0, 2, 4]):
        cost = analytic_cost(small(backend=backend, reuse_heads=k, input_kind="patches", task_head="lm"), 3, 10, mode)
        assert tuple(cost.by_component) == COMPONENTS
        assert sum(cost.by_component.values()) == cost.total
        assert all(v > 0 for v in cost.by_component.values())
        assert cost.forward <= cost.total and (mode == "train" or cost.forward == cost.total)


def test_closed_form_tiny_config() -> None:
    # d=8, H=2 (d_h=4), 2 layers, d_ff=16, tokens, classify into 3; B=1, T=4 (N=4 tokens).
    base = TransformerConfig(d_model=8, n_heads=2, n_layers=2, d_ff=16, vocab_size=16, max_len=8, n_classes=3,
                             backend="eager")
    # Per layer: q, k, v, o projections 2·N·d·d = 2·4·8·8 = 512 each; QKᵀ and P·V 2·B·T²·d_h·H
    # = 2·16·4·2 = 256 each; MLP 2·N·d·d_ff·2 = 2048. Head on the pooled (1, 8): 2·8·3 = 48.
    layer = 4 * 512 + 256 + 256 + 2048
    assert analytic_cost(base, 1, 4, "forward").total == 2 * layer + 48 == 9264
    # Eager training: every matmul runs twice more backward (no patch embedding here).
    assert analytic_cost(base, 1, 4, "train").total == 3 * 9264
    # SDPA training: the fused backward recomputes QKᵀ, one more matmul per head per layer.
    sdpa = TransformerConfig.from_dict({**base.to_dict(), "backend": "sdpa"})
    assert analytic_cost(sdpa, 1, 4, "train").total == 3 * 9264 + 2 * 256
    # K=1: layer 1 has one new head: q, k projections 2·4·8·4 = 256 each, QKᵀ 128, P·V still 256.
    reuse = TransformerConfig.from_dict({**base.to_dict(), "reuse_heads": 1})
    layer1 = 256 + 256 + 512 + 512 + 128 + 256 + 2048
    assert analytic_cost(reuse, 1, 4, "forward").total == layer + layer1 + 48 == 8624
    # Parameters: embed 16·8, pos 8·8, per layer 2·8 + (8·24+24) + (8·8+8) + 2·8 + (8·16+16+16·8+8),
    # ln_f 2·8, head 8·3+3.
    assert analytic_cost(base, 1, 4).params == 128 + 64 + 2 * (16 + 216 + 72 + 16 + 280) + 16 + 27 == 1435
    assert param_count(reuse) == 1435 - (2 * 8 * 4 + 2 * 4)  # layer 1 drops one head's q and k weights


def test_causal_attention_is_counted_in_full() -> None:
    for backend, mode in itertools.product(["eager", "sdpa"], ["forward", "train"]):
        pair = [small(backend=backend, reuse_heads=2, causal=c) for c in (False, True)]
        assert analytic_cost(pair[0], 2, 12, mode).total == analytic_cost(pair[1], 2, 12, mode).total
    assert "multiply-add" in FLOP_CONVENTION and "causal" in FLOP_CONVENTION.lower()


def _ratio(cfg_reuse: TransformerConfig, n: int, mode: str) -> float:
    baseline = TransformerConfig.from_dict({**cfg_reuse.to_dict(), "reuse_heads": None})
    return 1 / flop_ideal_speedup(baseline, cfg_reuse, 1, n, mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend,mode", [("eager", "forward"), ("eager", "train"), ("sdpa", "forward"),
                                          ("sdpa", "train")])
def test_reuse_flop_ratio_tends_to_the_attention_limit(backend: str, mode: str) -> None:
    # For n ≫ d only the T² terms, QKᵀ and P·V, matter. Per head, in units of one T²·d_h matmul:
    # forward, QKᵀ 1 and P·V 1; training adds backward, 2 each, except a fused head's QKᵀ which
    # also recomputes the scores (3). A reused head pays only P·V. K = H/2, every layer but layer 0
    # reusing layer 0's heads (source "first": on sdpa only those K heads of layer 0 are materialized).
    H, L = 8, 6
    K = H // 2
    qk, pv = (1, 1) if mode == "forward" else ((1 + 2, 1 + 2) if backend == "eager" else (1 + 3, 1 + 2))
    layer_limit = ((H - K) * (qk + pv) + K * pv) / (H * (qk + pv))
    if (backend, mode) == ("sdpa", "train"):
        # Layer 0 materializes the K heads layer 1 reads: their QKᵀ backward skips the recompute.
        layer0 = (K * (3 + 3) + (H - K) * (qk + pv)) / (H * (qk + pv))
    else:
        layer0 = 1.0
    model_limit = (layer0 + (L - 1) * layer_limit) / L
    assert layer_limit == pytest.approx(1 - K / (2 * H) if qk == pv else 1 - 4 * K / (7 * H))
    cfg = TransformerConfig(d_model=64, n_heads=H, n_layers=L, d_ff=256, max_len=1 << 16, backend=backend,
                            reuse_heads=K, reuse_source="first")
    ratios = [_ratio(cfg, n, mode) for n in (16, 256, 4096, 65536)]
    assert all(r < 1 for r in ratios)                                  # reuse always saves FLOPs
    gaps = [abs(r - model_limit) for r in ratios]
    assert all(a > b for a, b in zip(gaps, gaps[1:]))                  # and heads toward the limit
    assert gaps[-1] < 2e-3


def test_counted_ratio_matches_direction_at_small_sizes() -> None:
    base, reuse = small(backend="eager"), small(backend="eager", reuse_heads=2)
    counts = [count_flops(*built(c, 2, 16), "forward").total for c in (base, reuse)]
    assert counts[1] < counts[0]
    assert counts[0] / counts[1] == pytest.approx(flop_ideal_speedup(base, reuse, 2, 16))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("backend,impl", IMPLS)
@pytest.mark.parametrize("causal", [False, True])
def test_activation_bytes_equal_saved_tensor_bytes(dtype: str, backend: str, impl: str, causal: bool) -> None:
    # Per dtype: activations in it, CPU layer-norm statistics and dropout masks too, logsumexp and
    # the loss in float32, and the math path (attention dropout) upcasting to float32.
    cases = [dict(reuse_heads=0), dict(reuse_heads=1), dict(reuse_heads=2, reuse_source="first"),
             dict(reuse_heads=3, task_head="lm"), dict(reuse_heads=4, input_kind="patches"),
             dict(reuse_heads=2, attn_dropout=0.1, dropout=0.1), dict(reuse_heads=2, reuse_layers=1)]
    for overrides in cases:
        cfg = small(backend=backend, reuse_impl=impl, causal=causal, dtype=dtype, **overrides)
        for batch in (1, 3):
            model, x, y = built(cfg, batch, 13)
            assert analytic_cost(cfg, batch, 13, "train").activation_bytes == saved_activation_bytes(model, x, y), \
                (overrides, batch)
    assert analytic_cost(small(), 2, 8, "forward").activation_bytes == 0  # no_grad keeps nothing


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_counted_flops_equal_analytic_in_half_precision(dtype: str) -> None:
    for (d, h, n_layers, k, p, source, kind, head), (backend, impl) in itertools.product(SHAPES[1:4], IMPLS):
        cfg = small(d_model=d, n_heads=h, n_layers=n_layers, reuse_heads=k, reuse_layers=p, reuse_source=source,
                    input_kind=kind, task_head=head, backend=backend, reuse_impl=impl, causal=True, dtype=dtype,
                    attn_dropout=0.1)
        model, x, y = built(cfg, 2, 11)
        for mode in ("forward", "train"):
            assert count_flops(model, x, y, mode).total == analytic_cost(cfg, 2, 11, mode).total, (cfg, mode)


def test_cuda_fused_kernels_keep_dropout_and_no_probabilities() -> None:
    # On CPU attention dropout sends SDPA to its math path; CUDA's fused kernels do dropout
    # themselves: 5 backward matmul units per fused head, not 4, and no T×T tensor kept.
    cfg = small(backend="sdpa", attn_dropout=0.1)
    cpu, cuda = (analytic_cost(cfg, 2, 16, "train", device_type=dev) for dev in ("cpu", "cuda"))
    fused_heads = sum(split.fused for split in head_splits(cfg))
    assert cuda.total - cpu.total == fused_heads * 2 * 2 * 16 * 16 * cfg.d_head
    assert analytic_cost(cfg, 2, 16, "train", device_type="cuda", sdpa="math").total == cpu.total
    kept = [analytic_cost(cfg, 2, n, "train", device_type="cuda").activation_bytes for n in (16, 32, 48)]
    assert kept[2] - kept[1] == kept[1] - kept[0], "linear in n: no T×T term"


def test_cuda_dropout_masks_are_bool() -> None:
    # Eager float32 with attention dropout: per materialized or reused head a T×T mask of 4 bytes
    # on CPU (a float noise tensor) and 1 on CUDA (native_dropout's bool mask).
    cfg = small(backend="eager", attn_dropout=0.1, reuse_heads=2)
    B, T = 2, 16
    cpu, cuda = (analytic_cost(cfg, B, T, "train", device_type=dev).activation_bytes for dev in ("cpu", "cuda"))
    heads_dropped = sum(split.materialized + split.reused for split in head_splits(cfg))
    assert cpu - cuda == heads_dropped * B * T * T * 3   # layer-norm statistics: float32 on both


def test_reuse_keeps_fewer_probability_bytes_on_eager() -> None:
    base = analytic_cost(small(backend="eager", n_layers=6), 2, 256, "train").activation_bytes
    reuse = analytic_cost(small(backend="eager", n_layers=6, reuse_heads=2), 2, 256, "train").activation_bytes
    # 5 of 6 layers keep 2 of 4 heads' T×T probabilities: 5·2·B·T² floats fewer (T² terms dominate
    # at T=256 ≫ d_h; token-sized q/k copies shift it by a few percent).
    saved = 5 * 2 * 2 * 256 * 256 * 4
    assert base - reuse == pytest.approx(saved, rel=0.1)


def test_invalid_mode_and_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        analytic_cost(small(), 1, 4, "backward")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        analytic_cost(small(), 0, 4)
    model, x, y = built(small(), 1, 4)
    with pytest.raises(ValueError, match="mode"):
        count_flops(model, x, y, "inference")  # type: ignore[arg-type]
