"""The `gemma-sql` command line: `open` (the default), `ask`, `eval`, `finetune`.

Commands are thin: they parse arguments and call model/ or finetune/. Heavy imports (torch,
textual) happen inside the command that needs them so `--help` stays instant.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup


class DefaultOpenGroup(TyperGroup):
    """`gemma-sql chinook.db` means `gemma-sql open chinook.db` (click-default-group's idea)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
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


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line to stderr and return the Exit to raise (no traceback, no side effect)."""
    typer.echo(f"gemma-sql: {message}", err=True)
    return typer.Exit(code)


DbArg = Annotated[Path, typer.Argument(help="SQLite database file.", show_default=False)]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Registry name, hub id or local directory."),
]
AdapterOpt = Annotated[
    Path | None, typer.Option("--adapter", help="A PEFT LoRA adapter directory.")
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda, cuda:1 … (default: automatic).")
]
FocusOpt = Annotated[bool, typer.Option(
    "--focus/--no-focus",
    help="Ask first with the question's likeliest tables alone (as the app does; ctrl+t there "
         "asks with every table).")]


@app.command("open")
def open_app(
    db: Annotated[
        Path | None,
        typer.Argument(help="SQLite database file (default: the bundled Chinook sample)."),
    ] = None,
    write: Annotated[
        bool, typer.Option("--write", help="Allow changes, each behind a confirmation.")
    ] = False,
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    device: DeviceOpt = None,
    no_model: Annotated[
        bool, typer.Option("--no-model", help="Do not load a model (plain SQL client).")
    ] = False,
) -> None:
    """Open the app on DB (the default command)."""
    from model.samples import CHINOOK
    from model.sqlite.db import Database, DatabaseError

    try:
        database = Database.open(db or CHINOOK, write=write)
    except DatabaseError as e:
        raise fail(str(e)) from None
    from tui.app import GemmaSqlApp

    GemmaSqlApp(
        database, model=model, adapter=adapter, device=device, load_model=not no_model
    ).run()


@app.command()
def ask(
    db: DbArg,
    question: Annotated[str, typer.Argument(help="The question, in English.")],
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    device: DeviceOpt = None,
    run: Annotated[bool, typer.Option("--run", help="Also run the SQL (read-only).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    focus: FocusOpt = True,
) -> None:
    """Write SQL for QUESTION about DB; print it (and with --run, its result)."""
    import json

    from model.sqlite.db import Database, DatabaseError, shown_number

    try:
        database = Database.open(db)  # read-only; a missing file is an error, never created
    except DatabaseError as e:
        raise fail(str(e)) from None
    from model.llm.ask import ask as write_sql
    from model.llm.checkpoints import DEFAULT_MODEL, ModelUnavailable
    from model.llm.loading import load_engine

    # Progress only to a terminal: in scripts stderr carries just the one-line error, if any.
    progress = (lambda m: typer.echo(m, err=True)) if sys.stderr.isatty() else None
    try:
        engine = load_engine(model or DEFAULT_MODEL, adapter=adapter, device=device,
                             progress=progress)
    except ModelUnavailable as e:
        raise fail(str(e), 1) from None
    answer = write_sql(engine, database, question, focused=focus)
    error = answer.error or (None if answer.sql else "the model wrote no SQL")
    columns: list[str] = []
    rows: list[list[object]] = []
    more = False
    if run and error is None:
        try:
            result = database.execute(answer.sql)
            columns = result.columns
            fetched = database.fetch(result, 101)  # one extra row tells whether there is more
            result.close()
        except DatabaseError as e:
            error = str(e)
        else:
            more = len(fetched) > 100
            # Blobs as hex, as the exports write them.
            rows = [[v.hex() if isinstance(v, bytes) else v for v in r] for r in fetched[:100]]
    database.close()

    if as_json:
        typer.echo(json.dumps({
            "question": question, "sql": answer.sql, "columns": columns, "rows": rows,
            "error": error, "model": engine.name, "seconds": round(answer.seconds, 3),
        }, ensure_ascii=False))
    else:
        if answer.sql:
            typer.echo(answer.sql.rstrip(";") + ";")
        for note in answer.notes:
            typer.echo(f"gemma-sql: note: {note}", err=True)
        for p in answer.problems:
            if not p.fatal:
                typer.echo(f"gemma-sql: warning: {p.message}", err=True)
        if columns:
            text = [["NULL" if v is None else shown_number(v) if isinstance(v, int | float)
                     else str(v)[:40] for v in r] for r in rows]
            widths = [max([len(c), *(len(r[i]) for r in text)]) for i, c in enumerate(columns)]
            # Numbers line up on the right, as in the app's results table.
            right = [bool(rows) and all(isinstance(r[i], int | float) or r[i] is None
                                        for r in rows) for i in range(len(columns))]

            def line(cells: list[str]) -> str:
                return "  ".join(v.rjust(w) if r else v.ljust(w)
                                 for v, w, r in zip(cells, widths, right, strict=True)).rstrip()

            typer.echo()
            typer.echo(line(columns))
            typer.echo(line(["-" * w for w in widths]))
            for r in text:
                typer.echo(line(r))
            typer.echo(f"({len(rows)} rows{', more not shown' if more else ''})")
    if error is not None:
        raise fail(error, 1)


# --- eval and finetune (finetune/ is imported inside the commands: --help stays instant) ---


@app.command("eval")
def eval_cmd(
    data: Annotated[
        Path, typer.Argument(help="JSONL: question, sql (gold), and db (path) or db_id.")
    ],
    db_root: Annotated[
        Path | None, typer.Option("--db-root", help="Folder of <db_id>/<db_id>.sqlite files.")
    ] = None,
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    device: DeviceOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Only the first N questions.")] = 0,
    beams: Annotated[int, typer.Option(
        "--beams", help="When an answer fails the check, try the N next most likely.")] = 4,
    focus: FocusOpt = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Execution accuracy of a model on DATA (through the same pipeline as the app)."""
    import json

    if not data.is_file():
        raise fail(f"{data}: no such file")
    from finetune.eval import evaluate
    from model.llm.checkpoints import DEFAULT_MODEL, ModelUnavailable
    from model.llm.loading import load_engine

    name = model or DEFAULT_MODEL
    try:
        engine = load_engine(name, adapter=adapter, device=device,
                             progress=lambda m: typer.echo(m, err=True))
    except ModelUnavailable as e:
        raise fail(str(e), 1) from None
    from tqdm import tqdm

    bar = tqdm(total=limit or sum(1 for line in data.open() if line.strip()), unit="q",
               file=sys.stderr, dynamic_ncols=True, desc="eval")
    correct = 0

    def tick(record: object) -> None:
        nonlocal correct
        correct += bool(getattr(record, "correct", False))
        bar.update(1)
        bar.set_postfix(acc=f"{correct / bar.n:.1%}")

    try:
        report = evaluate(data, engine, db_root=db_root, limit=limit,
                          model_name=name + (f" + {adapter}" if adapter else ""), on_record=tick,
                          beams=beams, focused=focus)
    except (ValueError, OSError) as e:
        raise fail(str(e), 1) from None
    finally:
        bar.close()
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=1))
        return
    s = report.summary()
    typer.echo(f"execution accuracy  {s['execution_accuracy']:.1%}  ({s['n']} questions)")
    typer.echo(f"valid SQL           {s['valid_sql_rate']:.1%}")
    typer.echo(f"seconds a question  {s['mean_seconds']:.2f}")
    typer.echo(f"names corrected     {s['corrected']}; joins mended {s['mended']}; "
               f"figures shown {s['ranked']}; repaired {s['repaired']}; "
               f"from the question's tables alone {s['focused']}")
    if s["gold_failed"]:
        typer.echo(f"gold queries failed {s['gold_failed']} (left out)")


finetune_app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    help="Q-LoRA fine-tuning (train with the options below; or a subcommand).",
)
app.add_typer(finetune_app, name="finetune")


def _train_flags() -> tuple[list[inspect.Parameter], dict[str, object]]:
    """One typer option a TrainConfig field (finetune/config.py imports no torch)."""
    from dataclasses import MISSING, fields

    from finetune.config import TrainConfig

    kinds = {"int": int, "float": float, "str": str, "bool": bool}
    params, hints = [], {}
    for f in fields(TrainConfig):
        kind = kinds[str(f.type)]
        flag = "--" + f.name.replace("_", "-")
        decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
        hint = Annotated[kind, typer.Option(*decls, help=f.metadata["help"])]
        default = f.default if f.default is not MISSING else None
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                        default=default, annotation=hint))
        hints[f.name] = hint
    return params, hints


def finetune_cmd(ctx: typer.Context, **options: object) -> None:
    """Train a LoRA adapter (Q-LoRA with --quant nf4) on text-to-SQL data.

    Example, offline on CPU: gemma-sql finetune prepare-spider, then
    gemma-sql finetune --base gemma-3-270m-sql --quant none --data runs/spider/train.jsonl
    """
    if ctx.invoked_subcommand is not None:
        return
    from finetune.config import TrainConfig
    from finetune.data import DataError
    from finetune.train import train

    try:
        metrics = train(TrainConfig(**options))  # type: ignore[arg-type]
    except (DataError, ValueError, FileNotFoundError) as e:
        raise fail(str(e), 1) from None
    if metrics.get("status") == "interrupted":
        raise typer.Exit(130)


_params, _hints = _train_flags()
finetune_cmd.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                       annotation=typer.Context), *_params]
)
finetune_cmd.__annotations__ = {"ctx": typer.Context, **_hints, "return": None}
finetune_app.callback()(finetune_cmd)


@finetune_app.command("prepare-spider")
def prepare_spider_cmd(
    source: Annotated[Path, typer.Option(help="Spider train JSONL.")] = Path(
        "/work/shared/data/train/spider_train.jsonl"),
    db_root: Annotated[Path, typer.Option(help="Folder of <db_id>/<db_id>.sqlite.")] = Path(
        "/work/shared/data/spider_train_databases"),
    train_out: Annotated[Path, typer.Option(help="Train split (with contexts).")] = Path(
        "runs/spider/train.jsonl"),
    eval_out: Annotated[Path, typer.Option(help="Held-out split (question, sql, db_id).")] = Path(
        "finetune/data/spider_heldout.jsonl"),
    heldout: Annotated[int, typer.Option(help="Databases held out whole.")] = 20,
    seed: Annotated[int, typer.Option(help="Chooses the held-out databases.")] = 0,
) -> None:
    """Spider -> train.jsonl (contexts rendered from the live databases) + held-out eval."""
    from finetune.data import prepare_spider

    if not source.is_file():
        raise fail(f"{source}: no such file")
    split = prepare_spider(source, db_root, train_out, eval_out, heldout, seed)
    typer.echo(split.line())
    typer.echo(f"train: {train_out}\neval:  {eval_out} (held out: {', '.join(split.heldout_dbs)})")


@finetune_app.command("merge")
def merge_cmd(
    adapter: Annotated[Path, typer.Argument(help="Adapter directory from gemma-sql finetune.")],
    out: Annotated[Path, typer.Argument(help="Output directory for the merged model.")],
    base: Annotated[
        str | None, typer.Option(help="Base model (default: the one the adapter names).")
    ] = None,
    push_to_hub: Annotated[
        str | None, typer.Option("--push-to-hub", help="Also upload the adapter to this repo.")
    ] = None,
) -> None:
    """Merge ADAPTER into its base and write full weights (safetensors + tokenizer) to OUT."""
    from finetune.export import ExportError, merge, push_adapter

    try:
        path = merge(adapter, out, base, say=lambda m: typer.echo(m, err=True))
        typer.echo(f"merged model: {path}")
        if push_to_hub:
            typer.echo(f"uploaded: {push_adapter(adapter, push_to_hub)}")
    except ExportError as e:
        raise fail(str(e), 1) from None


def main() -> None:
    app(prog_name="gemma-sql")


if __name__ == "__main__":
    sys.exit(main())
