"""The Transformer family: baseline equivalence, reuse semantics (the reference ReuseTransformer's)
checked by hand, backends, registry."""

from __future__ import annotations

import itertools
import math
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from models.config import ConfigError, TransformerConfig
from models.cost import param_count
from models.flops import count_flops
from models.registry import UnknownModelError, build_model
from models.plan import ReusePlan
from models.handoff import AttentionProbs, QueryKey
from models.transformer import ReuseAttention, Transformer, _Probabilities, loss_fn, make_inputs

B, T = 2, 13  # T differs from every model width below, so T×T tensors are recognisable by shape


# Tiny models on a shared 2-core machine: intra-op threads only add contention.
pytestmark = pytest.mark.usefixtures("one_thread")


def small(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = dict(d_model=32, n_heads=4, n_layers=4, d_ff=48, vocab_size=50, max_len=32, n_classes=5)
    values.update(overrides)
    return values


def seeded(name: str, config: dict[str, Any]) -> Transformer:
    torch.manual_seed(0)
    model = build_model(name, config)
    assert isinstance(model, Transformer)
    return model


def logits(model: torch.nn.Module, x: Tensor) -> Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


# ---- baseline equivalence ------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("zero", [dict(reuse_heads=0), dict(reuse_ratio=0.0), dict(reuse_heads=0, reuse_layers=2)])
def test_k_zero_is_the_baseline(backend: str, zero: dict[str, Any]) -> None:
    cfg = small(backend=backend, causal=True, task_head="lm")
    base, reuse = seeded("baseline", cfg), seeded("reuse", {**cfg, **zero})
    base_state, reuse_state = base.state_dict(), reuse.state_dict()
    assert list(base_state) == list(reuse_state)
    for name, value in base_state.items():
        assert torch.equal(value, reuse_state[name]), name
    x, _ = make_inputs(base.config, B, T)
    assert torch.equal(logits(base, x), logits(reuse, x))


def test_baseline_ignores_reuse_keys() -> None:
    cfg = small(backend="eager")
    plain = seeded("baseline", cfg)
    keyed = seeded("baseline", {**cfg, "reuse_ratio": 0.5, "reuse_source": "first", "reuse_layers": 2})
    assert keyed.config.k == 0 and param_count(keyed.config) == param_count(plain.config)
    x, _ = make_inputs(plain.config, B, T)
    assert torch.equal(logits(plain, x), logits(keyed, x))


# ---- backends ------------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("reuse", [dict(), dict(reuse_heads=2), dict(reuse_heads=3),
                                   dict(reuse_heads=2, reuse_source="first"), dict(reuse_heads=4, reuse_source="first")])
def test_eager_and_sdpa_agree(causal: bool, reuse: dict[str, Any]) -> None:
    outs = []
    for backend in ("eager", "sdpa"):
        model = seeded("reuse", small(backend=backend, causal=causal, task_head="lm", **reuse))
        outs.append(logits(model, make_inputs(model.config, B, T)[0]))
    torch.testing.assert_close(outs[0], outs[1], atol=2e-5, rtol=1e-5)


# ---- precision -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_parameters_and_activations_are_in_the_configured_dtype(dtype: str, backend: str) -> None:
    wanted = getattr(torch, dtype)
    cfg = small(backend=backend, reuse_heads=2, input_kind="patches", patch_dim=6, causal=True)
    model = seeded("reuse", {**cfg, "dtype": dtype})
    assert {p.dtype for p in model.parameters()} == {wanted}
    # Same seed, same weights: float32's, rounded.
    for name, value in seeded("reuse", cfg).state_dict().items():
        assert torch.equal(model.state_dict()[name], value.to(wanted)), name
    x, y = make_inputs(model.config, B, T)
    assert x.dtype == wanted
    seen: set[torch.dtype] = set()

    def record(module: torch.nn.Module, args: Any, out: Any) -> None:
        hidden, handed_on = out
        seen.add(hidden.dtype)
        seen.update(chunk.dtype for chunk in (handed_on.chunks if handed_on is not None else ()))

    for block in model.blocks:
        block.attn.register_forward_hook(record)
    out = logits(model, x)
    assert seen == {wanted} and out.dtype == wanted


def test_the_loss_is_computed_in_float32() -> None:
    # A bfloat16 model's loss: float32, equal to float32 cross-entropy of its own logits, and close
    # to the float32 model's loss.
    cfg = small(task_head="lm", reuse_heads=2)
    full, half = seeded("reuse", cfg), seeded("reuse", {**cfg, "dtype": "bfloat16"})
    x, y = make_inputs(full.config, B, T)
    half_logits = logits(half, x)
    loss = loss_fn(half.config, half_logits, y)
    assert loss.dtype == torch.float32
    expected = torch.nn.functional.cross_entropy(half_logits.float().reshape(-1, 50), y.reshape(-1))
    assert torch.equal(loss, expected)
    assert loss.item() == pytest.approx(loss_fn(full.config, logits(full, x), y).item(), rel=1e-2)


def test_float32_patches_run_in_the_models_dtype() -> None:
    # Callers with their own float32 data (an accuracy task) need no cast of their own.
    model = seeded("reuse", small(input_kind="patches", patch_dim=6, dtype="bfloat16"))
    x = torch.randn(B, T, 6)
    assert logits(model, x).dtype == torch.bfloat16


# ---- parameters ----------------------------------------------------------------------------------
@pytest.mark.parametrize("reuse", [dict(reuse_heads=0), dict(reuse_heads=1), dict(reuse_heads=2),
                                   dict(reuse_heads=4), dict(reuse_heads=2, reuse_layers=1),
                                   dict(reuse_heads=4, reuse_layers=2, input_kind="patches", task_head="lm")])
def test_parameter_count_equals_analytic(reuse: dict[str, Any]) -> None:
    model = seeded("reuse", small(**reuse))
    assert sum(p.numel() for p in model.parameters()) == param_count(model.config)


# ---- reuse semantics, by hand ------------------------------------------------------------------
def head_probs(attn: ReuseAttention, x: Tensor, head: int, causal: bool) -> Tensor:
    """Probabilities of new head `head`, recomputed from the layer's input with its own weights."""
    hs, n_new = attn.d_head, attn.n_new
    w, b = attn.qkv.weight, attn.qkv.bias
    q = x @ w[head * hs:(head + 1) * hs].T + b[head * hs:(head + 1) * hs]
    k_rows = slice((n_new + head) * hs, (n_new + head + 1) * hs)
    k = x @ w[k_rows].T + b[k_rows]
    scores = q @ k.transpose(-2, -1) / math.sqrt(hs)                      # (B, T, T)
    if causal:
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(dim=-1)


# Which (layer, head) each reusing layer reads, worked out by hand for H=4, 4 layers from the
# reference rule: handed_on(l) = [new heads of l, first K received]; the next layer takes the first K.
REUSED = {
    (2, "previous"): {1: [(0, 0), (0, 1)], 2: [(1, 0), (1, 1)], 3: [(2, 0), (2, 1)]},
    (4, "previous"): {l: [(0, h) for h in range(4)] for l in (1, 2, 3)},  # nothing new: layer 0's pass through
    (2, "first"): {l: [(0, 0), (0, 1)] for l in (1, 2, 3)},
    (4, "first"): {l: [(0, h) for h in range(4)] for l in (1, 2, 3)},
    (3, "previous"): {1: [(0, 0), (0, 1), (0, 2)], 2: [(1, 0), (0, 0), (0, 1)], 3: [(2, 0), (1, 0), (0, 0)]},
}


def probs_from(received: tuple[QueryKey, ...], causal: bool) -> Tensor:
    """(B, h, T, T) probabilities a recomputing layer's reused heads get from their origins' q, k."""
    q, k = (torch.cat([getattr(part, name) for part in received], dim=2).transpose(1, 2) for name in "qk")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(dim=-1)


@pytest.mark.parametrize("k,source", list(REUSED))
@pytest.mark.parametrize("impl", ["materialize", "recompute"])
def test_the_plan_names_the_hand_worked_origins(k: int, source: str, impl: str) -> None:
    plan = ReusePlan.from_config(TransformerConfig(**small(reuse_heads=k, reuse_source=source, reuse_impl=impl)))
    assert {layer: list(o) for layer, o in enumerate(plan.origins) if o} == REUSED[(k, source)]


@pytest.mark.parametrize("backend,impl", [("eager", "materialize"), ("sdpa", "materialize"), ("sdpa", "recompute")])
@pytest.mark.parametrize("k,source", list(REUSED))
@pytest.mark.parametrize("train", [False, True])
def test_each_layer_reuses_the_heads_the_paper_says(backend: str, impl: str, k: int, source: str,
                                                    train: bool) -> None:
    causal = source == "first"  # cover the mask too without doubling the grid
    # In training, attention dropout must hit only where probabilities are used, never what is handed on.
    model = seeded("reuse", small(backend=backend, reuse_impl=impl, reuse_heads=k, reuse_source=source,
                                  causal=causal, attn_dropout=0.5 if train else 0.0))
    inputs: dict[int, Tensor] = {}
    received: dict[int, Tensor] = {}

    def capture(layer: int) -> Any:
        def hook(module: ReuseAttention, args: tuple[Tensor, Any]) -> None:
            inputs[layer] = args[0].detach()
            if module.n_reused and impl == "recompute":  # the origins' q and k: what their probabilities are
                received[layer] = probs_from(args[1], causal).detach()
            elif module.n_reused:
                assert args[1] is not None
                received[layer] = torch.cat(args[1].first(module.n_reused).chunks, dim=1).detach()
        return hook

    for layer, block in enumerate(model.blocks):
        block.attn.register_forward_pre_hook(capture(layer))
    x, _ = make_inputs(model.config, B, T)
    model.train(train)
    model(x)
    assert sorted(received) == [1, 2, 3]
    with torch.no_grad():
        for layer, sources in REUSED[(k, source)].items():
            expected = torch.stack([head_probs(model.blocks[j].attn, inputs[j], h, causal) for j, h in sources], dim=1)
            torch.testing.assert_close(received[layer], expected, atol=1e-6, rtol=1e-5)


def reference_logits(model: Transformer, x: Tensor) -> Tensor:
    """The reference's reuse rule written out directly: every layer hands on all its probabilities,
    no plan, no chunks."""
    cfg = model.config
    hs, H = cfg.d_head, cfg.n_heads
    h = model.embed(x) + model.pos.weight[:T]
    handed: list[Tensor] = []
    for layer, block in enumerate(model.blocks):
        attn, xn = block.attn, block.ln_1(h)
        n_new = cfg.new_heads(layer)
        q, k, v = attn.qkv(xn).split([n_new * hs, n_new * hs, H * hs], dim=-1)
        heads = [head_probs(attn, xn, i, cfg.causal) for i in range(n_new)]
        if cfg.reuses(layer):
            source = handed[layer - 1 if cfg.reuse_source == "previous" else 0]
            heads += list(source[:, :cfg.k].unbind(dim=1))
        probs = torch.stack(heads, dim=1)                                  # (B, H, T, T)
        handed.append(probs)
        out = probs @ v.view(B, T, H, hs).transpose(1, 2)                  # (B, H, T, hs)
        h = h + attn.proj(out.transpose(1, 2).reshape(B, T, H * hs))
        h = h + block.mlp(block.ln_2(h))
    h = model.ln_f(h)
    return model.head(h if cfg.task_head == "lm" else (h[:, -1] if cfg.causal else h.mean(dim=1)))


@pytest.mark.parametrize("backend,causal", [("eager", False), ("sdpa", True), ("sdpa", False)])
def test_model_matches_a_direct_reference(backend: str, causal: bool) -> None:
    for k, source, p in itertools.product((1, 2, 3, 4), ("previous", "first"), (None, 2)):
        model = seeded("reuse", small(backend=backend, causal=causal, reuse_heads=k, reuse_source=source,
                                      reuse_layers=p)).eval()
        x, _ = make_inputs(model.config, B, T)
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference_logits(model, x), atol=2e-5, rtol=1e-5)


class _CopiesOfTT(TorchDispatchMode):
    """Records copy-like ops whose output ends in (T, T): a reused head should never be copied."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = str(func.overloadpacket).split(".")[-1]
        if name in {"clone", "copy_", "_to_copy", "cat", "contiguous"} and isinstance(out, Tensor) \
                and tuple(out.shape[-2:]) == (T, T):
            self.copies.append(f"{name}{tuple(out.shape)}")
        return out


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_forward_never_copies_probabilities(backend: str) -> None:
    for k, source in itertools.product((1, 2, 3), ("previous", "first")):
        model = seeded("reuse", small(backend=backend, causal=True, reuse_heads=k, reuse_source=source))
        x, _ = make_inputs(model.config, B, T)
        with _CopiesOfTT() as mode:
            logits(model, x)
        assert mode.copies == [], (k, source, mode.copies)


@pytest.mark.parametrize("backend,impl", [("eager", "materialize"), ("sdpa", "materialize"), ("sdpa", "recompute")])
@pytest.mark.parametrize("k,source,alive", [(2, "previous", {4}), (3, "previous", {2, 3, 4}), (2, "first", {0})])
def test_inference_frees_what_no_later_layer_reads(backend: str, impl: str, k: int, source: str,
                                                   alive: set[int]) -> None:
    # When the last layer runs, only the probabilities (recompute: the q and k) it reads, directly
    # or through the layers it reads, may still be alive.
    model = seeded("reuse", small(backend=backend, reuse_impl=impl, n_layers=6, reuse_heads=k, reuse_source=source))
    own: dict[int, weakref.ref[Tensor]] = {}
    seen: set[int] = set()

    def record(layer: int) -> Any:
        def hook(module: ReuseAttention, args: Any, output: tuple[Tensor, Any]) -> None:
            handed = output[1]
            if handed is not None:
                own[layer] = weakref.ref(handed.q if isinstance(handed, QueryKey) else handed.chunks[0])
        return hook

    def check(module: ReuseAttention, args: Any) -> None:
        seen.update(layer for layer, ref in own.items() if ref() is not None)

    for layer, block in enumerate(model.blocks):
        block.attn.register_forward_hook(record(layer))
    model.blocks[-1].attn.register_forward_pre_hook(check)
    logits(model, make_inputs(model.config, B, T)[0])
    assert seen == alive


# ---- gradients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_gradients_reach_every_parameter(backend: str) -> None:
    variants = [dict(), dict(reuse_heads=1), dict(reuse_heads=2, reuse_source="first", causal=True),
                dict(reuse_heads=4, task_head="lm"), dict(reuse_heads=2, reuse_layers=1, input_kind="patches"),
                dict(reuse_heads=2, attn_dropout=0.2, dropout=0.1)]
    for variant in variants:
        model = seeded("reuse", small(backend=backend, **variant)).train()
        x, y = make_inputs(model.config, B, T)
        loss_fn(model.config, model(x), y).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert missing == [], (variant, missing)


@pytest.mark.parametrize("causal", [False, True])
def test_probabilities_function_gradcheck(causal: bool) -> None:
    torch.manual_seed(0)
    q, k = (torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    bias = torch.full((5, 5), float("-inf"), dtype=torch.float64).triu_(1) if causal else None
    assert torch.autograd.gradcheck(lambda a, b: _Probabilities.apply(a, b, bias, 0.5), (q, k))
    expected = torch.softmax(0.5 * q @ k.transpose(-2, -1) + (bias if causal else 0), dim=-1)
    torch.testing.assert_close(_Probabilities.apply(q, k, bias, 0.5), expected)


# ---- config validation and the registry ----------------------------------------------------------
@pytest.mark.parametrize("overrides,field", [
    (dict(d_model=30, n_heads=4), "d_model"),
    (dict(reuse_heads=5), "reuse_heads"),
    (dict(reuse_heads=2, reuse_layers=4), "reuse_layers"),
    (dict(backend="flash"), "backend"),
    (dict(reuse_source="last"), "reuse_source"),
    (dict(reuse_heads=1, reuse_ratio=0.5), "reuse_ratio"),
    (dict(n_layerz=2), "n_layerz"),
    (dict(dtype="float64"), "dtype"),
    (dict(reuse_impl="fused"), "reuse_impl"),
    (dict(reuse_heads=2, reuse_impl="recompute", backend="eager"), "reuse_impl"),
])
def test_config_errors_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_model("reuse", small(**overrides))
    assert err.value.field == field and str(err.value).startswith(f"{field}:")


def test_third_party_model_through_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    model = build_model("thirdparty_model:build", {"vocab_size": 50, "d_model": 16, "n_classes": 5})
    x, y = make_inputs(TransformerConfig(vocab_size=50, n_classes=5), B, T)
    assert logits(model, x).shape == (B, 5)
    # The harness counts any model's FLOPs: one Linear on the pooled features, 3x in training.
    assert count_flops(model, x, y, "forward").total == 2 * B * 16 * 5
    assert count_flops(model, x, y, "train").total == 3 * 2 * B * 16 * 5  # + grad input, grad weight
    with pytest.raises(UnknownModelError, match="no attribute"):
        build_model("thirdparty_model:missing", {})
    with pytest.raises(UnknownModelError, match="cannot import"):
        build_model("no_such_package.module:build", {})
    with pytest.raises(UnknownModelError, match="unknown model"):
        build_model("transformer", {})


def test_attention_probs_first_takes_views_only() -> None:
    a, b = torch.rand(B, 3, T, T), torch.rand(B, 2, T, T)
    probs = AttentionProbs((a, b))
    taken = probs.first(4)
    assert [c.shape[1] for c in taken.chunks] == [3, 1]
    assert all(c.untyped_storage().data_ptr() in {a.untyped_storage().data_ptr(), b.untyped_storage().data_ptr()}
               for c in taken.chunks)
    assert torch.equal(torch.cat(probs.first(2).chunks, dim=1), a[:, :2])
    with pytest.raises(ValueError):
        probs.first(6)
