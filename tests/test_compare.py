"""The gate's statistics and policy on synthetic runs with known shifts and noise (fast, no workers)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness import stats
from harness.results.load import Run, results_frame
from harness.compare.runs import NothingToCompare, compare_runs
from harness.gate.confirm import confirm
from harness.gate.markdown import render_markdown
from harness.compare.policy import MetricRule, Policy, load_policy
from harness.gate.table import terminal
from synthetic_timings import Design, timings
from harness.compare.timing import Timing, speedup_change, time_change
from harness.compare.verdict import Verdict, adjust, decide

ROOT = Path(__file__).resolve().parent.parent


# ---- synthetic runs --------------------------------------------------------------------------
def _row(point: str, variant: str, backend: str, samples: np.ndarray, **extra: Any) -> dict[str, Any]:
    model = "baseline" if variant == "baseline" else "reuse"
    return {
        "point_id": f"cpu-forward-{backend}-n256-b2-{point}-{variant}", "variant": variant, "model": model,
        "status": "ok", "device": "cpu", "mode": "forward", "backend": backend, "seq_len": 256, "batch_size": 2,
        "reuse_ratio": None if model == "baseline" else 0.5,
        "axes": {"seq_len": 256, "batch_size": 2, "device": "cpu", "mode": "forward", "backend": backend},
        "time_ms_samples": [float(x) for x in samples], "time_ms_median": float(np.median(samples)),
        "peak_mem_bytes": 1_000_000, "params": 1000,
        "flops_counted": 2_000_000 if model == "baseline" else 1_600_000,
        "flops_analytic": 2_000_000 if model == "baseline" else 1_600_000,
        **extra,
    }


def _run(rows: list[dict[str, Any]], fingerprint: str = "machine-a", ab: dict[str, Any] | None = None) -> Run:
    manifest = {"format_version": 1, "run_id": "synthetic", "environment": {"machine_fingerprint": fingerprint}}
    if ab:
        manifest["ab"] = ab
    return Run(Path("/synthetic"), manifest, results_frame(rows))


def _pair(rng: np.random.Generator, shift: float = 0.0, noise: float = 0.02, n: int = 30,
          reuse_only: bool = True, base_ms: float = 50.0) -> tuple[Run, Run]:
    """Baseline and candidate runs of one eager point; the candidate's reuse row is `shift` slower."""
    def samples(scale: float) -> np.ndarray:
        return base_ms * scale * np.exp(rng.normal(0.0, noise, n))

    base = [_row("p", "baseline", "eager", samples(1.0)), _row("p", "reuse", "eager", samples(0.8))]
    cand = [_row("p", "baseline", "eager", samples(1.0 if reuse_only else 1.0 + shift)),
            _row("p", "reuse", "eager", samples(0.8 * (1.0 + shift)))]
    return _run(base), _run(cand)


# 10% for every statistical check: no built-in rule (e.g. the looser one for unpaired speedups) applies.
TIGHT = Policy(metrics={**Policy().metrics, "time_ms": MetricRule(threshold=0.10),
                        "speedup": MetricRule(threshold=0.10), "efficiency": MetricRule(threshold=0.10)}, rules=())


def _unpaired(samples: np.ndarray | list[np.ndarray]) -> Timing:
    """One row's timings: a flat array is one round, a list of arrays one per round."""
    rounds = samples if isinstance(samples, list) else [samples]
    return Timing(tuple(np.asarray(r, dtype=np.float64) for r in rounds), lockstep=False, pair_id=None)


def _verdicts(comparison, metric: str) -> dict[str, Verdict]:
    return {c.variant: c.verdict for c in comparison.checks if c.metric == metric}


# ---- known shifts and noise ------------------------------------------------------------------
def test_twenty_percent_slowdown_with_low_noise_is_a_regression() -> None:
    base, cand = _pair(np.random.default_rng(0), shift=0.20)
    result = compare_runs(base, cand, TIGHT)
    assert _verdicts(result, "time_ms") == {"baseline": Verdict.UNCHANGED, "reuse": Verdict.REGRESSED}
    # reuse 20% slower, baseline unchanged: its speedup falls to 1/1.2 of what it was
    speedup = next(c for c in result.checks if c.metric == "speedup")
    assert speedup.verdict == Verdict.REGRESSED and speedup.ratio == pytest.approx(1 / 1.2, rel=0.03)
    assert speedup.ci_low < 1 / 1.2 < speedup.ci_high
    assert not result.passed and {c.metric for c in result.failing()} == {"time_ms", "speedup", "efficiency"}


def test_no_change_is_unchanged_and_passes() -> None:
    base, cand = _pair(np.random.default_rng(1), shift=0.0)
    result = compare_runs(base, cand, TIGHT)
    assert {c.verdict for c in result.checks} == {Verdict.UNCHANGED}
    assert result.passed


def test_improvement_is_reported_and_passes() -> None:
    base, cand = _pair(np.random.default_rng(2), shift=-0.25)
    result = compare_runs(base, cand, TIGHT)
    assert _verdicts(result, "time_ms")["reuse"] == Verdict.IMPROVED
    assert _verdicts(result, "speedup") == {"reuse / baseline[eager]": Verdict.IMPROVED}
    assert result.passed


def test_huge_noise_is_too_noisy_to_tell_not_a_regression() -> None:
    base, cand = _pair(np.random.default_rng(3), shift=0.20, noise=0.8, n=8)
    result = compare_runs(base, cand, TIGHT)
    assert _verdicts(result, "time_ms") == {"baseline": Verdict.NOISY, "reuse": Verdict.NOISY}
    assert _verdicts(result, "speedup") == {"reuse / baseline[eager]": Verdict.NOISY}
    assert result.passed  # too noisy does not fail unless fail_on_noisy
    strict = Policy(metrics=TIGHT.metrics, fail_on_noisy=True)
    assert not compare_runs(base, cand, strict).passed


def test_a_significant_change_below_the_threshold_does_not_fail() -> None:
    base, cand = _pair(np.random.default_rng(4), shift=0.05, noise=0.005, n=40)
    check = next(c for c in compare_runs(base, cand, TIGHT).checks if c.metric == "time_ms" and c.variant == "reuse")
    assert check.p_adjusted < 1e-6 and check.verdict == Verdict.UNCHANGED


def test_decide_rule_table() -> None:
    # ratio, CI, adjusted p, threshold, higher_is_worse -> verdict
    cases = [
        (1.30, 1.20, 1.40, 0.001, 0.1, True, Verdict.REGRESSED),
        (1.30, 1.20, 1.40, 0.2, 0.1, True, Verdict.NOISY),        # large but not significant, wide CI
        (1.05, 1.02, 1.08, 0.001, 0.1, True, Verdict.UNCHANGED),  # significant but small, narrow CI
        (0.70, 0.60, 0.80, 0.001, 0.1, False, Verdict.REGRESSED),  # a speedup that fell
        (1.30, 1.20, 1.40, 0.001, 0.1, False, Verdict.IMPROVED),
        (1.00, math.nan, math.nan, math.nan, 0.1, True, Verdict.NOISY),
    ]
    got = decide(*zip(*[c[:6] for c in cases]), alpha=0.05)
    assert list(got) == [c[6] for c in cases]


# ---- many points at once ---------------------------------------------------------------------
def _null_pvalues(rng: np.random.Generator, trials: int, points: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.exp(rng.normal(0.0, 0.1, (trials, points, n)))
    b = np.exp(rng.normal(0.0, 0.1, (trials, points, n)))
    p = np.array([[stats.mann_whitney_u(a[t, j], b[t, j])[1] for j in range(points)] for t in range(trials)])
    ratio = np.median(b, axis=2) / np.median(a, axis=2)
    return p, ratio


def test_holm_keeps_false_alarms_at_the_nominal_rate_over_many_null_trials() -> None:
    trials, points, alpha = 1000, 20, 0.05
    p, ratio = _null_pvalues(np.random.default_rng(5), trials, points, n=10)
    nan = np.full_like(ratio, np.nan)

    def alarm_rate(correction: str, threshold: float) -> float:
        adjusted = np.vstack([adjust(row, correction) for row in p])
        verdicts = decide(ratio, nan, nan, adjusted, threshold, True, alpha)
        return float(np.mean(np.any(verdicts == Verdict.REGRESSED, axis=1)))

    # Significance alone (threshold 0): Holm holds the family-wise rate at alpha (a regression
    # is one tail of a two-sided test, so about alpha / 2)...
    holm_rate = alarm_rate("holm", 0.0)
    assert holm_rate <= alpha / 2 + 3 * math.sqrt(alpha * (1 - alpha) / trials)
    # ...where testing 20 points uncorrected alarms in about 1 - (1 - alpha/2)^20 = 40% of trials.
    assert alarm_rate("none", 0.0) > 0.3
    # The threshold only removes alarms: a change must also be larger than it.
    assert alarm_rate("holm", 0.10) <= min(holm_rate, 0.01)


def test_ratio_of_ratios_test_is_calibrated_under_the_null() -> None:
    rng = np.random.default_rng(6)
    p = np.array([speedup_change(*(_unpaired(np.exp(rng.normal(0.0, 0.1, 12)) * m) for m in (1.0, 1.3, 1.0, 1.3)),
                                 ab_lockstep=False, interleaved=False).p for t in range(300)])
    assert abs(float(np.mean(p < 0.05)) - 0.05) < 3 * math.sqrt(0.05 * 0.95 / 300)


def test_rounds_are_the_unit_of_replication_in_interleaved_runs() -> None:
    """Each round (worker) has its own load level: pooling its samples as if independent alarms."""
    rng = np.random.default_rng(14)
    trials, rounds, n, threshold = 150, 4, 15, 0.10
    pooled_alarms = round_alarms = 0
    for _ in range(trials):
        base, cand = ([np.exp(rng.normal(0.0, 0.03, n) + rng.normal(0.0, 0.15)) for _ in range(rounds)]
                      for _ in range(2))
        for samples, is_pooled in (((np.concatenate(base), np.concatenate(cand)), True), ((base, cand), False)):
            ratio, low, high, p = time_change(*map(_unpaired, samples), ab_lockstep=False, interleaved=True).as_tuple()
            alarm = decide(ratio, low, high, p, threshold, True, 0.01) == Verdict.REGRESSED
            pooled_alarms += int(alarm and is_pooled)
            round_alarms += int(alarm and not is_pooled)
    assert pooled_alarms / trials > 0.15  # samples treated as independent: frequent false alarms
    assert round_alarms / trials <= 0.02   # rounds resampled: about alpha / 2 or less


def test_student_t_tail_matches_tables() -> None:
    # two-sided critical values from any t table: (t, df) -> P(|T| >= t)
    for t, df, p in ((12.706, 1, 0.05), (4.303, 2, 0.05), (5.841, 3, 0.01), (2.228, 10, 0.05), (1.96, 10**6, 0.05)):
        assert stats.t_two_sided(t, df) == pytest.approx(p, rel=2e-3)


def test_paired_rounds_detect_a_slowdown_despite_shared_load_swings() -> None:
    rng = np.random.default_rng(15)
    loads = rng.normal(0.0, 0.3, 5)  # big swings, but each round's load hits both sides alike
    base = [np.exp(rng.normal(0.0, 0.03, 15) + load) for load in loads]
    cand = [1.2 * np.exp(rng.normal(0.0, 0.03, 15) + load) for load in loads]
    ratio, low, high, p = time_change(_unpaired(base), _unpaired(cand), ab_lockstep=False, interleaved=True).as_tuple()
    assert decide(ratio, low, high, p, 0.10, True, 0.01) == Verdict.REGRESSED


def test_a_regression_that_does_not_reproduce_is_downgraded_to_too_noisy() -> None:
    base, slow = _pair(np.random.default_rng(16), shift=0.3)
    _, same = _pair(np.random.default_rng(17), shift=0.0)
    asked: list[set[str]] = []

    def remeasure_with(result: Run):
        def remeasure(ids: set[str]) -> tuple[Run, Run]:
            asked.append(ids)
            return base, result
        return remeasure

    transient = confirm(compare_runs(base, slow, TIGHT), remeasure_with(same), attempts=1)
    assert transient.passed and asked == [{r for r in base.results["point_id"]}]  # the reuse row and its reference
    assert all(c.verdict != Verdict.REGRESSED for c in transient.checks)
    assert any("not reproduced on re-measurement 1" in c.note for c in transient.checks)
    real = confirm(compare_runs(base, slow, TIGHT), remeasure_with(slow), attempts=2)
    assert not real.passed and len(asked) == 3
    assert all("reproduced on re-measurement 2" in c.note for c in real.failing())


def test_efficiency_repeats_the_speedup_test_and_is_counted_once() -> None:
    base, cand = _pair(np.random.default_rng(18), shift=0.2)
    result = compare_runs(base, cand, TIGHT)
    by_metric = {c.metric: c for c in result.checks if c.variant.startswith("reuse /")}
    speedup, efficiency = by_metric["speedup"], by_metric["efficiency"]
    assert efficiency.same_test_as is speedup and efficiency.p_adjusted == speedup.p_adjusted
    times = [c for c in result.checks if c.metric == "time_ms"]
    expected = adjust([*(c.p for c in times), speedup.p], "holm")  # three hypotheses, not four
    assert [c.p_adjusted for c in (*times, speedup)] == pytest.approx(list(expected))
    # FLOPs that changed make efficiency a hypothesis of its own, tested against its own null
    rows = cand.results.to_dict("records")
    rows[1]["flops_analytic"] = rows[1]["flops_counted"] = int(rows[1]["flops_analytic"] * 0.8)
    changed = {c.metric: c for c in compare_runs(base, _run(rows), TIGHT).checks if c.variant.startswith("reuse /")}
    assert changed["efficiency"].same_test_as is None
    assert changed["efficiency"].ratio == pytest.approx(changed["speedup"].ratio * 0.8)


def _lockstep_run(speedup: float, rng: np.random.Generator, rounds: int = 8, per_round: int = 4) -> Run:
    """One run whose baseline and reuse rows were measured in lockstep (rows as the worker writes them)."""
    slow, fast = timings(rng, "bursty", speedup, 1, Design(rounds=rounds, per_round=per_round))
    timed = {"pairing": "lockstep", "pair_id": "point-p", "rounds": rounds, "round_sizes": [per_round] * rounds}
    return _run([_row("p", "baseline", "eager", slow.ravel(), **timed),
                 _row("p", "reuse", "eager", fast.ravel(), **timed)])


def test_the_stored_gate_catches_reuse_losing_its_whole_advantage() -> None:
    """A speedup of 1.15x becoming 1.00x (-13%), both runs paired, under ci/policy.yaml: regressed."""
    policy = load_policy(ROOT / "ci" / "policy.yaml")
    rng = np.random.default_rng(60)
    result = compare_runs(_lockstep_run(1.15, rng), _lockstep_run(1.00, rng), policy)
    speedup = next(c for c in result.checks if c.metric == "speedup")
    assert speedup.fields["pairing"] == "lockstep" and speedup.threshold == 0.10 and speedup.gated
    assert speedup.verdict == Verdict.REGRESSED and speedup.ratio == pytest.approx(1 / 1.15, rel=0.04)
    assert speedup.note == "two runs: lockstep pairs, 8 rounds"
    unchanged = compare_runs(_lockstep_run(1.15, rng), _lockstep_run(1.15, rng), policy)
    assert unchanged.passed


def test_a_check_without_an_honest_interval_is_too_few_samples_and_untested() -> None:
    rng = np.random.default_rng(61)
    # One round of pairs: no spread between rounds to build an interval from.
    base, cand = _lockstep_run(1.15, rng, rounds=1, per_round=30), _lockstep_run(1.0, rng, rounds=1, per_round=30)
    result = compare_runs(base, cand, TIGHT)
    speedup = next(c for c in result.checks if c.metric == "speedup")
    assert speedup.verdict == Verdict.FEW and math.isnan(speedup.p_adjusted) and "needs rounds" in speedup.note
    assert result.passed and not compare_runs(base, cand, Policy(fail_on_noisy=True, rules=())).passed
    # Four samples a side: below the fewest the bootstrap of a ratio of medians covers with.
    base, cand = _pair(rng, shift=0.5, n=4)
    times = [c for c in compare_runs(base, cand, Policy(min_samples=2, rules=())).checks if c.metric == "time_ms"]
    assert [c.verdict for c in times] == [Verdict.FEW, Verdict.FEW]
    assert all(c.note == "too few samples (4 < 5)" for c in times)


# ---- machines, deterministic metrics, missing rows -------------------------------------------
def test_fingerprint_mismatch_makes_absolute_time_informational_but_ratios_still_gate() -> None:
    rng = np.random.default_rng(7)
    base, cand = _pair(rng, shift=0.0)
    # Same code on a machine twice as slow: every time doubles, speedups stay.
    slow = _run([{**r, "time_ms_samples": [2 * x for x in r["time_ms_samples"]]} for r in cand.results.to_dict("records")],
                fingerprint="machine-b")
    result = compare_runs(base, slow, TIGHT)
    times = [c for c in result.checks if c.metric == "time_ms"]
    assert all(c.verdict == Verdict.REGRESSED and not c.gated and "different machines" in c.note for c in times)
    assert all(c.gated and c.verdict == Verdict.UNCHANGED for c in result.checks if c.metric == "speedup")
    assert result.passed and not result.same_machine
    same = compare_runs(base, _run(slow.results.to_dict("records"), fingerprint="machine-a"), TIGHT)
    assert not same.passed  # on the same machine the doubled times are gated


def test_interleaved_runs_are_recognised_and_get_the_interleaved_rules() -> None:
    base, cand = _pair(np.random.default_rng(8), shift=0.2)
    ab = {"pair_id": "x1"}
    base = _run(base.results.to_dict("records"), "m1", {**ab, "side": "baseline"})
    cand = _run(cand.results.to_dict("records"), "m2", {**ab, "side": "candidate"})
    result = compare_runs(base, cand, Policy())  # built-in: 400% stored, 10% interleaved
    assert result.context == "interleaved" and result.same_machine
    assert any(c.metric == "time_ms" and c.verdict == Verdict.REGRESSED and c.threshold == 0.10 for c in result.checks)


def test_deterministic_metric_mismatch_is_a_regression() -> None:
    base, cand = _pair(np.random.default_rng(9))
    rows = cand.results.to_dict("records")
    rows[1]["flops_counted"] += 1
    result = compare_runs(base, _run(rows), Policy())
    failing = result.failing()
    assert [(c.metric, c.variant, c.verdict) for c in failing] == [("flops_counted", "reuse", Verdict.CHANGED)]


def test_counts_of_two_torch_versions_are_information_not_a_failure() -> None:
    base, cand = _pair(np.random.default_rng(19))
    rows = cand.results.to_dict("records")
    rows[1]["flops_counted"] += 1
    for torch, passed in (("2.5.1", True), ("2.4.0", False)):
        other = Run(Path("/synthetic"), {**cand.manifest, "environment": {"machine_fingerprint": "machine-a",
                                                                          "torch": torch}}, results_frame(rows))
        base_run = Run(Path("/synthetic"), {**base.manifest, "environment": {"machine_fingerprint": "machine-a",
                                                                             "torch": "2.4.0"}}, base.results)
        result = compare_runs(base_run, other, Policy())
        [changed] = [c for c in result.checks if c.verdict == Verdict.CHANGED]
        assert result.passed is passed and changed.gated is not passed
        assert ("torch 2.4.0 vs 2.5.1" in changed.note) is passed


def test_memory_within_its_percentage_passes_beyond_it_fails() -> None:
    base, cand = _pair(np.random.default_rng(10))
    for factor, passed in ((1.05, True), (1.25, False)):
        rows = cand.results.to_dict("records")
        rows[0]["peak_mem_bytes"] = int(rows[0]["peak_mem_bytes"] * factor)
        assert compare_runs(base, _run(rows), Policy()).passed is passed


def test_missing_and_failed_rows_fail_and_disjoint_runs_are_invalid() -> None:
    base, cand = _pair(np.random.default_rng(11))
    rows = cand.results.to_dict("records")
    failed = compare_runs(base, _run([rows[0], {**rows[1], "status": "failed", "error": "boom"}]), Policy())
    assert [(c.verdict, "boom" in c.note) for c in failed.failing()] == [(Verdict.FAILED, True)]
    missing = compare_runs(base, _run([rows[0]]), Policy())
    assert [c.verdict for c in missing.failing()] == [Verdict.MISSING]
    lenient = Policy(fail_on_missing=False)
    assert compare_runs(base, _run([rows[0]]), lenient).passed
    with pytest.raises(NothingToCompare):
        compare_runs(base, _run([{**r, "point_id": r["point_id"] + "x"} for r in rows]), Policy())


# ---- rendering --------------------------------------------------------------------------------
def test_terminal_and_markdown_lead_with_the_verdict() -> None:
    base, cand = _pair(np.random.default_rng(12), shift=0.2)
    result = compare_runs(base, cand, TIGHT)
    text = terminal(result, with_verdict=True)
    assert text.splitlines()[-1].startswith("FAIL: ") and "regressed" in text
    md = render_markdown(result)
    assert md.startswith("## ❌ Performance gate") and "### Needs attention" in md and "<details>" in md
    passing = render_markdown(compare_runs(*_pair(np.random.default_rng(13)), TIGHT))
    assert passing.startswith("## ✅ Performance gate") and "Needs attention" not in passing
