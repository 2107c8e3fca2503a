"""The result row: one flat JSON object per (point, variant) in results.jsonl.

`RESULT_FIELDS` names the contract other tools read (report, compare, gate, exports). Rows may
carry more keys than these; never fewer.
"""

from __future__ import annotations

from typing import Any

# The result contract. Every row written to results.jsonl has at least these keys (None where a
# metric was not measured). Units are in the names.
RESULT_FIELDS: tuple[str, ...] = (
    "point_id", "variant", "model", "status", "error",
    "device", "mode", "backend", "seq_len", "batch_size", "reuse_ratio", "reuse_heads", "reuse_source",
    # time_ms_ci_level: the coverage the median's [ci_low, ci_high] achieves (below 0.95 under 6 samples)
    "time_ms_median", "time_ms_ci_low", "time_ms_ci_high", "time_ms_ci_level", "time_ms_iqr", "time_ms_mean",
    "time_ms_std", "time_ms_min", "time_ms_n", "time_ms_samples", "tokens_per_s",
    "peak_mem_bytes", "resting_mem_bytes", "peak_rss_bytes",
    "flops_counted", "flops_analytic", "flops_by_component", "params",
    # how the timing loop stopped (ci_target | budget | max_reps) and the measure settings it ran with
    "stop_reason", "measure",
    # how the samples were taken: "lockstep" or "sequential" (None: not timed); the rounds (fresh
    # workers) that gave samples and how many each, in the order time_ms_samples holds them; and
    # an id shared by the rows measured in lockstep together, whose sample i of round r was taken
    # in one rotation of turns
    "pairing", "rounds", "round_sizes", "pair_id",
)

# What a line needs to count as a row at all: without them it cannot be matched, resumed or compared.
IDENTITY: tuple[str, ...] = ("point_id", "variant")


def not_a_row(obj: dict[str, Any]) -> str | None:
    """Why a JSON object in results.jsonl is not a result row (a foreign line), or None."""
    missing = [key for key in IDENTITY if not isinstance(obj.get(key), str)]
    return f"not a result row (no {', '.join(missing)})" if missing else None
