"""The two-run comparison page (`harness report A B`) on synthetic runs with known differences."""

from __future__ import annotations

import json
from pathlib import Path

from harness.report import render_comparison
from test_report import _Dom, write_run


def test_comparison_flags_a_slower_run_b(tmp_path: Path) -> None:
    # 6x: past the default policy's 400% threshold for times against a stored run
    a = write_run(tmp_path / "A", seed=1)
    b = write_run(tmp_path / "B", seed=2, slowdown=6.0)
    page = render_comparison(a, b, tmp_path / "cmp.html").read_text()
    assert "Time: regressed at 16 and improved at 0 of 16 matched measurements" in page
    assert page.count('class="status-regressed"') == 16
    assert "Reuse speedups" in page and 'id="data"' in page
    dom = _Dom(page)
    assert dom.tags.count("script") == 1


def test_comparison_of_identical_data_from_another_machine(tmp_path: Path) -> None:
    """Same samples: no change anywhere, but a warning that absolute times do not transfer."""
    a = write_run(tmp_path / "A", seed=1)
    b = write_run(tmp_path / "B", seed=1)
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["environment"]["cpu_model"] = "Other <b>CPU</b>"
    (b / "manifest.json").write_text(json.dumps(manifest))
    page = render_comparison(a, b, tmp_path / "m.html").read_text()
    assert "regressed at 0 and improved at 0 of 16 matched" in page
    assert "Reuse speedups: regressed at 0 and improved at 0 of 16 (candidate, baseline) pairs" in page
    assert "absolute times are not comparable" in page
    assert "Other &lt;b&gt;CPU&lt;/b&gt;" in page
