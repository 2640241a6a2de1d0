"""What a run leaves in OUT: the bf16 adapter, its config, metrics, loss curve and model card."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetune.checkpoint import TrainState
from finetune.config import TrainConfig
from finetune.lora import OFFLINE_BASES
from model.llm import adapter_files


def save_adapter(model: nn.Module, out: Path, base: str,
                 weights: dict[str, torch.Tensor] | None = None) -> None:
    """adapter_config.json + adapter_model.safetensors in bf16, loadable by PEFT as-is;
    `weights`: the whole adapter gathered from FSDP's shards (else the model's own)."""
    from safetensors.torch import load_file, save_file

    model.save_pretrained(out, state_dict=weights)
    path = out / adapter_files.WEIGHTS
    weights = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file(str(path)).items()}
    save_file(weights, str(path), metadata={"format": "pt"})
    config = json.loads((out / adapter_files.CONFIG).read_text())
    config["base_model_name_or_path"] = base  # the name the user gave, not a cache path
    (out / adapter_files.CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def plot_loss(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (answer tokens)")
    ax.set_title("gemma-sql finetune")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_command() -> str:
    """The command line that started this process, as one would type it again ("" in-process)."""
    if len(sys.argv) > 1 and sys.argv[1] == "finetune":
        return " ".join(["gemma-sql", "finetune", *sys.argv[2:]])
    if sys.argv and Path(sys.argv[0]).parts[-2:] == ("finetune", "cli.py"):
        return " ".join(["python -m finetune.cli", *sys.argv[1:]])
    return ""


def model_card(cfg: TrainConfig, metrics: dict[str, Any]) -> str:
    command = run_command()
    config = "\n".join(f"| {k} | {v} |" for k, v in cfg.to_dict().items())
    base = cfg.base if cfg.base not in OFFLINE_BASES else "google/gemma-3-270m"
    return f"""---
base_model: {base}
library_name: peft
pipeline_tag: text-generation
tags: [text-to-sql, sqlite, lora, gemma-sql]
---

# gemma-sql LoRA adapter

A LoRA adapter for `{cfg.base}` that turns English questions about a SQLite database into
SQL, trained by `gemma-sql finetune` (the prompt format is `model/llm/prompt.py` of gemma-sql).

| | |
|---|---|
| command | `{command or "train(TrainConfig(...))"}` |
| status | {metrics["status"]} |
| seed | {cfg.seed} |
| data | `{cfg.data}` ({metrics["examples"]} examples, sha256 {metrics["data_hash"]}) |
| steps | {metrics["steps"]} |
| tokens | {metrics["tokens"]} |
| wall time | {metrics["wall_seconds"]:.0f} s |
| tokens/s | {metrics["tokens_per_second"]:.0f} |
| final loss | {metrics["final_loss"]:.4f} |
| device | {metrics["device"]} |

`answer_vocab.json` lists the tokens of the training answers: gemma-sql decodes over those and
the prompt's words only (`model/llm/vocab.py`), a few thousand of the output layer's rows;
`answer_drafts.json`, which tokens followed which in them: greedy decoding checks its guesses
several at a time (`model/llm/drafts.py`).

## Configuration

| field | value |
|---|---|
{config}
"""


def finish(out: Path, model: nn.Module, cfg: TrainConfig, state: TrainState,
           extra: dict[str, Any], weights: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Adapter, config, metrics, loss curve and model card into OUT."""
    save_adapter(model, out, cfg.base, weights)
    tail = [h["loss"] for h in state.history[-10:]]
    metrics = {
        "status": state.status,
        "steps": state.step,
        "tokens": state.tokens,
        "wall_seconds": state.elapsed,
        "tokens_per_second": state.tokens / state.elapsed if state.elapsed else 0.0,
        "final_loss": sum(tail) / len(tail) if tail else float("nan"),
        "seed": cfg.seed,
        **extra,
        "history": state.history,
    }
    (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if state.history:
        plot_loss(state.history, out / "loss.png")
    (out / "README.md").write_text(model_card(cfg, metrics))
    return metrics
