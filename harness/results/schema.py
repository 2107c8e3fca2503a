"""The result row: one flat JSON object per (point, variant) in results.jsonl.

`RESULT_FIELDS` names the contract other tools read (report, compare, gate, exports). Rows may
carry more keys than these; never fewer.
"""

from __future__ import annotations

# The result contract. Every row written to results.jsonl has at least these keys (None where a
# metric was not measured). Units are in the names.
RESULT_FIELDS: tuple[str, ...] = (
    "point_id", "variant", "model", "status", "error",
    "device", "mode", "backend", "seq_len", "batch_size", "reuse_ratio", "reuse_heads", "reuse_source",
    "time_ms_median", "time_ms_ci_low", "time_ms_ci_high", "time_ms_iqr", "time_ms_mean",
    "time_ms_std", "time_ms_min", "time_ms_n", "time_ms_samples", "tokens_per_s",
    "peak_mem_bytes", "resting_mem_bytes", "peak_rss_bytes",
    "flops_counted", "flops_analytic", "flops_by_component", "params",
    # how the timing loop stopped (ci_target | budget | max_reps) and the measure settings it ran with
    "stop_reason", "measure",
)
