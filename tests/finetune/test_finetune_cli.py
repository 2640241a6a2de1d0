"""`gemma-sql finetune`, `finetune merge`, `prepare-spider` and `eval` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from tiny import tiny_gemma
from typer.testing import CliRunner

from finetune.config import TrainConfig
from model.llm.prompting.prompt import read_layout
from tui.cli import app

runner = CliRunner()


def test_every_train_config_field_is_a_flag() -> None:
    import typer.main

    group = typer.main.get_command(app)
    finetune = group.commands["finetune"]  # type: ignore[attr-defined]
    flags = {opt for p in finetune.params for opt in p.opts}
    for f in fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in flags, f.name
    assert {"merge", "prepare-spider"} <= set(finetune.commands)
    assert runner.invoke(app, ["finetune", "--help"]).exit_code == 0


def test_help_imports_no_torch() -> None:
    code = "import sys, tui.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_m_finetune_cli_is_the_train_command() -> None:
    """What torchrun and accelerate launch run: the same flags as `gemma-sql finetune`."""
    result = subprocess.run([sys.executable, "-m", "finetune.cli", "--help"],
                            capture_output=True, text=True, check=True)
    assert "--max-steps" in result.stdout and "prepare-spider" in result.stdout


def test_finetune_then_merge_a_local_base(tok: Any, rows_file: Path, tmp_path: Path) -> None:
    base = tmp_path / "base"
    tiny_gemma(tok).save_pretrained(base)
    tok.save_pretrained(base)
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "finetune", "--base", str(base), "--quant", "none", "--data", str(rows_file),
        "--output", str(out), "--max-steps", "2", "--batch-size", "2", "--lora-r", "4",
        "--no-gradient-checkpointing", "--save-every", "1", "--prompt-layout", "context-first",
    ])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2
    assert read_layout(out) == "context-first"
    merged = tmp_path / "merged"
    result = runner.invoke(app, ["finetune", "merge", str(out), str(merged)])
    assert result.exit_code == 0, result.output
    assert (merged / "model.safetensors").is_file() and (merged / "tokenizer.json").is_file()
    assert (merged / "answer_vocab.json").read_text() == (out / "answer_vocab.json").read_text()
    assert (merged / "answer_drafts.json").read_text() == (out / "answer_drafts.json").read_text()
    assert read_layout(merged) == "context-first"
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(merged)
    assert not any("lora" in n for n, _ in model.named_parameters())


def test_bad_data_and_bad_adapter_are_one_line_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["finetune", "--data", str(tmp_path / "none.jsonl"),
                                 "--base", str(tmp_path)])
    assert result.exit_code == 1 and "no such file" in result.output
    result = runner.invoke(app, ["finetune", "merge", str(tmp_path), str(tmp_path / "o")])
    assert result.exit_code == 1 and "not a PEFT adapter" in result.output
    result = runner.invoke(app, ["eval", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_data_that_is_not_a_regular_file_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    """A FIFO given as --data used to block the run forever, after making its output dir."""
    fifo, out = tmp_path / "rows.jsonl", tmp_path / "run"
    os.mkfifo(fifo)
    for data, problem in ((fifo, "is a FIFO (named pipe), not a file"),
                          (tmp_path, "is a directory")):
        result = runner.invoke(app, ["finetune", "--data", str(data), "--output", str(out)])
        assert result.exit_code == 1, result.output
        assert result.output.strip().endswith(f"{data}: {problem}")
        assert not out.exists()


def test_an_output_that_is_a_file_or_holds_a_run_is_one_line_and_left_alone(
    rows_file: Path, tmp_path: Path
) -> None:
    """--output naming a file used to end in FileExistsError; a folder holding another run was
    trained into, over its files."""
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    result = runner.invoke(app, ["finetune", "--data", str(rows_file), "--output", str(taken)])
    assert result.exit_code == 1 and result.output.strip().endswith(
        f"{taken}: is a file, not a folder; choose another --output"), result.output
    assert taken.read_text() == "mine"
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    result = runner.invoke(app, ["finetune", "--data", str(rows_file), "--output", str(run)])
    assert result.exit_code == 1 and "holds files already; --resume goes on" in result.output
    assert [p.name for p in run.iterdir()] == ["metrics.json"]


def test_an_unknown_prompt_layout_is_one_line_and_writes_nothing(
    rows_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["finetune", "--data", str(rows_file), "--output", str(out),
                                 "--prompt-layout", "sideways"])
    assert result.exit_code == 1, result.output
    assert "prompt layout must be question-first or context-first, not 'sideways'" in result.output
    assert not out.exists()


def test_push_to_hub_offline_is_one_line(tmp_path: Path, monkeypatch: Any) -> None:
    from finetune.export import ExportError, push_adapter

    (tmp_path / "adapter_config.json").write_text('{"base_model_name_or_path": "x"}')
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    try:
        push_adapter(tmp_path, "someone/gemma-sql-test")
    except ExportError as e:
        assert "\n" not in str(e)
    else:
        raise AssertionError("upload should fail offline")


def test_eval_command_prints_json(tmp_path: Path, monkeypatch: Any) -> None:
    """`gemma-sql eval --json` end to end, with stand-ins for the model and pipeline.ask."""
    import sqlite3
    import types

    import model.llm.decoding.loading
    from model.llm.pipeline.answer import Answer

    fake_ask = types.ModuleType("model.llm.pipeline.ask")
    fake_ask.ask = lambda engine, db, question, settings: Answer(  # type: ignore[attr-defined]
        question,
        "SELECT count(*) FROM t" if "how many" in question else "SELECT x FROM t",
        focused=settings.focused, mended=["x → y"] if "how many" in question else [])
    monkeypatch.setitem(sys.modules, "model.llm.pipeline.ask", fake_ask)
    monkeypatch.setattr(model.llm.decoding.loading, "load_engine", lambda *a, **k: "engine")
    root = tmp_path / "dbs"
    (root / "d").mkdir(parents=True)
    conn = sqlite3.connect(root / "d" / "d.sqlite")
    conn.executescript("CREATE TABLE t (a int); INSERT INTO t VALUES (1), (2);")
    conn.commit()
    conn.close()
    data = tmp_path / "e.jsonl"
    data.write_text(
        json.dumps({"question": "how many rows?", "sql": "SELECT count(a) FROM t", "db_id": "d"})
        + "\n" + json.dumps({"question": "list a", "sql": "SELECT a FROM t", "db_id": "d"}) + "\n")
    result = runner.invoke(app, ["eval", str(data), "--db-root", str(root), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["n"] == 2 and out["execution_accuracy"] == 0.5 and out["valid_sql_rate"] == 0.5
    assert out["focused"] == 2  # the app's pipeline: the question's tables first
    assert out["mended"] == 1
    result = runner.invoke(app, ["eval", str(data), "--db-root", str(root), "--json", "--no-focus"])
    assert json.loads(result.stdout)["focused"] == 0
    result = runner.invoke(app, ["eval", str(data), "--db-root", str(root), "--limit", "1"])
    assert "execution accuracy  100.0%  (1 questions)" in result.stdout
    seen: list[bool] = []
    fake_ask.ask = lambda engine, db, question, settings: (  # type: ignore[attr-defined]
        seen.append(settings.check_runs) or Answer(question, "SELECT 1"))
    runner.invoke(app, ["eval", str(data), "--db-root", str(root), "--json"])
    runner.invoke(app, ["eval", str(data), "--db-root", str(root), "--json", "--no-check-runs"])
    assert seen == [True, True, False, False]


def test_sigterm_saves_and_exits_like_ctrl_c(tok: Any, rows_file: Path, tmp_path: Path) -> None:
    import os
    import signal
    import time

    base = tmp_path / "base"
    tiny_gemma(tok).save_pretrained(base)
    tok.save_pretrained(base)
    out = tmp_path / "run"
    cli = Path(sys.executable).with_name("gemma-sql")
    proc = subprocess.Popen(
        [str(cli), "finetune", "--base", str(base), "--quant", "none", "--data", str(rows_file),
         "--output", str(out), "--max-steps", "100000", "--batch-size", "2", "--lora-r", "4",
         "--no-gradient-checkpointing", "--save-every", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    while not (out / "checkpoint" / "state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["steps"] >= 1
    assert (out / "adapter_model.safetensors").is_file()
