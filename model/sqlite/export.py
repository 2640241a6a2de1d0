"""Writing a result to CSV, JSON or Parquet, streaming: rows are written as they arrive; or
its chart (model/sqlite/chart.py) to a PNG.

The format comes from the file's extension. Nothing here knows about the UI; the app re-runs
the query and passes `Database.iter_rows` so every row is exported, not only a loaded page. A
chart is of the rows already loaded, as on screen.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from model.sqlite.chart import Chart, tick_indexes, value_text

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet",
           ".png": "png"}
BATCH_ROWS = 10_000


class ExportError(Exception):
    """An export that cannot be done, said in one line."""


def format_for(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ExportError(
            f"{path}: unknown format {suffix or '(no extension)'}; "
            "use .csv, .json, .parquet or .png (the chart)"
        )
    return FORMATS[suffix]


def _plain(value: Any) -> Any:
    # Blobs have no text form in CSV/JSON; hex is what SQLite's own hex() and .dump use.
    return value.hex() if isinstance(value, bytes) else value


def write(
    path: str | Path,
    columns: list[str],
    rows: Iterable[tuple[Any, ...]],
    cancelled: Callable[[], bool] = lambda: False,
) -> int:
    """Write `rows` to `path` in the format its extension names; returns the row count.

    The file is written to a temporary name next to it and renamed at the end, so a failed or
    cancelled export never leaves a half-written file under the requested name.
    """
    path = Path(path).expanduser()
    kind = format_for(path)
    if kind == "png":
        raise ExportError(f"{path}: a .png is a chart of the loaded rows, not of every row")
    writer = {"csv": _csv, "json": _json, "jsonl": _jsonl, "parquet": _parquet}[kind]
    rows_iter = _watch(iter(rows), cancelled)
    return _write_whole(path, lambda tmp: writer(tmp, columns, rows_iter))


def _write_whole(path: Path, writer: Callable[[Path], int]) -> int:
    """Run `writer` on a temporary name next to `path`, renamed to it once done."""
    if not path.parent.is_dir():
        raise ExportError(f"{path.parent}: no such directory")
    tmp = path.with_name(f".{path.name}.partial")
    try:
        n = writer(tmp)
        tmp.replace(path)
    except OSError as e:
        raise ExportError(f"{path}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return n


def _watch(rows: Iterator[tuple[Any, ...]], cancelled: Callable[[], bool]) -> Iterator[tuple]:
    for i, row in enumerate(rows):
        if i % 1000 == 0 and cancelled():
            raise ExportError("export cancelled")
        yield row


def _csv(path: Path, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
    n = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(columns)
        for row in rows:
            # NULL is written as an empty field, the usual CSV convention (sqlite3 .mode csv).
            out.writerow(["" if v is None else _plain(v) for v in row])
            n += 1
    return n


def _json(path: Path, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
    """A JSON array of objects, one per line, written without holding the rows in memory."""
    n = 0
    with path.open("w", encoding="utf-8") as f:
        f.write("[")
        for row in rows:
            f.write(",\n" if n else "\n")
            f.write(json.dumps(dict(zip(columns, map(_plain, row), strict=True)),
                               ensure_ascii=False))
            n += 1
        f.write("\n]\n")
    return n


def _jsonl(path: Path, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(dict(zip(columns, map(_plain, row), strict=True)),
                               ensure_ascii=False) + "\n")
            n += 1
    return n


def _arrow_type(values: list[Any]) -> Any:
    """One Arrow type for a column, from the first batch (SQLite columns may mix types)."""
    import pyarrow as pa

    kinds = {type(v) for v in values if v is not None}
    if kinds and kinds <= {int, bool}:
        return pa.int64()
    if kinds and kinds <= {int, float, bool}:
        return pa.float64()
    if kinds == {bytes}:
        return pa.binary()
    return pa.string()


def _parquet(path: Path, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 0
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    try:
        while batch := list(islice(rows, BATCH_ROWS)):
            cols = list(zip(*batch, strict=True))
            if schema is None:
                schema = pa.schema(
                    [pa.field(name or f"column{i + 1}", _arrow_type(list(c)))
                     for i, (name, c) in enumerate(zip(columns, cols, strict=True))]
                )
                writer = pq.ParquetWriter(path, schema)
            arrays = []
            for field, c in zip(schema, cols, strict=True):
                values = list(c)
                if pa.types.is_string(field.type):
                    values = [None if v is None else str(_plain(v)) for v in values]
                try:
                    arrays.append(pa.array(values, type=field.type))
                except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
                    raise ExportError(
                        f"column {field.name!r} mixes types ({field.type} in the first "
                        f"{BATCH_ROWS:,} rows); export to .csv or .json instead"
                    ) from None
            assert writer is not None
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            n += len(batch)
        if writer is None:  # no rows: still write the columns, as strings
            schema = pa.schema([pa.field(c, pa.string()) for c in columns])
            pq.write_table(schema.empty_table(), path)
    finally:
        if writer is not None:
            writer.close()
    return n


def write_chart(path: str | Path, chart: Chart, colors: list[str] | None = None) -> int:
    """Draw `chart` into the PNG `path` as the app draws it; returns its bars or points.

    `colors`: one per series (the app passes its theme's), else matplotlib's. The figure is
    drawn by the Agg canvas directly, without pyplot's global state, so this is safe in a
    worker thread; matplotlib is imported here because only charts need it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path).expanduser()
    if format_for(path) != "png":
        raise ExportError(f"{path}: a chart is written as .png")
    n = len(chart.labels)
    rows = n * len(chart.series) if chart.kind == "bars" else 16
    figure = Figure(figsize=(10, min(max(2 + 0.28 * rows, 4), 40)), dpi=100,
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colors = colors or [f"C{i}" for i in range(len(chart.series))]
    if chart.kind == "bars":
        _png_bars(axes, chart, colors)
    else:
        _png_line(axes, chart, colors)
    axes.set_title(chart.caption, loc="right", fontsize=9, color="0.4")
    if len(chart.series) > 1:
        axes.legend()

    def save(tmp: Path) -> int:
        figure.savefig(tmp, format="png")
        return n

    return _write_whole(path, save)


def _png_bars(axes: Any, chart: Chart, colors: list[str]) -> None:
    """Horizontal bars top down in the chart's order; each series a bar of its own."""
    height = 0.8 / len(chart.series)
    for j, series in enumerate(chart.series):
        ys = [i - 0.4 + (j + 0.5) * height for i in range(len(chart.labels))]
        bars = axes.barh(ys, series.values, height=height, color=colors[j % len(colors)],
                         label=series.name)
        axes.bar_label(bars, labels=[value_text(v) for v in series.values], padding=3,
                       fontsize=8)
    axes.set_yticks(range(len(chart.labels)), chart.labels)
    axes.set_ylim(len(chart.labels) - 0.5, -0.5)  # the first bar on top
    axes.set_ylabel(chart.x_name)
    axes.margins(x=0.12)  # room for the value at the longest bar's end
    axes.spines[["top", "right"]].set_visible(False)


def _png_line(axes: Any, chart: Chart, colors: list[str]) -> None:
    for j, series in enumerate(chart.series):
        axes.plot(chart.x, series.values, color=colors[j % len(colors)], label=series.name)
    ticks = tick_indexes(len(chart.x), 8)
    axes.set_xticks([chart.x[i] for i in ticks], [chart.labels[i] for i in ticks])
    axes.set_xlabel(chart.x_name)
    axes.grid(alpha=0.3)
    axes.spines[["top", "right"]].set_visible(False)
