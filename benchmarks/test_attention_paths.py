"""Micro-benchmarks of one attention call on each path, with pytest-benchmark.

    pytest benchmarks/test_attention_paths.py --benchmark-only
    pytest benchmarks/test_attention_paths.py --benchmark-only --benchmark-json=out.json   # then
    pytest-benchmark compare out.json other.json                                          # vs a change

Not collected by the default test run (pyproject: testpaths = tests). Paths, each at n = 128 and
512 (B = 2, d = 256, H = 8, forward, no grad, torch threads fixed):

    baseline-eager / baseline-sdpa     a standard layer: all 8 heads computed, materialized or fused
    reuse-{eager,sdpa}-{previous,first}  layer 2 of a reuse model (K = 4): 4 new heads, 4 reused from
                                       layer 1 (previous) or from layer 0 (first); on sdpa only the
                                       heads a later layer reads are materialized

The timed call is layer 2's attention (the layers before it run once, untimed, to produce the
probabilities it reuses), so the numbers isolate what reuse changes inside one attention call.
"""

from __future__ import annotations

import os
from typing import Callable

import pytest
import torch

from models.config import TransformerConfig
from models.handoff import AttentionProbs
from models.transformer import Transformer

LAYER = 2           # the first layer where reuse_source "previous" and "first" differ
SIZES = (128, 512)
PATHS: dict[str, dict[str, object]] = {
    "baseline-eager": {"backend": "eager"},
    "baseline-sdpa": {"backend": "sdpa"},
    "reuse-eager-previous": {"backend": "eager", "reuse_ratio": 0.5, "reuse_source": "previous"},
    "reuse-eager-first": {"backend": "eager", "reuse_ratio": 0.5, "reuse_source": "first"},
    "reuse-sdpa-previous": {"backend": "sdpa", "reuse_ratio": 0.5, "reuse_source": "previous"},
    "reuse-sdpa-first": {"backend": "sdpa", "reuse_ratio": 0.5, "reuse_source": "first"},
}


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    # A fixed thread count makes runs comparable; REUSE_BENCH_THREADS overrides the default of 2.
    torch.set_num_threads(int(os.environ.get("REUSE_BENCH_THREADS", "2")))


def attention_call(path: str, seq_len: int, batch_size: int = 2) -> Callable[[], object]:
    """A no-argument callable running layer LAYER's attention on fixed inputs."""
    torch.manual_seed(0)
    cfg = TransformerConfig(d_model=256, n_heads=8, n_layers=4, d_ff=1024, vocab_size=1024, **PATHS[path])
    model = Transformer(cfg).eval()
    x = torch.randn(batch_size, seq_len, cfg.d_model)  # hidden states, never all-zero
    handed: list[AttentionProbs | None] = []
    with torch.inference_mode():
        for layer in range(LAYER):  # untimed: the probabilities layer LAYER will reuse
            source = model.plan.source[layer]
            handed.append(model.blocks[layer](x, handed[source] if source is not None else None).handed_on)
    block = model.blocks[LAYER]
    source = model.plan.source[LAYER]
    received = handed[source] if source is not None else None
    hidden = block.ln_1(x).detach()

    def call() -> object:
        with torch.inference_mode():
            return block.attn(hidden, received)

    return call


@pytest.mark.parametrize("seq_len", SIZES, ids=lambda n: f"n{n}")
@pytest.mark.parametrize("path", list(PATHS))
def test_attention(benchmark, path: str, seq_len: int) -> None:
    call = attention_call(path, seq_len)
    benchmark.group = f"attention n={seq_len}"
    benchmark.extra_info.update(path=path, seq_len=seq_len, threads=torch.get_num_threads())
    out, handed_on = benchmark(call)
    assert out.shape == (2, seq_len, 256) and torch.isfinite(out).all()
    if "reuse" in path:
        # layer 2 of a 4-layer reuse model hands probabilities on only if a later layer reads them
        assert (handed_on is not None) == (PATHS[path]["reuse_source"] == "previous")
