"""Sweep expansion: which (point, variant) tasks a suite yields, how they are identified, and the dry run."""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from pathlib import Path

import pytest

from harness.suite import points
from harness.suite.estimate import RUN_START_S, WORKER_START_S, dry_run, estimate_seconds
from harness.suite.loading import Suite, load_suite
from harness.suite.points import combinations
from harness.suite.sweep import expand, group_key, point_id
from harness.suite.task import MeasureConfig, PointTask
from models.config import REUSE_KEYS, TransformerConfig

ROOT = Path(__file__).resolve().parent.parent
# The documented example (test_suite.py checks the shipped seq_len.yaml has its CPU points).
from test_suite import EXAMPLE  # noqa: E402

PINNED = """\
name: pinned
model: {d_model: 64, n_heads: 4, n_layers: 2, d_ff: 128}
variants:
  baseline: {model: baseline}
  reuse: {model: reuse, reuse_ratio: 0.5}
sweep:
  seq_len: [64]
  batch_size: [2]
  mode: [forward, train]
  backend: [eager, sdpa]
"""

# Same suite as PINNED: keys reordered everywhere, and a default (causal: false) spelled out.
PINNED_REORDERED = """\
sweep:
  backend: [sdpa, eager]
  mode: [train, forward]
  batch_size: [2]
  seq_len: [64]
variants:
  reuse: {reuse_ratio: 0.5, model: reuse}
  baseline: {model: baseline}
model: {causal: false, d_ff: 128, n_layers: 2, n_heads: 4, d_model: 64}
name: pinned, reordered
"""

RATIO_SWEEP = """\
name: ratios
model: {d_model: 64, n_heads: 4, n_layers: 2, d_ff: 128}
variants:
  baseline: {model: baseline}
  reuse: {model: reuse}
sweep:
  seq_len: [64]
  mode: [forward, train]
  reuse_ratio: [0, 0.25, 0.5]
"""


def suite_from(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> Suite:
    path = tmp_path / f"suite{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_suite(path, overrides)


def by_variant(tasks: list[PointTask]) -> dict[str, list[PointTask]]:
    out: dict[str, list[PointTask]] = {}
    for task in tasks:
        out.setdefault(task.variant, []).append(task)
    return out


# ---- counts ----------------------------------------------------------------------------------
def test_every_axis_is_crossed_with_every_other_and_every_variant(tmp_path: Path) -> None:
    tasks = expand(suite_from(tmp_path, EXAMPLE))
    assert len(tasks) == 4 * 1 * 2 * 2 * 2 * 2
    for label, group in by_variant(tasks).items():
        points = {(t.device, t.mode, t.seq_len, t.batch_size, t.model_config["backend"]) for t in group}
        assert len(points) == len(group) == 32, label
    assert len({t.point_id for t in tasks}) == len(tasks)


def test_zip_groups_vary_together(tmp_path: Path) -> None:
    text = PINNED.replace("  seq_len: [64]\n  batch_size: [2]\n",
                          "  zip:\n    - {seq_len: [64, 128, 256], batch_size: [8, 4, 2]}\n")
    tasks = expand(suite_from(tmp_path, text))
    assert len(tasks) == 3 * 2 * 2 * 2
    assert {(t.seq_len, t.batch_size) for t in tasks} == {(64, 8), (128, 4), (256, 2)}


def test_excluded_points_are_dropped_only_when_every_key_matches(tmp_path: Path) -> None:
    text = EXAMPLE.replace("  backend: [eager, sdpa]\n", "  backend: [eager, sdpa]\n  exclude:\n"
                           "    - {device: cuda, seq_len: [512, 1024]}\n    - {mode: train, backend: eager, seq_len: 128}\n")
    tasks = expand(suite_from(tmp_path, text))
    # 32 points; rule 1 drops 2 lengths x 2 modes x 2 backends on cuda; rule 2 one point per device.
    assert len(tasks) == (32 - 8 - 2) * 2
    assert not any(t.device == "cuda" and t.seq_len >= 512 for t in tasks)
    assert not any((t.mode, t.model_config["backend"], t.seq_len) == ("train", "eager", 128) for t in tasks)
    assert any((t.mode, t.model_config["backend"], t.seq_len) == ("train", "sdpa", 128) for t in tasks)


def test_combinations_is_plain_data_in_and_out() -> None:
    points = combinations({"a": (1, 2), "b": ("x",)}, [{"c": (3, 4), "d": (5, 6)}], [{"a": (2,), "c": (4,)}])
    assert points == [{"a": 1, "b": "x", "c": 3, "d": 5}, {"a": 1, "b": "x", "c": 4, "d": 6},
                      {"a": 2, "b": "x", "c": 3, "d": 5}]


def test_baseline_runs_once_per_point_when_only_reuse_keys_are_swept(tmp_path: Path) -> None:
    groups = by_variant(expand(suite_from(tmp_path, RATIO_SWEEP)))
    assert len(groups["baseline"]) == 2 and len(groups["reuse"]) == 6
    for task in groups["baseline"]:
        assert "reuse_ratio" not in task.axes
        assert all(task.model_config[k] is None for k in ("reuse_ratio", "reuse_heads", "reuse_layers"))
    assert sorted({t.axes["reuse_ratio"] for t in groups["reuse"]}) == [0.0, 0.25, 0.5]
    assert sorted(t.model_config["reuse_ratio"] for t in groups["reuse"]) == [0.0, 0.0, 0.25, 0.25, 0.5, 0.5]


def test_baseline_drops_shared_reuse_keys_but_follows_other_swept_keys(tmp_path: Path) -> None:
    text = RATIO_SWEEP.replace("d_ff: 128}", "d_ff: 128, reuse_source: first}").replace(
        "reuse_ratio: [0, 0.25, 0.5]", "n_layers: [2, 3]").replace("n_layers: 2, ", "").replace(
        "{model: reuse}", "{model: reuse, reuse_heads: 2}")
    groups = by_variant(expand(suite_from(tmp_path, text)))
    assert len(groups["baseline"]) == len(groups["reuse"]) == 4
    assert {t.model_config["n_layers"] for t in groups["baseline"]} == {2, 3}
    assert {t.model_config["reuse_source"] for t in groups["baseline"]} == {"previous"}   # the default
    assert {(t.model_config["reuse_source"], t.model_config["reuse_heads"]) for t in groups["reuse"]} == {("first", 2)}


def test_registry_decides_which_keys_a_model_ignores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = suite_from(tmp_path, RATIO_SWEEP)
    assert len(by_variant(expand(suite))["baseline"]) == 2  # the registry's baseline ignores reuse keys
    monkeypatch.setattr(points, "ignored_keys", lambda name: frozenset())  # a baseline that reads them
    assert len(by_variant(expand(suite))["baseline"]) == 6


# ---- what a task carries ---------------------------------------------------------------------
def test_task_carries_resolved_config_and_suite_settings(tmp_path: Path) -> None:
    suite = suite_from(tmp_path, EXAMPLE, ("seed=7",))
    task = next(t for t in expand(suite) if t.variant == "reuse")
    expected = TransformerConfig(d_model=256, n_heads=8, n_layers=6, d_ff=1024, vocab_size=1024,
                                 causal=False, reuse_ratio=0.5, backend="eager")
    assert task.model_config == expected.to_dict()
    assert task.axes == {"seq_len": 128, "batch_size": 4, "device": "cpu", "mode": "forward", "backend": "eager"}
    assert (task.model, task.seed, task.metrics, task.measure, task.accuracy) == (
        "reuse", 7, ("time", "memory", "flops"), suite.measure, None)
    assert PointTask.from_json(json.loads(json.dumps(task.to_json()))) == task


def test_backend_defaults_from_the_model_config_when_not_swept(tmp_path: Path) -> None:
    tasks = expand(suite_from(tmp_path, RATIO_SWEEP))
    assert {t.model_config["backend"] for t in tasks} == {TransformerConfig().backend}


# ---- identity --------------------------------------------------------------------------------
PINNED_IDS = [
    ("baseline", "cpu-forward-eager-n64-b2-bb11eead88"),
    ("reuse", "cpu-forward-eager-n64-b2-8f5520d4fa"),
    ("baseline", "cpu-forward-sdpa-n64-b2-aa5bdde7bf"),
    ("reuse", "cpu-forward-sdpa-n64-b2-303a6002b7"),
    ("baseline", "cpu-train-eager-n64-b2-7bb281a2e4"),
    ("reuse", "cpu-train-eager-n64-b2-318984880e"),
    ("baseline", "cpu-train-sdpa-n64-b2-220a53f80a"),
    ("reuse", "cpu-train-sdpa-n64-b2-cfce75d138"),
]


def test_point_ids_are_pinned(tmp_path: Path) -> None:
    # Stored baselines are matched by point_id: if this fails, hashing changed and every stored
    # run stops matching. Change these literals only on purpose.
    assert [(t.variant, t.point_id) for t in expand(suite_from(tmp_path, PINNED))] == PINNED_IDS


def test_point_id_hashes_the_documented_identity() -> None:
    identity = {"variant": "reuse", "model": "reuse", "device": "cpu", "mode": "forward", "seq_len": 64,
                "batch_size": 2, "config": {"d_model": 64, "n_heads": 4, "n_layers": 2, "d_ff": 128,
                                            "reuse_ratio": 0.5, "backend": "eager"}}
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert PINNED_IDS[1] == ("reuse", f"cpu-forward-eager-n64-b2-{digest[:10]}")


def test_point_ids_ignore_key_order_and_spelled_out_defaults(tmp_path: Path) -> None:
    original = {(t.variant, t.point_id) for t in expand(suite_from(tmp_path, PINNED))}
    reordered = {(t.variant, t.point_id) for t in expand(suite_from(tmp_path, PINNED_REORDERED))}
    assert original == reordered


@pytest.mark.parametrize("override", ["model.d_ff=256", "seed=1", "variants.reuse.reuse_ratio=0.25",
                                      "model.causal=true", "sweep.batch_size=[3]"])
def test_point_ids_change_exactly_when_what_is_measured_changes(tmp_path: Path, override: str) -> None:
    before = {t.point_id for t in expand(suite_from(tmp_path, PINNED))}
    after = {t.point_id for t in expand(suite_from(tmp_path, PINNED, (override,)))}
    if override == "seed=1":
        assert after == before  # the seed fixes inputs, not what is measured
    elif override.startswith("variants.reuse"):
        assert len(after & before) == 4  # the baseline's ids are untouched
    else:
        assert not after & before


def test_point_id_prefix_is_readable_and_path_safe() -> None:
    config = {"d_model": 64, "n_heads": 4, "backend": "eager"}
    pid = point_id("reuse", "reuse", config, "cuda:1", "train", 1024, 4)
    assert re.fullmatch(r"cuda1-train-eager-n1024-b4-[0-9a-f]{10}", pid)
    assert pid != point_id("baseline", "reuse", config, "cuda:1", "train", 1024, 4)
    assert pid != point_id("reuse", "reuse", config, "cuda:0", "train", 1024, 4)


def test_group_key_pairs_variants_and_backends_at_one_point(tmp_path: Path) -> None:
    text = RATIO_SWEEP.replace("mode: [forward, train]", "mode: [forward]\n  backend: [eager, sdpa]\n  n_layers: [2, 3]")
    text = text.replace("n_layers: 2, ", "")
    tasks = expand(suite_from(tmp_path, text))
    groups: dict[tuple, list[PointTask]] = {}
    for task in tasks:
        groups.setdefault(group_key(task), []).append(task)
    assert len(groups) == 2  # one per n_layers: backend, variant and reuse_ratio do not split groups
    for key, members in groups.items():
        assert key[:4] == ("cpu", "forward", 64, 1)
        assert {(t.variant, t.model_config["backend"]) for t in members} == {
            (v, b) for v in ("baseline", "reuse") for b in ("eager", "sdpa")}
        assert not any(name in REUSE_KEYS or name == "backend" for name, _ in key[4])
        hash(key)


# ---- estimate --------------------------------------------------------------------------------
def test_estimate_grows_with_work_and_budget(tmp_path: Path) -> None:
    tasks = [t for t in expand(suite_from(tmp_path, EXAMPLE)) if t.device == "cpu"]
    short = [t for t in tasks if t.seq_len == 128]
    long = [t for t in tasks if t.seq_len == 1024]
    assert 0 < estimate_seconds(short) < estimate_seconds(long)
    typical, worst = estimate_seconds(tasks), estimate_seconds(tasks, worst_case=True)
    assert typical < worst
    roomier = MeasureConfig(warmup=3, min_reps=5, max_reps=50, max_seconds=60)
    assert estimate_seconds(tasks, roomier, worst_case=True) > worst
    # A timeout caps each worker's steps; a worker starts per variant and round.
    capped = estimate_seconds(tasks, MeasureConfig(timeout=1.0, rounds=2), worst_case=True)
    starts = RUN_START_S + WORKER_START_S * 2 * len(tasks)
    assert starts < capped <= starts + 2 * len(tasks)
    assert estimate_seconds(tasks, MeasureConfig(rounds=3)) > estimate_seconds(tasks, MeasureConfig(rounds=1))
    assert estimate_seconds([]) == 0.0


def test_dry_run_lists_every_measurement_then_the_typical_and_worst_case_time(tmp_path: Path) -> None:
    suite = suite_from(tmp_path, PINNED)
    tasks = expand(suite)
    header, *rows, estimate = dry_run(suite)
    assert header == f"pinned: {len(tasks)} (point, variant) measurements"
    assert [row.split()[:2] for row in rows] == [[t.point_id, t.variant] for t in tasks]
    typical, worst = estimate_seconds(tasks) / 60, estimate_seconds(tasks, worst_case=True) / 60
    assert estimate.startswith(f"estimated time: {typical:.1f} min, up to {worst:.1f} min if timings never settle")
