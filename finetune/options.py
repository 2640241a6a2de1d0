"""What both command lines share: `fail`, the options `ask`, `open`, `eval` and `sample` spell
alike, and opening their engine.

It lives in finetune/ because that is the lower of the two front ends: tui/cli.py mounts
finetune's commands and imports this; finetune never imports tui (pyproject's layers). model/
stays free of typer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from model.llm.weights.dtype import ENV_VAR as DTYPE_ENV_VAR
from model.llm.weights.dtype import Choice as DtypeChoice
from model.text import shown

if TYPE_CHECKING:
    from model.llm.protocol import TextEngine


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line to stderr and return the Exit to raise (no traceback, no side effect).
    The message may quote a database, a model or a server: its control characters are drawn."""
    typer.echo(f"gemma-sql: {shown(message)}", err=True)
    return typer.Exit(code)


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
EndpointOpt = Annotated[str | None, typer.Option(
    "--endpoint", envvar="GEMMA_SQL_ENDPOINT", show_default=False,
    help="Ask an OpenAI-compatible server (vLLM, llama-server, Ollama's /v1, transformers "
         "serve) instead of loading a model here, e.g. http://127.0.0.1:8000/v1. API key: "
         "$GEMMA_SQL_API_KEY.")]
EndpointModelOpt = Annotated[str | None, typer.Option(
    "--endpoint-model", show_default=False,
    help="The model's name on the --endpoint server (default: the one it serves, or gemma-sql).")]
DtypeOpt = Annotated[DtypeChoice | None, typer.Option(
    "--dtype", case_sensitive=False,
    help=f"Compute dtype. auto: bf16 where the hardware has it (AVX512-BF16/AMX, ARM bf16, "
         f"recent GPUs), else fp32 on CPUs, fp16 on older GPUs. Default: ${DTYPE_ENV_VAR}, "
         "else auto.", show_default=False)]
BudgetOpt = Annotated[float, typer.Option(
    "--budget", min=0, metavar="SECONDS",
    help="Seconds a question may take in all: the first answer is always written; checking "
         "other answers and asking again stop when the time is up (0: no limit).")]
FocusOpt = Annotated[bool, typer.Option(
    "--focus/--no-focus",
    help="Ask first with the question's likeliest tables alone (as the app does; ctrl+t there "
         "asks with every table).")]
CheckRunsOpt = Annotated[bool, typer.Option(
    "--check-runs/--no-check-runs", envvar="GEMMA_SQL_CHECK_RUNS",
    help="Draw a few more answers and run them all read-only (bounded, results not shown) to "
         "choose the one most agree with; off for huge or slow databases "
         "(or GEMMA_SQL_CHECK_RUNS=0).")]


def check_endpoint(endpoint: str | None, model: str | None, device: str | None) -> None:
    """--model and --device choose a model loaded here: with --endpoint the server has it."""
    if endpoint and (model or device):
        raise fail("--endpoint asks a server: --model and --device are for a model loaded here "
                   "(--endpoint-model names the server's)")
    if endpoint:  # a warning, not a refusal (docs/serving.md)
        from model.llm.server.address import key_in_clear

        if (warning := key_in_clear(endpoint)) is not None:
            typer.echo(f"gemma-sql: warning: {shown(warning)}", err=True)


def engine_or_exit(model: str | None, adapter: Path | None, device: str | None,
                   endpoint: str | None, endpoint_model: str | None,
                   progress: Callable[[str], None] | None,
                   dtype: str | None = None) -> TextEngine:
    """model/llm/open.py's engine for a command; a model or server that is not there: one
    line, exit 1."""
    from model.llm.open import open_engine
    from model.llm.weights.registry import ModelUnavailable

    check_endpoint(endpoint, model, device)
    try:
        return open_engine(model, adapter, device, endpoint, endpoint_model, progress, dtype)
    except ModelUnavailable as e:
        raise fail(str(e), 1) from None
