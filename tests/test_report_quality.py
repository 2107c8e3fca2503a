"""What a report says about the quality of its own numbers: incomplete FLOP counts, intervals from
too few samples."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from harness.report.frame import axis_plan
from harness.report.plotkit import Styler
from test_report import _render, read_rows, write_rows, write_run


def test_incomplete_flop_counts_are_flagged_above_the_conclusions(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", seq_lens=(128, 256), failures=False)
    rows = read_rows(run)
    rows[0]["flops_warning"] = "aten::_cudnn_attention_forward: a matrix product with no FLOP formula (counted 0)"
    write_rows(run, rows)
    page = _render(run)
    assert "Counted FLOPs are incomplete at some points" in page and "aten::_cudnn_attention_forward" in page
    assert "Counted FLOPs are incomplete" not in _render(write_run(tmp_path / "clean", seq_lens=(128,), failures=False))


def test_an_interval_from_too_few_samples_is_labelled_with_its_level_and_drawn_as_no_95_ci(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    from harness.report import plots
    from harness.report.frame import normalize

    run = write_run(tmp_path / "few", seq_lens=(256, 512), failures=False)
    rows = read_rows(run)
    few = rows[0]  # three samples and their [min, max], as `min_reps: 3` under a time budget stores them
    few.update(time_ms_samples=few["time_ms_samples"][:3], time_ms_n=3,
               time_ms_ci_low=min(few["time_ms_samples"][:3]), time_ms_ci_high=max(few["time_ms_samples"][:3]))
    write_rows(run, rows)
    page = _render(run)
    table = page[page.index('<table id="data">'):page.index("</table>", page.index('<table id="data">'))]
    assert ">CI level<" in table and ">75%<" in table  # a row without the column: its level follows from n
    # ...and a speedup from it has no CI, saying why, under each verdict table it appears in
    assert page.count("Speedup CIs: too few samples (3 &lt; 5) (1 of 4); one round each: samples (3 of 4).") == 2
    # Without an interval nothing shows the speedup is more than noise: neither a win nor a loss.
    assert re.findall(r'class="num first-of-group (\w+)"[^>]*title="too few samples', page) == ["tie", "tie"]

    # The time plot's band skips a point whose interval is below 95% instead of calling it one.
    frame = normalize(pd.DataFrame([{"variant": "v", "model": "baseline", "status": "ok", "device": "cpu",
                                     "mode": "forward", "backend": "sdpa", "seq_len": n, "batch_size": 2,
                                     "axes": {"seq_len": n, "batch_size": 2}, "time_ms_median": 10.0,
                                     "time_ms_ci_low": 9.0, "time_ms_ci_high": 11.0, "time_ms_ci_level": level}
                                    for n, level in ((128, 0.96), (256, 0.97), (512, 0.75))]))
    plan = axis_plan(frame)
    keys = [("v", "sdpa", ())]
    ax = Figure().add_subplot()
    assert plots._by_x(frame, plan, "time_ms_median", Styler(keys, ["v"]), keys, ax,
                       band=("time_ms_ci_low", "time_ms_ci_high", "time_ms_ci_level"))
    [band] = ax.collections
    assert band.get_paths()[0].vertices[:, 0].max() == 256
