"""Compare a candidate run with a baseline run, point by point and metric by metric.

Rows are matched by (point_id, variant): point_ids hash what was measured, so they are stable
across runs and machines. Every comparison becomes a `Check` with the change, its CI, an
adjusted p-value where statistics apply, and a verdict under the policy.

Machine independence: within-run ratios (reuse speedup over each baseline, and efficiency against
the FLOP-ideal speedup) travel across machines, absolute times do not. So ratios are gated on any
machine; absolute times only when the two runs' machine fingerprints match, and as information
otherwise. A cluster run's rows carry their node, and its manifest each node's environment: there
a row's machine is its node's fingerprint, so a point measured on two different nodes in the two
runs is not gated on its absolute time either. Likewise exact counts are held equal only between
runs of one torch version: torch's FLOP counter and kernels change between versions, so a
difference there is information.

Every statistical check is estimated by timing.py's choice of paired.py's estimators, whose
method (lockstep pairs, round medians, one round of samples) is the check's note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from harness.compare.policy import HIGHER_IS_WORSE, METRIC_KINDS, Policy
from harness.compare.rows import POINT_COLUMNS, node, num, point_label, scalar
from harness.compare.within import comparisons
from harness.results.load import Run
from harness.results.machines import node_environments
from harness.compare.paired import Contrast, no_interval
from harness.compare.timing import speedup_change, time_change, timing
from harness.compare.verdict import Verdict, adjust, decide, decide_exact, decide_percent

Context = Literal["stored", "interleaved"]
EXACT_METRICS: tuple[str, ...] = tuple(m for m, kind in METRIC_KINDS.items() if kind == "exact")
# What policy rules match on, besides the context: the row's point and what its variant measured.
ROW_FIELDS: tuple[str, ...] = ("model", *POINT_COLUMNS, "reuse_ratio")


@dataclass(eq=False)  # identity: a check with NaN fields must still equal itself
class Check:
    """One metric at one point (or one reuse-vs-baseline pair), baseline run vs candidate run."""

    metric: str                   # a policy metric name, or "row" for a missing/failed row
    point_id: str
    variant: str                  # "reuse", or "reuse / baseline[sdpa]" for ratio checks
    label: str                    # the point in words: "forward eager n256 b2"
    fields: dict[str, Any]        # what policy rules match on
    base: float | int | None
    cand: float | int | None
    ratio: float = math.nan       # cand / base
    ci_low: float = math.nan
    ci_high: float = math.nan
    p: float = math.nan
    p_adjusted: float = math.nan
    threshold: float = 0.0
    gated: bool = True
    verdict: Verdict = Verdict.UNCHANGED
    note: str = ""
    # The check whose test this one is (efficiency = speedup x an unchanged FLOP ratio): one
    # hypothesis, counted once when p-values are adjusted.
    same_test_as: "Check | None" = None


@dataclass
class Comparison:
    base: Run
    cand: Run
    policy: Policy
    context: Context
    same_machine: bool
    checks: list[Check] = field(default_factory=list)
    new_rows: int = 0             # ok candidate rows the baseline does not have
    confirmations: list[Path] = field(default_factory=list)  # re-measured runs (harness.gate.confirm)
    confirm_note: str = ""        # which runs the re-measurement covered, or why there was none

    def failing(self) -> list[Check]:
        fail = {Verdict.REGRESSED, Verdict.CHANGED, Verdict.FAILED}
        if self.policy.fail_on_missing:
            fail.add(Verdict.MISSING)
        if self.policy.fail_on_noisy:  # not enough evidence either way fails too
            fail |= {Verdict.NOISY, Verdict.FEW}
        return [c for c in self.checks if c.gated and c.verdict in fail]

    @property
    def passed(self) -> bool:
        return not self.failing()


class NothingToCompare(ValueError):
    """The two runs share no measured row: not the same suite, or one of them measured nothing."""


def fingerprint(run: Run) -> str | None:
    env = run.manifest.get("environment") or {}
    return env.get("machine_fingerprint")


def row_fingerprint(run: Run, row: dict[str, Any]) -> str | None:
    """The fingerprint of the machine that measured `row`: its node's (a cluster run's manifest
    records each node's environment), else the run's."""
    env = node_environments(run.manifest).get(node(row) or "")
    return env.get("machine_fingerprint") if env is not None else fingerprint(run)


def infer_context(base: Run, cand: Run) -> Context:
    """Interleaved when both runs come from one `harness gate --against` measurement."""
    a, b = base.manifest.get("ab") or {}, cand.manifest.get("ab") or {}
    return "interleaved" if a.get("pair_id") and a.get("pair_id") == b.get("pair_id") else "stored"


def in_lockstep(base: Run, cand: Run) -> bool:
    """Both sides of one lockstep `harness gate --against` measurement: timings pair up step by step."""
    a, b = base.manifest.get("ab") or {}, cand.manifest.get("ab") or {}
    return bool(a.get("pair_id") and a.get("pair_id") == b.get("pair_id") and a.get("lockstep") and b.get("lockstep"))


def compare_runs(base: Run, cand: Run, policy: Policy, context: Context | None = None) -> Comparison:
    context = context or infer_context(base, cand)
    fp_base, fp_cand = fingerprint(base), fingerprint(cand)
    same_machine = context == "interleaved" or (fp_base is not None and fp_base == fp_cand)
    result = Comparison(base, cand, policy, context, same_machine)
    base_rows, cand_rows = _rows_by_key(base.results), _rows_by_key(cand.results)
    ok_base = {k: r for k, r in base_rows.items() if r.get("status") == "ok"}
    if not any(k in cand_rows for k in ok_base):
        raise NothingToCompare(f"no measured row of the baseline {base.path} appears in {cand.path}: "
                               "are both runs of the same suite (and model config)?")
    torch = [(run.manifest.get("environment") or {}).get("torch") for run in (base, cand)]
    # An unrecorded version (an old run) cannot show a difference: held to the same counts.
    same_torch = None in torch or torch[0] == torch[1]
    common = {"context": context, "same_machine": same_machine, "lockstep": in_lockstep(base, cand),
              "same_torch": same_torch}
    notes = {"torch": f"torch {torch[0]} vs {torch[1]}: counts of different torch versions shown, not gated"}
    for key, brow in ok_base.items():
        crow = cand_rows.get(key)
        machines = (row_fingerprint(base, brow), row_fingerprint(cand, crow) if crow is not None else None)
        same = context == "interleaved" or (machines[0] is not None and machines[0] == machines[1])
        notes["machine"] = f"different machines ({machines[0]} vs {machines[1]}): absolute time shown, not gated"
        result.checks += _row_checks(brow, crow, policy, {**common, "same_machine": same}, notes)
    result.new_rows = sum(1 for k, r in cand_rows.items() if r.get("status") == "ok" and k not in ok_base)
    result.checks += _ratio_checks(base, cand, policy, common)
    _judge_statistical(result.checks, policy)
    return result


# ---- per-row checks --------------------------------------------------------------------------
def _rows_by_key(results: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    if results.empty:
        return {}
    return {(r["point_id"], r["variant"]): r for r in results.to_dict("records")}


def _fields(row: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    return {"point_id": row.get("point_id"), "variant": row.get("variant"),
            **{k: scalar(row.get(k)) for k in ROW_FIELDS}, **common}


def _few(ratio: float, policy: Policy) -> Contrast:
    return no_interval(ratio, f"fewer than min_samples={policy.min_samples} samples")


def _row_checks(brow: dict[str, Any], crow: dict[str, Any] | None, policy: Policy, common: dict[str, Any],
                notes: dict[str, str]) -> list[Check]:
    fields = _fields(brow, common)

    def make(metric: str, base: Any, cand: Any, at: dict[str, Any] = fields, **kw: Any) -> Check:
        rule = policy.rule_for(metric, at)
        kw.setdefault("gated", rule.gate)
        return Check(metric, str(brow["point_id"]), str(brow["variant"]), point_label(brow), at,
                     base, cand, threshold=rule.threshold, **kw)

    if crow is None:
        return [make("row", None, None, verdict=Verdict.MISSING, gated=True,
                     note="measured in the baseline, absent from the candidate run")]
    if crow.get("status") != "ok":
        return [make("row", None, None, verdict=Verdict.FAILED, gated=True,
                     note=f"candidate {crow.get('status')}: {str(crow.get('error') or '')[:200]}")]
    checks = []
    for metric in EXACT_METRICS:
        base, cand = scalar(brow.get(metric)), scalar(crow.get(metric))
        if base is None:
            continue  # not measured in the baseline: nothing to hold the candidate to
        if cand is None:
            checks.append(make(metric, base, None, verdict=Verdict.MISSING, note="not measured in the candidate"))
            continue
        check = make(metric, base, cand, ratio=_ratio(base, cand), verdict=decide_exact(base, cand))
        if not common["same_torch"]:
            check.gated, check.note = False, notes["torch"]
        checks.append(check)
    base_mem, cand_mem = num(brow.get("peak_mem_bytes")), num(crow.get("peak_mem_bytes"))
    if math.isfinite(base_mem):
        if not math.isfinite(cand_mem):
            checks.append(make("peak_mem_bytes", int(base_mem), None, verdict=Verdict.MISSING,
                               note="not measured in the candidate"))
        else:
            threshold = policy.rule_for("peak_mem_bytes", fields).threshold
            checks.append(make("peak_mem_bytes", int(base_mem), int(cand_mem), ratio=_ratio(base_mem, cand_mem),
                               verdict=decide_percent(base_mem, cand_mem, threshold)))
    bt, ct = timing(brow), timing(crow)
    bs, cs = bt.samples(), ct.samples()
    if bs.size:
        if not cs.size:
            checks.append(make("time_ms", float(np.median(bs)), None, verdict=Verdict.MISSING,
                               note="no timing samples in the candidate"))
            return checks
        if min(bs.size, cs.size) < policy.min_samples:
            contrast = _few(float(np.median(cs)) / float(np.median(bs)), policy)
        else:
            contrast = time_change(bt, ct, common["lockstep"], common["context"] == "interleaved", policy.confidence)
        at = {**fields, "pairing": "lockstep" if contrast.paired else "sequential"}
        check = make("time_ms", float(np.median(bs)), float(np.median(cs)), at, note=contrast.method)
        check.ratio, check.ci_low, check.ci_high, check.p = contrast.as_tuple()
        if not common["same_machine"]:
            check.gated, check.note = False, f"{notes['machine']}; {check.note}"
        checks.append(check)
    return checks


def _ratio(base: Any, cand: Any) -> float:
    b, c = num(base), num(cand)
    return c / b if math.isfinite(b) and math.isfinite(c) and b != 0 else math.nan


# ---- within-run ratio checks -------------------------------------------------------------------
def _ratio_checks(base: Run, cand: Run, policy: Policy, common: dict[str, Any]) -> list[Check]:
    """Speedup and efficiency of every reuse row against every baseline at its point."""
    base_comps, cand_comps = comparisons(base.results), comparisons(cand.results)
    if base_comps.empty or cand_comps.empty:
        return []
    rows_b, rows_c = _rows_by_id(base.results), _rows_by_id(cand.results)
    # A speedup travels across machines, so a comparison meets its counterpart in the other run
    # whichever node measured it there (the same node when that run has it on several).
    cand_index: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in cand_comps.to_dict("records"):
        cand_index.setdefault((r["point_id"], r["reference_point_id"]), []).append(r)
    checks: list[Check] = []
    for comp in base_comps.to_dict("records"):
        candidates = cand_index.get((comp["point_id"], comp["reference_point_id"]), [])
        if not candidates:
            continue  # the row checks already report the missing or failed row
        other = next((c for c in candidates if node(c) == node(comp)), candidates[0])
        # Each side's two rows come from the node its comparison was made on.
        timings = [timing(rows[(node(side), pid)]) for rows, side in ((rows_b, comp), (rows_c, other))
                   for pid in (side["reference_point_id"], side["point_id"])]
        if min(t.samples().size for t in timings) < policy.min_samples:
            contrast = _few(_ratio(comp["speedup"], other["speedup"]), policy)
        else:
            contrast = speedup_change(*timings, common["lockstep"], common["context"] == "interleaved",
                                      policy.confidence)
        base_row = rows_b[(node(comp), comp["point_id"])]
        fields = {**_fields(base_row, common), "reference_backend": comp["reference_backend"],
                  "same_backend": bool(comp["same_backend"]), "reference_point_id": comp["reference_point_id"],
                  "pairing": "lockstep" if contrast.paired else "sequential"}
        variant = f"{comp['variant']} / {comp['reference_variant']}[{comp['reference_backend']}]"
        label = point_label(base_row)
        speedup = _ratio_check("speedup", contrast, comp, other, variant, label, fields, policy)
        checks.append(speedup)
        scale = _ideal_scale(comp, other)
        if math.isfinite(scale):  # no FLOPs in one of the runs: there is no efficiency to compare
            efficiency = _ratio_check("efficiency", contrast.scaled(scale), comp, other, variant, label, fields,
                                      policy)
            if scale == 1.0:
                efficiency.same_test_as = speedup
            checks.append(efficiency)
    return checks


def _ratio_check(metric: str, contrast: Contrast, comp: dict[str, Any], other: dict[str, Any], variant: str,
                 label: str, fields: dict[str, Any], policy: Policy) -> Check:
    rule = policy.rule_for(metric, fields)
    return Check(metric, str(comp["point_id"]), variant, label, fields, scalar(comp[metric]), scalar(other[metric]),
                 ratio=contrast.estimate, ci_low=contrast.low, ci_high=contrast.high, p=contrast.p,
                 threshold=rule.threshold, gated=rule.gate, note=contrast.method)


def _rows_by_id(results: pd.DataFrame) -> dict[tuple[str | None, str], dict[str, Any]]:
    """Rows by (node, point_id): the rows a comparison of within.comparisons was made from."""
    return {(node(r), r["point_id"]): r for r in results.to_dict("records")}


def _ideal_scale(base_comp: dict[str, Any], cand_comp: dict[str, Any]) -> float:
    """efficiency = speedup / FLOP-ideal speedup, and the FLOP-ideal is deterministic, so the
    efficiency change is the speedup change times ideal_base / ideal_cand. NaN without FLOPs."""
    ideal_change = _ratio(base_comp["flop_ideal_speedup"], cand_comp["flop_ideal_speedup"])
    return 1.0 / ideal_change if math.isfinite(ideal_change) and ideal_change > 0 else math.nan


# ---- verdicts of the statistical checks ----------------------------------------------------
def _judge_statistical(checks: list[Check], policy: Policy) -> None:
    """Adjust p-values over the gated family (and, separately, the informational one), then decide.

    A check without an interval was never tested: "too few samples", outside the family.
    """
    statistical = [c for c in checks if METRIC_KINDS.get(c.metric) == "statistical" and c.verdict != Verdict.MISSING]
    for check in statistical:
        if not (math.isfinite(check.ci_low) and math.isfinite(check.ci_high)):
            check.p, check.verdict = math.nan, Verdict.FEW
    statistical = [c for c in statistical if c.verdict != Verdict.FEW]
    for family in ([c for c in statistical if c.gated], [c for c in statistical if not c.gated]):
        if not family:
            continue
        tested = [c for c in family if c.same_test_as is None or c.same_test_as not in family]
        adjusted = dict(zip(map(id, tested), adjust([c.p for c in tested], policy.correction)))
        # a check that repeats another's test takes that test's adjusted p
        p_adj = [adjusted[id(c)] if id(c) in adjusted else adjusted[id(c.same_test_as)] for c in family]
        verdicts = decide([c.ratio for c in family], [c.ci_low for c in family], [c.ci_high for c in family],
                          p_adj, [c.threshold for c in family],
                          [HIGHER_IS_WORSE[c.metric] for c in family], policy.alpha)
        for check, p, verdict in zip(family, p_adj, verdicts):
            check.p_adjusted, check.verdict = float(p), verdict
