"""HTML report: sections, escaping, self-containment, size, failures and the two-run comparison.

Fast (no browser): each test renders from a small run directory written here in the exact shape
the runner stores (manifest.json + results.jsonl), with timings shaped like this project's CPU
measurements (eager attention ~5× slower than SDPA at n=1024; reuse under SDPA pays for the heads it
must materialize).
"""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.report import render_report
from harness.report.plots_extra import pareto_front

XSS = "<script>alert(1)</script>"
BOLD = "<b>x</b>"

# ---- a realistic synthetic run ---------------------------------------------------------------

D_MODEL, N_HEADS, N_LAYERS, D_FF, BATCH = 256, 8, 6, 1024, 4
# As suites/seq_len.yaml: two variants, the backend swept like any other axis.
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {"model": "baseline", "ratio": None},
    "reuse": {"model": "reuse", "ratio": 0.5},
}
BACKENDS = ("eager", "sdpa")
# ms per n² of attention: eager materializes every head; reuse under SDPA materializes the heads
# a later layer reads, so it lands between the two baselines.
ATTN_COEFF = {("baseline", "eager"): 2.4e-4, ("baseline", "sdpa"): 4.2e-5,
              ("reuse", "eager"): 1.5e-4, ("reuse", "sdpa"): 1.3e-4}


def _flops(n: int, ratio: float | None, mode: str) -> dict[str, float]:
    """FLOPs by models.cost component (multiply-add = 2): reused heads skip Q/K and QKᵀ, not P·V."""
    k = round((ratio or 0.0) * N_HEADS)
    d, dh, b = D_MODEL, D_MODEL // N_HEADS, BATCH
    new_heads = N_LAYERS * N_HEADS - (N_LAYERS - 1) * k  # layer 0 never reuses
    parts = {
        "embed": 0, "q_proj": 2 * b * n * d * dh * new_heads, "k_proj": 2 * b * n * d * dh * new_heads,
        "v_proj": 2 * b * n * d * d * N_LAYERS, "o_proj": 2 * b * n * d * d * N_LAYERS,
        "qk": 2 * b * n * n * dh * new_heads, "pv": 2 * b * n * n * dh * N_HEADS * N_LAYERS,
        "mlp": 2 * b * n * 2 * d * D_FF * N_LAYERS, "head": 2 * b * d * 10,
    }
    scale = 3.0 if mode == "train" else 1.0
    return {key: float(v * scale) for key, v in parts.items()}


def _median_ms(n: int, variant: str, backend: str, mode: str) -> float:
    t = 0.02 * n + ATTN_COEFF[(variant, backend)] * n * n
    return t * (3.0 if mode == "train" else 1.0)


def _point_id(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


def _row(variant: str, backend: str, n: int, mode: str, rng: np.random.Generator, profile: bool,
         slowdown: float) -> dict[str, Any]:
    spec = VARIANTS[variant]
    median = _median_ms(n, variant, backend, mode) * slowdown
    samples = (median * np.exp(rng.normal(0.0, 0.03, size=int(rng.integers(8, 30))))).round(4).tolist()
    s = np.sort(samples)
    by_comp = _flops(n, spec["ratio"], mode)
    total = sum(by_comp.values())
    materialized = 1.0 if backend == "eager" else (0.55 if spec["model"] == "reuse" else 0.1)
    row: dict[str, Any] = {
        "point_id": _point_id(variant, backend, n, mode),
        "variant": variant, "model": spec["model"], "status": "ok", "error": None,
        "device": "cpu", "mode": mode, "backend": backend, "seq_len": n, "batch_size": BATCH,
        "reuse_ratio": spec["ratio"], "reuse_heads": None if spec["ratio"] is None else round(spec["ratio"] * N_HEADS),
        "reuse_source": None if spec["ratio"] is None else "previous",
        "axes": {"seq_len": n, "batch_size": BATCH, "device": "cpu", "mode": mode, "backend": backend},
        "time_ms_median": float(np.median(s)), "time_ms_ci_low": float(s[1]), "time_ms_ci_high": float(s[-2]),
        "time_ms_iqr": float(np.percentile(s, 75) - np.percentile(s, 25)), "time_ms_mean": float(s.mean()),
        "time_ms_std": float(s.std(ddof=1)), "time_ms_min": float(s[0]), "time_ms_n": len(samples),
        "time_ms_samples": samples, "tokens_per_s": BATCH * n / (float(np.median(s)) / 1e3),
        "peak_mem_bytes": int(4 * BATCH * n * (D_MODEL * 12 + N_HEADS * n * materialized)
                              * (3 if mode == "train" else 1)),
        "resting_mem_bytes": 20_000_000, "peak_rss_bytes": 400_000_000 + n * 10_000,
        "flops_counted": int(total), "flops_analytic": int(total), "flops_by_component": by_comp,
        "params": 4_800_000 if spec["model"] == "baseline" else 4_500_000,
        "energy_j_per_step": None, "mean_power_w": None,
        "telemetry_note": "no NVIDIA GPU: NVML telemetry not collected",
        "cpu_energy_j_per_step": None, "cpu_energy_note": "permission denied reading energy_uj",
    }
    if profile and n == 256 and mode == "forward":
        row["torch_trace"] = f"artifacts/{row['point_id']}.torch-trace.json"
        attention = "aten::bmm" if backend == "eager" else "aten::_scaled_dot_product_flash_attention_for_cpu"
        row["top_ops"] = [{"name": op, "calls": calls, "self_cpu_ms": median * share, "self_device_ms": None,
                           "cpu_total_ms": median * share * 1.1}
                          for op, calls, share in ((attention, 12, 0.5), ("aten::addmm", 36, 0.3))]
    return row


def read_rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def write_rows(run: Path, rows: list[dict[str, Any]]) -> None:
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_run(path: Path, *, name: str = "seq_len", description: str = "Time and memory vs sequence length",
              seq_lens: tuple[int, ...] = (128, 256, 512, 1024), modes: tuple[str, ...] = ("forward",),
              failures: bool = True, profile: bool = False, status: str = "complete",
              error: str = "RuntimeError: out of memory", seed: int = 0, slowdown: float = 1.0) -> Path:
    """A run directory as `harness run` stores it. `slowdown` scales every timing (for comparisons).

    With `failures`, one point fails with `error` and the cuda half of the sweep is skipped (no GPU),
    as on this project's CPU machines.
    """
    rng = np.random.default_rng(seed)
    rows = [_row(v, b, n, m, rng, profile, slowdown)
            for m in modes for n in seq_lens for b in BACKENDS for v in VARIANTS]
    if failures:
        blank = dict.fromkeys(rows[0], None)
        big = max(seq_lens) * 2
        rows.append(blank | {"point_id": _point_id("fail", big), "variant": "baseline", "model": "baseline",
                             "status": "failed", "error": error, "device": "cpu", "mode": modes[0],
                             "backend": "eager", "seq_len": big, "batch_size": BATCH,
                             "axes": {"seq_len": big, "device": "cpu", "mode": modes[0], "backend": "eager"}})
        for n in seq_lens:
            for v, spec in VARIANTS.items():
                rows.append(blank | {"point_id": _point_id(v, "cuda", n), "variant": v, "model": spec["model"],
                                     "status": "skipped", "device": "cuda", "mode": modes[0], "backend": "sdpa",
                                     "seq_len": n, "batch_size": BATCH, "reuse_ratio": spec["ratio"],
                                     "error": "CUDA not available (torch 2.5.1, built without CUDA; no usable GPU)",
                                     "axes": {"seq_len": n, "device": "cuda", "mode": modes[0], "backend": "sdpa"}})
    path.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format_version": 1, "run_id": f"{name}-20250101-120000", "suite": {
            "name": name, "description": description,
            "model": {"d_model": D_MODEL, "n_heads": N_HEADS, "n_layers": N_LAYERS, "d_ff": D_FF},
            "variants": {v: {"model": s["model"], **({"reuse_ratio": s["ratio"]} if s["ratio"] else {})}
                         for v, s in VARIANTS.items()},
            "sweep": {"seq_len": list(seq_lens), "batch_size": [BATCH], "device": ["cpu", "cuda"],
                      "mode": list(modes), "backend": list(BACKENDS), "zip": [], "exclude": []},
            "metrics": ["time", "memory", "flops"], "seed": 0,
            "measure": {"warmup": 3, "min_reps": 5, "max_reps": 30, "target_ci": 0.02, "max_seconds": 10.0,
                        "timeout": 300.0, "threads": 2}},
        "environment": {"harness_version": "0.1.0", "git_commit": "0123456789abcdef0123456789abcdef01234567",
                        "git_dirty": False, "python": "3.11.2", "torch": "2.5.1", "numpy": "2.1.0",
                        "os": "Linux-6.1", "cpu_model": "Test CPU @ 2.0GHz", "cpu_cores": 2, "threads": 2,
                        "hostname": "bench-1", "gpu": None, "allocator": "tcmalloc"},
        "n_tasks": len(rows), "status": status, "started_at": "2025-01-01T12:00:00+00:00",
        "finished_at": None if status != "complete" else "2025-01-01T12:20:00+00:00"}
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    write_rows(path, rows)
    return path



class _Dom(HTMLParser):
    """Elements, attributes and text as an HTML parser sees them (what a script could reach)."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []  # (tag, name, value)
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, name, value or "") for name, value in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _render(run: Path, out: Path | None = None) -> str:
    return render_report(run, out).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def seq_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One realistic run rendered once (rendering plots takes seconds; tests only read it)."""
    run = write_run(tmp_path_factory.mktemp("runs") / "seq_len-run", modes=("forward", "train"), profile=True)
    return run, _render(run)



def test_report_has_every_section_top_to_bottom(seq_run: tuple[Path, str]) -> None:
    _, page = seq_run
    order = ["top", "verdict", "takeaways", "performance", "profiling", "energy", "failures", "data-section", "method"]
    positions = [page.index(f'id="{section}"') for section in order]
    assert positions == sorted(positions)
    for plot in ("time", "speedup", "memory", "flops", "noise"):
        assert re.search(rf'<figure id="plot-{plot}">.*?<svg ', page, re.S), plot
    assert "The reuse ratio does not vary in this run." in page  # a plot the data cannot support: a note


def test_header_names_the_machine_commit_and_status(seq_run: tuple[Path, str]) -> None:
    _, page = seq_run
    for text in ("seq_len", "Test CPU @ 2.0GHz (2 cores)", "0123456789ab", "2.5.1", "2025-01-01 12:00", "complete",
                 "tcmalloc"):
        assert text in page, text


def test_verdict_shows_speedups_against_both_baselines(seq_run: tuple[Path, str]) -> None:
    run, page = seq_run
    rows = read_rows(run)
    at = {(r["variant"], r["backend"], r["mode"], r["seq_len"]): r for r in rows if r["status"] == "ok"}
    reuse = at[("reuse", "sdpa", "forward", 1024)]
    for ref in ("eager", "sdpa"):
        base = at[("baseline", ref, "forward", 1024)]
        expected = np.median(base["time_ms_samples"]) / np.median(reuse["time_ms_samples"])
        assert f"{expected:.2f}×" in page, ref
    # Every verdict table has a column group for each baseline backend, whatever the candidate's.
    assert page.count("vs eager baseline</th>") == page.count("vs sdpa baseline</th>") == 4
    # Reuse under SDPA is slower than the SDPA baseline in this data: said plainly, shown as a loss.
    assert re.search(r"reuse · sdpa \(ratio 0\.5\) is [^<]*slower than the sdpa baseline at every size", page)
    assert 'class="num first-of-group loss"' in page and 'class="num first-of-group win"' in page


def test_headline_follows_the_data(tmp_path: Path, seq_run: tuple[Path, str]) -> None:
    """Reuse made 10× faster: the headline flips from a loss to a win against the fastest baseline."""
    _, page = seq_run
    assert "Reuse is slower everywhere measured" in page
    run = write_run(tmp_path / "fast", seq_lens=(256, 512), failures=False)
    rows = read_rows(run)
    for row in rows:
        if row["variant"] == "reuse":
            row["time_ms_samples"] = [t / 10 for t in row["time_ms_samples"]]
            row["time_ms_median"] /= 10
    write_rows(run, rows)
    fast = _render(run)
    assert "Reuse is faster everywhere measured" in fast and "Reuse is slower" not in fast
    assert "No measurement succeeded" not in fast and "failed" not in fast.split('id="takeaways"')[1].split("</section>")[0]


def test_failed_and_skipped_points_show_their_reasons(seq_run: tuple[Path, str]) -> None:
    _, page = seq_run
    failures = page[page.index('id="failures"'):page.index('id="data-section"')]
    assert "RuntimeError: out of memory" in failures
    assert "CUDA not available (torch 2.5.1, built without CUDA; no usable GPU)" in failures
    assert "show 8" in failures  # skips grouped by reason, not 8 repeated rows
    assert "1 (point, variant) measurement(s) failed" in page


def test_data_table_holds_every_row_with_raw_values(seq_run: tuple[Path, str]) -> None:
    run, page = seq_run
    n_rows = len((run / "results.jsonl").read_text().splitlines())
    table = page[page.index('<table id="data">'):page.index("</table>", page.index('<table id="data">'))]
    assert table.count("<tr class=") == n_rows
    first = json.loads((run / "results.jsonl").read_text().splitlines()[0])
    assert f'data-v="{first["time_ms_median"]!r}"' in table  # full precision for sorting and the CSV


def test_method_states_flop_convention_and_measurement_settings(seq_run: tuple[Path, str]) -> None:
    _, page = seq_run
    method = page[page.index('id="method"'):]
    assert "multiply-add" in method
    for key in ("warmup", "min_reps", "max_reps", "target_ci", "max_seconds", "threads"):
        assert f"<dt>{key}</dt>" in method


def test_profiling_links_are_relative_and_ops_side_by_side(seq_run: tuple[Path, str], tmp_path: Path) -> None:
    run, page = seq_run
    section = page[page.index('id="profiling"'):page.index('id="energy"')]
    assert 'href="artifacts/' in section and "aten::addmm" in section
    assert "baseline · eager · CPU" in section and "reuse · eager · CPU" in section
    # Written elsewhere with -o, the links still lead back into the run directory.
    other = render_report(run, tmp_path / "elsewhere" / "r.html").read_text()
    assert f'href="../../{run.parent.name}/{run.name}/artifacts/' in other


def test_energy_section_explains_missing_telemetry(seq_run: tuple[Path, str]) -> None:
    _, page = seq_run
    energy = page[page.index('id="energy"'):page.index('id="failures"')]
    assert "No energy readings" in energy and "NVML telemetry not collected" in energy



def test_user_text_is_shown_as_text_never_markup(tmp_path: Path) -> None:
    hostile = f"{XSS} {BOLD}"
    run = write_run(tmp_path / "run", name=f"suite {hostile}", description=f"desc {hostile}", error=f"boom {hostile}")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["suite"]["variants"] = {f"v{XSS}": {"model": "reuse"}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    rows = read_rows(run)
    for row in rows:  # a hostile variant label reaches legends, tables and takeaways
        if row["variant"] == "reuse":
            row["variant"] = f"reuse{BOLD}$x$"
    write_rows(run, rows)
    page = _render(run)
    dom = _Dom(page)
    assert dom.tags.count("script") == 1  # only the page's own script element
    assert "b" not in dom.tags
    text = "".join(dom.text)
    assert f"suite {hostile}" in text and f"desc {hostile}" in text and f"boom {hostile}" in text
    assert "reuse<b>x</b>$x$" in text  # in tables and takeaways, as typed ($ not turned into math)
    # In plot legends too: matplotlib escaped the markup and drew the dollars literally.
    assert re.search(r"<text[^>]*>reuse&lt;b&gt;x&lt;/b&gt;\$x\$ · sdpa</text>", page)


def test_no_network_references(seq_run: tuple[Path, str]) -> None:
    _, page = seq_run
    dom = _Dom(page)
    for tag, name, value in dom.attrs:
        if name in ("src", "href", "xlink:href", "action", "poster", "data"):
            assert not re.match(r"^\s*(https?:)?//", value), (tag, name, value)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "@import" not in page and "url(http" not in page
    assert "default-src 'none'" in page  # CSP: even a missed reference could not load


def test_report_of_a_seq_len_sized_run_is_small_and_deterministic(tmp_path: Path) -> None:
    run = write_run(tmp_path / "big", seq_lens=(128, 256, 512, 1024, 2048, 4096), modes=("forward", "train"))
    first = render_report(run, tmp_path / "a.html")
    assert first.stat().st_size < 2_000_000
    assert render_report(run, tmp_path / "b.html").read_bytes() == first.read_bytes()



def test_batch_size_sweep_puts_batch_size_on_the_x_axis(tmp_path: Path) -> None:
    run = write_run(tmp_path / "batch", seq_lens=(256,), failures=False)
    write_rows(run, [r | {"point_id": r["point_id"] + str(b), "batch_size": b, "axes": r["axes"] | {"batch_size": b}}
                     for b in (1, 4, 16) for r in read_rows(run)])
    page = _render(run)
    assert "x axis: batch size B" in page and ">batch size B</text>" in page
    assert re.search(r'<figure id="plot-speedup">.*?<svg ', page, re.S)


def test_cut_short_run_with_missing_keys_and_nans_still_renders(tmp_path: Path) -> None:
    run = write_run(tmp_path / "cut", status="interrupted", seq_lens=(128, 256))
    rows = read_rows(run)
    for key in ("peak_mem_bytes", "flops_by_component", "time_ms_ci_low", "axes", "backend"):
        rows[0].pop(key)
    rows[1]["time_ms_median"] = float("nan")
    rows[2]["time_ms_samples"] = []
    rows[3]["time_ms_samples"] = ["x", None]
    body = "".join(json.dumps(r) + "\n" for r in rows) + '{"point_id": "partial'  # killed mid-write
    (run / "results.jsonl").write_text(body)
    page = _render(run)
    assert "This run was cut short" in page and "interrupted" in page


def test_run_with_only_failures_renders_a_clear_empty_verdict(tmp_path: Path) -> None:
    run = write_run(tmp_path / "bad", seq_lens=(128,))
    rows = read_rows(run)
    for row in rows:
        row.update(status="failed", error="worker killed (timeout 300 s)")
    write_rows(run, rows)
    page = _render(run)
    assert "No measurement succeeded" in page and "no verdict" in page
    assert "worker killed (timeout 300 s)" in page


def test_accuracy_run_draws_accuracy_plots(tmp_path: Path) -> None:
    run = write_run(tmp_path / "acc", seq_lens=(64,), failures=False)
    rows = read_rows(run)
    rows += [row | {"point_id": row["point_id"] + str(ratio), "reuse_ratio": ratio,
                    "axes": row["axes"] | {"reuse_ratio": ratio}}
             for ratio in (0.25, 0.75) for row in rows if row["variant"] == "reuse"]
    for row in rows:
        ratio = row["reuse_ratio"] or 0.0
        row.update(task="digits", accuracy_mean=0.95 - 0.1 * ratio, accuracy_std=0.01, train_steps=100,
                   learning_curve=[[{"step": s, "loss": 2.0 / (1 + s / 20) + seed * 0.01, "accuracy": 0.5 + s / 250}
                                    for s in (0, 50, 100)] for seed in range(3)])
    write_rows(run, rows)
    page = _render(run)
    for plot in ("acc-ratio", "curves", "pareto", "speedup-ratio"):
        assert re.search(rf'<figure id="plot-{plot}">.*?<svg ', page, re.S), plot
    assert "accuracy Δ" in page and "−5.0 pt" in page
    assert pareto_front([(1, 0.8), (2, 0.7), (2, 0.9), (3, 0.85), (4, 0.95)]) == [(1, 0.8), (2, 0.9), (4, 0.95)]
