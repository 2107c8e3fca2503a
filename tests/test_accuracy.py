"""Accuracy tasks and training: data, splits, scoring, determinism, divergence, end to end.

Trainings here are tiny (a 1-layer-ish model, a few steps, small data pools) and run on one
thread, so the file stays well under a minute even on a busy 2-core machine.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from harness.measure.training import train_and_evaluate
from harness.suite.task import accuracy_config
from harness.tasks import get_task
from harness.measure import training as train_module
from harness.tasks import IGNORE_INDEX, TASKS, TaskOptionError, UnknownTaskError
from harness.tasks.digits import Digits
from harness.tasks.listops import (VOCAB, ListOpsSyntaxError, apply_operator, evaluate,
                                            generate_tree, to_tokens)
from harness.suite.task import AccuracyConfig

TINY_MODEL = {"d_model": 16, "n_heads": 4, "n_layers": 2, "d_ff": 32}
TINY_OPTIONS = {
    "digits": {"batch_size": 32},
    "associative_recall": {"batch_size": 16, "vocab_size": 17, "n_pairs": 3, "n_queries": 2, "seq_len": 12,
                           "n_train": 64, "n_eval": 32},
    "listops": {"batch_size": 16, "max_len": 24, "min_len": 6, "max_depth": 2, "n_train": 64, "n_eval": 32},
}


def tiny(task: str, **over: object) -> AccuracyConfig:
    fields = {"task": task, "seeds": (0,), "train_steps": 6, "eval_every": 3, "lr": 3e-3, "weight_decay": 0.01,
              "warmup_steps": 2, "task_options": TINY_OPTIONS[task]}
    fields.update(over)
    return AccuracyConfig(**fields)


def run(task: str, model: str = "reuse", config: dict | None = None, **over: object) -> dict:
    return train_and_evaluate(model, {**TINY_MODEL, **(config or {})}, tiny(task, **over), threads=1)


# ---- data ------------------------------------------------------------------------------------
def test_digits_shapes_and_scaling() -> None:
    task = get_task("digits")
    x, y = task.train_set()
    xe, ye = task.eval_set()
    assert x.shape[1:] == (16, 4) and xe.shape[1:] == (16, 4) and x.dtype == torch.float32
    assert x.shape[0] + xe.shape[0] == 1797
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert set(y.tolist()) == set(range(10))
    over = task.model_overrides()
    assert (over["input_kind"], over["patch_dim"], over["max_len"], over["n_classes"]) == ("patches", 4, 16, 10)
    assert get_task("digits", patch_size=4).train_set()[0].shape[1:] == (4, 16)


def test_patches_keep_pixels_in_raster_order() -> None:
    task = get_task("digits", patch_size=2)
    from harness.tasks.digits import _load

    images, _ = _load()
    idx_train, _ = task.split_indices()
    first = images[idx_train[0]]
    patches = task.train_set()[0][0].numpy()
    # Patch 1 is the 2x2 block at rows 0-1, columns 2-3.
    assert np.array_equal(patches[1], first[0:2, 2:4].reshape(-1))
    assert np.array_equal(patches[4], first[2:4, 0:2].reshape(-1))


def test_digits_split_is_stratified_and_disjoint() -> None:
    task = Digits()
    idx_train, idx_eval = task.split_indices()
    assert not set(idx_train) & set(idx_eval)
    assert len(idx_train) + len(idx_eval) == 1797
    from harness.tasks.digits import _load

    labels = _load()[1]
    total, held = Counter(labels.tolist()), Counter(labels[idx_eval].tolist())
    for cls, n in total.items():
        assert abs(held[cls] - 0.2 * n) <= 1, (cls, held[cls], n)


def test_mqar_shapes_and_masking() -> None:
    task = get_task("associative_recall", n_pairs=4, n_queries=3, seq_len=20, vocab_size=21, n_train=50, n_eval=10)
    x, y = task.train_set()
    assert x.shape == y.shape == (50, 20)
    scored = y != IGNORE_INDEX
    assert scored.sum(dim=1).tolist() == [3] * 50          # only the queried keys are targets
    for row in range(50):
        context = {int(x[row, 2 * i]): int(x[row, 2 * i + 1]) for i in range(4)}
        assert len(context) == 4                           # keys are distinct within a sequence
        for pos in scored[row].nonzero().flatten().tolist():
            assert pos >= 8
            key, value = int(x[row, pos]), int(y[row, pos])
            assert context[key] == value and int(x[row, pos + 1]) == value
    assert int(x[:, 0:8:2].max()) <= task.n_keys < int(x[:, 1:8:2].min())   # disjoint key/value ids


def test_mqar_accuracy_counts_only_query_positions() -> None:
    task = get_task("associative_recall", n_pairs=4, n_queries=3, seq_len=20, vocab_size=21, n_train=8, n_eval=8)
    x, y = task.eval_set()
    target = torch.where(y == IGNORE_INDEX, x, y)
    logits = torch.nn.functional.one_hot((target + 1) % 21, 21).float()  # wrong everywhere
    scored = (y != IGNORE_INDEX).nonzero()
    for b, t in scored.tolist():
        logits[b, t] = torch.nn.functional.one_hot(y[b, t], 21).float()   # right only where scored
    assert task.accuracy(logits, y) == (24, 24)
    b, t = scored[0].tolist()
    logits[b, t] = torch.nn.functional.one_hot((y[b, t] + 1) % 21, 21).float()
    assert task.accuracy(logits, y) == (23, 24)
    # The loss ignores unscored positions too: changing logits there changes nothing.
    before = train_module.loss_fn(logits, y)
    logits[y == IGNORE_INDEX] = torch.randn(int((y == IGNORE_INDEX).sum()), 21) * 10
    assert torch.equal(before, train_module.loss_fn(logits, y))
    # A bfloat16 model's loss is computed in float32 (bfloat16's 8 mantissa bits move it visibly).
    wide = torch.randn(64, 1000) * 4
    labels = torch.randint(0, 1000, (64,))
    half = train_module.loss_fn(wide.bfloat16(), labels)
    assert half.dtype == torch.float32
    assert torch.equal(half, train_module.loss_fn(wide.bfloat16().float(), labels))


def test_listops_shapes_and_labels() -> None:
    task = get_task("listops", **TINY_OPTIONS["listops"])
    x, y = task.train_set()
    assert x.shape == (64, 24) and y.shape == (64,)
    for row, label in zip(x.tolist(), y.tolist()):
        tokens = [VOCAB[i] for i in row]
        assert evaluate(tokens) == label and tokens[0].startswith("[")
    train_rows = {tuple(r) for r in x.tolist()}
    assert not train_rows & {tuple(r) for r in task.eval_set()[0].tolist()}


@pytest.mark.parametrize("expression, value", [
    ("[MAX 2 9 [MIN 4 7 ] 0 ]", 9),
    ("[MIN [MAX 1 2 ] [SM 9 9 ] ]", 2),        # min(2, 18 % 10 = 8)
    ("[SM 5 6 7 ]", 8),                        # 18 % 10
    ("[MED 9 1 5 ]", 5),
    ("[MED 1 2 3 4 ]", 2),                     # (2 + 3) // 2, as int(np.median)
    ("[MED 3 8 ]", 5),                         # (3 + 8) // 2
    ("[SM [MED 0 0 9 9 ] 7 ]", 1),             # median 4; (4 + 7) % 10
    ("[MAX [MIN [SM 3 4 ] 9 ] [MED 1 1 8 ] 6 ]", 7),
    ("7", 7),
])
def test_listops_evaluator_hand_worked(expression: str, value: int) -> None:
    assert evaluate(expression) == value
    assert evaluate(expression.split() + ["<pad>"] * 3) == value


@pytest.mark.parametrize("bad", ["[MAX 1 2", "]", "[MAX ]", "[MAX 1 ] 2", "[FOO 1 2 ]"])
def test_listops_evaluator_rejects_malformed(bad: str) -> None:
    with pytest.raises(ListOpsSyntaxError):
        evaluate(bad)


def test_listops_evaluator_matches_lra_definitions_on_random_trees() -> None:
    import random

    def reference(tree: object) -> int:   # LRA's semantics, written independently with numpy
        if isinstance(tree, int):
            return tree
        op, args = tree
        vals = [reference(a) for a in args]
        return int({"[MAX": np.max, "[MIN": np.min, "[MED": np.median,
                    "[SM": lambda v: np.sum(v) % 10}[op](vals))

    rng = random.Random(0)
    for _ in range(300):
        tree = generate_tree(rng, max_depth=4, max_args=5, op_prob=0.4)
        assert evaluate(to_tokens(tree)) == reference(tree)
    assert apply_operator("[MED", [0, 1]) == 0


def test_data_is_deterministic_and_order_depends_only_on_seed() -> None:
    for name in TASKS:
        a, b = get_task(name, **TINY_OPTIONS[name]), get_task(name, **TINY_OPTIONS[name])
        for ta, tb in zip(a.train_set() + a.eval_set(), b.train_set() + b.eval_set()):
            assert torch.equal(ta, tb)
        torch.manual_seed(123)   # global RNG state must not matter
        first = [x for x, _ in _take(a.train_batches(5), 3)]
        torch.manual_seed(456)
        again = [x for x, _ in _take(b.train_batches(5), 3)]
        other = [x for x, _ in _take(a.train_batches(6), 3)]
        assert all(torch.equal(p, q) for p, q in zip(first, again))
        assert not all(torch.equal(p, q) for p, q in zip(first, other))


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_task_options_are_validated() -> None:
    with pytest.raises(TaskOptionError, match="unknown option"):
        get_task("digits", patch=2)
    with pytest.raises(TaskOptionError, match="patch_size"):
        get_task("digits", patch_size=3)
    with pytest.raises(TaskOptionError, match="seq_len"):
        get_task("associative_recall", n_pairs=8, n_queries=8, seq_len=20)
    with pytest.raises(UnknownTaskError):
        get_task("imagenet")


# ---- configs ---------------------------------------------------------------------------------
def test_accuracy_config_fills_task_defaults_under_explicit_values() -> None:
    budget = TASKS["listops"].default_budget
    acc = accuracy_config("listops", lr=5e-4, seeds=[3])
    assert acc.train_steps == budget.train_steps and acc.warmup_steps == budget.warmup_steps
    assert acc.lr == 5e-4 and acc.seeds == (3,)


def test_model_config_precedence() -> None:
    task = get_task("associative_recall")
    cfg = task.resolve_model_config({"d_model": 32, "causal": False, "reuse_ratio": 0.5})
    assert cfg["d_model"] == 32                                   # suite beats task default size
    assert cfg["n_layers"] == task.default_budget.model["n_layers"]
    assert cfg["causal"] is True and cfg["task_head"] == "lm"     # the data's requirements win


def test_lr_schedule_warms_up_then_decays_to_zero() -> None:
    f = [train_module.lr_factor(s, 4, 20) for s in range(20)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(f[3:], f[4:]))
    assert f[-1] < 0.01


# ---- training ----------------------------------------------------------------------------------
@pytest.mark.parametrize("task", sorted(TASKS))
def test_end_to_end_runs_for_every_task(task: str) -> None:
    result = run(task, config={"reuse_ratio": 0.5}, seeds=(0, 1))
    assert result["status"] == "ok" and result["error"] is None
    json.dumps(result)
    assert result["task"] == task and result["train_steps"] == 6
    assert len(result["accuracy_seeds"]) == 2 and 0.0 <= result["accuracy_mean"] <= 1.0
    assert result["accuracy_std"] is not None and math.isfinite(result["final_loss"])
    assert [p["step"] for p in result["learning_curve"][0]] == [3, 6]
    assert result["train_time_s"] > 0 and result["peak_rss_bytes"] > 0 and result["params"] > 0
    assert result["train_flops"] == pytest.approx(6 * result["train_flops_per_step"]) and result["train_flops"] > 0
    assert result["train_seq_len"] == get_task(task, **TINY_OPTIONS[task]).seq_len
    assert 0 < result["eval_majority_accuracy"] < 1
    assert result["threads"] == 1


def test_training_is_deterministic() -> None:
    a, b = run("listops", seeds=(1,)), run("listops", seeds=(1,))
    assert a["learning_curve"] == b["learning_curve"] and a["accuracy_seeds"] == b["accuracy_seeds"]
    c = run("listops", seeds=(2,))
    assert c["learning_curve"] != a["learning_curve"]


def test_baseline_equals_reuse_with_zero_heads() -> None:
    base = run("associative_recall", model="baseline")
    reuse0 = run("associative_recall", model="reuse", config={"reuse_ratio": 0.0})
    reuse = run("associative_recall", model="reuse", config={"reuse_ratio": 0.5})
    assert base["learning_curve"] == reuse0["learning_curve"]
    assert reuse["learning_curve"] != base["learning_curve"]


def test_injected_non_finite_loss_fails_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    real = train_module.loss_fn
    calls = {"n": 0}

    def poisoned(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = real(logits, y)
        return loss * float("inf") if calls["n"] == 4 else loss   # step 4 of seed 0

    monkeypatch.setattr(train_module, "loss_fn", poisoned)
    result = run("digits", seeds=(0, 1))
    assert result["status"] == "failed"
    assert result["error"] == "diverged: non-finite loss at step 4 (seed 0)"
    assert result["accuracy_mean"] is None and result["final_loss"] is None
    json.dumps(result)


def test_huge_learning_rate_diverges() -> None:
    result = run("digits", lr=1e4, train_steps=30, eval_every=30, warmup_steps=0)
    assert result["status"] == "failed" and result["error"].startswith("diverged: non-finite loss at step ")


def test_invalid_budget_is_rejected() -> None:
    with pytest.raises(ValueError, match="warmup_steps"):
        run("digits", warmup_steps=-1)
    with pytest.raises(ValueError, match="train_steps"):
        run("digits", train_steps=0)
    with pytest.raises(ValueError, match="seeds"):
        run("digits", seeds=())


def test_warmup_longer_than_training_ramps_all_the_way() -> None:
    assert [train_module.lr_factor(s, 10, 4) for s in range(4)] == [0.1, 0.2, 0.3, 0.4]
    assert run("digits", warmup_steps=50)["status"] == "ok"


def test_shipped_suite_trains_each_task_with_its_default_budget() -> None:
    # suites/accuracy.yaml sweeps the task and writes only the seeds: every other budget key must
    # come from that task's own default budget, and each task gets points of its own.
    from pathlib import Path

    from harness.suite.loading import load_suite
    from harness.suite.sweep import expand

    suite = load_suite(Path(__file__).resolve().parent.parent / "suites" / "accuracy.yaml")
    tasks = expand(suite)
    assert {t.axes["task"] for t in tasks} == set(TASKS)
    assert len({t.point_id for t in tasks}) == len(tasks) == 3 * 4  # baseline + 3 ratios per task
    for t in tasks:
        assert t.accuracy == accuracy_config(t.axes["task"], seeds=(0, 1, 2))
    for cls in TASKS.values():   # one model size serves every task, as the suite's comment says
        assert {k: suite.model[k] for k in cls.default_budget.model} == dict(cls.default_budget.model)


def test_a_bad_task_name_is_a_suite_error(tmp_path) -> None:
    from harness.suite.loading import SuiteError, load_suite

    path = tmp_path / "acc.yaml"
    path.write_text("name: a\nvariants: {b: {model: baseline}}\nsweep:\n  task: [digts]\n"
                    "metrics: [accuracy]\naccuracy: {seeds: [0]}\n")
    with pytest.raises(SuiteError, match=r"acc.yaml:4: sweep.task\[0\]: expected an accuracy task"):
        load_suite(path)


def test_each_task_knows_its_training_length_without_building_data() -> None:
    for name, options in TINY_OPTIONS.items():
        task = get_task(name, **options)
        length = task.training_length()
        assert task._data is None and length == task.seq_len


def test_dry_run_lists_what_accuracy_points_train_and_estimates_the_training(tmp_path) -> None:
    from harness.suite.estimate import TASK_DATA_S, TRAIN_STEP_OVERHEAD_S, dry_run, estimate_seconds
    from harness.suite.loading import load_suite
    from harness.suite.sweep import expand

    path = tmp_path / "acc.yaml"
    path.write_text("name: a\nmodel: {d_model: 64, n_heads: 4, n_layers: 3, d_ff: 128}\n"
                    "variants: {b: {model: baseline}}\nsweep:\n  task: [listops]\n"
                    "metrics: [accuracy, redundancy]\naccuracy: {seeds: [0, 1], train_steps: 100}\n")
    suite = load_suite(path)
    listed = dry_run(suite)[1]
    assert listed.split()[1:] == ["b", "cpu", "train", "sdpa", "task=listops", "steps=100", "batch=64", "n=32",
                                  "seeds=0,1"]
    [task] = expand(suite)
    one_seed = dataclasses.replace(task, accuracy=dataclasses.replace(task.accuracy, seeds=(0,)))
    training = estimate_seconds([task]) - estimate_seconds([one_seed])   # one seed's training
    assert 100 * TRAIN_STEP_OVERHEAD_S < training < 2 * estimate_seconds([one_seed])
    assert estimate_seconds([one_seed]) > TASK_DATA_S + training
