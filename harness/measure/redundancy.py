"""The `redundancy` metric: how much of a model's attention repeats across its layers and heads.

Reuse rests on one observation: the attention probabilities of different heads and layers are
alike, most of all between adjacent layers, and more so after training on real data than at
random initialisation. This measures it on the user's own model and task: every head of every
layer is compared with every head of every other layer on one batch (harness/measure/similarity.py
defines the similarity and what follows from it).

Where the probabilities come from:
- this repository's Transformer (models/transformer.py): a forward pre-hook on each attention
  module recomputes its new heads' probabilities from the module's own q/k projection (the fused
  kernel never materializes them) and takes its reused heads from what the module received, in
  the module's head order: new heads, then reused ones. The probabilities are computed in float32
  whatever the model's dtype;
- any other model, e.g. a "module:callable": a method `attention_probabilities(x)` returning an
  iterable of one (B, H, T, T) tensor of post-softmax probabilities per layer, in layer order,
  each a fresh tensor (a generator lets a long input hold one layer at a time). A model with
  neither fails with `NoAttentionError`, naming the model and this method.

Which queries count (the `counted` mask): not padding positions (`Task.real_positions`), whose rows
are attention of a token that is not there; and under a causal mask not query 0, whose row sees
one key and so is the same one-hot in every head of every model, trained or not. Keys are never
masked: the models attend to padding keys, and those weights are part of what reuse would reuse.

Cost: layers stream. One forward keeps the layers from some `start` on as anchors while they fit
in `budget_bytes` and compares each layer with the anchors before it as soon as it is produced;
the next forward starts at the first layer that did not fit. Every pair is compared once and at
most the anchors plus one layer of (B, H, T, T) are alive at a time, never all L of them.

Stored (the row's `redundancy`): `inputs` (which batch), `states` (per state, "init" and
"trained" after training or "as_built" outside an accuracy suite, a list with one
`Redundancy.to_json()` per seed) and `summary` (per state, `similarity.summarize` of that list).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from harness.measure.similarity import Redundancy, head_similarity, summarize
from harness.suite.task import PointTask
from harness.tasks import Task
from models.registry import build_model
from models.handoff import Received
from models.transformer import ReuseAttention, Transformer, make_inputs, torch_dtype

# The first this many held-out inputs are the batch every model of an accuracy suite is measured
# on: enough queries that the mean is stable, small enough that a layer's probabilities stay small.
PROBE_BATCH = 256
# Anchored layers' probabilities kept alive at once (at least one layer is, whatever its size).
ANCHOR_BUDGET_BYTES = 256 * 2**20
# A row of probabilities may sum to 1 only up to rounding; bfloat16 keeps 8 bits of mantissa.
ROW_SUM_TOLERANCE = 1e-2

Sink = Callable[[Tensor], None]


class NoAttentionError(TypeError):
    """The model does not expose its attention probabilities."""


# ---- where the probabilities come from -------------------------------------------------------
def _all_heads(attn: ReuseAttention, h: Tensor, received: Received) -> Tensor:
    """(B, H, T, T) float32 probabilities of every head of `attn` on its input `h`, in its head order.

    Reused heads come from what the layer received: the probabilities themselves (reuse_impl
    materialize) or their origin heads' q and k, from which the layer recomputes them (recompute).
    """
    B, T, _ = h.shape
    q, k, _ = attn.qkv(h).view(B, T, -1, attn.d_head).split([attn.n_new, attn.n_new, attn.n_heads], dim=2)
    query_keys = [(q, k)]                                      # (B, T, h, hs) each
    given: list[Tensor] = []
    if isinstance(received, tuple):
        query_keys += [(part.q, part.k) for part in received]
    elif attn.n_reused:
        assert received is not None, "a reusing layer is always handed probabilities"
        given = [chunk.float() for chunk in received.first(attn.n_reused).chunks]
    computed = [_softmax(q, k, attn.causal) for q, k in query_keys if q.shape[2]]
    return torch.cat(computed + given, dim=1)


def _softmax(q: Tensor, k: Tensor, causal: bool) -> Tensor:
    """softmax(q kᵀ / sqrt(hs)) with the causal mask, for (B, T, h, hs) q and k -> (B, h, T, T)."""
    q, k = q.transpose(1, 2).float(), k.transpose(1, 2).float()
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        T = scores.shape[-1]
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1)


def _hooked(model: Transformer, x: Tensor, sink: Sink) -> None:
    def hook(attn: nn.Module, args: tuple[Any, ...]) -> None:
        sink(_all_heads(attn, *args))

    handles = [block.attn.register_forward_pre_hook(hook) for block in model.blocks]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()


def layer_source(model: nn.Module, name: str) -> Callable[[Tensor, Sink], None]:
    """A function running `model` on x that hands each layer's (B, H, T, T) probabilities to a sink."""
    expose = getattr(model, "attention_probabilities", None)
    if callable(expose):
        def exposed(x: Tensor, sink: Sink) -> None:
            for layer, probs in enumerate(expose(x)):
                sink(_checked(probs, x, name, layer))
        return exposed
    if isinstance(model, Transformer):
        return lambda x, sink: _hooked(model, x, sink)
    raise NoAttentionError(
        f"model {name!r} ({type(model).__name__}) does not expose its attention probabilities: the "
        "redundancy metric needs a method attention_probabilities(x) returning, per layer in order, "
        "a (batch, heads, T, T) tensor of post-softmax probabilities")


def _checked(probs: Any, x: Tensor, name: str, layer: int) -> Tensor:
    B, T = x.shape[:2]
    if not isinstance(probs, Tensor) or probs.dim() != 4 or probs.shape[0] != B or probs.shape[2:] != (T, T):
        shape = tuple(probs.shape) if isinstance(probs, Tensor) else type(probs).__name__
        raise NoAttentionError(f"model {name!r}: attention_probabilities gave layer {layer} as {shape}; "
                               f"expected (batch={B}, heads, T={T}, T={T})")
    sums = probs.float().sum(dim=-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=ROW_SUM_TOLERANCE):
        raise NoAttentionError(f"model {name!r}: layer {layer}'s attention rows do not sum to 1 "
                               "(expected post-softmax probabilities, not scores)")
    return probs


# ---- streaming comparison --------------------------------------------------------------------
class _Pass:
    """One forward: compares each layer with the anchors before it, then anchors it if it may."""

    def __init__(self, start: int, budget_bytes: int, counted: Tensor,
                 heads: dict[tuple[int, int], list[list[float]]]) -> None:
        self.start, self.budget, self.counted, self.heads = start, budget_bytes, counted, heads
        self.anchors: dict[int, Tensor] = {}
        self.kept_bytes = 0
        self.full = False
        self.n_layers = 0

    def __call__(self, probs: Tensor) -> None:
        layer = self.n_layers
        self.n_layers += 1
        for anchor, anchored in self.anchors.items():
            self.heads[(anchor, layer)] = head_similarity(anchored, probs, self.counted)
        if layer < self.start or self.full:
            return
        size = probs.numel() * probs.element_size()
        if self.anchors and self.kept_bytes + size > self.budget:
            self.full = True   # anchors stay contiguous: the rest wait for the next pass
            return
        self.anchors[layer] = probs
        self.kept_bytes += size


@torch.no_grad()
def redundancy_of(model: nn.Module, name: str, x: Tensor, counted: Tensor,
                  budget_bytes: int = ANCHOR_BUDGET_BYTES) -> Redundancy:
    """Head × head similarities of every pair of layers of `model` (in eval mode) on batch `x`."""
    run = layer_source(model, name)
    was_training = model.training
    model.eval()   # dropout would make every forward, and so every pass, see different probabilities
    heads: dict[tuple[int, int], list[list[float]]] = {}
    n_layers: int | None = None
    start = 0
    try:
        while n_layers is None or start < n_layers - 1:   # the last layer needs no anchoring
            one = _Pass(start, budget_bytes, counted, heads)
            run(x, one)
            if one.n_layers == 0 or n_layers not in (None, one.n_layers):
                raise NoAttentionError(f"model {name!r} gave {one.n_layers} layers of attention"
                                       + (f", then {n_layers}" if n_layers else ""))
            n_layers = one.n_layers
            start = max(one.anchors) + 1
    finally:
        model.train(was_training)
    return Redundancy(n_layers, heads)


# ---- what is measured on which inputs --------------------------------------------------------
def counted_queries(real: Tensor, causal: bool) -> Tensor:
    """(B, T) bool: the queries whose rows count (see the module docstring)."""
    counted = real.clone()
    if causal:
        counted[:, 0] = False
    return counted


@dataclass(frozen=True)
class Probe:
    """The one batch every model of a comparison is measured on, and its counted queries."""

    name: str           # the model, for error messages
    x: Tensor
    counted: Tensor
    source: str         # where the batch came from, for the row

    def measure(self, model: nn.Module, seed: int) -> dict[str, Any]:
        return {"seed": seed, **redundancy_of(model, self.name, self.x, self.counted).to_json()}

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "batch": int(self.x.shape[0]), "seq_len": int(self.x.shape[1]),
                "counted_queries": int(self.counted.sum())}


def held_out_probe(task: Task, name: str, causal: bool, device: str) -> Probe:
    """The first PROBE_BATCH held-out inputs of an accuracy task."""
    x = task.eval_set()[0][:PROBE_BATCH]
    return Probe(name, x.to(device), counted_queries(task.real_positions(x), causal).to(device),
                 f"first {x.shape[0]} held-out inputs of {task.name}")


def record(states: Mapping[str, list[dict[str, Any]]], probe: Probe) -> dict[str, Any]:
    """The row's `redundancy` value."""
    return {"inputs": probe.describe(), "states": dict(states),
            "summary": {state: summarize(runs) for state, runs in states.items() if runs}}


def measure_point(task: PointTask) -> dict[str, Any]:
    """`redundancy` outside an accuracy suite: the model as built (a "module:callable" may load
    trained weights) on the point's own random inputs, in which nothing is padding."""
    from harness.measure.speed import input_config

    if task.measure.threads is not None:
        torch.set_num_threads(task.measure.threads)
    cfg = input_config(task)
    torch.manual_seed(task.seed)
    model = build_model(task.model, task.model_config).to(device=task.device, dtype=torch_dtype(cfg))
    x, _ = make_inputs(cfg, task.batch_size, task.seq_len, seed=task.seed, device=task.device)
    real = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    probe = Probe(task.model, x, counted_queries(real, cfg.causal), "random inputs of the point")
    return record({"as_built": [probe.measure(model, task.seed)]}, probe)
