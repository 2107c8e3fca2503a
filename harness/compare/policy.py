"""Gate policy: which changes fail the gate, per metric and per point pattern.

A policy file (YAML) is validated once, at the edge, and reports every problem at once in the
style of suite errors (file:line: key: expected ...; found ...). Format, with every key optional:

    alpha: 0.05            # family-wise (holm) or false-discovery (bh) rate of the statistical checks
    correction: holm       # holm | bh | none: many points are tested at once
    confidence: 0.95       # level of the reported CIs
    min_samples: 3         # fewer timed samples on either side: "too few samples"
    fail_on_noisy: false   # does "too noisy to tell" fail the gate?
    fail_on_missing: true  # does a baseline point absent from (or failed in) the candidate fail it?
    confirm: 1             # re-measure points with a timing regression this often; it must reproduce
    metrics:               # per-metric defaults; unlisted metrics keep the built-in ones
      time_ms: {threshold: 4.0}          # fraction: 4.0 = five times as slow
      speedup: {threshold: 0.1, gate: true}   # below 1: a speedup cannot fall by 100%
      params: {gate: true}               # exact metrics take no threshold
    rules:                 # later rules override earlier ones, key by key
      - match: {context: interleaved, mode: train, point_id: "cpu-train-*"}
        time_ms: {threshold: 0.1}

A rule matches a check when every `match` key does: strings are fnmatch patterns, a list means
"any of", numbers and booleans compare equal. Match keys are the check's fields (MATCH_KEYS).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping

from harness.suite.checks import Checker, ProblemsError, describe, load_checked

Correction = Literal["holm", "bh", "none"]
Kind = Literal["exact", "percent", "statistical"]
CORRECTIONS: tuple[str, ...] = ("holm", "bh", "none")

# How each gated metric is judged. Exact: deterministic counts that must not move at all.
# Percent: memory, deterministic up to allocator details. Statistical: timings, judged by
# significance and size together (harness.compare.verdict).
METRIC_KINDS: dict[str, Kind] = {
    "params": "exact",
    "flops_counted": "exact",
    "flops_analytic": "exact",
    "peak_mem_bytes": "percent",
    "time_ms": "statistical",      # absolute median step time: gated only on the same machine
    "speedup": "statistical",      # within-run baseline ÷ reuse time: gated on any machine
    "efficiency": "statistical",   # speedup ÷ FLOP-ideal speedup: gated on any machine
}
# True: a larger value is worse (time, memory); False: a smaller value is worse (speedup).
HIGHER_IS_WORSE: dict[str, bool] = {"peak_mem_bytes": True, "time_ms": True, "speedup": False,
                                    "efficiency": False, "params": True, "flops_counted": True,
                                    "flops_analytic": True}
# Fields of a check that rules can match on.
# pairing: whether a timing check's estimate came from lockstep pairs ("lockstep") or not
# ("sequential"); same_torch: whether both runs recorded one torch version.
MATCH_KEYS: tuple[str, ...] = ("point_id", "variant", "model", "device", "mode", "backend",
                               "reference_backend", "same_backend", "seq_len", "batch_size",
                               "reuse_ratio", "context", "same_machine", "lockstep", "pairing", "same_torch")
_CHOICES: dict[str, tuple[str, ...]] = {"context": ("stored", "interleaved"), "pairing": ("lockstep", "sequential")}
TOP_KEYS = ("alpha", "correction", "confidence", "min_samples", "fail_on_noisy", "fail_on_missing",
            "confirm", "metrics", "rules")


class PolicyError(ProblemsError):
    """A policy file that cannot be used; str() lists every problem, one per line."""


@dataclass(frozen=True)
class MetricRule:
    """How one metric is judged at one check."""

    gate: bool = True          # False: reported as information, never fails the gate
    threshold: float = 0.0     # relative change that counts (0.1 = 10%); exact metrics use 0


@dataclass(frozen=True)
class Rule:
    match: dict[str, tuple[Any, ...]]          # key -> accepted values (strings: fnmatch patterns)
    metrics: dict[str, dict[str, Any]]         # metric -> the MetricRule fields this rule sets

    def matches(self, fields: Mapping[str, Any]) -> bool:
        return all(any(_value_matches(fields.get(key), accepted) for accepted in values)
                   for key, values in self.match.items())


def _value_matches(value: Any, accepted: Any) -> bool:
    if isinstance(accepted, str):
        return isinstance(value, str) and fnmatch.fnmatchcase(value, accepted)
    if isinstance(accepted, bool) or isinstance(value, bool):
        return value is accepted
    if isinstance(accepted, (int, float)) and isinstance(value, (int, float)):
        return float(value) == float(accepted)
    return value == accepted


# The built-in default is meant for a noisy CI machine comparing against a stored baseline: it
# must not cry wolf. See ci/policy.yaml for the reasoning behind each number.
DEFAULT_METRICS: dict[str, MetricRule] = {
    "params": MetricRule(),
    "flops_counted": MetricRule(),
    "flops_analytic": MetricRule(),
    "peak_mem_bytes": MetricRule(threshold=0.10),
    "time_ms": MetricRule(threshold=4.0),
    # Paired within-run speedups: 10% catches reuse losing its whole advantage (1.15x -> 1.00x is -13%).
    "speedup": MetricRule(threshold=0.10),
    "efficiency": MetricRule(threshold=0.10),
}
DEFAULT_RULES: tuple[Rule, ...] = (
    # Speedups from unpaired (sequential) rows move with the load level between the two rows' turns:
    # -13% to +30% measured between load 3 and load 6, reproduced by re-measuring at that load.
    Rule({"pairing": ("sequential",)}, {"speedup": {"threshold": 0.40}, "efficiency": {"threshold": 0.40}}),
    # Interleaved A/B: both sides measured alternately on one machine, so tight thresholds hold.
    Rule({"context": ("interleaved",)}, {"time_ms": {"threshold": 0.10}, "speedup": {"threshold": 0.10},
                                         "efficiency": {"threshold": 0.10}}),
    # ... in lockstep, one timed step each in turn, compared pair by pair: tighter still.
    Rule({"context": ("interleaved",), "lockstep": (True,)},
         {"time_ms": {"threshold": 0.03}, "speedup": {"threshold": 0.03}, "efficiency": {"threshold": 0.03}}),
    # Reuse on one backend against the baseline on the other: the two were timed in different
    # worker processes, so load changes between them do not cancel. Shown, not gated.
    Rule({"same_backend": (False,)}, {"speedup": {"gate": False}, "efficiency": {"gate": False}}),
)


@dataclass(frozen=True)
class Policy:
    alpha: float = 0.05
    correction: Correction = "holm"
    confidence: float = 0.95
    min_samples: int = 3
    fail_on_noisy: bool = False
    fail_on_missing: bool = True
    confirm: int = 1           # re-measurements a timing regression must survive (harness.gate.confirm)
    metrics: dict[str, MetricRule] = field(default_factory=lambda: dict(DEFAULT_METRICS))
    rules: tuple[Rule, ...] = DEFAULT_RULES
    source: str = "built-in default policy"

    def rule_for(self, metric: str, fields: Mapping[str, Any]) -> MetricRule:
        rule = self.metrics.get(metric, MetricRule())
        for candidate in self.rules:
            if metric in candidate.metrics and candidate.matches(fields):
                rule = replace(rule, **candidate.metrics[metric])
        return rule


# ---- loading ---------------------------------------------------------------------------------
def load_policy(path: str | Path | None) -> Policy:
    """The policy in `path`, or the built-in default for None. Raises PolicyError."""
    if path is None:
        return Policy()
    check = load_checked(path, "policy", PolicyError)
    data = {} if check.doc.data is None else check.doc.data  # an empty file means "the defaults"
    if not isinstance(data, dict):
        check.report((), "a mapping of policy keys (alpha, metrics, rules, ...)", describe(data))
        raise PolicyError(check.problems)
    policy = _read_policy(check, data, check.file)
    if check.problems:
        raise PolicyError(sorted(check.problems, key=lambda p: (p.line is None, p.line or 0)))
    return policy


def _read_policy(check: Checker, data: dict[str, Any], file: str) -> Policy:
    check.known_keys((), data, TOP_KEYS, "policy")
    defaults = Policy()
    values: dict[str, Any] = {}
    for key, hint in (("alpha", float), ("confidence", float), ("min_samples", int),
                      ("fail_on_noisy", bool), ("fail_on_missing", bool), ("confirm", int)):
        if key in data:
            ok, value = check.value((key,), data[key], hint)
            if ok:
                values[key] = value
    for key in ("alpha", "confidence"):
        if key in values and not 0.0 < values[key] < 1.0:
            check.report((key,), "a number between 0 and 1 (exclusive)", describe(data[key]))
    if "confirm" in values and not 0 <= values["confirm"] <= 5:
        check.report(("confirm",), "an integer from 0 (never re-measure) to 5", describe(data["confirm"]))
    if "min_samples" in values and values["min_samples"] < 2:
        check.report(("min_samples",), "an integer >= 2 (one sample has no spread)", describe(data["min_samples"]))
    if "correction" in data:
        if data["correction"] in CORRECTIONS:
            values["correction"] = data["correction"]
        else:
            check.report(("correction",), "one of " + ", ".join(CORRECTIONS), describe(data["correction"]))
    metrics = dict(defaults.metrics)
    section = check.mapping(("metrics",), data["metrics"], "metric names") if "metrics" in data else {}
    for metric in check.known_keys(("metrics",), section or {}, METRIC_KINDS, "metric"):
        fields = _metric_fields(check, ("metrics", metric), metric, section[metric])
        metrics[metric] = replace(metrics[metric], **fields)
    rules = defaults.rules if "rules" not in data else _read_rules(check, data["rules"])
    return replace(defaults, **values, metrics=metrics, rules=rules, source=file)


def _metric_fields(check: Checker, path: tuple[Any, ...], metric: str, raw: Any) -> dict[str, Any]:
    section = check.mapping(path, {} if raw is None else raw, "gate and threshold")
    if section is None:
        return {}
    kind = METRIC_KINDS[metric]
    allowed = ("gate",) if kind == "exact" else ("gate", "threshold")
    hints = {"threshold": f"no threshold: {metric} is deterministic and must match exactly"} if kind == "exact" else None
    fields: dict[str, Any] = {}
    for key in check.known_keys(path, section, allowed, "metric setting", hints):
        ok, value = check.value(path + (key,), section[key], bool if key == "gate" else float)
        if not ok:
            continue
        if key == "threshold" and value < 0:
            check.report(path + (key,), "a relative change >= 0 (0.1 means 10%)", describe(section[key]))
            continue
        if key == "threshold" and not HIGHER_IS_WORSE[metric] and value >= 1:
            # a regression of a ratio is a fall below 1 - threshold, which no positive ratio reaches
            check.report(path + (key,), f"a fraction below 1 ({metric} can fall by less than 100%, so this "
                         "threshold could never fail)", describe(section[key]))
            continue
        fields[key] = value
    return fields


def _read_rules(check: Checker, raw: Any) -> tuple[Rule, ...]:
    if not isinstance(raw, list):
        check.report(("rules",), "a list of rules (- match: {...}, METRIC: {...})", describe(raw))
        return ()
    rules = []
    for index, entry in enumerate(raw):
        path: tuple[Any, ...] = ("rules", index)
        if not isinstance(entry, dict):
            check.report(path, "a rule: a mapping with match and metric settings", describe(entry))
            continue
        known = check.known_keys(path, entry, ("match", *METRIC_KINDS), "rule")
        if "match" not in entry:
            check.report(path + ("match",), "a match mapping (required; {} matches everything)", "nothing")
        match = _read_match(check, path + ("match",), entry.get("match", {}))
        metrics = {m: _metric_fields(check, path + (m,), m, entry[m]) for m in known if m != "match"}
        if not metrics:
            check.report(path, "at least one metric setting (e.g. time_ms: {threshold: 0.2})", "none")
        rules.append(Rule(match, metrics))
    return tuple(rules)


def _read_match(check: Checker, path: tuple[Any, ...], raw: Any) -> dict[str, tuple[Any, ...]]:
    section = check.mapping(path, {} if raw is None else raw, "check fields to patterns")
    match: dict[str, tuple[Any, ...]] = {}
    for key in check.known_keys(path, section or {}, MATCH_KEYS, "match"):
        values = section[key] if isinstance(section[key], list) else [section[key]]
        scalars = [v for v in values if isinstance(v, (str, int, float, bool))]
        if len(scalars) != len(values) or not values:
            check.report(path + (key,), "a string pattern, number or boolean, or a list of them",
                         describe(section[key]))
            continue
        if key in _CHOICES and any(v not in _CHOICES[key] for v in values):
            check.report(path + (key,), " or ".join(_CHOICES[key]), describe(section[key]))
            continue
        match[key] = tuple(values)
    return match
