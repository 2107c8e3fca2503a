"""One config for the whole Transformer family: baseline and Reuse Transformer differ only in `reuse_*`.

Reuse semantics follow Bhojanapalli et al. 2021 (arXiv 2110.06821) and TF Model Garden's
ReuseTransformer; models/transformer.py states them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Backend = Literal["eager", "sdpa"]
InputKind = Literal["tokens", "patches"]
TaskHead = Literal["classify", "lm"]
ReuseSource = Literal["previous", "first"]
ReuseImpl = Literal["materialize", "recompute"]
DType = Literal["float32", "bfloat16", "float16"]

BACKENDS: tuple[str, ...] = ("eager", "sdpa")
INPUT_KINDS: tuple[str, ...] = ("tokens", "patches")
TASK_HEADS: tuple[str, ...] = ("classify", "lm")
REUSE_SOURCES: tuple[str, ...] = ("previous", "first")
REUSE_IMPLS: tuple[str, ...] = ("materialize", "recompute")
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
REUSE_KEYS: frozenset[str] = frozenset({"reuse_heads", "reuse_ratio", "reuse_layers", "reuse_source", "reuse_impl"})


class ConfigError(ValueError):
    """An invalid model config; `field` names the offending key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class TransformerConfig:
    d_model: int = 256
    n_heads: int = 8
    n_layers: int = 6
    d_ff: int = 1024
    dropout: float = 0.0            # residual and MLP dropout
    attn_dropout: float = 0.0       # on attention probabilities, per layer, where they are used
    causal: bool = False            # False: bidirectional encoder; True: decoder-only (causal mask)
    max_len: int = 4096             # learned positional embeddings cover this many positions
    input_kind: InputKind = "tokens"
    vocab_size: int = 1024          # tokens input and the lm head
    patch_dim: int = 16             # features per patch token when input_kind == "patches"
    task_head: TaskHead = "classify"
    n_classes: int = 10             # classify head
    backend: Backend = "sdpa"       # eager: materialized probabilities; sdpa: torch's fused kernel
    # Parameters and activations are stored in this dtype (not autocast: see models/transformer.py);
    # the loss is computed in float32 whatever it is.
    dtype: DType = "float32"
    # Reuse. K = reuse_heads, or round(reuse_ratio * n_heads) when only the ratio is given; 0 = baseline.
    reuse_heads: int | None = None
    reuse_ratio: float | None = None
    reuse_layers: int | None = None  # P: layers 1..P reuse; None means n_layers - 1 (all but layer 0)
    reuse_source: ReuseSource = "previous"  # "first": every reusing layer reuses layer 0's heads
    # How a reused head is computed; both give the same outputs up to float rounding.
    # materialize: the reference's way: the donor layer keeps its (B, K, T, T) probabilities, P·V here.
    # recompute: P_src·v = SDPA(q_src, k_src, v): keep the donor's (B, T, d_head) q and k instead and
    # run all H heads of a layer through one fused SDPA call. Memory stays linear in T; QKᵀ and
    # softmax are paid again, the reused heads' Q/K projections are still skipped. sdpa backend only.
    reuse_impl: ReuseImpl = "materialize"

    def __post_init__(self) -> None:
        _validate(self)

    # ---- derived -------------------------------------------------------------------------
    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def k(self) -> int:
        """Reused heads per reusing layer."""
        if self.reuse_heads is not None:
            return self.reuse_heads
        if self.reuse_ratio is not None:
            return int(round(self.reuse_ratio * self.n_heads))
        return 0

    @property
    def p(self) -> int:
        """Last reusing layer (layers 1..p reuse); 0 when nothing is reused."""
        if self.k == 0:
            return 0
        return self.n_layers - 1 if self.reuse_layers is None else self.reuse_layers

    def reuses(self, layer: int) -> bool:
        return self.k > 0 and 1 <= layer <= self.p

    def new_heads(self, layer: int) -> int:
        """Heads whose probabilities this layer computes itself (the rest are reused)."""
        return self.n_heads - self.k if self.reuses(layer) else self.n_heads

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TransformerConfig":
        unknown = sorted(set(values) - set(cls.fields()))
        if unknown:
            raise ConfigError(unknown[0], f"unknown model config key (known: {', '.join(cls.fields())})")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _validate(c: TransformerConfig) -> None:
    def need(ok: bool, field: str, message: str) -> None:
        if not ok:
            raise ConfigError(field, message)

    for name in ("d_model", "n_heads", "n_layers", "d_ff", "max_len", "vocab_size", "patch_dim", "n_classes"):
        value = getattr(c, name)
        need(isinstance(value, int) and not isinstance(value, bool) and value > 0, name,
             f"expected a positive integer, got {value!r}")
    need(c.d_model % c.n_heads == 0, "d_model",
         f"d_model={c.d_model} is not divisible by n_heads={c.n_heads}")
    for name in ("dropout", "attn_dropout"):
        value = getattr(c, name)
        need(isinstance(value, (int, float)) and 0.0 <= value < 1.0, name,
             f"expected a probability in [0, 1), got {value!r}")
    need(isinstance(c.causal, bool), "causal", f"expected true or false, got {c.causal!r}")
    need(c.input_kind in INPUT_KINDS, "input_kind", f"expected one of {INPUT_KINDS}, got {c.input_kind!r}")
    need(c.task_head in TASK_HEADS, "task_head", f"expected one of {TASK_HEADS}, got {c.task_head!r}")
    need(c.backend in BACKENDS, "backend", f"expected one of {BACKENDS}, got {c.backend!r}")
    need(c.dtype in DTYPES, "dtype", f"expected one of {DTYPES}, got {c.dtype!r}")
    need(c.reuse_source in REUSE_SOURCES, "reuse_source",
         f"expected one of {REUSE_SOURCES}, got {c.reuse_source!r}")
    need(c.reuse_impl in REUSE_IMPLS, "reuse_impl", f"expected one of {REUSE_IMPLS}, got {c.reuse_impl!r}")
    need(c.reuse_impl != "recompute" or c.backend == "sdpa", "reuse_impl",
         "expected backend 'sdpa' with reuse_impl 'recompute' (it exists to run every head, reused ones "
         f"included, through the fused kernel), got backend {c.backend!r}")
    if c.reuse_heads is not None:
        need(isinstance(c.reuse_heads, int) and not isinstance(c.reuse_heads, bool)
             and 0 <= c.reuse_heads <= c.n_heads, "reuse_heads",
             f"expected an integer K with 0 <= K <= n_heads={c.n_heads}, got {c.reuse_heads!r}")
        if c.reuse_ratio is not None:
            need(c.k == int(round(c.reuse_ratio * c.n_heads)), "reuse_ratio",
                 f"reuse_ratio={c.reuse_ratio} disagrees with reuse_heads={c.reuse_heads}; give one of them")
    if c.reuse_ratio is not None:
        need(isinstance(c.reuse_ratio, (int, float)) and not isinstance(c.reuse_ratio, bool)
             and 0.0 <= c.reuse_ratio <= 1.0, "reuse_ratio",
             f"expected a number in [0, 1], got {c.reuse_ratio!r}")
    if c.reuse_layers is not None:
        need(isinstance(c.reuse_layers, int) and not isinstance(c.reuse_layers, bool)
             and 0 <= c.reuse_layers < c.n_layers, "reuse_layers",
             f"expected 0 <= reuse_layers < n_layers={c.n_layers} (layer 0 never reuses), got {c.reuse_layers!r}")
