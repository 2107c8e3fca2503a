"""Recompute reuse (reuse_impl: recompute) against materialize: one model, computed another way.

A reused head's probabilities are softmax(q_src k_srcᵀ / sqrt(d_h)), a function of its origin's q and
k alone, so a recomputing layer keeps those and runs every head through one SDPA call. It must have
the same parameters, outputs and gradients up to float rounding, never hold a T×T tensor, and be
accounted for by the cost model (the counted-vs-analytic checks run in test_cost.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from models.config import ConfigError
from models.cost import analytic_cost, head_splits
from models.registry import build_model, model_config
from models.transformer import Transformer, loss_fn, make_inputs

B, T = 2, 13  # T differs from every model width below, so T×T tensors are recognisable by shape

pytestmark = pytest.mark.usefixtures("one_thread")

# Every reuse plan shape of a 4-head, 4-layer model: K from 1 to H, both sources, all or some layers.
CASES = [dict(reuse_heads=k, reuse_source=source, reuse_layers=p)
         for k in (1, 2, 3, 4) for source in ("previous", "first") for p in (None, 2)]


def small(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = dict(d_model=32, n_heads=4, n_layers=4, d_ff=48, vocab_size=50, max_len=32, n_classes=5)
    values.update(overrides)
    return values


def pair(**config: Any) -> tuple[Transformer, Transformer]:
    """(materialize, recompute) models built from one seed."""
    models = []
    for impl in ("materialize", "recompute"):
        torch.manual_seed(0)
        model = build_model("reuse", small(reuse_impl=impl, **config))
        assert isinstance(model, Transformer)
        models.append(model)
    return models[0], models[1]


def logits(model: Transformer, x: Tensor) -> Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def test_parameters_are_identical() -> None:
    for case in CASES:
        materialize, recompute = pair(**case)
        mine, theirs = recompute.state_dict(), materialize.state_dict()
        assert list(mine) == list(theirs)
        assert all(torch.equal(mine[name], value) for name, value in theirs.items()), case


def test_with_nothing_reused_it_is_the_baseline() -> None:
    torch.manual_seed(0)
    baseline = build_model("baseline", small(causal=True))
    _, recompute = pair(reuse_heads=0, causal=True)
    x, _ = make_inputs(recompute.config, B, T)
    assert torch.equal(logits(recompute, x), logits(baseline, x))  # type: ignore[arg-type]


@pytest.mark.parametrize("causal", [False, True])
def test_outputs_equal_materialize(causal: bool) -> None:
    for case in CASES:
        materialize, recompute = pair(causal=causal, task_head="lm", **case)
        x, _ = make_inputs(materialize.config, B, T)
        torch.testing.assert_close(logits(recompute, x), logits(materialize, x), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_training_loss_and_gradients_equal_materialize(causal: bool) -> None:
    for case in CASES:
        results = []
        for model in pair(causal=causal, **case):
            x, y = make_inputs(model.config, B, T)
            loss = loss_fn(model.config, model.train()(x), y)
            results.append((loss, torch.autograd.grad(loss, list(model.parameters()))))
        (loss_m, grads_m), (loss_r, grads_r) = results
        torch.testing.assert_close(loss_r, loss_m, atol=1e-6, rtol=1e-5)
        for g_r, g_m in zip(grads_r, grads_m):
            torch.testing.assert_close(g_r, g_m, atol=1e-5, rtol=1e-4)


def test_gradients_reach_every_parameter() -> None:
    variants = [dict(reuse_heads=1), dict(reuse_heads=2, reuse_source="first", causal=True), dict(reuse_heads=3),
                dict(reuse_heads=4, task_head="lm"), dict(reuse_heads=2, reuse_layers=1, input_kind="patches",
                                                         patch_dim=6),
                dict(reuse_heads=2, attn_dropout=0.2, dropout=0.1)]
    for variant in variants:
        _, model = pair(**variant)
        x, y = make_inputs(model.config, B, T)
        loss_fn(model.config, model.train()(x), y).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert missing == [], (variant, missing)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_stays_in_its_dtype_and_agrees(dtype: str) -> None:
    wanted = getattr(torch, dtype)
    tolerance = 8 * torch.finfo(wanted).eps  # a few units of the last place, on logits of about 2
    for case in (dict(reuse_heads=2), dict(reuse_heads=3, reuse_source="first", causal=True)):
        materialize, recompute = pair(dtype=dtype, task_head="lm", **case)
        x, y = make_inputs(recompute.config, B, T)
        out = logits(recompute, x)
        assert out.dtype == wanted
        torch.testing.assert_close(out.float(), logits(materialize, x).float(), atol=tolerance, rtol=tolerance)
        loss_fn(recompute.config, recompute.train()(x), y).backward()
        assert all(p.grad is not None and p.grad.dtype == wanted for p in recompute.parameters())


class _SquareTensors(TorchDispatchMode):
    """Names the ops whose output ends in (T, T): an attention probability or score tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if any(isinstance(t, Tensor) and t.dim() >= 2 and tuple(t.shape[-2:]) == (T, T)
               for t in (out if isinstance(out, (tuple, list)) else (out,))):
            self.seen.append(str(func.overloadpacket))
        return out


def square_tensors(model: Transformer, train: bool) -> list[str]:
    x, y = make_inputs(model.config, B, T)
    with _SquareTensors() as mode:
        if train:
            loss_fn(model.config, model.train()(x), y).backward()
        else:
            logits(model, x)
    return mode.seen


@pytest.mark.parametrize("train", [False, True])
def test_no_t_by_t_tensor_ever_exists(train: bool) -> None:
    for case in CASES:
        materialize, recompute = pair(causal=True, **case)
        assert square_tensors(recompute, train) == [], case
        assert square_tensors(materialize, train), "the check sees the probabilities materialize keeps"


def test_kept_bytes_are_linear_in_n_and_no_more_than_the_sdpa_baselines() -> None:
    # A training step keeps q, k and v once each (the gathered copies, v projected apart): what the
    # baseline keeps of its qkv projection, no T×T term.
    for case in CASES:
        config = small(max_len=64, reuse_impl="recompute", **case)
        recompute, baseline = model_config("reuse", config), model_config("baseline", config)
        assert recompute is not None and baseline is not None
        kept = [analytic_cost(recompute, B, n, "train").activation_bytes for n in (16, 32, 48)]
        assert kept[2] - kept[1] == kept[1] - kept[0], case
        assert kept[0] <= analytic_cost(baseline, B, 16, "train").activation_bytes, case


def test_forward_pays_qk_again_for_each_reused_head() -> None:
    for case in CASES:
        materialize, recompute = (m.config for m in pair(**case))
        reused = sum(split.recomputed for split in head_splits(recompute))
        assert reused == sum(split.reused for split in head_splits(materialize)) > 0
        extra = analytic_cost(recompute, B, T).total - analytic_cost(materialize, B, T).total
        assert extra == reused * 2 * B * T * T * recompute.d_head   # one QKᵀ per reused head


def test_recompute_on_the_eager_backend_is_an_error_that_says_why() -> None:
    with pytest.raises(ConfigError) as err:
        build_model("reuse", small(reuse_heads=2, reuse_impl="recompute", backend="eager"))
    assert err.value.field == "reuse_impl"
    assert "sdpa" in err.value.message and "fused" in err.value.message and "'eager'" in err.value.message


def test_without_grad_a_layer_hands_on_only_the_heads_read_later() -> None:
    # In inference nothing else keeps a layer's q and k; a view of them would keep the whole
    # gathered buffer (at an origin layer with nothing to gather, the whole qkv projection) alive
    # until its last reader: +3 (B, T, C) through a forward pass, measured as +25-57% peak memory.
    for case in CASES:
        _, recompute = pair(**case)
        recompute.eval()
        x, _ = make_inputs(recompute.config, B, T)
        handed = []
        hooks = [layer.attn.register_forward_hook(lambda _m, _i, out: handed.append(out[1]))
                 for layer in recompute.blocks]
        with torch.no_grad():
            recompute(x)
        for hook in hooks:
            hook.remove()
        read = [qk for qk in handed if qk is not None]
        assert read, case
        for qk in read:
            for t in (qk.q, qk.k):
                assert t.untyped_storage().nbytes() == t.numel() * t.element_size(), case


@pytest.mark.parametrize("source", ["previous", "first"])
@pytest.mark.parametrize("reuse_heads", [1, 2])
def test_inference_peak_is_the_baselines_plus_the_origin_q_and_k_alone(source: str, reuse_heads: int) -> None:
    # Known allocation sizes: without grad, a recomputing model's peak (in its FFN, where the
    # SDPA baseline's is too) exceeds the baseline's by exactly the q and k of the K origin heads
    # that some later layer still reads, 2·K·d_head·B·T elements, and by nothing else: what a layer
    # received dies after its attention (models.handoff.Inbox), not after its FFN.
    from harness.measure.devices import CpuDevice

    shape = dict(d_model=64, n_heads=4, n_layers=4, d_ff=256, vocab_size=50, max_len=256, backend="sdpa")
    B_, T_ = 2, 128
    peaks = {}
    for name, config in {"baseline": {}, "reuse": dict(reuse_heads=reuse_heads, reuse_source=source,
                                                       reuse_impl="recompute")}.items():
        torch.manual_seed(0)
        model = build_model(name, {**shape, **config}).eval()
        x, _ = make_inputs(model.config, B_, T_)

        def step(model: torch.nn.Module = model, x: Tensor = x) -> None:
            with torch.no_grad():
                model(x)

        step()
        peaks[name] = CpuDevice().step_memory(step).peak_bytes
    d_head = shape["d_model"] // shape["n_heads"]
    assert peaks["reuse"] - peaks["baseline"] == 2 * reuse_heads * d_head * B_ * T_ * 4
