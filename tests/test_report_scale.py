"""A cluster-sized run's report: small, summarised per facet, every row still in it.

2,400 rows: the realistic synthetic sweep of test_report (6 lengths x forward/train x eager/SDPA x
baseline/reuse) over 25 batch sizes and two dtypes. A size check, not a timing test: how fast the
report renders is benchmarks/bench_report.py's to measure.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.report.packed import INLINE_ROWS, unpack
from test_report import _render, read_rows, write_rows, write_run

BATCHES = tuple(range(4, 104, 4))  # 25 batch sizes
DTYPES = ("float32", "bfloat16")
SIZE_BOUND = 4_000_000  # issue 14's target for 2,400 rows


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = write_run(tmp_path_factory.mktemp("scale") / "run", seq_lens=(128, 256, 512, 1024, 2048, 4096),
                    modes=("forward", "train"), failures=False)
    seed = read_rows(run)
    rows = [r | {"point_id": f"{r['point_id']}-b{b}-{dtype}", "batch_size": b,
                 "axes": r["axes"] | {"batch_size": b, "dtype": dtype}}
            for dtype in DTYPES for b in BATCHES for r in seed]
    assert len(rows) == 2400
    write_rows(run, rows)
    return run, _render(run)


def test_the_report_stays_under_its_size_bound(big: tuple[Path, str]) -> None:
    run, page = big
    assert (run / "report.html").stat().st_size < SIZE_BOUND
    assert page.index('id="verdict"') < page.index('id="takeaways"') < page.index('id="performance"')


def test_long_verdict_tables_open_with_a_summary_per_facet(big: tuple[Path, str]) -> None:
    _, page = big
    summaries = re.findall(r'<table class="verdict-summary"(.*?)</table>', page, re.S)
    assert len(summaries) == 4  # forward/train x candidate on eager/SDPA
    for summary in summaries:
        assert "300 points, one line per dtype across every size measured" in summary
        lines = re.findall(r"<tr><td>reuse</td><td>(dtype=\w+)</td><td[^>]*>(\d+)</td>", summary)
        assert lines == [("dtype=bfloat16", "150"), ("dtype=float32", "150")]
    # ...and each table's 300 points, one click away, packed
    points = re.findall(r'<details class="rows"><summary>Every point of this table \(300\)</summary>.*?'
                        r'<tbody data-packed="([^"]+)"', page, re.S)
    assert len(points) == 4 and all(len(unpack(p)) == 300 for p in points)


def test_every_row_is_in_the_packed_data_table(big: tuple[Path, str]) -> None:
    run, page = big
    packed = re.search(r'<table id="data">.*?<tbody data-packed="([^"]+)" data-count="2400">', page, re.S)
    assert packed and 2400 > INLINE_ROWS
    rows = unpack(packed.group(1))
    assert len(rows) == 2400 and {r[0] for r in rows} == {"status-ok"}
    columns = re.findall(r'<th scope="col" data-key="([^"]+)"', page)
    first = read_rows(run)[0]
    cells = dict(zip(columns, rows[0][1:]))
    assert cells["time_ms_median"][1]["data-v"] == repr(first["time_ms_median"])  # full precision for the CSV
    assert cells["point_id"][0] == first["point_id"]


def test_plots_draw_a_named_slice_and_long_lists_fold(big: tuple[Path, str]) -> None:
    _, page = big
    assert page.count("of 25 values") >= 4  # the plots say which batch sizes they draw
    assert "batch size B 4 and 100" in page
    assert '<details class="more"><summary>' in page  # findings past the first few fold away
