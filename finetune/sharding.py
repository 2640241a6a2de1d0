"""How several processes share a run: DDP (each holds the whole model) or FSDP2 (each holds 1/N
of the base's weights: for bases that do not fit one GPU). Everything FSDP-specific is here.

FSDP2 is torch's `fully_shard`: one shard group a decoder layer, the rest (embeddings, final
norm, output layer) in the root group around the loss module. LoRA's parameters train, the base
stays frozen; with --quant nf4 the packed 4-bit weights are stored as bf16
(`nf4_config(storage_dtype=...)`), a float tensor FSDP can shard, and bitsandbytes finds their
quantization state again on the module after each all-gather. Under `accelerate launch` with an
FSDP config (finetune/accelerate/fsdp_qlora.yaml) accelerate only sets environment variables;
`launcher_settings` reads them, so that file configures the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

PARALLEL_MODES = ("ddp", "fsdp")


def _env_true(env: Mapping[str, str], name: str, default: str = "false") -> bool:
    return env.get(name, default).strip().lower() in ("1", "true", "yes")


def launched_with_fsdp(env: Mapping[str, str] = os.environ) -> bool:
    """`accelerate launch` with `distributed_type: FSDP` sets ACCELERATE_USE_FSDP=true."""
    return _env_true(env, "ACCELERATE_USE_FSDP")


@dataclass(frozen=True)
class FsdpSettings:
    layer_classes: tuple[str, ...] = ()  # class names to shard one by one; () = the model's own
    reshard_after_forward: bool = True  # FULL_SHARD; False keeps layers gathered (SHARD_GRAD_OP)
    offload_params: bool = False  # keep the shards in CPU RAM (torch's CPUOffloadPolicy)
    bf16_mixed_precision: bool = False  # LoRA computed in bf16, gradients reduced in fp32


def launcher_settings(env: Mapping[str, str] = os.environ) -> FsdpSettings:
    """The FSDP settings accelerate's FSDP_* variables carry (defaults under plain torchrun);
    the ones this loop does not implement are refused rather than silently ignored."""
    if not launched_with_fsdp(env):
        return FsdpSettings()
    refused = {
        "FSDP_VERSION": (env.get("FSDP_VERSION", "2") != "2",
                         "the loop uses FSDP2 (fully_shard): set fsdp_version: 2"),
        "FSDP_AUTO_WRAP_POLICY": (
            env.get("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP") != "TRANSFORMER_BASED_WRAP",
            "only TRANSFORMER_BASED_WRAP (one shard group a decoder layer)"),
        "FSDP_CPU_RAM_EFFICIENT_LOADING": (
            _env_true(env, "FSDP_CPU_RAM_EFFICIENT_LOADING"),
            "every process loads the base itself; rank-0-only loading needs a broadcast the loop "
            "does not do"),
        "FSDP_ACTIVATION_CHECKPOINTING": (_env_true(env, "FSDP_ACTIVATION_CHECKPOINTING"),
                                          "use --gradient-checkpointing"),
        "ACCELERATE_MIXED_PRECISION": (
            env.get("ACCELERATE_MIXED_PRECISION", "no") not in ("no", "bf16"),
            "bf16 or no: fp16 would cast the bf16-stored 4-bit weights"),
    }
    problems = [f"{name}={env.get(name)}: {why}" for name, (bad, why) in refused.items() if bad]
    if problems:
        raise ValueError("accelerate FSDP config: " + "; ".join(problems))
    classes = env.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "")
    return FsdpSettings(
        layer_classes=tuple(c.strip() for c in classes.split(",") if c.strip()),
        reshard_after_forward=_env_true(env, "FSDP_RESHARD_AFTER_FORWARD", "true"),
        offload_params=_env_true(env, "FSDP_OFFLOAD_PARAMS"),
        bf16_mixed_precision=env.get("ACCELERATE_MIXED_PRECISION", "no") == "bf16",
    )


def shard_layers(model: nn.Module, layer_classes: tuple[str, ...]) -> list[nn.Module]:
    """The modules to shard one by one: those of the named classes, by default the model's
    `_no_split_modules` (its decoder layer, e.g. Gemma3DecoderLayer)."""
    names = set(layer_classes)
    if not names:
        for m in model.modules():
            names.update(getattr(m, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"no module of class {', '.join(sorted(names)) or '?'} to shard in "
                         f"{type(model).__name__}")
    return layers


def fully_shard_loss(loss_fn: nn.Module, model: nn.Module, device: torch.device,
                     settings: FsdpSettings) -> nn.Module:
    """FSDP2 over the loss module: each decoder layer its own group, then the root. Parameters
    become DTensor shards (moved to `device` group by group, so a bf16 base loaded into CPU RAM
    never sits whole on one GPU): build the optimizer after this."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    options: dict[str, Any] = {"mesh": mesh}
    if settings.bf16_mixed_precision:
        options["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16,
                                                    reduce_dtype=torch.float32)
    if settings.offload_params:
        options["offload_policy"] = CPUOffloadPolicy()
    for layer in shard_layers(model, settings.layer_classes):
        fully_shard(layer, reshard_after_forward=settings.reshard_after_forward, **options)
    return fully_shard(loss_fn, **options)


def is_sharded(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


@contextmanager
def gradient_sync_off(loss_fn: nn.Module) -> Iterator[None]:
    """Accumulate gradients locally (micro-batches before the last): DDP's no_sync, FSDP2's
    set_requires_gradient_sync(False) (the reduce-scatter then happens once, after the last)."""
    if is_sharded(loss_fn):
        loss_fn.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            loss_fn.set_requires_gradient_sync(True)
    else:
        with loss_fn.no_sync():
            yield


def _full(**kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def gather_adapter(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole LoRA weights (the trainable parameters; the base is never gathered), in CPU
    memory, on every rank. Every rank must call it: each DTensor's full_tensor all-gathers."""
    from torch.distributed.tensor import DTensor

    return {name: (p.full_tensor() if isinstance(p, DTensor) else p).detach().cpu()
            for name, p in model.named_parameters() if p.requires_grad}


def gather_optimizer(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's whole state, keyed by parameter name, on rank 0 ({} on the others)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, opt, options=_full(cpu_offload=True))


def load_optimizer(model: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Each rank takes its shard of a state saved by gather_optimizer."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, opt, state, options=_full())
