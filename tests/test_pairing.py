"""Paired measurement: the variants of a point measured together, each in its own worker, in rounds.

The budget split and the merging of rounds are checked on plain values; the rest with real worker
processes on a tiny model: lockstep turns of four workers, a crash mid-rotation, memory figures
that do not depend on the order, sequential pairing, and the A/B gate against older code trees.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import ROOT, tiny_suite
from harness.compare.paired import paired_logs
from harness.compare.timing import timing
from harness.results.load import load_run
from harness.results.store import RunDir
from harness.run.ab import Side, interleave
from harness.run.forkserver import ForkServerExecutor
from harness.run.rounds import measure_point, merge_rounds, per_round, rotation
from harness.run.runner import RunOptions, points, start
from harness.suite.loading import SuiteError, load_suite
from harness.suite.sweep import expand
from harness.suite.task import MeasureConfig, PointTask
from models.config import TransformerConfig

def _task(tmp_path: Path, **measure: Any) -> PointTask:
    task = expand(load_suite(tiny_suite(tmp_path / "s.yaml", seq_lens="[16]")))[0]
    return PointTask.from_json({**task.to_json(), "measure": {**task.to_json()["measure"], **measure}})


def _by_round(row: dict[str, Any], key: str) -> list[list[Any]]:
    values, parts = row[key], []
    for size in row["round_sizes"]:
        parts.append(values[:size])
        values = values[size:]
    return parts


# ---- the budget, the order, the merge ----------------------------------------------------------
def test_rounds_split_the_budget_and_later_rounds_only_time(tmp_path: Path) -> None:
    task = _task(tmp_path, min_reps=3, max_reps=50, max_seconds=7.0, warmup=1)
    parts = [per_round(task, 2, r) for r in range(2)]
    assert [p.measure.min_reps for p in parts] == [2, 1] and [p.measure.max_reps for p in parts] == [25, 25]
    assert sum(p.measure.max_seconds for p in parts) == pytest.approx(7.0)
    # FLOPs and memory in the first round; the later ones need no extra warm-up for it, as the
    # instrumented step is one of the warm-up steps.
    assert parts[0].metrics == ("time", "memory", "flops") and parts[1].metrics == ("time",)
    assert {p.measure.warmup for p in parts} == {1}
    odd = [per_round(_task(tmp_path, min_reps=1, max_reps=5), 3, r).measure for r in range(3)]
    assert [m.max_reps for m in odd] == [2, 2, 1] and [m.min_reps for m in odd] == [1, 1, 1]


def test_the_order_rotates_by_round_and_by_point() -> None:
    assert [rotation(2, 0, r) for r in range(2)] == [[0, 1], [1, 0]]
    firsts = [rotation(3, 0, r)[0] for r in range(3)]
    assert sorted(firsts) == [0, 1, 2]  # each slot goes first once in three rounds
    assert rotation(3, 1, 0) == rotation(3, 0, 1)


def test_merged_rounds_keep_their_samples_apart_and_say_what_failed(tmp_path: Path) -> None:
    task = _task(tmp_path, rounds=3)

    def ok(samples: list[float], reason: str) -> dict[str, Any]:
        return {"variant": task.variant, "status": "ok", "time_ms_samples": samples, "stop_reason": reason,
                "lockstep": True, "worker_pid": len(samples), "turn_spans_s": [[0.0, 1.0]] * len(samples)}

    rows = [ok([3.0, 1.0, 2.0], "max_reps"), {"variant": task.variant, "status": "failed", "error": "boom"},
            ok([5.0, 4.0], "budget")]
    row = merge_rounds(rows, task, 3, "lockstep", "p1")
    assert (row["pairing"], row["pair_id"], row["rounds"], row["round_sizes"]) == ("lockstep", "p1", 2, [3, 0, 2])
    assert row["time_ms_samples"] == [3.0, 1.0, 2.0, 5.0, 4.0] and row["time_ms_n"] == 5
    assert row["time_ms_median"] == 3.0 and row["stop_reason"] == "budget" and len(row["turn_spans_s"]) == 5
    assert row["rounds_note"] == "1 of 3 rounds failed: boom" and row["worker_pids"] == [3, None, 2]
    assert row["measure"]["rounds"] == 3 and "lockstep" not in row
    # The failed round keeps its place, so another variant's round 3 still pairs with this one's.
    other = merge_rounds([ok([6.0, 2.0, 4.0], "max_reps"), ok([1.0], "max_reps"), ok([10.0, 8.0], "budget")],
                         task, 3, "lockstep", "p1")
    pairs = paired_logs(timing(row).rounds, timing(other).rounds)
    assert pairs is not None and [p.size for p in pairs] == [3, 0, 2]
    assert np.allclose(np.exp(pairs[2]), [2.0, 2.0])
    # A round whose worker did not take turns makes the row's pairs unsound: sequential, no pair id.
    unpaired = merge_rounds([ok([1.0], "max_reps"), {**ok([2.0], "max_reps"), "lockstep": None}],
                            task, 2, "lockstep", "p1")
    assert (unpaired["pairing"], unpaired["pair_id"], unpaired["stop_reason"]) == ("sequential", None, "max_reps")


# ---- the suite's settings ------------------------------------------------------------------------
@pytest.mark.parametrize("written, message", [
    ("pairing: paired", "measure.pairing: expected one of lockstep, sequential; found 'paired'"),
    ("rounds: 9", "measure.rounds: expected at most measure.max_reps (5): every round takes at least one "
                  "timed step; found 9"),
    ("rounds: 0", "measure.rounds: expected a value >= 1; found 0"),
])
def test_pairing_and_rounds_are_validated_where_written(tmp_path: Path, written: str, message: str) -> None:
    path = tiny_suite(tmp_path / "s.yaml")
    text = path.read_text().replace("threads: 1}", f"threads: 1, {written}}}")
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("measure:"))
    with pytest.raises(SuiteError) as error:
        load_suite(path)
    assert [str(p) for p in error.value.problems] == [f"{path}:{line}: {message}"]


def test_measure_settings_leave_point_ids_alone(tmp_path: Path) -> None:
    path = tiny_suite(tmp_path / "s.yaml")
    plain = [t.point_id for t in expand(load_suite(path))]
    paired = expand(load_suite(path, ["measure.pairing=sequential", "measure.rounds=3"]))
    assert [t.point_id for t in paired] == plain and paired[0].measure.rounds == 3


# ---- real workers ----------------------------------------------------------------------------
def _rows(tmp_path: Path, overrides: list[str], **kw: Any) -> dict[str, dict[str, Any]]:
    suite = load_suite(tiny_suite(tmp_path / "s.yaml", seq_lens="[16]", **kw), overrides)
    outcome = start(suite, RunOptions(output_dir=tmp_path / "runs", progress=False))
    return {f"{r['variant']}-{r['backend']}": r for r in RunDir(outcome.run_dir).rows()}


@pytest.mark.slow
def test_the_variants_of_a_point_take_turns_one_timed_step_each(tmp_path: Path) -> None:
    rows = _rows(tmp_path, ["sweep.backend=[eager, sdpa]"])
    assert sorted(rows) == ["baseline-eager", "baseline-sdpa", "reuse-eager", "reuse-sdpa"]
    assert {r["status"] for r in rows.values()} == {"ok"}
    assert len({r["pair_id"] for r in rows.values()}) == 1 and all(r["pair_id"] for r in rows.values())
    rounds = MeasureConfig().rounds
    pids = [pid for r in rows.values() for pid in r["worker_pids"]]
    assert len(set(pids)) == len(pids) == 4 * rounds  # a fresh worker per variant and round
    for r in rows.values():
        assert r["pairing"] == "lockstep" and r["rounds"] == r["measure"]["rounds"] == rounds
        assert sum(r["round_sizes"]) == len(r["time_ms_samples"]) == r["time_ms_n"] == len(r["turn_spans_s"])
    names = sorted(rows)
    orders = []
    for round_index in range(rounds):
        spans = {name: _by_round(rows[name], "turn_spans_s")[round_index] for name in names}
        orders.append(sorted(names, key=lambda name: spans[name][0][0]))  # who had the turn first
        # One worker at a time, and every worker's k-th timed step ends before anyone's (k+1)-th.
        every = sorted(span for name in names for span in spans[name])
        assert all(end <= next_start for (_, end), (next_start, _) in zip(every, every[1:]))
        shortest = min(len(s) for s in spans.values())
        for k in range(shortest - 1):
            assert max(spans[name][k][1] for name in names) <= min(spans[name][k + 1][0] for name in names)
    # The order rotates: each round starts with the previous round's second.
    assert all(later == earlier[1:] + earlier[:1] for earlier, later in zip(orders, orders[1:]))


@pytest.mark.slow
def test_a_variant_that_crashes_mid_rotation_costs_only_its_own_row(tmp_path: Path) -> None:
    variants = ("  baseline: {model: baseline}\n  reuse: {model: reuse, reuse_ratio: 0.5}\n"
                "  exploding: {model: 'tests.fixture_models:exploding'}\n"
                "  crashing: {model: 'tests.fixture_models:crashing_later'}")
    # Two rounds, so each times at least two steps: the crash comes in the second, mid-rotation.
    rows = _rows(tmp_path, ["measure.rounds=2"], variants=variants, max_len=16, metrics="[time]")
    assert rows["exploding-sdpa"]["status"] == rows["crashing-sdpa"]["status"] == "failed"
    assert "RuntimeError: boom at seq_len=16" in rows["exploding-sdpa"]["error"]
    assert "SIGKILL" in rows["crashing-sdpa"]["error"]
    for name in ("baseline-sdpa", "reuse-sdpa"):
        r = rows[name]
        assert r["status"] == "ok" and r["rounds"] == r["measure"]["rounds"] and r["pairing"] == "lockstep"
        assert sum(r["round_sizes"]) == r["time_ms_n"] == r["measure"]["max_reps"]  # no round cut short


@pytest.mark.slow
def test_memory_figures_of_a_variant_do_not_depend_on_the_order(tmp_path: Path) -> None:
    variants = ("  baseline: {model: baseline}\n  reuse: {model: reuse, reuse_ratio: 0.5}\n"
                "  reuse_first: {model: reuse, reuse_ratio: 0.5, reuse_source: first}")
    suite = load_suite(tiny_suite(tmp_path / "s.yaml", seq_lens="[16]", variants=variants), ["measure.rounds=1"])
    [point] = points(expand(suite))
    figures: list[dict[str, tuple[Any, ...]]] = []
    with ForkServerExecutor() as executor:
        for point_index in range(3):  # every variant first once, in the middle once, last once
            rows = measure_point([(executor, t) for t in point], 1, "lockstep", point_index)
            figures.append({r["variant"]: (r["peak_mem_bytes"], r["resting_mem_bytes"], r["flops_counted"])
                            for r in rows})
    assert figures[0] == figures[1] == figures[2]
    assert all(peak > 0 for peak, _, _ in figures[0].values())


class _Recording:
    """A fork server's executor that also notes the order it was asked to measure in."""

    def __init__(self, inner: ForkServerExecutor) -> None:
        self.inner, self.order = inner, []

    def run(self, tasks: list[PointTask], timeout: float) -> list[dict[str, Any]]:
        self.order.append(tasks[0].variant)
        return self.inner.run(tasks, timeout)


@pytest.mark.slow
def test_sequential_pairing_measures_each_variant_alone_in_alternating_order(tmp_path: Path) -> None:
    variants = ("  baseline: {model: baseline}\n  reuse: {model: reuse, reuse_ratio: 0.5}\n"
                "  reuse_first: {model: reuse, reuse_ratio: 0.5, reuse_source: first}")
    suite = load_suite(tiny_suite(tmp_path / "s.yaml", seq_lens="[16]", variants=variants))
    [point] = points(expand(suite))
    with ForkServerExecutor() as server:
        executor = _Recording(server)
        rows = measure_point([(executor, t) for t in point], 2, "sequential", 0)
    assert executor.order == ["baseline", "reuse", "reuse_first", "reuse", "reuse_first", "baseline"]
    for r in rows:
        assert r["status"] == "ok" and r["pairing"] == "sequential" and r["pair_id"] is None
        assert r["rounds"] == 2 and sum(r["round_sizes"]) == r["time_ms_n"] and "turn_spans_s" not in r
    # One worker at a time: each lived before the next one started.
    lives = sorted((r["started_at"], r["started_at"] + r["duration_s"]) for r in rows)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(lives, lives[1:]))


# ---- the A/B gate against an older tree ---------------------------------------------------------
# An older revision's task module: PointTask.from_json fails on any measure key it does not know.
OLD_TASKS = """
from dataclasses import dataclass, field
from typing import Any

@dataclass(frozen=True)
class MeasureConfig:
    warmup: int = 3
    min_reps: int = 5
    max_reps: int = 50
    target_ci: float = 0.02
    max_seconds: float = 10.0
    timeout: float = 300.0
    threads: Any = None

@dataclass(frozen=True)
class PointTask:
    point_id: str
    variant: str
    model: str
    model_config: dict
    axes: dict
    device: str
    mode: str
    seq_len: int
    batch_size: int
    seed: int
    metrics: tuple
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    accuracy: Any = None

    @classmethod
    def from_json(cls, data):
        data = dict(data)
        data["measure"] = MeasureConfig(**data["measure"])
        return cls(**data)
"""

# Its worker: max_reps "steps" of 2 ms each, taking turns if its tree has them.
OLD_WORKER = """
import json, sys, time
from {schema} import PointTask
try:
    from {turns} import Turns
except ImportError:
    Turns = None

def main(argv):
    tasks = [PointTask.from_json(t) for t in json.load(open(argv[0]))]
    if {models}:
        from models.config import TransformerConfig
        for task in tasks:
            TransformerConfig(**task.model_config)  # fails on a model key this tree lacks
    turns = Turns.from_env() if Turns else None
    if turns:
        turns.wait()
    for task in tasks:
        samples = []
        for _ in range(task.measure.max_reps):
            start = time.perf_counter()
            while time.perf_counter() - start < 0.002:
                pass
            samples.append((time.perf_counter() - start) * 1e3)
            if turns:
                turns.give_back()
        row = {{"point_id": task.point_id, "variant": task.variant, "status": "ok", "time_ms_samples": samples,
               "stop_reason": "max_reps", "lockstep": bool(turns and turns.active)}}
        with open(argv[1], "a") as fh:
            fh.write(json.dumps(row) + "\\n")
    if turns:
        turns.finish()
    return 0
"""


def _old_tree(root: Path, layout: str) -> Path:
    """A stand-in for an older checkout: `flat` is harness/schema.py and harness/worker.py, with no
    turns; `staged` is harness/suite/task.py and harness/run/worker.py, with turns, and a model
    config without the dtype key."""
    (root / "harness").mkdir(parents=True)
    (root / "harness" / "__init__.py").write_text("")
    if layout == "flat":
        (root / "harness" / "schema.py").write_text(OLD_TASKS)
        (root / "harness" / "worker.py").write_text(
            OLD_WORKER.format(schema="harness.schema", turns="harness.turns", models=False))
        return root
    for package in ("suite", "run"):
        (root / "harness" / package).mkdir()
        (root / "harness" / package / "__init__.py").write_text("")
    (root / "harness" / "suite" / "task.py").write_text(OLD_TASKS)
    (root / "harness" / "run" / "worker.py").write_text(
        OLD_WORKER.format(schema="harness.suite.task", turns="harness.run.turns", models=True))
    shutil.copy(ROOT / "harness" / "run" / "turns.py", root / "harness" / "run" / "turns.py")
    # Its model config has every key of ours but dtype.
    (root / "models").mkdir()
    (root / "models" / "__init__.py").write_text("")
    names = [f.name for f in dataclasses.fields(TransformerConfig) if f.name != "dtype"]
    (root / "models" / "config.py").write_text(
        "from dataclasses import make_dataclass\n"
        f"TransformerConfig = make_dataclass('TransformerConfig', [(n, object, None) for n in {names!r}])\n")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("layout, pairing", [("flat", "sequential"), ("staged", "lockstep")])
def test_the_ab_gate_measures_an_older_tree_that_knows_fewer_measure_keys(tmp_path: Path, layout: str,
                                                                          pairing: str) -> None:
    old = _old_tree(tmp_path / "old", layout)
    suite = load_suite(tiny_suite(tmp_path / "s.yaml", seq_lens="[16]", metrics="[time]"))
    runs = interleave(suite, [Side("baseline", old), Side("candidate", ROOT)], rounds=2, output_dir=tmp_path / "runs")
    rows = [r for run in runs for r in load_run(run).results.to_dict("records")]
    assert len(rows) == 4
    for r in rows:
        assert r["status"] == "ok", r["error"]  # the old tree read tasks written with keys it lacks
        assert r["pairing"] == pairing and r["rounds"] == 2 and sum(r["round_sizes"]) == r["time_ms_n"]
    # A round is both sides' workers of every variant in one rotation: one pair id for all four.
    ids = {r["pair_id"] for r in rows}
    assert ids == {None} if pairing == "sequential" else (len(ids) == 1 and None not in ids)
    assert json.loads((runs[0] / "manifest.json").read_text())["ab"]["lockstep"] == (pairing == "lockstep")


@pytest.mark.slow
def test_an_older_tree_gets_a_model_key_it_lacks_only_where_ours_has_it_at_its_default(tmp_path: Path) -> None:
    old = _old_tree(tmp_path / "old", "staged")
    path = tiny_suite(tmp_path / "s.yaml", seq_lens="[16]", metrics="[time]")
    default, other = (expand(load_suite(path, [f"model.dtype={dtype}"]))[0] for dtype in ("float32", "bfloat16"))
    with ForkServerExecutor(old) as executor:
        [same_model] = executor.run([default], timeout=60)
        [other_model] = executor.run([other], timeout=60)
    assert same_model["status"] == "ok"
    # Dropping dtype: bfloat16 would measure another model than asked for: it fails, saying why.
    assert other_model["status"] == "failed" and "unexpected keyword argument 'dtype'" in other_model["error"]
