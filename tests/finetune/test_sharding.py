"""FSDP2 (--parallel fsdp, finetune/sharding.py) on CPU: two gloo processes, the tiny Gemma.

What runs here: the sharding, gradient accumulation without sync, clipping, gathering and
saving, in bf16 and in bitsandbytes' 4-bit NF4 (which runs on CPU too) with bf16 storage, and
accelerate's own reading of finetune/accelerate/fsdp_qlora.yaml. What does not: NCCL, GPUs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import run_two_ranks, tiny_gemma

from finetune.sharding import FsdpSettings, launched_with_fsdp, launcher_settings
from model.llm.weights.registry import nf4_config

ACCELERATE_CONFIG = Path(__file__).parents[2] / "finetune" / "accelerate" / "fsdp_qlora.yaml"


def accelerate_env() -> dict[str, str]:
    """The variables `accelerate launch --config_file fsdp_qlora.yaml` gives its processes,
    computed by accelerate's own launcher code (the config file parsed and validated)."""
    import os

    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(
        ["--config_file", str(ACCELERATE_CONFIG), "-m", "finetune.cli"])
    args, _, _ = _validate_launch_command(args)
    env = prepare_multi_gpu_env(args)
    return {k: v for k, v in env.items() if os.environ.get(k) != v}


def test_the_accelerate_config_is_valid_and_means_fsdp() -> None:
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(ACCELERATE_CONFIG))
    assert config.distributed_type == DistributedType.FSDP and config.num_processes == 2
    env = accelerate_env()
    assert launched_with_fsdp(env)
    assert launcher_settings(env) == FsdpSettings(
        layer_classes=("Gemma2DecoderLayer", "Gemma3DecoderLayer"), reshard_after_forward=True,
        offload_params=False, bf16_mixed_precision=True)
    assert launcher_settings({}) == FsdpSettings()  # plain torchrun --parallel fsdp
    # what the loop does not implement is refused, not ignored
    with pytest.raises(ValueError, match="FSDP_VERSION=1.*fsdp_version: 2"):
        launcher_settings({**env, "FSDP_VERSION": "1"})
    with pytest.raises(ValueError, match="FSDP_CPU_RAM_EFFICIENT_LOADING"):
        launcher_settings({**env, "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"})


def test_nf4_for_fsdp_stores_the_4bit_weights_as_bf16() -> None:
    """FSDP shards float tensors only: the packed 4-bit weights are stored as bf16."""
    plain, sharded = nf4_config(), nf4_config(storage_dtype=torch.bfloat16)
    assert plain.bnb_4bit_quant_storage == torch.uint8
    assert sharded.bnb_4bit_quant_storage == torch.bfloat16
    assert sharded.bnb_4bit_compute_dtype == torch.bfloat16 and sharded.load_in_4bit


def close(a: dict[str, list[float]], b: dict[str, list[float]], rtol: float) -> bool:
    """Every tensor of `a` within rtol of `b`'s, relative to its norm (Adam's first steps move
    each weight by about lr, whatever a gradient's size: rounding flips a few tiny ones)."""
    assert a.keys() == b.keys() and a
    errors = {k: float((torch.tensor(a[k]) - torch.tensor(b[k])).norm()
                       / torch.tensor(b[k]).norm().clamp_min(1e-8)) for k in a}
    worst = max(errors, key=errors.__getitem__)
    print(f"worst relative difference {errors[worst]:.2e} ({worst})")
    return errors[worst] < rtol


@pytest.mark.parametrize("quant", ["none", "nf4"])
def test_fsdp_shards_the_base_and_trains_as_ddp_does(
    tok: Any, rows_file: Path, tmp_path: Path, quant: str
) -> None:
    """Two processes, 2 micro-batches a step (no sync on the first), clipping, a checkpoint
    every step: FSDP ends with the LoRA weights and losses of DDP on the same batches, each
    process holding half of every base weight, and the saved adapter loads with PEFT.
    bf16: launched as accelerate would with fsdp_qlora.yaml (its environment, --parallel left
    at ddp); nf4: --parallel fsdp under torchrun, the base loaded from disk in 4-bit."""
    from peft import PeftModel
    from safetensors.torch import load_file

    overrides: dict[str, Any] = dict(grad_accum=2, max_steps=3, save_every=1, lora_dropout=0.0)
    env: dict[str, str] = {}
    if quant == "nf4":
        base = tmp_path / "base"
        tiny_gemma(tok).save_pretrained(base)
        tok.save_pretrained(base)
        overrides |= dict(base=str(base), quant="nf4")
    else:
        # the config's bf16 mixed precision would make FSDP compute LoRA in bf16, DDP in fp32
        env = {**accelerate_env(), "ACCELERATE_MIXED_PRECISION": "no"}
    ddp = run_two_ranks(rows_file, tmp_path / "ddp", overrides)
    fsdp_overrides = overrides if env else {**overrides, "parallel": "fsdp"}
    fsdp = run_two_ranks(rows_file, tmp_path / "fsdp", fsdp_overrides, env)

    metrics = fsdp[0][0]
    assert metrics["parallel"] == "fsdp" and metrics["status"] == "finished"
    assert metrics["steps"] == 3 and fsdp[1][0] == {}
    for rank in (0, 1):
        wrapping = fsdp[rank][2]
        assert wrapping["loss_module"] == "FSDPAnswerLoss", wrapping  # fully_shard's class
        for local, whole, dtype in wrapping["base_weights"]:
            assert local[0] * 2 == whole[0], (local, whole)  # half of each base weight
            assert dtype == "torch.bfloat16"  # nf4: the packed 4-bit storage, as bf16
        assert ddp[rank][2]["loss_module"] == "DistributedDataParallel"
    # the same training as DDP: losses and the (gathered) LoRA weights, equal on both ranks
    assert fsdp[0][1] == fsdp[1][1]
    assert torch.allclose(torch.tensor(fsdp[0][3]), torch.tensor(ddp[0][3]), atol=1e-3)
    assert close(fsdp[0][1], ddp[0][1], rtol=1e-2)
    # what rank 0 saved is the whole adapter, as trained, and PEFT loads it
    saved = load_file(str(tmp_path / "fsdp" / "adapter_model.safetensors"))
    trained = {k.replace(".default", ""): v for k, v in fsdp[0][1].items()}
    assert close({k: v.float().flatten().tolist() for k, v in saved.items()}, trained, rtol=1e-2)
    assert any(v.abs().max() > 0 for k, v in saved.items() if "lora_B" in k)
    reloaded = PeftModel.from_pretrained(tiny_gemma(tok), tmp_path / "fsdp")
    assert sum("lora_" in n for n, _ in reloaded.named_parameters()) == len(saved)
