"""Suite loading and validation: the documented example loads, and each kind of mistake is reported
with its file, key path and line, all at once."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harness.compare.policy import PolicyError, load_policy
from harness.suite.loading import Problem, Suite, SuiteError, Variant, list_suites, load_suite
from harness.suite.sweep import expand
from harness.suite.task import AccuracyConfig, MeasureConfig

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "suites").glob("*.yaml"))

# The format's reference example, exactly as documented.
EXAMPLE = """\
name: seq_len
description: Forward and training-step cost vs sequence length, baseline vs reuse.
model:                  # shared model config (models/ config keys)
  d_model: 256
  n_heads: 8
  n_layers: 6
  d_ff: 1024
  vocab_size: 1024
  causal: false
variants:               # what is compared: label -> registry model + config overrides
  baseline: {model: baseline}
  reuse: {model: reuse, reuse_ratio: 0.5}
sweep:                  # cartesian product of every axis
  seq_len: [128, 256, 512, 1024]
  batch_size: [4]
  device: [cpu, cuda]
  mode: [forward, train]
  backend: [eager, sdpa]
metrics: [time, memory, flops]
measure:
  warmup: 3
  min_reps: 5
  max_reps: 50
  target_ci: 0.02       # stop when the 95% CI of the median is within ±2%
  max_seconds: 10       # budget per point and variant
  timeout: 300          # a point running longer fails
  threads: 2
seed: 0
"""

MINIMAL = """\
name: minimal
variants:
  baseline: {model: baseline}
  reuse: {model: reuse, reuse_ratio: 0.5}
sweep:
  seq_len: [128]
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors(path: Path, overrides: tuple[str, ...] = ()) -> SuiteError:
    with pytest.raises(SuiteError) as info:
        load_suite(path, overrides)
    return info.value


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle` (so tests do not hard-code line numbers)."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# ---- accepted --------------------------------------------------------------------------------
def test_documented_example_is_accepted_as_written(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, EXAMPLE))
    assert suite.name == "seq_len" and suite.slug == "seq_len"
    assert suite.model == {"d_model": 256, "n_heads": 8, "n_layers": 6, "d_ff": 1024,
                           "vocab_size": 1024, "causal": False}
    assert suite.variants == {"baseline": Variant("baseline", "baseline", {}),
                              "reuse": Variant("reuse", "reuse", {"reuse_ratio": 0.5})}
    assert suite.sweep == {"seq_len": (128, 256, 512, 1024), "batch_size": (4,), "device": ("cpu", "cuda"),
                           "mode": ("forward", "train"), "backend": ("eager", "sdpa")}
    assert suite.metrics == ("time", "memory", "flops")
    assert suite.measure == MeasureConfig(warmup=3, min_reps=5, max_reps=50, target_ci=0.02,
                                          max_seconds=10.0, timeout=300.0, threads=2)
    assert suite.accuracy is None and suite.seed == 0 and suite.output_dir == "reports"
    assert suite.zip_groups == () and suite.exclude == ()


def test_defaults_fill_unswept_axes_and_optional_sections(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, MINIMAL))
    assert suite.sweep == {"seq_len": (128,), "device": ("cpu",), "mode": ("forward",), "batch_size": (1,)}
    assert suite.measure == MeasureConfig()
    assert suite.metrics == ("time", "memory", "flops")
    assert (suite.description, suite.seed, suite.output_dir, suite.model) == ("", 0, "reports", {})


def test_ints_widen_to_float_fields_and_1e_minus_3_is_a_number(tmp_path: Path) -> None:
    text = MINIMAL.replace("sweep:", "sweep:\n  reuse_ratio: [0, 1]").replace(", reuse_ratio: 0.5", "")
    text += "metrics: [time, accuracy]\naccuracy: {lr: 1e-3, seeds: [0, 1]}\n"
    suite = load_suite(write(tmp_path, text))
    assert suite.sweep["reuse_ratio"] == (0.0, 1.0)
    assert all(type(v) is float for v in suite.sweep["reuse_ratio"])
    assert suite.accuracy == AccuracyConfig(lr=0.001, seeds=(0, 1))


def test_accuracy_only_suite_needs_no_seq_len(tmp_path: Path) -> None:
    text = MINIMAL.replace("sweep:\n  seq_len: [128]\n", "") + "metrics: [accuracy]\naccuracy: {train_steps: 10}\n"
    suite = load_suite(write(tmp_path, text))
    assert suite.sweep["seq_len"] == (0,)
    assert suite.accuracy == AccuracyConfig(train_steps=10)


def test_overrides_are_applied_before_validation(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, EXAMPLE),
                       ["measure.max_seconds=2", "sweep.seq_len=[128,256]", "model.causal=true"])
    assert suite.measure.max_seconds == 2.0
    assert suite.sweep["seq_len"] == (128, 256)
    assert suite.model["causal"] is True


def test_to_json_round_trips_through_plain_json(tmp_path: Path) -> None:
    text = EXAMPLE.replace("metrics: [time, memory, flops]", "metrics: [time, accuracy]\naccuracy: {seeds: [3]}")
    text = text.replace("  backend: [eager, sdpa]\n", "  backend: [eager, sdpa]\n  zip:\n"
                        "    - {n_layers: [2, 4], d_ff: [512, 1024]}\n  exclude:\n    - {device: cuda, seq_len: [128, 256]}\n")
    text = text.replace("  d_ff: 1024\n", "").replace("  n_layers: 6\n", "")
    suite = load_suite(write(tmp_path, text))
    data = json.loads(json.dumps(suite.to_json()))
    assert data["sweep"]["zip"] == [{"n_layers": [2, 4], "d_ff": [512, 1024]}]
    assert data["sweep"]["exclude"] == [{"device": ["cuda"], "seq_len": [128, 256]}]
    assert Suite.from_json(data) == suite


def test_every_shipped_suite_loads() -> None:
    assert {p.stem for p in SHIPPED} >= {"smoke", "seq_len", "batch_size", "reuse_ratio"}
    for path in SHIPPED:
        load_suite(path)


def test_shipped_seq_len_suite_is_the_documented_example_with_its_own_budget(tmp_path: Path) -> None:
    shipped, example = load_suite(ROOT / "suites" / "seq_len.yaml"), load_suite(write(tmp_path, EXAMPLE))
    same = ("name", "description", "model", "variants", "metrics", "seed")
    assert all(getattr(shipped, f) == getattr(example, f) for f in same)
    # Its sweep has the example's CPU points, ids and all, plus a CUDA section of its own.
    def cpu(suite: Suite) -> set[tuple[str, str]]:
        return {(t.point_id, t.variant) for t in expand(suite) if t.device == "cpu"}

    assert cpu(shipped) == cpu(example)
    m = shipped.measure
    assert (m.warmup, m.max_seconds, m.max_reps, m.target_ci) == (1, 5.0, 50, 0.01)
    # One pinned thread in three rounds: what benchmarks/bench_noise.py measured steady beside a busy core.
    assert (m.threads, m.rounds, m.pairing) == (1, 3, "lockstep")


def test_list_suites_lists_shipped_and_flags_broken_ones(tmp_path: Path) -> None:
    names = {info.name for info in list_suites(ROOT / "suites")}
    assert {"smoke", "seq_len", "batch_size", "reuse_ratio"} <= names
    write(tmp_path, MINIMAL, "good.yaml")
    write(tmp_path, "name: broken\n", "broken.yml")
    (tmp_path / "notes.txt").write_text("not a suite")
    infos = list_suites(tmp_path)
    assert [(i.name, Path(i.path).name) for i in infos] == [("broken", "broken.yml"), ("minimal", "good.yaml")]
    assert infos[0].description.startswith("invalid suite (2 problems): ")
    assert "broken.yml:1: variants: expected a mapping of variant labels (required)" in infos[0].description


# ---- problems --------------------------------------------------------------------------------
def test_problem_renders_as_one_line_in_the_documented_shape() -> None:
    problem = Problem("suites/x.yaml", "sweep.mode[1]", 14, "one of forward, train", "'fwd'")
    assert str(problem) == "suites/x.yaml:14: sweep.mode[1]: expected one of forward, train; found 'fwd'"
    assert str(Problem("--set a=1", "a", None, "x", "y")) == "--set a=1: a: expected x; found y"


def test_bad_enum_value_cites_file_path_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE.replace("mode: [forward, train]", "mode: [forward, fwd]"))
    line = line_of(EXAMPLE, "mode: [forward, train]")
    assert str(errors(path)) == f"{path}:{line}: sweep.mode[1]: expected one of forward, train; found 'fwd'"


def test_unknown_keys_suggest_the_closest_known_one(tmp_path: Path) -> None:
    text = EXAMPLE.replace("sweep:", "sweeep:").replace("max_seconds: 10", "max_secnds: 10")
    text = text.replace("  d_ff: 1024", "  dff: 1024")
    message = str(errors(write(tmp_path, text)))
    assert f":{line_of(text, 'sweeep:')}: sweeep: expected a top-level key (did you mean 'sweep'?)" in message
    assert f":{line_of(text, 'max_secnds')}: measure.max_secnds: expected a measure key (did you mean 'max_seconds'?)" in message
    assert f":{line_of(text, 'dff:')}: model.dff: expected a model config key (did you mean 'd_ff'?)" in message


def test_sweep_axis_written_under_model_points_to_sweep(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("variants:", "model: {seq_len: 64}\nvariants:"))
    assert f"{path}:2: model.seq_len: expected a model config key (seq_len is a sweep axis" in str(errors(path))


@pytest.mark.parametrize("old, new, key_path, found", [
    ("seed: 0", "seed: true", "seed", "found true"),              # YAML true is a bool, not 1
    ("batch_size: [4]", "batch_size: ['4']", "sweep.batch_size[0]", "found '4'"),
    ("d_model: 256", "d_model: 256.0", "model.d_model", "found 256.0"),
    ("causal: false", "causal: 0", "model.causal", "expected true or false; found 0"),
    ("threads: 2", "threads: two", "measure.threads", "expected an integer or null; found 'two'"),
    ("seq_len: [128, 256, 512, 1024]", "seq_len: 128", "sweep.seq_len", "found 128"),
    ("reuse: {model: reuse, reuse_ratio: 0.5}", "reuse: reuse", "variants.reuse", "found 'reuse'"),
])
def test_wrong_types_are_reported_where_written(tmp_path: Path, old: str, new: str, key_path: str,
                                                found: str) -> None:
    assert old in EXAMPLE
    path = write(tmp_path, EXAMPLE.replace(old, new))
    message = str(errors(path))
    assert message.startswith(f"{path}:{line_of(EXAMPLE, old)}: {key_path}: expected ")
    assert found in message


def test_missing_required_keys(tmp_path: Path) -> None:
    text = MINIMAL.replace("name: minimal\n", "").replace("{model: baseline}", "{reuse_ratio: 0.5}")
    error = errors(write(tmp_path, text))
    rendered = [str(p) for p in error.problems]
    assert any(":1: name: expected a string (required); found nothing" in r for r in rendered)
    assert any(":2: variants.baseline.model: expected a model name (required); found nothing" in r for r in rendered)
    no_seq_len = errors(write(tmp_path, MINIMAL.replace("  seq_len: [128]\n", "  batch_size: [2]\n")))
    assert (":5: sweep.seq_len: expected a list of sequence lengths (required unless metrics "
            "is only accuracy, or accuracy and redundancy)") in str(no_seq_len)


def test_accuracy_metric_requires_an_accuracy_section(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "metrics: [time, accuracy]\n")
    assert f"{path}:1: accuracy: expected an accuracy section (metrics includes accuracy); found nothing" in str(errors(path))


def test_empty_lists_are_rejected(tmp_path: Path) -> None:
    text = EXAMPLE.replace("seq_len: [128, 256, 512, 1024]", "seq_len: []").replace(
        "metrics: [time, memory, flops]", "metrics: []")
    error = errors(write(tmp_path, text))
    assert [(p.path, p.line, p.found) for p in error.problems] == [
        ("sweep.seq_len", line_of(text, "seq_len: []"), "an empty list"),
        ("metrics", line_of(text, "metrics: []"), "an empty list"),
    ]


def test_yaml_syntax_error_reports_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nvariants:\n  a: [model\n  b: 1\n")
    (problem,) = errors(path).problems
    assert (problem.file, problem.path, problem.line, problem.column) == (str(path), "", 4, 4)
    assert str(problem).startswith(f"{path}:4:4: expected valid YAML; found ")


def test_a_policy_reports_yaml_syntax_errors_as_a_suite_does(tmp_path: Path) -> None:
    path = write(tmp_path, "alpha: 0.05\nmetrics:\n  time_ms: {threshold: [0.1}\n", "policy.yaml")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == str(errors(path))
    assert str(info.value).startswith(f"{path}:3:28: expected valid YAML; found expected ',' or ']'")


def test_missing_file_and_non_mapping_documents(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert str(errors(missing)) == f"{missing}: expected a suite file; found no such file"
    assert str(errors(write(tmp_path, "- a\n- b\n"))).endswith(": expected a mapping of suite keys "
                                                           "(name, variants, sweep, ...); found a list ['a', 'b']")
    assert "found an empty file" in str(errors(write(tmp_path, "# nothing\n")))


def test_duplicate_variant_labels_are_an_error(tmp_path: Path) -> None:
    text = MINIMAL.replace("  reuse: {", "  baseline: {model: reuse}\n  reuse: {")
    path = write(tmp_path, text)
    assert f"{path}:4: variants.baseline: expected each key once (first written at line 3)" in str(errors(path))


def test_key_set_by_variant_and_swept_is_ambiguous(tmp_path: Path) -> None:
    text = EXAMPLE.replace("  backend: [eager, sdpa]\n", "  backend: [eager, sdpa]\n  reuse_ratio: [0.25, 0.5]\n")
    path = write(tmp_path, text)
    sweep_line = line_of(text, "reuse_ratio: [0.25")
    assert str(errors(path)) == (
        f"{path}:{line_of(text, 'reuse: {model')}: variants.reuse.reuse_ratio: expected a key that is either "
        f"a variant override or swept, not both; found reuse_ratio also swept at sweep.reuse_ratio (line {sweep_line})")


def test_shared_model_key_that_is_also_swept_is_reported(tmp_path: Path) -> None:
    text = EXAMPLE.replace("  causal: false\n", "  causal: false\n  backend: sdpa\n")
    error = errors(write(tmp_path, text))
    assert [(p.path, p.line) for p in error.problems] == [("model.backend", line_of(text, "backend: sdpa"))]


def test_baseline_setting_a_key_it_ignores_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("{model: baseline}", "{model: baseline, reuse_heads: 2}"))
    assert f"{path}:3: variants.baseline.reuse_heads: expected a key model 'baseline' uses" in str(errors(path))


def test_invalid_model_config_cites_the_key_that_broke_it(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE.replace("d_model: 256", "d_model: 250"))
    (problem,) = errors(path).problems
    assert str(problem).startswith(f"{path}:{line_of(EXAMPLE, 'd_model: 256')}: model.d_model: expected ")
    assert problem.found == "d_model=250 is not divisible by n_heads=8"
    swept = EXAMPLE.replace("  n_heads: 8\n", "").replace("backend: [eager, sdpa]", "n_heads: [8, 6]")
    # ConfigError names d_model; the swept value that made it invalid is named in `expected`.
    (problem,) = errors(write(tmp_path, swept)).problems
    assert (problem.path, problem.line) == ("model.d_model", line_of(swept, "d_model: 256"))
    assert problem.expected == "a valid model config for variant 'baseline' at n_heads=6"
    assert problem.found == "d_model=256 is not divisible by n_heads=6"
    ratio = EXAMPLE.replace("reuse_ratio: 0.5", "reuse_ratio: 1.5")
    (problem,) = errors(write(tmp_path, ratio)).problems
    assert (problem.path, problem.line) == ("variants.reuse.reuse_ratio", line_of(ratio, "reuse_ratio: 1.5"))
    assert (problem.expected, problem.found) == ("a number in [0, 1] (for variant 'reuse' at backend=eager)", "1.5")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = EXAMPLE.replace("mode: [forward, train]", "mode: [forward, fwd]").replace(
        "seed: 0", "seed: zero").replace("warmup: 3", "warmup: -1").replace("{model: baseline}", "{model: basline}")
    error = errors(write(tmp_path, text))
    assert [p.path for p in error.problems] == ["variants.baseline.model", "sweep.mode[1]", "measure.warmup", "seed"]
    assert "did you mean 'baseline'?" in error.problems[0].expected
    assert len(str(error).splitlines()) == 4


def test_zip_and_exclude_mistakes(tmp_path: Path) -> None:
    text = MINIMAL.replace("  seq_len: [128]\n", "  seq_len: [128]\n  zip:\n    - {batch_size: [1, 2], n_layers: [2]}\n"
                           "  exclude:\n    - {seq_len: 256}\n    - {mode: train}\n")
    error = errors(write(tmp_path, text))
    assert [(p.path, p.line, p.found) for p in error.problems] == [
        ("sweep.zip[0]", 8, "batch_size with 2, n_layers with 1"),
        ("sweep.exclude[0].seq_len", 10, "256"),        # a value never swept excludes nothing: a typo
        ("sweep.exclude[1].mode", 11, "'train'"),
    ]


def test_axis_swept_twice_is_reported(tmp_path: Path) -> None:
    text = MINIMAL.replace("  seq_len: [128]\n", "  seq_len: [128]\n  zip:\n    - {seq_len: [64], batch_size: [2]}\n")
    (problem,) = errors(write(tmp_path, text)).problems
    assert (problem.path, problem.line) == ("sweep.zip[0].seq_len", 8)
    assert problem.found == "seq_len already swept at sweep.seq_len (line 6)"


def test_excluding_every_point_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "  exclude: [{seq_len: 128}]\n")
    assert f"{path}:7: sweep.exclude: expected rules that leave at least one point" in str(errors(path))


# ---- --set overrides -------------------------------------------------------------------------
def test_bad_overrides_name_the_override(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    error = errors(path, ("measure.max_secnds=2", "oops", "sweep.seq_len.first=1", "measure.timeout=[1",
                          "sweep.mode=[fwd]"))
    assert [str(p) for p in error.problems] == [
        "--set oops: oops: expected key.path=value; found 'oops'",
        "--set sweep.seq_len.first=1: sweep.seq_len: expected a mapping to set a key in; found a list [128, 256, 512, 1024]",
        "--set measure.timeout=[1: measure.timeout: expected a YAML value; found expected ',' or ']', but got '<stream end>'",
        "--set measure.max_secnds=2: measure.max_secnds: expected a measure key (did you mean 'max_seconds'?); found 'max_secnds'",
        "--set sweep.mode=[fwd]: sweep.mode[0]: expected one of forward, train; found 'fwd'",
    ]
