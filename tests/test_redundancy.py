"""The redundancy metric: the similarity on hand-made distributions, best matches, where the
probabilities come from (hooks, the protocol, a clear error), streaming, and the control."""

from __future__ import annotations

import json
import re
import weakref
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from harness.measure.redundancy import (NoAttentionError, Probe, counted_queries, layer_source, measure_point,
                                        redundancy_of)
from harness.measure.similarity import Redundancy, by_distance, head_similarity, summarize, tv_similarity
from harness.measure.training import train_and_evaluate
from harness.suite.loading import load_suite
from harness.suite.sweep import expand
from harness.suite.task import AccuracyConfig, PointTask
from harness.tasks import get_task
from models.config import TransformerConfig
from models.transformer import Transformer

ALL = torch.ones(1, 3, dtype=torch.bool)


def rows(*values: list[float]) -> Tensor:
    """One head's (B=1, T, T) probabilities from its rows."""
    return torch.tensor([list(values)])


# ---- the similarity ---------------------------------------------------------------------------
def test_identical_distributions_are_fully_similar() -> None:
    p = torch.softmax(torch.randn(2, 5, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert tv_similarity(p, p.clone(), torch.ones(2, 5, dtype=torch.bool)) == pytest.approx(1.0)


def test_disjoint_distributions_are_not_similar_at_all() -> None:
    p = rows([1, 0, 0], [0.5, 0.5, 0], [1, 0, 0])
    q = rows([0, 0.5, 0.5], [0, 0, 1], [0, 0.2, 0.8])
    assert tv_similarity(p, q, ALL) == pytest.approx(0.0)


def test_worked_three_by_three_example_and_the_query_mask() -> None:
    p = rows([1, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5])
    q = rows([1, 0, 0], [0, 1, 0], [0.5, 0.3, 0.2])
    # Row TVs: 0, ½(0.5 + 0.5) = 0.5, ½(0.3 + 0 + 0.3) = 0.3; mean 0.8 / 3.
    assert tv_similarity(p, q, ALL) == pytest.approx(1 - 0.8 / 3)
    # Causal: query 0 sees one key in every head, so it does not count: mean of 0.5 and 0.3.
    assert tv_similarity(p, q, counted_queries(ALL, causal=True)) == pytest.approx(0.6)
    assert tv_similarity(p, q, torch.tensor([[False, True, False]])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no query counts"):
        tv_similarity(p, q, torch.zeros(1, 3, dtype=torch.bool))


def test_padding_positions_are_not_counted() -> None:
    listops = get_task("listops", max_len=12, min_len=4, n_train=8, n_eval=8)
    x = listops.eval_set()[0]
    real = listops.real_positions(x)
    assert real[:, 0].all() and not real.all()       # every expression starts at 0; some are padded
    assert torch.equal(real, x != 0)
    assert get_task("digits").real_positions(torch.zeros(2, 16, 4)).all()


def test_head_similarity_rows_are_the_first_layer() -> None:
    a = torch.stack([rows([1, 0, 0], [0, 1, 0], [0, 0, 1])[0], rows([0, 1, 0], [1, 0, 0], [0, 0, 1])[0]])[None]
    b = a[:, :1]                                      # (1, 1, 3, 3): layer b has a's first head only
    assert head_similarity(a, b, ALL) == [[pytest.approx(1.0)], [pytest.approx(1 / 3)]]


# ---- best matches -----------------------------------------------------------------------------
HAND = Redundancy(2, {(0, 1): [[0.9, 0.2], [0.4, 0.3]]})   # rows: layer 0's heads, columns: layer 1's


def test_layer_matrix_averages_each_heads_best_match() -> None:
    assert HAND.pair(1, 0) == [[0.9, 0.4], [0.2, 0.3]]
    # [0][1]: layer 0's heads' best matches 0.9 and 0.4; [1][0]: layer 1's, 0.9 and 0.3.
    assert HAND.layer_matrix() == [[1.0, pytest.approx(0.65)], [pytest.approx(0.6), 1.0]]


def test_best_matches_are_one_to_one_and_nested() -> None:
    # 0.9 pairs donor 0 with own head 0; donor 1's best (0.4) is own head 0 again, so it takes 0.3.
    assert HAND.ranked_matches(layer=1, donor=0) == [(0, 0, 0.9), (1, 1, 0.3)]
    tied = Redundancy(2, {(0, 1): [[0.5, 0.5], [0.5, 0.5]]})
    assert tied.ranked_matches(1, 0) == [(0, 0, 0.5), (1, 1, 0.5)]


def test_summary_by_distance_and_picks() -> None:
    three = Redundancy(3, {(0, 1): [[0.8, 0.1], [0.1, 0.6]], (0, 2): [[0.2, 0.3], [0.1, 0.2]],
                           (1, 2): [[0.7, 0.1], [0.5, 0.9]]})
    layers = three.layer_matrix()
    assert by_distance(layers) == {1: pytest.approx((0.7 + 0.7 + 0.8 + 0.8) / 4), 2: pytest.approx(0.25)}
    stored = three.to_json()
    assert stored["matches"]["previous"] == {"1": [[0, 0, 0.8], [1, 1, 0.6]], "2": [[1, 1, 0.9], [0, 0, 0.7]]}
    assert stored["matches"]["first"]["2"] == [[0, 1, 0.3], [1, 0, 0.1]]
    summary = summarize([stored, stored])
    assert summary["adjacent"] == pytest.approx(0.75) and summary["non_adjacent"] == pytest.approx(0.25)
    # K = 1: mean of each reusing layer's best pick (0.8 and 0.9); K = 2: of their first two.
    assert summary["picked_by_layer"]["previous"] == {"1": [0.8, pytest.approx(0.7)], "2": [0.9, pytest.approx(0.8)]}
    assert summary["picked"]["previous"] == [pytest.approx(0.85), pytest.approx((0.7 + 0.8) / 2)]


# ---- where the probabilities come from --------------------------------------------------------
def tiny_model(**over: Any) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(d_model=16, n_heads=4, n_layers=3, d_ff=32, vocab_size=20,
                                         max_len=12, **over)).eval()


def per_layer(model: nn.Module, x: Tensor) -> list[Tensor]:
    out: list[Tensor] = []
    with torch.no_grad():
        layer_source(model, "m")(x, out.append)
    return out


@pytest.mark.parametrize("over", [{}, {"causal": True, "reuse_heads": 2}, {"reuse_heads": 4, "backend": "eager"},
                                  {"causal": True, "reuse_heads": 2, "reuse_impl": "recompute"}])
def test_hooked_probabilities_are_the_ones_each_layer_used(over: dict[str, Any]) -> None:
    # What the hooks return, times each layer's v and through its output projection, must give
    # exactly the layer's output: the probabilities are the model's own, in its head order.
    model = tiny_model(**over)
    x = torch.randint(1, 20, (2, 12), generator=torch.Generator().manual_seed(1))
    seen: list[tuple[Tensor, Tensor]] = []   # (input, output) of each attention module

    def keep(module: nn.Module, args: tuple[Any, ...], out: tuple[Tensor, Any]) -> None:
        seen.append((args[0], out[0]))

    handles = [b.attn.register_forward_hook(keep) for b in model.blocks]
    probs = per_layer(model, x)
    for h in handles:
        h.remove()
    for attn, p, (h, y) in zip((b.attn for b in model.blocks), probs, seen):
        B, T, C = h.shape
        assert p.shape == (B, 4, T, T)
        v = attn.qkv(h).view(B, T, -1, attn.d_head).transpose(1, 2)[:, 2 * attn.n_new:]   # (B, H, T, hs)
        rebuilt = attn.proj((p @ v).transpose(1, 2).reshape(B, T, C))
        torch.testing.assert_close(rebuilt, y, rtol=1e-4, atol=1e-5)
    if over.get("reuse_heads") == 2:   # layer 1's reused heads are layer 0's first two
        sims = redundancy_of(model, "m", x, counted_queries(torch.ones(2, 12, dtype=torch.bool), True)).pair(0, 1)
        assert [sims[0][2], sims[1][3]] == [pytest.approx(1.0), pytest.approx(1.0)]


class Exposing(nn.Module):
    """A third-party model following the protocol: one fresh (B, H, T, T) tensor per layer."""

    def __init__(self, n_layers: int = 5, scale: float = 1.0) -> None:
        super().__init__()
        self.n_layers, self.scale = n_layers, scale
        self.alive: list[weakref.ref[Tensor]] = []
        self.most_alive = 0

    def attention_probabilities(self, x: Tensor) -> Iterator[Tensor]:
        # Tensors are freed by reference counting the moment nothing holds them, so a dead
        # weak reference means the harness let go of that layer.
        B, T = x.shape
        g = torch.Generator().manual_seed(0)
        for _ in range(self.n_layers):
            self.most_alive = max(self.most_alive, sum(r() is not None for r in self.alive))
            probs = torch.softmax(torch.randn(B, 3, T, T, generator=g), dim=-1) * self.scale
            self.alive.append(weakref.ref(probs))
            yield probs


def test_layers_stream_within_the_budget_and_give_the_same_pairs() -> None:
    x, counted = torch.zeros(2, 6, dtype=torch.long), torch.ones(2, 6, dtype=torch.bool)
    whole = redundancy_of(Exposing(), "exposing", x, counted)
    model = Exposing()
    one_layer = 2 * 3 * 6 * 6 * 4
    streamed = redundancy_of(model, "exposing", x, counted, budget_bytes=one_layer)
    assert streamed == whole and len(whole.heads) == 5 * 4 // 2
    # The anchor and the layer being compared; never the five layers of a pass.
    assert model.most_alive <= 2


class Yields(nn.Module):
    """A model whose attention_probabilities gives fixed tensors."""

    def __init__(self, *tensors: Tensor) -> None:
        super().__init__()
        self.tensors = tensors

    def attention_probabilities(self, x: Tensor) -> Iterator[Tensor]:
        return iter(self.tensors)


def test_a_model_without_attention_gets_a_clear_error() -> None:
    x, counted = torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.bool)
    with pytest.raises(NoAttentionError, match=r"model 'pkg:build' \(Linear\).*attention_probabilities\(x\)"):
        redundancy_of(nn.Linear(2, 2), "pkg:build", x, counted)
    with pytest.raises(NoAttentionError, match="layer 0's attention rows do not sum to 1"):
        redundancy_of(Yields(torch.full((1, 2, 4, 4), 0.5)), "pkg:build", x, counted)
    with pytest.raises(NoAttentionError, match=r"layer 1 as \(1, 2, 4\); expected \(batch=1, heads, T=4, T=4\)"):
        redundancy_of(Yields(torch.full((1, 2, 4, 4), 0.25), torch.ones(1, 2, 4)), "pkg:build", x, counted)
    with pytest.raises(NoAttentionError, match="gave 0 layers"):
        redundancy_of(Yields(), "pkg:build", x, counted)


# ---- the control, in training and outside it --------------------------------------------------
MQAR = {"batch_size": 16, "vocab_size": 17, "n_pairs": 3, "n_queries": 2, "seq_len": 12, "n_train": 64, "n_eval": 32}


def test_trained_models_are_measured_beside_their_initialisation() -> None:
    config = {"d_model": 16, "n_heads": 4, "n_layers": 3, "d_ff": 32}
    acc = AccuracyConfig(task="associative_recall", seeds=(0, 1), train_steps=6, eval_every=6, lr=3e-3,
                         warmup_steps=1, task_options=MQAR)
    result = train_and_evaluate("baseline", config, acc, threads=1, redundancy=True)
    red = result["redundancy"]
    assert red["inputs"] == {"source": "first 32 held-out inputs of associative_recall", "batch": 32,
                             "seq_len": 12, "counted_queries": 32 * 11}
    assert [m["seed"] for m in red["states"]["init"]] == [m["seed"] for m in red["states"]["trained"]] == [0, 1]
    # The control is the same architecture at its random initialisation, on the same inputs.
    task = get_task("associative_recall", **MQAR)
    torch.manual_seed(1)
    fresh = Transformer(TransformerConfig.from_dict({**config, **task.model_overrides()}))
    x = task.eval_set()[0]
    control = Probe("baseline", x, counted_queries(task.real_positions(x), True), "").measure(fresh, 1)
    assert red["states"]["init"][1] == control
    assert red["states"]["trained"][1]["layers"] != control["layers"]
    assert set(red["summary"]) == {"init", "trained"}
    assert len(red["summary"]["trained"]["picked"]["previous"]) == 4
    assert train_and_evaluate("baseline", config, acc, threads=1)["redundancy"] is None


def test_outside_an_accuracy_suite_the_model_as_built_is_measured() -> None:
    task = PointTask(point_id="p", variant="b", model="baseline",
                     model_config=TransformerConfig(d_model=16, n_heads=2, n_layers=2, d_ff=32, vocab_size=20,
                                                    max_len=8).to_dict(),
                     axes={}, device="cpu", mode="forward", seq_len=8, batch_size=2, seed=0, metrics=("redundancy",))
    red = measure_point(task)
    assert list(red["states"]) == ["as_built"] and red["inputs"]["counted_queries"] == 2 * 8
    layers = red["states"]["as_built"][0]["layers"]
    assert red["summary"]["as_built"]["adjacent"] == pytest.approx((layers[0][1] + layers[1][0]) / 2)
    assert red["summary"]["as_built"]["non_adjacent"] is None   # two layers have no distance 2


def test_a_third_party_model_that_hides_its_attention_fails_with_its_name() -> None:
    task = PointTask(point_id="p", variant="b", model="thirdparty_model:build",
                     model_config={"vocab_size": 20, "d_model": 8}, axes={}, device="cpu", mode="forward",
                     seq_len=8, batch_size=2, seed=0, metrics=("redundancy",))
    with pytest.raises(NoAttentionError, match="model 'thirdparty_model:build' \\(BagOfTokens\\)"):
        measure_point(task)


def test_suites_accept_the_metric_beside_accuracy_without_a_length(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("name: r\nvariants: {b: {model: baseline}}\nsweep:\n  task: [digits]\n"
                    "metrics: [accuracy, redundancy]\naccuracy: {seeds: [0]}\n")
    [task] = expand(load_suite(path))
    assert task.metrics == ("accuracy", "redundancy") and task.seq_len == 0


# ---- the report -------------------------------------------------------------------------------
def summary_of(adjacent: float, far: float) -> dict[str, Any]:
    """A 3-layer, 2-head model whose best matches are `adjacent` between neighbours, `far` across two."""
    def pair(best: float) -> list[list[float]]:
        return [[best, 0.1], [0.1, best - 0.2]]

    stored = Redundancy(3, {(0, 1): pair(adjacent), (1, 2): pair(adjacent), (0, 2): pair(far)}).to_json()
    return summarize([stored])


def report_rows(trained: dict[str, Any]) -> list[dict[str, Any]]:
    def row(variant: str, ratio: float | None, accuracy: float, **extra: Any) -> dict[str, Any]:
        return {"point_id": f"digits-{variant}-{ratio}", "variant": variant, "status": "ok", "task": "digits",
                "model": "baseline" if ratio is None else "reuse", "reuse_ratio": ratio, "reuse_source": "previous",
                "device": "cpu", "mode": "forward", "backend": "sdpa", "seq_len": 0, "batch_size": 1,
                "accuracy_mean": accuracy, "model_config": {"n_heads": 2},
                "axes": {"task": "digits", **({"reuse_ratio": ratio} if ratio else {})}, **extra}

    init = summary_of(0.8, 0.8)
    redundancy = {"inputs": {"source": "first 8 held-out inputs of digits"},
                  "states": {}, "summary": {"trained": trained, "init": init}}
    return [row("baseline", None, 0.90, redundancy=redundancy), row("reuse", 1.0, 0.85),
            row("reuse", 0.5, 0.89, redundancy={"summary": {"trained": init}})]


@pytest.mark.parametrize("adjacent, far, verdict, moved", [(0.9, 0.5, "are", "lowered"), (0.5, 0.9, "are not", "lowered"),
                                                           (0.95, 0.9, "are", "raised")])
def test_report_states_what_it_finds_about_adjacent_layers(adjacent: float, far: float, verdict: str,
                                                           moved: str) -> None:
    from harness.report.frame import normalize
    from harness.report.redundancy import section

    ok = normalize(pd.DataFrame(report_rows(summary_of(adjacent, far))))
    found = section(ok)
    assert found is not None
    first = found["findings"][0]
    # Each layer's two heads match at `best` and `best` - 0.2: a layer-matrix entry of `best` - 0.1.
    assert first == (f"digits: adjacent layers {verdict} the most similar after training (mean similarity "
                     f"{adjacent - 0.1:.2f} at distance 1; {far - 0.1:.2f} at distance 2). At initialisation: 0.70 "
                     f"at distance 1; 0.70 at distance 2; training {moved} "
                     f"the mean similarity between layers from 0.70 to {(4 * adjacent + 2 * far) / 6 - 0.1:.2f}.")
    # K = 2 at ratio 1: the mean of both ranked matches (adjacent and adjacent - 0.2), beside the accuracy lost.
    assert [(r["ratio"], r["k"], r["trained"], r["delta"]) for r in found["table"]] == [
        ("0.5", 1, f"{adjacent:.2f}", "−1.0 pt"), ("1", 2, f"{adjacent - 0.1:.2f}", "−5.0 pt")]
    assert "reuse changes accuracy by −5.0 pt" in found["findings"][1]
    # Only the model that reuses nothing is analysed: the reusing row's own matrix is not a subject.
    assert [p.svg is not None for p in found["plots"]] == [True, True]


def test_a_run_without_redundancy_has_no_section(tmp_path: Path) -> None:
    from harness.report.frame import normalize
    from harness.report.redundancy import section

    rows = report_rows(summary_of(0.9, 0.5))
    assert section(normalize(pd.DataFrame([{k: v for k, v in r.items() if k != "redundancy"} for r in rows]))) is None


def test_the_report_page_shows_the_section(tmp_path: Path) -> None:
    from harness.report import render_report
    from harness.results.store import FORMAT_VERSION

    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"format_version": FORMAT_VERSION, "run_id": "r"}))
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in report_rows(summary_of(0.9, 0.5))))
    page = render_report(run).read_text(encoding="utf-8")
    assert '<a href="#redundancy">' in page and 'id="redundancy-vs-accuracy"' in page
    for plot in ("redundancy-layers", "redundancy-distance"):
        assert re.search(rf'<figure id="plot-{plot}">\s*<h3>[^<]*</h3>\s*<svg ', page), plot
    assert "adjacent layers are the most similar after training" in page
