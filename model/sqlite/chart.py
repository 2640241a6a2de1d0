"""Which chart a result's rows make, as plain data: no drawing, no UI.

Most questions end in a label and a number ("tracks per genre") or a date and a number
("revenue per month"); read as a table, their shape is hidden. `chart_for` looks at the rows a
caller already has (the app's loaded pages, `ask --run`'s first rows; it never fetches) and
picks:

- a text column and number columns: horizontal bars, longest first unless the query orders its
  rows itself (the caller says so: deciding needs a SQL parser, which this package does without);
  at most MAX_BARS bars;
- a date column (ISO text, as SQLite stores dates) or a number column, and number columns: a
  line over it, sorted by x;
- anything else: `NoChart` with the reason in one line.

Rows with a NULL in a charted column are skipped and counted in the caption; when that is
every row, `NoChart` says so. The app draws a
`Chart` in the terminal (tui/widgets/chart.py) and `export.write_chart` as a PNG.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from model.sqlite.db import shown_number

MAX_BARS = 50
MAX_LABEL_CHARS = 24
NO_CHART = "needs a label or date column and a number column"

Number = int | float
# What SQLite's date functions write: 2009, 2009-01, 2009-01-01, 2009-01-01 00:00:00(.000).
_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?)?)?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Keys number rows but measure nothing: left out of the bars when a measure remains.
_ID = re.compile(r"(.*_)?(id|Id|ID)|.*[a-z]Id", re.ASCII)


@dataclass(frozen=True)
class Series:
    name: str
    values: list[Number]


@dataclass(frozen=True)
class Chart:
    kind: Literal["bars", "line"]
    x_name: str  # the label column (bars) or the column along x (line)
    labels: list[str]  # bars: one per bar, cut to MAX_LABEL_CHARS; line: each x as shown
    series: list[Series]  # one value per label, in the order drawn (bars: top down)
    caption: str  # "50 of 412 rows · 3 with NULL skipped"
    x: list[float]  # line only: where each point lies (dates as days since 1970)
    x_is_date: bool = False


@dataclass(frozen=True)
class NoChart:
    reason: str


def value_text(value: Number) -> str:
    """A value as written at its bar's end: 1,297, 35.82 (two decimals at most: 2.93, not
    2.93398361111111), 0.0012."""
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def tick_indexes(n: int, most: int) -> list[int]:
    """Up to `most` indexes spread evenly over `n` points, the first and the last included."""
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def chart_for(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, ordered: bool,
              more: bool = False) -> Chart | NoChart:
    """The chart of `rows`; `ordered`: the query has an ORDER BY (bars keep its order);
    `more`: the result has rows beyond these (said in the caption, never fetched)."""
    if not rows:
        return NoChart("no rows to chart")
    kinds = [_column_kind([row[i] for row in rows]) for i in range(len(columns))]
    numbers = [i for i, kind in enumerate(kinds) if kind == "number"]
    first_other = next((i for i, kind in enumerate(kinds) if kind in ("text", "date")), None)
    if first_other is not None and numbers:
        measures = _measures(columns, numbers)
        if kinds[first_other] == "text":
            return _bars(columns, rows, first_other, measures, ordered, more)
        return _line(columns, rows, first_other, measures, more, dates=True)
    if len(numbers) >= 2:
        return _line(columns, rows, numbers[0], numbers[1:], more, dates=False)
    return NoChart(NO_CHART)


def _column_kind(values: list[Any]) -> str:
    """number, date, text, other (blobs, mixed types) or empty (only NULLs)."""
    present = [v for v in values if v is not None]
    if not present:
        return "empty"
    if all(isinstance(v, int | float) for v in present):
        return "number"
    if all(isinstance(v, str) for v in present):
        return "date" if all(_as_date(v) is not None for v in present) else "text"
    return "other"


def _as_date(text: str) -> datetime | None:
    if not _DATE.fullmatch(text):
        return None
    padded = text + "-01-01"[len(text) - 4:] if len(text) < 10 else text  # 2009-01 -> 2009-01-01
    try:
        return datetime.fromisoformat(padded)
    except ValueError:  # 2009-13-01
        return None


def _measures(columns: Sequence[str], numbers: list[int]) -> list[int]:
    kept = [i for i in numbers if not _ID.fullmatch(columns[i])]
    return kept or numbers


def _all_null(columns: Sequence[str], used: list[int]) -> NoChart:
    names = ", ".join(dict.fromkeys(columns[i] for i in used))
    return NoChart(f"every row has a NULL in a charted column ({names})")


def _present(rows: Sequence[Sequence[Any]], used: list[int]) -> tuple[list[Sequence[Any]], int]:
    """The rows without a NULL in any used column, and how many were skipped."""
    kept = [row for row in rows if all(row[i] is not None for i in used)]
    return kept, len(rows) - len(kept)


def _caption(shown: int, total: int, skipped: int, more: bool, what: str) -> str:
    parts = [f"{shown:,} of {total:,} {what}" if shown < total
             else f"{shown:,} {what[:-1] if shown == 1 else what}"]
    if skipped:
        parts.append(f"{skipped:,} with NULL skipped")
    if more:
        parts.append("more rows not loaded")
    return " · ".join(parts)


def _cut(label: str) -> str:
    # Newlines and tabs would break a bar's row; escapes would restyle the terminal.
    label = "".join(ch for ch in " ".join(label.split()) if ch.isprintable())
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def _bars(columns: Sequence[str], rows: Sequence[Sequence[Any]], label: int, measures: list[int],
          ordered: bool, more: bool) -> Chart | NoChart:
    kept, skipped = _present(rows, [label, *measures])
    if not kept:
        return _all_null(columns, [label, *measures])
    if not ordered:
        kept = sorted(kept, key=lambda row: row[measures[0]], reverse=True)  # stable: ties keep
    shown = kept[:MAX_BARS]
    return Chart(
        kind="bars",
        x_name=columns[label],
        labels=[_cut(str(row[label])) for row in shown],
        series=[Series(columns[i], [row[i] for row in shown]) for i in measures],
        caption=_caption(len(shown), len(kept), skipped, more, "rows"),
        x=[],
    )


def _line(columns: Sequence[str], rows: Sequence[Sequence[Any]], x: int, measures: list[int],
          more: bool, dates: bool) -> Chart | NoChart:
    kept, skipped = _present(rows, [x, *measures])
    if not kept:
        return _all_null(columns, [x, *measures])
    if dates:
        position = {text: _days(text) for text in {row[x] for row in kept}}
        kept = sorted(kept, key=lambda row: position[row[x]])
        xs, labels = [position[row[x]] for row in kept], [row[x] for row in kept]
    else:
        kept = sorted(kept, key=lambda row: row[x])
        xs, labels = [float(row[x]) for row in kept], [shown_number(row[x]) for row in kept]
    return Chart(
        kind="line",
        x_name=columns[x],
        labels=labels,
        series=[Series(columns[i], [row[i] for row in kept]) for i in measures],
        caption=_caption(len(kept), len(kept), skipped, more, "points"),
        x=xs,
        x_is_date=dates,
    )


def _days(text: str) -> float:
    when = _as_date(text)
    assert when is not None  # the column was classified as dates
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH).total_seconds() / 86400
