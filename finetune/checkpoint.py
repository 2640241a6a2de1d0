"""What a resumed run needs: OUT/checkpoint (adapter weights, optimizer, RNG, step, history)."""

from __future__ import annotations

import json
import pickle
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetune.config import TrainConfig
from model.llm import adapter_files

CHECKPOINT = "checkpoint"


@dataclass
class TrainState:
    """Everything besides weights and optimizer that a resumed run needs."""

    step: int = 0  # optimizer steps done
    micro: int = 0  # micro-batches consumed by this rank (the data position)
    tokens: int = 0  # non-pad tokens seen
    elapsed: float = 0.0  # seconds of training before this process
    history: list[dict[str, float]] = field(default_factory=list)
    status: str = "running"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: Path, model: nn.Module, opt: torch.optim.Optimizer,
                    state: TrainState, cfg: TrainConfig,
                    adapter: dict[str, torch.Tensor] | None = None,
                    optimizer: dict[str, Any] | None = None) -> None:
    """Write OUT/checkpoint atomically (a kill mid-write leaves the previous one intact).

    Under FSDP the model and optimizer hold shards: `adapter` and `optimizer` are then their
    whole state, gathered by every rank first (finetune/sharding.py)."""
    tmp, final = out / (CHECKPOINT + ".tmp"), out / CHECKPOINT
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, state_dict=adapter)  # exact (fp32) adapter weights
    sharded = optimizer is not None
    torch.save({"optimizer": optimizer if sharded else opt.state_dict(), "sharded": sharded,
                "rng": rng_state()}, tmp / "training.pt")
    (tmp / "state.json").write_text(json.dumps(
        {"step": state.step, "micro": state.micro, "tokens": state.tokens,
         "elapsed": state.elapsed, "history": state.history, "config": cfg.to_dict()}))
    old = out / (CHECKPOINT + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out: Path, model: nn.Module, opt: torch.optim.Optimizer,
                    sharded: bool = False) -> TrainState:
    """Weights, optimizer and RNG back; `sharded`: the model is under FSDP (each rank takes its
    shard of the whole weights and optimizer state)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    ckpt = out / CHECKPOINT
    # weights_only: the file is read as data (tensors, numbers), never code that unpickling runs
    try:
        blob = torch.load(ckpt / "training.pt", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{ckpt / 'training.pt'}: not a checkpoint of ours ({first})") from None
    weights = load_file(str(ckpt / adapter_files.WEIGHTS))
    set_peft_model_state_dict(model, weights)  # FSDP2's load_state_dict takes whole tensors
    if blob.get("sharded", False) != sharded:
        raise ValueError(f"{ckpt}: saved with --parallel {'fsdp' if blob['sharded'] else 'ddp'}: "
                         "resume it the same way")
    if sharded:
        from finetune.sharding import load_optimizer

        load_optimizer(model, opt, blob["optimizer"])
    else:
        opt.load_state_dict(blob["optimizer"])
    set_rng_state(blob["rng"])
    s = json.loads((ckpt / "state.json").read_text())
    return TrainState(s["step"], s["micro"], s["tokens"], s["elapsed"], s["history"])
