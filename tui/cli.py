"""The `gemma-sql` command line: `open` (the default), `ask`, `eval`, `finetune`.

Commands are thin: they parse arguments and call model/ or finetune/. `eval` and `finetune` are
defined in finetune/cli.py and mounted here; `fail` and the options both share are in
finetune/options.py. Heavy imports (torch, textual) happen inside the command that needs
them so `--help` stays instant.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperGroup

import finetune.cli
from finetune.options import (
    AdapterOpt,
    BudgetOpt,
    CheckRunsOpt,
    DeviceOpt,
    DtypeOpt,
    EndpointModelOpt,
    EndpointOpt,
    FocusOpt,
    ModelOpt,
    check_endpoint,
    engine_or_exit,
    fail,
)
from model.llm.pipeline.settings import DEFAULT_BUDGET_S, Settings

RUN_TIMEOUT_S = 30.0  # `ask --run`: a runaway query (an accidental cross join) is stopped

if TYPE_CHECKING:
    from typer._click import Context  # the click typer runs on (typer 0.29 carries its own)

    from model.llm.pipeline.answer import Answer
    from model.llm.pipeline.confidence import ReadOut
    from model.sqlite.db import Database


class DefaultOpenGroup(TyperGroup):
    """`gemma-sql chinook.db` means `gemma-sql open chinook.db` (click-default-group's idea)."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["open", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=DefaultOpenGroup,
    add_completion=False,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="A terminal assistant for SQLite: ask in English, a local Gemma writes the SQL.",
)


# readable=False: our own check says why a file cannot be read in one line (typer's is a
# 6-line usage box)
DbArg = Annotated[Path, typer.Argument(help="SQLite database file.", show_default=False,
                                       readable=False)]


@app.command("open")
def open_app(
    db: Annotated[
        Path | None,
        typer.Argument(help="SQLite database file (default: the bundled Chinook sample).",
                       readable=False),
    ] = None,
    write: Annotated[
        bool, typer.Option("--write", help="Allow changes, each behind a confirmation.")
    ] = False,
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    device: DeviceOpt = None,
    endpoint: EndpointOpt = None,
    endpoint_model: EndpointModelOpt = None,
    no_model: Annotated[
        bool, typer.Option("--no-model", help="Do not load a model (plain SQL client).")
    ] = False,
    dtype: DtypeOpt = None,
    budget: BudgetOpt = DEFAULT_BUDGET_S,
    check_runs: CheckRunsOpt = True,
) -> None:
    """Open the app on DB (the default command)."""
    from model.samples import CHINOOK
    from model.sqlite.db import Database, DatabaseError

    check_endpoint(endpoint, model, device)
    try:
        database = Database.open(db or CHINOOK, write=write)
    except DatabaseError as e:
        raise fail(str(e)) from None
    from tui.app import GemmaSqlApp

    GemmaSqlApp(
        database, model=model, adapter=adapter, device=device, load_model=not no_model,
        endpoint=endpoint, endpoint_model=endpoint_model, dtype=dtype,
        settings=Settings(budget=budget, check_runs=check_runs),
    ).run()


@app.command()
def ask(
    db: DbArg,
    question: Annotated[str, typer.Argument(help="The question, in English.")],
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    device: DeviceOpt = None,
    endpoint: EndpointOpt = None,
    endpoint_model: EndpointModelOpt = None,
    run: Annotated[bool, typer.Option("--run", help="Also run the SQL (read-only).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    chart: Annotated[
        Path | None,
        typer.Option("--chart", help="Also draw the rows as a chart into this .png (implies "
                     "--run).", show_default=False),
    ] = None,
    focus: FocusOpt = True,
    dtype: DtypeOpt = None,
    budget: BudgetOpt = DEFAULT_BUDGET_S,
    check_runs: CheckRunsOpt = True,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0, metavar="SECONDS",
        help="With --run or --chart: stop the query after this long (0: no limit); "
             "ctrl+c stops it too.")] = RUN_TIMEOUT_S,
) -> None:
    """Write SQL for QUESTION about DB; print it (and with --run, its result)."""
    import json

    from model.sqlite.db import Database, DatabaseError

    if chart is not None and chart.suffix.lower() != ".png":
        raise fail(f"{chart}: --chart writes a .png")
    run = run or chart is not None
    try:
        database = Database.open(db)  # read-only; a missing file is an error, never created
    except DatabaseError as e:
        raise fail(str(e)) from None
    from model.llm.pipeline.ask import ask as write_sql
    from model.llm.pipeline.confidence import read_out
    from model.llm.weights.registry import ModelUnavailable

    # Progress only to a terminal: in scripts stderr carries just the one-line error, if any.
    progress = (lambda m: typer.echo(m, err=True)) if sys.stderr.isatty() else None
    engine = engine_or_exit(model, adapter, device, endpoint, endpoint_model, progress,
                            dtype)
    try:
        settings = Settings(budget=budget, check_runs=check_runs, focused=focus)
        answer = write_sql(engine, database, question, settings)
    except ModelUnavailable as e:  # a server that failed mid-answer
        raise fail(str(e), 1) from None
    error = answer.error or (None if answer.sql else "the model wrote no SQL")
    said = read_out(answer, database, settings.policy)
    result = Ran()
    if run and error is None:
        result = run_answer(database, answer.sql, chart, timeout)
        error = result.error
    database.close()

    if as_json:
        typer.echo(json.dumps({
            "question": question, "sql": answer.sql, "columns": result.columns,
            "rows": result.rows, "error": error, "model": engine.name, "dtype": engine.dtype,
            "seconds": round(answer.seconds, 3),
            "alternatives": [a.to_dict() for a in answer.alternatives],
            "explanation": said.explanation, "confidence": said.verdict.to_dict(),
            "unmatched": said.unmatched,
        }, ensure_ascii=False))
    else:
        # A failure is one line on stderr: the reading is left out then.
        print_answer(answer, result, said if error is None else None)
    if error is not None:
        raise fail(error, 1)


@dataclass
class Ran:
    """What `ask --run` read of the answer's rows: the first 100, blobs as hex."""

    columns: list[str] = field(default_factory=list)
    rows: list[list[object]] = field(default_factory=list)
    more: bool = False  # rows past the first 100
    error: str | None = None


def run_answer(database: Database, sql: str, chart: Path | None,
               timeout: float = 0.0) -> Ran:
    """`ask --run`: the answer's first rows (and with --chart, their chart drawn); the query
    is stopped after `timeout` seconds (0: never) or at ctrl+c (one line, exit 130)."""
    from model.sqlite.db import DatabaseError

    read: list[tuple[list[str], list[tuple[object, ...]]] | str] = []

    def query() -> None:
        try:
            result = database.execute(sql)
            fetched = database.fetch(result, 101)  # one extra row tells whether there is more
            result.close()
            read.append((result.columns, fetched))
        except DatabaseError as e:
            read.append(str(e))

    # SQLite runs in a thread: the main thread, waiting, takes ctrl+c at once (Python's
    # handler would wait for SQLite) and interrupts the query, again until it has stopped
    # (an interrupt that comes before the statement starts is lost). It waits in short
    # joins: a SIGINT the kernel hands to the SQLite thread only sets a flag, which the main
    # thread reads when it wakes; one endless join never woke.
    worker = threading.Thread(target=query, daemon=True, name="ask-run")
    deadline = time.monotonic() + timeout if timeout else math.inf
    try:
        worker.start()
        while worker.is_alive() and time.monotonic() < deadline:
            worker.join(min(0.1, max(0.0, deadline - time.monotonic())))
    except KeyboardInterrupt:
        stop(database, worker)
        raise fail("interrupted", 130) from None
    if worker.is_alive():
        stop(database, worker)
        return Ran(error=f"the query ran longer than {timeout:g} s (--timeout)")
    if isinstance(read[0], str):
        return Ran(error=read[0])
    columns, fetched = read[0]
    more = len(fetched) > 100
    # Blobs as hex, as the exports write them.
    rows = [[v.hex() if isinstance(v, bytes) else v for v in r] for r in fetched[:100]]
    error = draw_chart(chart, sql, columns, fetched[:100], more) if chart is not None else None
    return Ran(columns, rows, more, error)


def stop(database: Database, worker: threading.Thread) -> None:
    """Interrupt `database`'s query until `worker`, running it, has ended."""
    while worker.is_alive():
        database.interrupt()
        worker.join(0.05)


def print_answer(answer: Answer, result: Ran, said: ReadOut | None = None) -> None:
    """`ask` without --json: the SQL on stdout; its reading, how sure it is and the notes on
    stderr; and the rows as a table."""
    from model.llm.pipeline.confidence import unmatched_phrase
    from model.sqlite.db import shown_number
    from model.text import shown

    if answer.sql:  # the model's (or a server's) text: drawn, never sent to the terminal raw
        typer.echo(shown(answer.sql.rstrip(";") + ";", lines=True))
    if said is not None and said.explanation:  # names and values from the database and model
        typer.echo(f"gemma-sql: reading: {shown(said.explanation, lines=True)}", err=True)
    if said is not None:
        typer.echo(f"gemma-sql: {said.verdict.phrase}", err=True)
    if said is not None and said.unmatched:
        typer.echo(f"gemma-sql: note: {shown(unmatched_phrase(said.unmatched))}", err=True)
    for note in answer.notes:  # they quote names from the database
        typer.echo(f"gemma-sql: note: {shown(note)}", err=True)
    if (others := len(answer.alternatives) - 1) > 0:
        typer.echo(f"gemma-sql: note: {others} more answer{'s' * (others != 1)} with "
                   "other results (--json lists them)", err=True)
    for p in answer.problems:
        if not p.fatal:
            typer.echo(f"gemma-sql: warning: {shown(p.message)}", err=True)
    if not result.columns:
        return
    # A table for reading: names and values with their control characters drawn
    # (model/text.py), never sent to the terminal. --json is the raw form.
    rows = result.rows
    columns = [shown(c) for c in result.columns]
    text = [["NULL" if v is None else shown_number(v) if isinstance(v, int | float)
             else shown(str(v)[:40]) for v in r] for r in rows]
    widths = [max([len(c), *(len(r[i]) for r in text)]) for i, c in enumerate(columns)]
    # Numbers line up on the right, as in the app's results table.
    right = [bool(rows) and all(isinstance(r[i], int | float) or r[i] is None for r in rows)
             for i in range(len(columns))]

    def line(cells: list[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w)
                         for v, w, r in zip(cells, widths, right, strict=True)).rstrip()

    typer.echo()
    typer.echo(line(columns))
    typer.echo(line(["-" * w for w in widths]))
    for r in text:
        typer.echo(line(r))
    typer.echo(f"({len(rows)} rows{', more not shown' if result.more else ''})")


def draw_chart(path: Path, sql: str, columns: list[str], rows: list[tuple[object, ...]],
                more: bool) -> str | None:
    """`ask --chart`: the chart of the rows printed, as the app draws it; the error, if any."""
    from model.llm.sql.results import has_order_by
    from model.sqlite.chart import NoChart, chart_for
    from model.sqlite.export import ExportError, write_chart

    chart = chart_for(columns, rows, ordered=has_order_by(sql), more=more)
    if isinstance(chart, NoChart):
        return f"no chart: {chart.reason}"
    try:
        write_chart(path, chart)
    except ExportError as e:
        return str(e)
    return None


# eval and finetune are finetune/'s commands (finetune.cli imports nothing heavy at import time)
app.command("eval")(finetune.cli.eval_cmd)
app.add_typer(finetune.cli.app, name="finetune")


def main() -> None:
    app(prog_name="gemma-sql")


if __name__ == "__main__":
    main()
