"""The gate policy: rule matching, the shipped policy, and every way a policy file can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.compare.policy import MetricRule, Policy, PolicyError, Rule, load_policy

ROOT = Path(__file__).resolve().parent.parent


def test_rules_match_point_patterns_and_fields_and_the_last_one_wins() -> None:
    policy = Policy(rules=(
        Rule({"point_id": ("cpu-train-*",)}, {"time_ms": {"threshold": 0.5}}),
        Rule({"mode": ("train",), "backend": ("eager", "sdpa")}, {"time_ms": {"threshold": 0.3, "gate": False}}),
        Rule({"seq_len": (256,), "same_machine": (True,)}, {"speedup": {"threshold": 0.05}}),
    ))
    train = {"point_id": "cpu-train-eager-n256-b2-abc", "mode": "train", "backend": "eager"}
    assert policy.rule_for("time_ms", train) == MetricRule(gate=False, threshold=0.3)
    assert policy.rule_for("time_ms", {**train, "point_id": "cpu-forward-x", "mode": "forward"}).threshold == 4.0
    assert policy.rule_for("speedup", {"seq_len": 256, "same_machine": True}).threshold == 0.05
    assert policy.rule_for("speedup", {"seq_len": 256, "same_machine": False}).threshold == Policy().metrics["speedup"].threshold


def test_shipped_ci_policy_loads() -> None:
    policy = load_policy(ROOT / "ci" / "policy.yaml")
    assert policy.correction == "holm" and policy.source.endswith("policy.yaml")
    assert policy.rule_for("time_ms", {"context": "interleaved"}).threshold < policy.rule_for("time_ms", {}).threshold


BAD_POLICY = """\
alpha: 2
correction: bonferroni
confirm: 9
metrics:
  time_ms: {treshold: 0.1}
  params: {threshold: 0.1}
  speedup: {threshold: -0.2}
  latency: {threshold: 0.1}
rules:
  - match: {mode: train, colour: red}
    time_ms: {threshold: 0.2}
  - match: {context: somewhere}
  - just a string
"""


def test_policy_errors_name_file_line_key_expected_and_found(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(BAD_POLICY)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    lines = str(info.value).splitlines()
    expected = [
        (1, "alpha: expected a number between 0 and 1 (exclusive); found 2"),
        (2, "correction: expected one of holm, bh, none; found 'bonferroni'"),
        (3, "confirm: expected an integer from 0 (never re-measure) to 5; found 9"),
        (5, "metrics.time_ms.treshold: expected a metric setting key (did you mean 'threshold'?)"),
        (6, "metrics.params.threshold: expected no threshold: params is deterministic"),
        (7, "metrics.speedup.threshold: expected a relative change >= 0"),
        (8, "metrics.latency: expected "),
        (10, "rules[0].match.colour: expected "),
        (12, "rules[1].match.context: expected stored or interleaved; found 'somewhere'"),
        (12, "rules[1]: expected at least one metric setting"),
        (13, "rules[2]: expected a rule"),
    ]
    assert len(lines) == len(expected), lines
    for line, (number, text) in zip(lines, expected):
        assert line.startswith(f"{path}:{number}: {text}"), line


def test_a_threshold_that_could_never_fail_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("metrics:\n  speedup: {threshold: 1.0}\n  time_ms: {threshold: 9.0}\n"
                    "rules:\n  - match: {pairing: lockstep}\n    efficiency: {threshold: 1.5}\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    lines = str(info.value).splitlines()
    assert [line.split(": expected")[0] for line in lines] == [f"{path}:2: metrics.speedup.threshold",
                                                               f"{path}:6: rules[0].efficiency.threshold"]
    assert "could never fail" in lines[0]  # a time may grow tenfold; a speedup cannot fall by 100%


def test_policy_file_problems_without_a_line(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such file"):
        load_policy(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("metrics: {time_ms: [\n")
    with pytest.raises(PolicyError, match=r"broken.yaml:\d+:\d+: expected valid YAML"):
        load_policy(broken)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_policy(empty).metrics == Policy().metrics
