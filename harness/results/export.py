"""Export a run for other tools: pytest-benchmark JSON, CSV, parquet.

    harness export RUN --format pytest-benchmark|csv|parquet [-o FILE]

- pytest-benchmark: the layout `pytest --benchmark-json` writes (machine_info, commit_info,
  benchmarks[{group, name, fullname, params, stats{...,data}, options}], datetime, version), so
  `pytest-benchmark compare a.json b.json` and tools built on that format read our runs. Stats are
  computed by pytest-benchmark's own Stats class from the raw samples, in seconds, so every field
  means exactly what it means there. One benchmark per timed (point, variant).
- csv / parquet: one flat row per (point, variant) with run-level columns first. The small dicts
  users filter on (axes, model_config) become `axes.seq_len`-style columns; other dicts become JSON
  text. Lists of numbers (time_ms_samples) stay lists in parquet and are JSON text in CSV.
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from harness.results.load import Run, load_run

Format = Literal["pytest-benchmark", "csv", "parquet"]
FORMATS: tuple[str, ...] = ("pytest-benchmark", "csv", "parquet")
EXTENSIONS: dict[str, str] = {"pytest-benchmark": "json", "csv": "csv", "parquet": "parquet"}
FLATTENED_DICTS: tuple[str, ...] = ("axes", "model_config")
RUN_COLUMNS: tuple[str, ...] = ("run_id", "suite", "git_commit", "machine_fingerprint")


# ---- pytest-benchmark ------------------------------------------------------------------------
def _machine_info(env: dict[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's machine_info keys, filled from the manifest (where the run happened,
    not where the export happens); the full environment rides along under `reuse_bench`."""
    os_name = str(env.get("os") or "")
    return {
        "node": env.get("hostname"),
        "processor": env.get("cpu_model"),
        "machine": next((p for p in ("x86_64", "aarch64", "arm64") if p in os_name), platform.machine()),
        "python_compiler": None,
        "python_implementation": "CPython",
        "python_implementation_version": env.get("python"),
        "python_version": env.get("python"),
        "python_build": None,
        "release": None,
        "system": os_name.split("-", 1)[0] or None,
        "cpu": {"brand_raw": env.get("cpu_model"), "count": env.get("cpu_cores")},
        "reuse_bench": env,
    }


def _commit_info(env: dict[str, Any]) -> dict[str, Any]:
    return {"id": env.get("git_commit") or "unknown", "time": None, "author_time": None,
            "dirty": bool(env.get("git_dirty")), "project": "reuse-bench", "branch": None}


def _group(row: dict[str, Any]) -> str:
    return f"{row.get('device')} {row.get('mode')} n={_plain(row.get('seq_len'))} b={_plain(row.get('batch_size'))}"


def _plain(value: Any) -> Any:
    """JSON-safe scalar: numpy types unwrapped, NaN as null."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _benchmark(row: dict[str, Any], run: Run, options: dict[str, Any]) -> dict[str, Any] | None:
    from pytest_benchmark.stats import Stats

    raw = row.get("time_ms_samples")
    samples = [float(x) / 1e3 for x in raw if x is not None] if isinstance(raw, (list, tuple)) else []
    if row.get("status") != "ok" or not samples:
        return None
    stats = Stats()
    for value in samples:
        stats.update(value)
    axes = row.get("axes")
    params = {k: _plain(v) for k, v in axes.items()} if isinstance(axes, dict) else {}
    name = f"{row['variant']}[{row.get('backend')}]"
    extra = {k: _plain(row.get(k)) for k in ("point_id", "variant", "model", "backend", "reuse_ratio", "reuse_heads",
                                             "peak_mem_bytes", "flops_counted", "flops_analytic", "params")}
    return {
        "group": _group(row),
        "name": name,
        "fullname": f"{run.manifest.get('suite', {}).get('name', 'suite')}::{row['point_id']}",
        "params": params,
        "param": "-".join(str(v) for v in params.values()),
        "extra_info": extra,
        "options": options,
        "stats": {**stats.as_dict(), "data": samples, "iterations": 1},
    }


def to_pytest_benchmark(run: Run) -> dict[str, Any]:
    import pytest_benchmark

    env = run.manifest.get("environment") or {}
    measure = (run.manifest.get("suite") or {}).get("measure") or {}
    options = {"disable_gc": False, "timer": "perf_counter", "min_rounds": measure.get("min_reps"),
               "max_time": measure.get("max_seconds"), "min_time": None, "warmup": bool(measure.get("warmup"))}
    rows = run.results.to_dict("records") if len(run.results) else []
    benchmarks = [b for b in (_benchmark(r, run, options) for r in rows) if b is not None]
    return {"machine_info": _machine_info(env), "commit_info": _commit_info(env), "benchmarks": benchmarks,
            "datetime": run.manifest.get("started_at"), "version": pytest_benchmark.__version__}


# ---- flat tables -------------------------------------------------------------------------------
def _json_text(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=isinstance(value, dict), default=str)
    return value


def _numeric_list(values: pd.Series) -> bool:
    present = [v for v in values if isinstance(v, (list, tuple))]
    return bool(present) and all(isinstance(x, (int, float)) or x is None for v in present for x in v)


def to_frame(run: Run, lists_as: Literal["json", "native"] = "json") -> pd.DataFrame:
    """One flat row per (point, variant); see the module docstring for how nested values land."""
    frame = run.results.copy().reset_index(drop=True)
    env = run.manifest.get("environment") or {}
    head = pd.DataFrame({"run_id": [run.run_id] * len(frame),
                         "suite": [(run.manifest.get("suite") or {}).get("name")] * len(frame),
                         "git_commit": [env.get("git_commit")] * len(frame),
                         "machine_fingerprint": [env.get("machine_fingerprint")] * len(frame)})
    parts = [head]
    for column in frame.columns:
        values = frame[column]
        if column in FLATTENED_DICTS:
            expanded = pd.json_normalize([v if isinstance(v, dict) else {} for v in values])
            parts.append(expanded.add_prefix(f"{column}."))
        elif lists_as == "native" and _numeric_list(values):
            parts.append(pd.DataFrame({column: [list(v) if isinstance(v, (list, tuple)) else None for v in values]}))
        else:
            parts.append(pd.DataFrame({column: [_json_text(v) for v in values]}))
    return pd.concat(parts, axis=1)


# ---- writing -----------------------------------------------------------------------------------
def default_output(run_dir: Path, fmt: str) -> Path:
    return run_dir / f"export-{fmt}.{EXTENSIONS[fmt]}"


def export_run(run_dir: str | Path, fmt: str, out: str | Path | None = None) -> Path | None:
    """Write RUN in `fmt` to `out` (default: inside the run directory; "-": stdout). The path, or None for stdout."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    run = load_run(run_dir)
    if out == "-" and fmt == "parquet":
        raise ValueError("parquet is binary: give -o FILE")
    target = None if out == "-" else Path(out) if out else default_output(Path(run_dir), fmt)
    if fmt == "pytest-benchmark":
        text = json.dumps(to_pytest_benchmark(run), indent=2, default=_plain) + "\n"
    elif fmt == "csv":
        text = to_frame(run).to_csv(index=False)
    else:
        assert target is not None
        target.parent.mkdir(parents=True, exist_ok=True)
        to_frame(run, lists_as="native").to_parquet(target, index=False)
        return target
    if target is None:
        print(text, end="")
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
