"""Numbers as text, for every printer: the end-of-run summary, `harness compare`/`gate`, the HTML pages.

Every function takes anything (None, NaN, a string from an old row) and returns display text.
One dash, DASH, stands for "not measured", so a missing value never reads as zero; negative
numbers carry a true minus sign (−), so a dash and a minus never look alike; a ratio reads
"1.83×" and a change "+4.2%", wherever it is printed.
"""

from __future__ import annotations

import math
from typing import Any

from harness.compare.rows import num

DASH = "–"
MINUS = "−"
# A speedup whose CI lies entirely on one side of 1 is a win or a loss; otherwise it is a tie.
WIN, LOSS, TIE, UNKNOWN = "win", "loss", "tie", "unknown"


def _signed(text: str) -> str:
    return text.replace("-", MINUS)


def ms(value: Any) -> str:
    v = num(value)
    if math.isnan(v):
        return DASH
    if v >= 100:
        return f"{v:,.0f} ms"
    if v >= 1:
        return f"{v:.3g} ms"
    return f"{v * 1e3:.3g} µs"


def _scaled(value: Any, units: tuple[tuple[str, float], ...], base: str) -> str:
    """3 significant digits in the largest unit the value reaches (units: largest first)."""
    v = num(value)
    if math.isnan(v):
        return DASH
    for unit, scale in units:
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:.0f} {base}"


def bytes_(value: Any) -> str:
    return _scaled(value, (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)), "B")


def flops(value: Any) -> str:
    return _scaled(value, (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)), "FLOP")


def count(value: Any) -> str:
    v = num(value)
    if math.isnan(v):
        return DASH
    if abs(v) >= 1e6:
        return f"{v / 1e6:.3g} M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:.3g} k"
    return f"{v:.0f}" if v == int(v) else f"{v:.3g}"


def exact(value: Any) -> str:
    """A deterministic count with every digit (a parameter or FLOP count that moved by one)."""
    v = num(value)
    if math.isnan(v):
        return DASH
    return f"{int(v):,}" if v == int(v) else f"{v:,}"


def times(value: Any) -> str:
    """A ratio as '1.83×'."""
    v = num(value)
    if math.isnan(v):
        return DASH
    return f"{v:.2f}×" if v < 10 else f"{v:.1f}×"


def times_ci(value: Any, low: Any, high: Any) -> str:
    """'1.83× [1.70–1.95]': a ratio and its CI; the CI is left out when there is none."""
    center = times(value)
    return center if center == DASH else f"{center} {ratio_ci(low, high)}".rstrip()


def ratio_ci(low: Any, high: Any) -> str:
    """'[1.70–1.95]', or '' without a CI."""
    lo, hi = num(low), num(high)
    return "" if math.isnan(lo) or math.isnan(hi) else f"[{lo:.2f}–{hi:.2f}]"


def percent(value: Any, signed: bool = False, digits: int = 0) -> str:
    v = num(value)
    if math.isnan(v):
        return DASH
    v = round(v * 100, digits) + 0.0  # + 0.0 turns -0.0 into 0.0: no "−0%"
    return _signed(f"{v:+.{digits}f}%" if signed else f"{v:.{digits}f}%")


def change(ratio: Any) -> str:
    """A ratio new ÷ old as the change it means: 1.042 -> '+4.2%'."""
    return percent(num(ratio) - 1.0, signed=True, digits=1)


def change_ci(low: Any, high: Any) -> str:
    """The CI of a ratio as changes: '[+1.0%, +7.5%]', or DASH without a CI."""
    lo, hi = change(low), change(high)
    return DASH if DASH in (lo, hi) else f"[{lo}, {hi}]"


def points(value: Any) -> str:
    """An accuracy difference (fractions) in percentage points."""
    v = num(value)
    if math.isnan(v):
        return DASH
    v = round(v * 100, 1) + 0.0
    return _signed(f"{v:+.1f} pt")


def p_value(value: Any) -> str:
    v = num(value)
    if math.isnan(v):
        return DASH
    return f"{v:.2g}" if v >= 1e-4 else "<1e-4"


def plain(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, float):
        if math.isnan(value):
            return DASH
        return f"{value:g}"
    return str(value)


def outcome(value: Any, low: Any, high: Any) -> str:
    """WIN when the whole CI is above 1, LOSS when below, TIE when it straddles 1.

    Without a CI (too few samples, or one round of pairs) nothing shows the difference is more than
    noise, so it is a TIE too; the cell shows no interval, so the reader sees why.
    """
    v, lo, hi = num(value), num(low), num(high)
    if math.isnan(v):
        return UNKNOWN
    if math.isnan(lo) or math.isnan(hi):
        return TIE
    if lo > 1:
        return WIN
    if hi < 1:
        return LOSS
    return TIE
