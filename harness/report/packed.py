"""Table rows as one cell model, shipped inline or packed.

A report's long tables (every result row, every reuse-vs-baseline comparison) are what grows with
a sweep: at 2,400 rows their HTML alone passed 10 MB. So every table body is built here as rows of
cells (text, plus the attributes the page's script reads: class, data-v, title, ...), and then:

- up to INLINE_ROWS rows, written into the page as HTML, readable with scripts off and printable;
- beyond that, packed: the rows as JSON, gzip-compressed and base64-encoded into one attribute of
  an empty <tbody>, which report.js unpacks and draws when its <details> is first opened (gzip
  takes repetitive rows to about a tenth; base64 needs no escaping in an attribute). The page
  stays one self-contained file; a reader who never opens the rows never pays for drawing them.

The packed form is a list of rows, each `[row class, cell, cell, ...]`, a cell being
`[text, {attribute: value}]`, or `[text]` without attributes. gzip's header carries no time
(mtime=0), so the same rows pack to the same bytes and a re-rendered report is identical.
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from markupsafe import Markup, escape

# Beyond this many rows a table body is packed. A verdict table of a few hundred rows is already
# more than anyone reads row by row, and 250 rows of the full data table are about 0.4 MB of HTML.
INLINE_ROWS = 250


@dataclass(frozen=True)
class Cell:
    text: str
    attrs: dict[str, str] = field(default_factory=dict)  # in order: class first, then data-*, title

    def html(self) -> Markup:
        attrs = "".join(f' {name}="{escape(value)}"' for name, value in self.attrs.items())
        return Markup(f"<td{attrs}>{escape(self.text)}</td>")

    def packed(self) -> list[Any]:
        return [self.text, self.attrs] if self.attrs else [self.text]


@dataclass(frozen=True)
class Row:
    cells: Sequence[Cell]
    cls: str = ""

    def html(self) -> Markup:
        attr = Markup(' class="{}"').format(self.cls) if self.cls else ""
        return Markup("<tr{}>{}</tr>").format(attr, Markup("").join(c.html() for c in self.cells))


@dataclass(frozen=True)
class Body:
    """A table body: its rows inline (`html`), or packed for the script (`packed`, `count`)."""

    count: int
    html: Markup | None = None
    packed: str | None = None


def pack(rows: Sequence[Row]) -> str:
    data = [[r.cls, *(c.packed() for c in r.cells)] for r in rows]
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")


def unpack(packed: str) -> list[list[Any]]:
    """The inverse of `pack` (tests read packed tables with it, as the page's script does)."""
    return json.loads(gzip.decompress(base64.b64decode(packed)).decode("utf-8"))


def body(rows: Sequence[Row]) -> Body:
    if len(rows) <= INLINE_ROWS:
        return Body(len(rows), html=Markup("").join(r.html() for r in rows))
    return Body(len(rows), packed=pack(rows))
