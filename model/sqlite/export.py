"""Writing a result to CSV, JSON or Parquet, streaming: rows are written as they arrive; or
its chart (model/sqlite/chart.py) to a PNG.

The format comes from the file's extension. Nothing here knows about the UI; the app re-runs
the query and passes `Database.iter_rows` so every row is exported, not only a loaded page. A
chart is of the rows already loaded, as on screen.

JSON and JSONL rows are objects keyed by column name. Two columns of one name keep both values:
the later ones are renamed with a suffix (FirstName, FirstName_2), skipping a suffix that is
another column's name, as sqlite-utils does for query results; Parquet's columns are named so
too (its readers, pandas and polars among them, take a column by its name). JSON has no
infinity: +-Inf is written 9e999 / -9e999, as SQLite's own json() does (a valid number that
reads back as infinity); NaN, which SQLite stores as NULL anyway, as null.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any

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
    replace: bool = True,
) -> int:
    """Write `rows` to `path` in the format its extension names; returns the row count.

    The file is written to a new temporary name next to it and renamed at the end, so a failed
    or cancelled export never leaves a half-written file under the requested name. Unless
    `replace`, an existing `path` is an error (FileExists), never overwritten.
    """
    path = Path(path).expanduser()
    kind = format_for(path)
    if kind == "png":
        raise ExportError(f"{path}: a .png is a chart of the loaded rows, not of every row")
    writer = {"csv": _csv, "json": _json, "jsonl": _jsonl, "parquet": _parquet}[kind]
    rows_iter = _watch(iter(rows), cancelled)
    return _write_whole(path, lambda f: writer(f, columns, rows_iter), replace)


class FileExists(ExportError):
    """The target exists and the caller did not say to replace it."""


def _umask() -> int:
    # Read, not set: os.umask() changes it for every thread of the process meanwhile.
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text()
        return int(next(ln for ln in status.splitlines() if ln.startswith("Umask:")).split()[1],
                   8)
    return 0o022


def _write_whole(path: Path, writer: Callable[[IO[bytes]], int], replace: bool = True) -> int:
    """Run `writer` on a new temporary file next to `path`, then move it to `path`.

    The temporary file gets an unpredictable name and is created exclusively (mkstemp:
    O_CREAT | O_EXCL), so a name planted beforehand, a symlink included, is never written
    through. Without `replace` it is linked to `path`, which fails if `path` exists by then.
    """
    if not path.parent.is_dir():
        raise ExportError(f"{path.parent}: no such directory")
    if not replace and os.path.lexists(path):
        raise FileExists(f"{path}: already exists")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as e:
        raise ExportError(f"{path}: {e.strerror or e}") from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp's 0600, as a plain open would
            n = writer(f)
        if replace:
            tmp.replace(path)
        else:
            os.link(tmp, path)  # atomic, and never over an existing file
    except FileExistsError:
        raise FileExists(f"{path}: already exists") from None
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


def _text(f: IO[bytes], newline: str | None = None) -> io.TextIOWrapper:
    return io.TextIOWrapper(f, encoding="utf-8", newline=newline, write_through=True)


def _csv(f: IO[bytes], columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
    n = 0
    text = _text(f, newline="")
    out = csv.writer(text)
    out.writerow(columns)
    for row in rows:
        # NULL is written as an empty field, the usual CSV convention (sqlite3 .mode csv).
        out.writerow(["" if v is None else _plain(v) for v in row])
        n += 1
    text.detach()  # the caller closes the file
    return n


def unique_names(columns: list[str]) -> list[str]:
    """Unique keys for a row object: a repeated name gets _2, _3, ..., skipping any suffix that
    is another column's name (sqlite-utils' rule for query results)."""
    taken, keys = set(columns), []
    seen: set[str] = set()
    for name in columns:
        key, i = name, 1
        while key in seen or (key != name and key in taken):
            i += 1
            key = f"{name}_{i}"
        seen.add(key)
        keys.append(key)
    return keys


def _json_value(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "null" if math.isnan(value) else ("9e999" if value > 0 else "-9e999")
    return json.dumps(_plain(value), ensure_ascii=False)


def _json_object(keys: list[str], row: tuple[Any, ...]) -> str:
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {_json_value(v)}"
                           for k, v in zip(keys, row, strict=True)) + "}"


def _json(f: IO[bytes], columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
    """A JSON array of objects, one per line, written without holding the rows in memory."""
    n, keys = 0, unique_names(columns)
    text = _text(f)
    text.write("[")
    for row in rows:
        text.write(",\n" if n else "\n")
        text.write(_json_object(keys, row))
        n += 1
    text.write("\n]\n")
    text.detach()
    return n


def _jsonl(f: IO[bytes], columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
    n, keys = 0, unique_names(columns)
    text = _text(f)
    for row in rows:
        text.write(_json_object(keys, row) + "\n")
        n += 1
    text.detach()
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


def _parquet(path: IO[bytes], columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 0
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    try:
        while batch := list(islice(rows, BATCH_ROWS)):
            cols = list(zip(*batch, strict=True))
            if schema is None:
                names = unique_names([name or f"column{i + 1}" for i, name in enumerate(columns)])
                schema = pa.schema([pa.field(name, _arrow_type(list(c)))
                                    for name, c in zip(names, cols, strict=True)])
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


def write_chart(path: str | Path, chart: Chart, colors: list[str] | None = None,
                replace: bool = True) -> int:
    """Draw `chart` into the PNG `path` as the app draws it; returns its bars or points.

    `colors`: one per series (the app passes its theme's), else matplotlib's. The figure is
    drawn by the Agg canvas directly, without pyplot's global state, so this is safe in a
    worker thread; matplotlib is imported here because only charts need it. Labels are data:
    matplotlib would read `$...$` in them as math (and raise on malformed math), so math
    parsing is off while the figure is built and drawn. `replace`: as for `write`.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path).expanduser()
    if format_for(path) != "png":
        raise ExportError(f"{path}: a chart is written as .png")
    n = len(chart.labels)
    rows = n * len(chart.series) if chart.kind == "bars" else 16
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        figure = Figure(figsize=(10, min(max(2 + 0.28 * rows, 4), 40)), dpi=100,
                        layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        colors = colors or [f"C{i}" for i in range(len(chart.series))]
        if chart.kind == "bars":
            handles = _png_bars(axes, chart, colors)
        else:
            handles = _png_line(axes, chart, colors)
        axes.set_title(chart.caption, loc="right", fontsize=9, color="0.4")
        if len(chart.series) > 1:
            # Names given outright: matplotlib leaves out a label that starts with "_".
            axes.legend(handles, [s.name for s in chart.series])

        def save(tmp: IO[bytes]) -> int:
            figure.savefig(tmp, format="png")  # tick labels are made here: still no math
            return n

        return _write_whole(path, save, replace)


def _png_bars(axes: Any, chart: Chart, colors: list[str]) -> list[Any]:
    """Horizontal bars top down in the chart's order; each series a bar of its own."""
    height, handles = 0.8 / len(chart.series), []
    for j, series in enumerate(chart.series):
        ys = [i - 0.4 + (j + 0.5) * height for i in range(len(chart.labels))]
        bars = axes.barh(ys, series.values, height=height, color=colors[j % len(colors)],
                         label=series.name)
        axes.bar_label(bars, labels=[value_text(v) for v in series.values], padding=3,
                       fontsize=8)
        handles.append(bars)
    axes.set_yticks(range(len(chart.labels)), chart.labels)
    axes.set_ylim(len(chart.labels) - 0.5, -0.5)  # the first bar on top
    axes.set_ylabel(chart.x_name)
    axes.margins(x=0.12)  # room for the value at the longest bar's end
    axes.spines[["top", "right"]].set_visible(False)
    return handles


def _png_line(axes: Any, chart: Chart, colors: list[str]) -> list[Any]:
    handles = []
    for j, series in enumerate(chart.series):
        handles += axes.plot(chart.x, series.values, color=colors[j % len(colors)],
                             label=series.name)
    ticks = tick_indexes(len(chart.x), 8)
    axes.set_xticks([chart.x[i] for i in ticks], [chart.labels[i] for i in ticks])
    axes.set_xlabel(chart.x_name)
    axes.grid(alpha=0.3)
    axes.spines[["top", "right"]].set_visible(False)
    return handles
