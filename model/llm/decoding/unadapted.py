"""The base model under a fine-tuned one: what `Engine.review` reads a question back with.

An adapter on top (peft, unmerged: the 4-bit GPU path) is switched off with peft's own
`disable_adapter`. A merged one is taken back out on the fly: each adapted layer's output less
its LoRA delta, `scale * B(A x)`, read from the adapter's files. Written by hand because peft
cannot unmerge what `merge_and_unload` merged, and reloading the base would double the memory
(and importing peft costs ~3.5 s, `model.llm.weights.registry`). The base then differs from the
checkpoint's only by the merged weights' rounding.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from model.llm import adapter_files

_PREFIX = "base_model.model."  # how peft names the adapted model's modules


Deltas = dict[str, tuple[Any, Any, float]]


def lora_deltas(adapter_dir: Path, like: Any) -> Deltas:
    """Each adapted module's name (as the merged model names it) and its LoRA (A, B, scale),
    on the device and in the dtype of the tensor `like`."""
    from safetensors.torch import load_file

    config = json.loads((adapter_dir / adapter_files.CONFIG).read_text())
    if config.get("use_dora"):
        raise ValueError(f"{adapter_dir}: a DoRA adapter's merge is not a LoRA delta")
    weights = load_file(str(adapter_dir / adapter_files.WEIGHTS))
    deltas = {}
    for key, a in weights.items():
        if not key.endswith(".lora_A.weight"):
            continue
        name = key.removeprefix(_PREFIX).removesuffix(".lora_A.weight")
        leaf = name.rsplit(".", 1)[-1]
        r = config.get("rank_pattern", {}).get(leaf, config["r"])
        alpha = config.get("alpha_pattern", {}).get(leaf, config["lora_alpha"])
        scale = alpha / r ** 0.5 if config.get("use_rslora") else alpha / r
        b = weights[key.replace("lora_A", "lora_B")]
        deltas[name] = (a.to(like.device, like.dtype), b.to(like.device, like.dtype), scale)
    return deltas


@contextmanager
def without_adapters(llm: Any, merged: Sequence[Deltas]) -> Iterator[None]:
    """`llm` computing as its base model would, for the duration: the adapters on top switched
    off, the `merged` ones (`lora_deltas`) taken out."""
    if hasattr(llm, "disable_adapter"):  # a peft model: the adapters are on top
        with llm.disable_adapter():
            yield
        return
    modules = dict(llm.named_modules())
    with ExitStack() as stack:
        for deltas in merged:
            for name, (a, b, scale) in deltas.items():
                module = modules.get(name)
                if module is None:
                    raise ValueError(f"the model has no module {name} for its adapter")
                hook = module.register_forward_hook(_less_delta(a, b, scale))
                stack.callback(hook.remove)
        yield


def _less_delta(a: Any, b: Any, scale: float) -> Any:
    def hook(module: Any, inputs: tuple[Any, ...], output: Any) -> Any:
        return output - scale * ((inputs[0] @ a.T) @ b.T)

    return hook
