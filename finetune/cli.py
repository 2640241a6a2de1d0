"""`gemma-sql finetune` (train, `prepare-spider`, `merge`, `export-gguf`) and `gemma-sql eval`.

tui/cli.py mounts `app` as `gemma-sql finetune` and `eval_cmd` as `gemma-sql eval`; the options
both command lines share are in finetune/options.py. `python -m finetune.cli --flag value ...`
trains: that is what torchrun and accelerate launch run. The training flags are built from
TrainConfig (one option a field). Heavy imports (torch, finetune.train) happen inside the
commands: `--help` stays instant.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from finetune.config import TrainConfig
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
    engine_or_exit,
    fail,
)
from model.llm.pipeline.settings import Settings
from model.sqlite.files import file_problem

if TYPE_CHECKING:
    from finetune.sample import Question

# --- eval (mounted by tui/cli.py as the top-level `gemma-sql eval`) -----------------------


def eval_cmd(
    data: Annotated[
        Path, typer.Argument(help="JSONL: question, sql (gold), and db (path) or db_id.",
                             readable=False)  # file_problem says why, in one line
    ],
    db_root: Annotated[
        Path | None, typer.Option("--db-root", help="Folder of <db_id>/<db_id>.sqlite files.")
    ] = None,
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    device: DeviceOpt = None,
    endpoint: EndpointOpt = None,
    endpoint_model: EndpointModelOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Only the first N questions.")] = 0,
    beams: Annotated[int, typer.Option(
        "--beams", help="When an answer fails the check, try the N next most likely.")] = 4,
    focus: FocusOpt = True,
    check_runs: CheckRunsOpt = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    dtype: DtypeOpt = None,
    # No limit by default (every draw ends too): accuracy does not depend on the machine's
    # speed and load. With --budget 6 (the app's default) it scores what the app answers here.
    budget: BudgetOpt = 0.0,
) -> None:
    """Execution accuracy of a model on DATA (through the same pipeline as the app)."""
    import json

    if (problem := file_problem(data)) is not None:
        raise fail(f"{data}: {problem}")
    from finetune.eval import evaluate
    from model.llm.weights.registry import DEFAULT_MODEL, ModelUnavailable

    engine = engine_or_exit(model, adapter, device, endpoint, endpoint_model,
                            progress=lambda m: typer.echo(m, err=True), dtype=dtype)
    name = f"{engine.name} @ {engine.device}" if endpoint else model or DEFAULT_MODEL
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
                          settings=Settings(beams=beams, focused=focus, budget=budget,
                                            check_runs=check_runs))
    except (ValueError, OSError, ModelUnavailable) as e:  # ModelUnavailable: a server failed
        raise fail(str(e), 1) from None
    finally:
        bar.close()
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=1))
    else:
        print_summary(report.summary())


def print_summary(s: dict[str, Any]) -> None:
    """eval's figures as lines of text (--json prints the report itself)."""
    typer.echo(f"execution accuracy  {s['execution_accuracy']:.1%}  ({s['n']} questions)")
    typer.echo(f"top-3               {s['top3_accuracy']:.1%}  (the answer or one of the next "
               "two alternatives)")
    typer.echo(f"valid SQL           {s['valid_sql_rate']:.1%}")
    typer.echo(f"seconds a question  {s['mean_seconds']:.2f} ({s['dtype'] or '?'}), median "
               f"{s['median_seconds']:.2f}")
    if s["out_of_time"]:
        typer.echo(f"out of time         {s['out_of_time']} (the budget stopped the checks)")
    typer.echo(f"names corrected     {s['corrected']}; joins mended {s['mended']}; "
               f"repaired {s['repaired']}; "
               f"from the question's tables alone {s['focused']}; chosen by agreement "
               f"{s['voted']}; values found {s['linked']}")
    if s["gold_failed"]:
        typer.echo(f"gold queries failed {s['gold_failed']} (left out)")


# --- finetune: train (the app's callback), prepare-spider, merge, export-gguf -------------

app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Q-LoRA fine-tuning (train with the options below; or a subcommand).",
)


def train_flags() -> tuple[list[inspect.Parameter], dict[str, Any]]:
    """One typer option a TrainConfig field (finetune/config.py imports no torch)."""
    kinds: dict[str, Any] = {"int": int, "float": float, "str": str, "bool": bool}
    params: list[inspect.Parameter] = []
    hints: dict[str, Any] = {}
    for f in fields(TrainConfig):
        kind = kinds[str(f.type)]
        flag = "--" + f.name.replace("_", "-")
        decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
        # the type is the field's, chosen at run time: typer reads it, mypy cannot
        hint = Annotated[kind, typer.Option(*decls, help=f.metadata["help"])]  # type: ignore[valid-type]
        default = f.default if f.default is not MISSING else None
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                        default=default, annotation=hint))
        hints[f.name] = hint
    return params, hints


def finetune_cmd(ctx: typer.Context, **options: object) -> None:
    """Train a LoRA adapter (Q-LoRA with --quant nf4) on text-to-SQL data.

    Example, offline on CPU: gemma-sql finetune prepare-spider --source ... --db-root ..., then
    gemma-sql finetune --base gemma-3-270m-sql --quant none --data runs/spider/train.jsonl
    """
    if ctx.invoked_subcommand is not None:
        return
    from finetune.data import DataError
    from finetune.train import train

    try:
        if options.get("recipe"):  # the file's settings, under the flags typed
            # by name: typer ships its own copy of click, and so of the enum
            given = {name for name in options
                     if getattr(ctx.get_parameter_source(name), "name", "") != "DEFAULT"}
            config = TrainConfig.with_recipe(options, given)
        else:
            config = TrainConfig(**options)  # type: ignore[arg-type]
        metrics = train(config)
    except (DataError, ValueError, FileNotFoundError) as e:
        raise fail(str(e), 1) from None
    if metrics.get("status") == "interrupted":
        raise typer.Exit(130)


# typer reads the options from the signature: give it one parameter a TrainConfig field
_params, _hints = train_flags()
finetune_cmd.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                       annotation=typer.Context), *_params]
)
finetune_cmd.__annotations__ = {"ctx": typer.Context, **_hints, "return": None}
app.callback()(finetune_cmd)


@app.command("prepare-spider")
def prepare_spider_cmd(
    source: Annotated[Path, typer.Option(help="Spider train JSONL.", show_default=False)],
    db_root: Annotated[Path, typer.Option(help="Folder of <db_id>/<db_id>.sqlite.",
                                          show_default=False)],
    train_out: Annotated[Path, typer.Option(help="Train split (with contexts).")] = Path(
        "runs/spider/train.jsonl"),
    eval_out: Annotated[Path | None, typer.Option(
        help="Held-out split (question, sql, db_id).",
        show_default="finetune/data/spider_heldout.jsonl in the package")] = None,
    heldout: Annotated[int, typer.Option(help="Databases held out whole.")] = 20,
    seed: Annotated[int, typer.Option(help="Chooses the held-out databases.")] = 0,
) -> None:
    """Spider -> train.jsonl (contexts rendered from the live databases) + held-out eval."""
    from finetune.data import HELDOUT_FILE, prepare_spider

    if (problem := file_problem(source)) is not None:
        raise fail(f"{source}: {problem}")
    eval_out = eval_out or HELDOUT_FILE
    split = prepare_spider(source, db_root, train_out, eval_out, heldout, seed)
    typer.echo(split.line())
    typer.echo(f"train: {train_out}\neval:  {eval_out} (held out: {', '.join(split.heldout_dbs)})")


@app.command("merge")
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


@app.command("export-gguf")
def export_gguf_cmd(
    adapter: Annotated[Path, typer.Argument(help="Adapter directory from gemma-sql finetune.")],
    out: Annotated[Path, typer.Argument(help="The GGUF file to write, e.g. gemma-sql.gguf.")],
    base: Annotated[str | None, typer.Option(
        help="Base model (default: the one the adapter names); the offline Gemma 3 270M only.")
    ] = None,
    kind: Annotated[str, typer.Option(
        "--type", metavar="f16|bf16|q8_0|f32",
        help="Weight type: f16, bf16 (the merged weights exactly), q8_0 (half the size), "
             "f32.")] = "f16",
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
) -> None:
    """Merge ADAPTER into its base and write one GGUF file for llama.cpp and Ollama."""
    from finetune.export import ExportError
    from finetune.gguf_export import GGUF_TYPES, export_gguf

    if kind not in GGUF_TYPES:  # a usage error, as typer's own are
        raise fail(f"--type must be one of {', '.join(GGUF_TYPES)}, not {kind!r}")
    try:
        done = export_gguf(adapter, out, base, kind, force, say=lambda m: typer.echo(m, err=True))
    except ExportError as e:
        raise fail(str(e), 1) from None
    typer.echo(f"gguf ({done.kind}, {done.size / 1e6:.0f} MB, {done.seconds:.0f} s): {done.path}")


# --- sample and grpo: both work through training questions on their databases ------------

QuestionsArg = Annotated[Path, typer.Argument(
    help="JSONL of training questions: question, sql (gold), db_id.")]
TrainingDbRootOpt = Annotated[Path, typer.Option(
    "--db-root", help="Folder of <db_id>/<db_id>.sqlite files.", show_default=False)]
StartOpt = Annotated[int, typer.Option("--start", min=0, help="Skip the first N questions.")]
LimitOpt = Annotated[int, typer.Option("--limit", min=0, help="Only N questions from --start "
                                                              "(0: all).")]


def training_questions(data: Path, db_root: Path) -> list[Question]:
    """The questions of `data`, or one line and exit 2 (1 for what is inside the file)."""
    from finetune.sample import read_questions

    if (problem := file_problem(data)) is not None:
        raise fail(f"{data}: {problem}")
    if not db_root.is_dir():
        raise fail(f"--db-root {db_root}: not a folder")
    try:
        return read_questions(data)
    except (ValueError, OSError) as e:
        raise fail(str(e), 1) from None


@app.command("sample")
def sample_cmd(
    data: QuestionsArg,
    db_root: TrainingDbRootOpt,
    out: Annotated[Path, typer.Option(
        "--out", help="JSONL the kept answers are appended to (rerun: goes on where it "
                      "stopped).")] = Path("runs/spider/kept.jsonl"),
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Answers drawn a question.")] = 8,
    temperature: Annotated[float, typer.Option(
        "--temperature", min=0.01, help="Sampling temperature.")] = 0.8,
    start: StartOpt = 0,
    limit: LimitOpt = 0,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=8)] = 160,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the draws.")] = 0,
) -> None:
    """Draw K answers a training question with the current adapter; keep the right ones.

    Each answer runs read-only on its training database; the distinct ones whose result equals
    the gold's go to --out, for training with --kept (docs/training.md).
    """
    from finetune.sample import SampleReport, pending, sample_file
    from model.sqlite.db import DatabaseError

    questions = training_questions(data, db_root)
    report = SampleReport()
    todo = pending(questions, out, db_root, start, limit, report)
    engine = engine_or_exit(model, adapter, device, None, None,
                            progress=lambda m: typer.echo(m, err=True), dtype=dtype)
    from tqdm import tqdm

    bar = tqdm(total=len(todo) + report.skipped_done, initial=report.skipped_done, unit="q",
               file=sys.stderr, dynamic_ncols=True, desc="sample")

    def tick(outcome: object) -> None:
        bar.update(1)
        bar.set_postfix(kept=report.kept, greedy=report.greedy_correct)

    try:
        sample_file(engine, todo, db_root, out, k=k, temperature=temperature,
                    max_new_tokens=max_new_tokens, seed=seed, report=report, on_question=tick)
    except KeyboardInterrupt:
        bar.close()
        typer.echo(f"interrupted; rerun the same command to go on. {report.line()}", err=True)
        raise typer.Exit(130) from None
    except (OSError, DatabaseError) as e:  # a database file missing or unreadable
        raise fail(str(e), 1) from None
    finally:
        bar.close()
    typer.echo(report.line())
    typer.echo(f"kept: {out}")


@app.command("grpo")
def grpo_cmd(
    data: QuestionsArg,
    db_root: TrainingDbRootOpt,
    adapter: Annotated[Path | None, typer.Option(
        "--adapter", help="The supervised adapter to start from, and the KL term's reference.",
        show_default="the shipped one")] = None,
    output: Annotated[Path, typer.Option("--output", help="Output directory.")] = Path(
        "runs/grpo"),
    group: Annotated[int, typer.Option("--group", min=2, help="Answers drawn a question.")] = 8,
    questions: Annotated[int, typer.Option("--questions", min=1, help="Questions a step.")] = 1,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimizer steps in all.")] = 100,
    lr: Annotated[float, typer.Option("--lr", min=0)] = 1e-5,
    beta: Annotated[float, typer.Option("--beta", min=0, help="Weight of the KL term.")] = 0.04,
    temperature: Annotated[float, typer.Option("--temperature", min=0.01)] = 1.0,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=8)] = 128,
    start: StartOpt = 0,
    limit: LimitOpt = 0,
    save_every: Annotated[int, typer.Option("--save-every", min=0)] = 10,
    max_minutes: Annotated[float, typer.Option(
        "--max-minutes", min=0, help="Stop and save after this many minutes (0: no limit).")] = 0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue from OUTPUT/checkpoint.")] = False,
    device: DeviceOpt = None,
) -> None:
    """Reinforce the adapter with an execution reward (GRPO; docs/training.md)."""
    from finetune.grpo import GrpoConfig, grpo, load_policy
    from finetune.sample import SampleReport, select
    from model.llm.decoding.loading import resolve_device
    from model.llm.prompting.prompt import QUESTION_FIRST, read_layout
    from model.llm.weights.registry import DEFAULT_MODEL, MODELS, ModelUnavailable
    from model.sqlite.db import DatabaseError

    training = training_questions(data, db_root)
    start_adapter = adapter or MODELS[DEFAULT_MODEL].adapter
    if start_adapter is None or not (start_adapter / "adapter_config.json").is_file():
        raise fail(f"--adapter {start_adapter}: not a PEFT adapter folder")
    report = SampleReport()
    chosen = select(training, db_root, start, limit, report)
    if not chosen:
        raise fail(f"{data}: no training questions in the range chosen", 1)
    if report.skipped_missing:
        typer.echo(f"skipped {report.skipped_missing} questions whose database is not under "
                   f"--db-root", err=True)
    cfg = GrpoConfig(output=str(output), group=group, questions=questions, steps=steps, lr=lr,
                     beta=beta, temperature=temperature, max_new_tokens=max_new_tokens,
                     save_every=save_every, max_minutes=max_minutes, seed=seed, resume=resume)
    try:
        where = resolve_device(device)
        policy, tokenizer = load_policy(start_adapter, where, lambda m: typer.echo(m, err=True))
        metrics = grpo(cfg, policy, tokenizer, chosen, db_root,
                       read_layout(start_adapter) or QUESTION_FIRST, start_adapter,
                       say=lambda m: typer.echo(m, err=True))
    except (ModelUnavailable, DatabaseError, OSError) as e:
        raise fail(str(e), 1) from None
    if metrics["status"] == "interrupted":
        raise typer.Exit(130)


if __name__ == "__main__":  # torchrun/accelerate: `-m finetune.cli --flag value ...`
    app(prog_name="python -m finetune.cli")
