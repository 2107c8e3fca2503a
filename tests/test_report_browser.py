"""The report in a real browser: headless Debian Chromium driven by Playwright.

Uses a real run of suites/smoke.yaml (the session fixture `smoke_run_dir`). Checks what only a
browser can: no console errors, no request but the file itself, load time, the numbers a reader
sees, sorting, filtering, the CSV download and print styles. Saves screenshots to a stable path
(reports/screenshots/) and prints it.
"""

from __future__ import annotations

import csv
import io
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from harness.compare.within import comparisons
from harness.results.load import load_run
from harness.report import render_comparison, render_report

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "reports" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium package to run browser tests",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python package) is not installed")


class Visit:
    """One page load with everything the page tried to do recorded."""

    def __init__(self, page: Any, url: str) -> None:
        self.page, self.url = page, url
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))

    def load(self) -> float:
        started = time.perf_counter()
        self.page.goto(self.url, wait_until="load")
        return time.perf_counter() - started


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        # A fresh profile per session: no cached state, no first-run or sync traffic.
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, accept_downloads=True,
            viewport={"width": 1366, "height": 900})
        yield context
        context.close()


def _open(context: Any, path: Path) -> Visit:
    page = context.new_page()
    url = path.resolve().as_uri()
    visit = Visit(page, url)

    def route(r: Any) -> None:
        visit.requests.append(r.request.url)
        # The file itself loads; anything else (network, other files) is refused and recorded.
        r.continue_() if r.request.url == url else r.abort()

    page.route("**/*", route)
    return visit


@pytest.fixture(scope="module")
def report(smoke_run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_report(smoke_run_dir, tmp_path_factory.mktemp("browser") / "report.html")


def test_loads_fast_with_no_errors_and_no_requests(browser: Any, report: Path, capsys: Any) -> None:
    visit = _open(browser, report)
    wall = visit.load()
    load_ms = visit.page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
    assert visit.errors == []
    assert visit.requests == [visit.url]
    assert load_ms < 1000, f"load event after {load_ms:.0f} ms"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    top, full = SCREENSHOTS / "report.png", SCREENSHOTS / "report-full.png"
    visit.page.screenshot(path=str(top))
    visit.page.screenshot(path=str(full), full_page=True)
    with capsys.disabled():
        print(f"\nreport: {report} ({report.stat().st_size / 1e3:.0f} kB), load event {load_ms:.0f} ms "
              f"(goto {wall * 1e3:.0f} ms)\nscreenshots: {top}\n             {full}")
    visit.page.close()


def _paired_speedup(ref: Any, cand: Any) -> float:
    """Independent of the report code, straight from the stored samples: the lockstep rows' pairs
    (sample i of round r of both), per round the median of log(ref / cand), exp of their mean."""
    assert ref["pairing"] == cand["pairing"] == "lockstep" and ref["pair_id"] == cand["pair_id"]
    ends = [np.cumsum(row["round_sizes"])[:-1] for row in (ref, cand)]
    rounds = zip(np.split(np.log(ref["time_ms_samples"]), ends[0]), np.split(np.log(cand["time_ms_samples"]), ends[1]))
    return float(np.exp(np.mean([np.median(r[:len(c)] - c[:len(r)]) for r, c in rounds])))


def test_speedups_a_reader_sees_match_the_raw_samples(browser: Any, report: Path, smoke_run_dir: Path) -> None:
    results = load_run(smoke_run_dir).results
    ok = results[results["status"] == "ok"]
    comps = comparisons(results)
    assert not comps.empty
    visit = _open(browser, report)
    visit.load()
    checked = 0
    for _, c in comps.iterrows():
        cand = ok[ok["point_id"] == c["point_id"]].iloc[0]
        ref = ok[ok["point_id"] == c["reference_point_id"]].iloc[0]
        expected = _paired_speedup(ref, cand)
        table = visit.page.locator(f"table.verdict-table[data-device='{c['device']}'][data-mode='{c['mode']}']"
                                   f"[data-backend='{c['backend']}']")
        row = table.locator("tbody tr", has=visit.page.locator("td", has_text=f"n={c['seq_len']}"))
        cell = row.locator(f"td[data-ref='{c['reference_backend']}']")
        text = cell.inner_text()
        shown = float(text.split("×")[0])
        assert shown == pytest.approx(expected, rel=0.006, abs=0.006), (text, expected)
        checked += 1
    assert checked == len(comps)
    assert visit.errors == []
    visit.page.close()


def _column(page: Any, key: str) -> list[str]:
    index = page.locator("#data thead th").evaluate_all(
        f"(ths) => ths.findIndex(th => th.dataset.key === '{key}')")
    return page.locator("#data tbody tr:not([hidden])").evaluate_all(
        f"(rows) => rows.map(r => r.cells[{index}].dataset.v)")


def test_table_sorts_filters_and_downloads_csv(browser: Any, report: Path) -> None:
    visit = _open(browser, report)
    visit.load()
    page = visit.page
    header = page.locator("#data th[data-key='time_ms_median'] button")
    header.click()
    values = [float(v) for v in _column(page, "time_ms_median") if v]
    assert values == sorted(values) and len(values) > 2
    assert page.locator("#data th[data-key='time_ms_median']").get_attribute("aria-sort") == "ascending"
    header.click()
    values = [float(v) for v in _column(page, "time_ms_median") if v]
    assert values == sorted(values, reverse=True)

    total = page.locator("#data tbody tr").count()
    page.locator("#data-filter").fill("sdpa train")
    visible = page.locator("#data tbody tr:not([hidden])")
    n = visible.count()
    assert 0 < n < total
    for text in visible.all_inner_texts():
        assert "sdpa" in text and "train" in text
    assert page.locator("#data-shown").inner_text() == f"{n} of {total} rows"

    with page.expect_download() as info:
        page.locator("#data-csv").click()
    download = info.value
    body = Path(download.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == n  # the rows shown, not the whole table
    assert {"variant", "backend", "mode", "time_ms_median"} <= set(rows[0])
    assert all(r["backend"] == "sdpa" and r["mode"] == "train" for r in rows)
    shown_medians = sorted(float(v) for v in _column(page, "time_ms_median") if v)
    assert sorted(float(r["time_ms_median"]) for r in rows if r["time_ms_median"]) == shown_medians
    assert download.suggested_filename.endswith(".csv")
    assert visit.errors == [] and visit.requests == [visit.url]
    page.close()


def test_print_layout_hides_controls_and_shows_every_row(browser: Any, report: Path) -> None:
    visit = _open(browser, report)
    visit.load()
    page = visit.page
    page.locator("#data-filter").fill("no-row-matches-this")
    page.emulate_media(media="print")
    assert page.locator("nav.top").evaluate("n => getComputedStyle(n).display") == "none"
    assert page.locator(".controls").evaluate("n => getComputedStyle(n).display") == "none"
    hidden_row = page.locator("#data tbody tr[hidden]").first
    assert hidden_row.evaluate("r => getComputedStyle(r).display") == "table-row"
    assert page.locator("svg.plot").count() >= 4
    page.close()


def test_comparison_page_is_clean_in_the_browser(browser: Any, smoke_run_dir: Path, tmp_path: Path) -> None:
    out = render_comparison(smoke_run_dir, smoke_run_dir, tmp_path / "compare.html")
    visit = _open(browser, out)
    visit.load()
    assert visit.errors == [] and visit.requests == [visit.url]
    summary = visit.page.locator("#summary").inner_text()
    assert "regressed at 0 and improved at 0 of" in summary  # a run against itself changes nothing
    assert "Reuse speedups: regressed at 0 and improved at 0 of" in summary
    visit.page.locator("#data th[data-key='change'] button").click()
    assert visit.errors == []
    visit.page.close()



def test_a_packed_table_is_drawn_when_opened_and_still_sorts_filters_and_downloads(
        browser: Any, smoke_run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long table travels packed (gzip'ed JSON in an attribute) and report.js draws it when its
    <details> opens; the smoke run's table is packed here by lowering the threshold."""
    from harness.report import packed

    monkeypatch.setattr(packed, "INLINE_ROWS", 3)
    out = render_report(smoke_run_dir, tmp_path / "packed.html")
    n_rows = len(load_run(smoke_run_dir).results)
    visit = _open(browser, out)
    visit.load()
    page = visit.page
    assert page.locator("#data tbody tr").count() == 0  # nothing drawn until asked for
    page.locator("#data-rows > summary").click()
    page.wait_for_function(f"document.querySelectorAll('#data tbody tr').length === {n_rows}")
    assert page.locator("#data-shown").inner_text() == f"{n_rows} of {n_rows} rows"
    page.locator("#data th[data-key='time_ms_median'] button").click()
    values = [float(v) for v in _column(page, "time_ms_median") if v]
    assert values == sorted(values) and len(values) > 2
    page.locator("#data-filter").fill("sdpa train")
    with page.expect_download() as info:
        page.locator("#data-csv").click()
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    assert rows and all(r["backend"] == "sdpa" and r["mode"] == "train" for r in rows)
    assert visit.errors == [] and visit.requests == [visit.url]
    page.close()
