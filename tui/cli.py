"""The `gemma-sql` command line: `open` (the default), `ask`, `eval`, `finetune`.

Commands are thin: they parse arguments and call model/ or finetune/. Heavy imports (torch,
textual) happen inside the command that needs them so `--help` stays instant.
"""

from __future__ import annotations

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
    from model.db import Database, DatabaseError
    from model.samples import CHINOOK

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
) -> None:
    """Write SQL for QUESTION about DB; print it (and with --run, its result)."""
    raise fail("ask: not implemented yet", 1)


def main() -> None:
    app(prog_name="gemma-sql")


if __name__ == "__main__":
    sys.exit(main())
