"""Counted cost: FLOPs of what actually runs, and bytes autograd actually keeps for backward.

FLOPs come from torch.utils.flop_counter.FlopCounterMode, which sees every aten op after
autograd and decompositions (a 4-D `@` arrives as `bmm`, `nn.Linear` as `addmm` / `mm`). torch's
own registry lacks the CPU fused-attention ops, cuDNN's attention ops (`_cudnn_attention_forward`
and `_backward`) and the "overrideable" fused-attention ops of out-of-tree backends; without
formulas for them those heads would count as 0 FLOPs. We pass the formulas as FlopCounterMode's
`custom_mapping` instead of registering them, so torch's global registry is never mutated. Any
other matrix-product op without a formula is named in `Counted.uncounted` rather than silently
counted as 0. The convention is the analytic model's (models.cost.FLOP_CONVENTION).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from models.cost import MODES, Mode
from models.transformer import loss_fn

aten = torch.ops.aten


@dataclass(frozen=True)
class Counted:
    total: int
    by_op: dict[str, int]  # e.g. {"aten.bmm": ..., "aten._scaled_dot_product_flash_attention_for_cpu": ...}
    uncounted: tuple[str, ...] = ()  # matrix-product ops that ran without a formula: `total` misses them

    def warning(self) -> str | None:
        """What a result row says when the count is known to be short."""
        if not self.uncounted:
            return None
        return f"FLOPs of {', '.join(self.uncounted)} not counted (no formula): flops_counted is too low"


# ---- formulas for fused-attention ops torch does not count ---------------------------------------
# shape_wrapper (applied by FlopCounterMode) replaces tensor arguments by their shapes.
def _sdpa_forward(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
                  **kwargs: Any) -> int:
    # Same as torch's formula for the CUDA kernels: QKᵀ and P·V in full, causal or not.
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward_cpu(grad_out_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any, *args: Any,
                       out_shape: Any = None, **kwargs: Any) -> int:
    # The CPU flash backward recomputes the scores from q, k and logsumexp, as the CUDA one does.
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _sdpa_backward_overrideable(grad_out_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any,
                                *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _cudnn_attention_forward(query: Tensor, key: Tensor, value: Tensor, attn_bias: Any, cum_seq_q: Any,
                             cum_seq_k: Any, max_q: int, max_k: int, *args: Any, **kwargs: Any) -> int:
    # Dense (B, H, T, D) inputs from SDPA, or packed (total, H, D) ones with cumulative lengths
    # (nested / varlen): torch's flash helper unpacks either into per-sequence shapes.
    shapes = flop_counter._unpack_flash_attention_nested_shapes(
        query=query, key=key, value=value, cum_seq_q=cum_seq_q, cum_seq_k=cum_seq_k, max_q=max_q, max_k=max_k)
    return sum(sdpa_flop_count(q, k, v) for q, k, v, _ in shapes)


def _cudnn_attention_backward(grad_out: Tensor, query: Tensor, key: Tensor, value: Tensor, out: Tensor,
                              logsumexp: Tensor, philox_seed: Any, philox_offset: Any, attn_bias: Any,
                              cum_seq_q: Any, cum_seq_k: Any, max_q: int, max_k: int, *args: Any,
                              **kwargs: Any) -> int:
    shapes = flop_counter._unpack_flash_attention_nested_shapes(
        query=query, key=key, value=value, grad_out=grad_out, cum_seq_q=cum_seq_q, cum_seq_k=cum_seq_k,
        max_q=max_q, max_k=max_k)
    return sum(sdpa_backward_flop_count(g, q, k, v) for q, k, v, g in shapes)


# Raw formulas take the tensors themselves (FlopCounterMode's flag for that): the packed form needs
# the cumulative lengths' values, not just shapes.
_cudnn_attention_forward._get_raw = True  # type: ignore[attr-defined]
_cudnn_attention_backward._get_raw = True  # type: ignore[attr-defined]


def _fused_attention_formulas() -> dict[Any, Callable[..., int]]:
    """Every fused-attention op any device may run, with torch's formula where it has one."""
    wanted: dict[str, Callable[..., int]] = {
        # CPU
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_forward,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_backward_cpu,
        # out-of-tree / XPU backends
        "_scaled_dot_product_fused_attention_overrideable": _sdpa_forward,
        "_scaled_dot_product_fused_attention_overrideable_backward": _sdpa_backward_overrideable,
        # CUDA: registered by torch today; listed so an older torch without them still counts.
        "_scaled_dot_product_flash_attention": _sdpa_forward,
        "_scaled_dot_product_efficient_attention": _sdpa_forward,
        "_scaled_dot_product_cudnn_attention": _sdpa_forward,
        "_scaled_dot_product_flash_attention_backward": _sdpa_backward_cpu,
        "_scaled_dot_product_efficient_attention_backward": _sdpa_backward_cpu,
        "_scaled_dot_product_cudnn_attention_backward": _sdpa_backward_cpu,
        # CUDA, cuDNN's own attention ops (nested / varlen inputs; SDPA's cuDNN path): in no registry.
        "_cudnn_attention_forward": _cudnn_attention_forward,
        "_cudnn_attention_backward": _cudnn_attention_backward,
    }
    mapping: dict[Any, Callable[..., int]] = {}
    for name, formula in wanted.items():
        op = getattr(aten, name, None)
        if op is not None and op not in flop_counter.flop_registry:
            mapping[op] = formula
    return mapping


CUSTOM_FLOP_MAPPING: dict[Any, Callable[..., int]] = _fused_attention_formulas()

# Ops that must be counted for a count to be trusted; `uncounted_matmul_ops` checks against it.
MATMUL_LIKE_OPS: tuple[str, ...] = ("mm", "addmm", "bmm", "baddbmm", "addbmm", "matmul", "linear", "dot", "mv",
                                    "addmv", "einsum", "_scaled_mm", "attention", "conv")


def flop_counter_mode() -> FlopCounterMode:
    """A FlopCounterMode that also counts the fused-attention ops torch's registry lacks."""
    return FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOP_MAPPING)


class _OpRecorder(TorchDispatchMode):
    """Names (overload packets, e.g. "aten.bmm") of the aten ops dispatched while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.seen.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


class StepCounter:
    """FLOPs of whatever runs inside `with StepCounter() as c:`; then `c.result()`.

    The op recorder sits below the FLOP counter, so it sees exactly the ops the counter executed
    (after its decompositions), counted or not: a matrix product with no formula shows up in
    `Counted.uncounted` instead of as a silent 0.
    """

    def __init__(self) -> None:
        self._counter = flop_counter_mode()
        self._recorder = _OpRecorder()

    def __enter__(self) -> "StepCounter":
        self._recorder.__enter__()
        self._counter.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._counter.__exit__(*exc)
        self._recorder.__exit__(*exc)

    def result(self) -> Counted:
        by_op = {str(op): int(n) for op, n in self._counter.get_flop_counts().get("Global", {}).items() if n}
        return Counted(total=sum(by_op.values()), by_op=by_op,
                       uncounted=tuple(sorted(uncounted_matmul_ops(self._recorder.seen))))


# ---- running one step ---------------------------------------------------------------------------
def _loss(model: nn.Module, logits: Tensor, targets: Tensor) -> Tensor:
    # loss_fn reads nothing model-specific from its config, so third-party models use it too.
    return loss_fn(getattr(model, "config", None), logits, targets)  # type: ignore[arg-type]


@contextmanager
def _mode(model: nn.Module, train: bool) -> Iterator[None]:
    was_training = model.training
    model.train(train)
    try:
        yield
    finally:
        model.train(was_training)


def _run(model: nn.Module, inputs: Tensor, targets: Tensor, mode: Mode) -> None:
    """One forward (no_grad, eval) or one training step's forward + backward, leaving .grad untouched."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if mode == "forward":
        with _mode(model, False), torch.no_grad():
            model(inputs)
        return
    params = [p for p in model.parameters() if p.requires_grad]
    with _mode(model, True):
        loss = _loss(model, model(inputs), targets)
        # autograd.grad runs the same backward kernels as loss.backward() without touching .grad.
        torch.autograd.grad(loss, params, allow_unused=True)


def count_flops(model: nn.Module, inputs: Tensor, targets: Tensor, mode: Mode = "forward") -> Counted:
    """FLOPs of one real forward or training step (forward + backward; the optimizer has no matmuls)."""
    with StepCounter() as counter:
        _run(model, inputs, targets, mode)
    return counter.result()


def ops_run(model: nn.Module, inputs: Tensor, targets: Tensor, mode: Mode = "forward") -> set[str]:
    """Names of the aten ops (overload packets, e.g. "aten.bmm") one step dispatches."""
    with _OpRecorder() as recorder:
        _run(model, inputs, targets, mode)
    return recorder.seen


def uncounted_matmul_ops(ops: set[str]) -> set[str]:
    """Ops that look like matrix products or attention but have no FLOP formula: a count would miss them."""
    counted = {str(op) for op in flop_counter.flop_registry} | {str(op) for op in CUSTOM_FLOP_MAPPING}
    return {op for op in ops
            if op not in counted and any(key in op.split(".", 1)[-1] for key in MATMUL_LIKE_OPS)}


def saved_activation_bytes(model: nn.Module, inputs: Tensor, targets: Tensor) -> int:
    """Bytes of distinct storages autograd saves for backward in one training step's forward.

    Parameters and the inputs are excluded (they exist before the step); a saved view counts its
    whole storage, because that is what stays alive. The counted twin of models.cost.activation_bytes.
    """
    resting = {p.untyped_storage().data_ptr() for p in model.parameters()}
    resting |= {t.untyped_storage().data_ptr() for t in (inputs, targets)}
    kept: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in resting and storage.nbytes() > 0:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with _mode(model, True), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = _loss(model, model(inputs), targets)
    del loss
    return sum(kept.values())


__all__ = ["CUSTOM_FLOP_MAPPING", "Counted", "StepCounter", "count_flops", "flop_counter_mode", "ops_run",
           "saved_activation_bytes", "uncounted_matmul_ops"]
