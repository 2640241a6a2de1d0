"""Loading a model for generation: which weights, on which device, with which adapters, into
an `Engine` (`model.llm.decoding.engine`).

Where the weights come from (the registry, our cache, the hub) is `model.llm.weights.registry`'
business. torch and transformers are imported inside functions: importing this module must
stay instant so the app paints before the model loads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.llm import adapter_files
from model.llm.decoding.drafts import AnswerDrafts
from model.llm.decoding.engine import Engine
from model.llm.decoding.vocab import AnswerVocab
from model.llm.prompting.prompt import QUESTION_FIRST, read_layout
from model.llm.weights.cpu import set_threads
from model.llm.weights.dtype import resolve_dtype, torch_dtype
from model.llm.weights.progress import Progress, first_line, no_loading_bars, quiet_libraries, say
from model.llm.weights.registry import (
    BASE_DIRNAME,
    DEFAULT_MODEL,
    MODELS,
    ModelUnavailable,
    adapter_base,
    apply_adapter,
    check_adapter,
    ensure_base_checkpoint,
    ensure_merged_checkpoint,
    hub_download,
    load_tokenizer,
    nf4_config,
)


@dataclass
class _Weights:
    """Where a model's weights are, and what to do with them on loading."""

    name: str
    path: Path
    adapters: list[Path]  # LoRA adapters, in order
    four_bit: bool = False  # load as 4-bit NF4
    merged: bool = False  # the weights at `path` already hold the adapters


def load_engine(
    model: str = DEFAULT_MODEL,
    adapter: str | Path | None = None,
    device: str | None = None,
    progress: Progress | None = None,
    dtype: str | None = None,
) -> Engine:
    """Load a model for generation.

    `model` is a registry name (`MODELS`), a local directory, or a hub id. The default model
    also gets the LoRA adapter shipped in `model/adapters/gemma-3-270m-sql/` when one is
    there; `adapter=` replaces it (or adds one to any other model). Adapters are merged into
    the weights for speed, except on a 4-bit model where merging would round them away.

    `dtype` is the compute dtype: "bf16", "fp32", "fp16", or "auto"/None for the machine's
    (`weights.dtype`: bf16 only where the hardware has it; GEMMA_SQL_DTYPE overrides auto).
    The checkpoints are bf16, so fp32 holds exactly the same weights, at twice the memory.

    4-bit NF4 needs CUDA (bitsandbytes): on CPU, `gemma-2-2b-sql` loads unquantized instead
    (~5 GB of memory in bf16, a few tokens a second), and says so through `progress`.
    """
    quiet_libraries()
    from transformers import AutoModelForCausalLM

    device = resolve_device(device)
    try:
        dtype = resolve_dtype(dtype, device)
    except ValueError as e:
        raise ModelUnavailable(str(e)) from None
    adapters: list[Path] = [check_adapter(adapter)] if adapter is not None else []
    weights = _find_weights(model, adapters, device, dtype, progress)
    name, path = weights.name, weights.path

    if device == "cpu":
        set_threads()
    started = time.perf_counter()
    say(progress, f"Loading {name} on {device} in {dtype}…")
    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype)}
    if weights.four_bit:
        kwargs["quantization_config"] = nf4_config(torch_dtype(dtype))
    if device != "cpu":
        kwargs["device_map"] = {"": device}
    try:
        with no_loading_bars():
            tokenizer = load_tokenizer(path)
            llm = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError, ImportError) as e:  # missing files or architecture; no bnb
        raise ModelUnavailable(f"{path}: cannot load a model from it ({first_line(e)})") from None
    for adapter_dir in [] if weights.merged else weights.adapters:
        llm = apply_adapter(llm, adapter_dir, merge=not weights.four_bit)
    if device == "cpu":
        from model.llm.decoding.attention import use_decode_attention

        use_decode_attention(llm)
    # What the training run wrote next to the weights; the last adapter's wins.
    sources = [*weights.adapters[::-1], path]
    vocab = next((v for d in sources if (v := AnswerVocab.read(d, tokenizer)) is not None), None)
    drafts = next((a for d in sources if (a := AnswerDrafts.read(d, tokenizer)) is not None), None)
    layout = next((x for d in sources if (x := read_layout(d))), QUESTION_FIRST)
    engine = Engine(name, llm, tokenizer, device=device, adapters=weights.adapters,
                    answer_vocab=vocab, answer_drafts=drafts, prompt_layout=layout, dtype=dtype)
    engine.load_seconds = time.perf_counter() - started
    say(progress, f"{name} ready on {device} ({dtype}) in {engine.load_seconds:.1f} s")
    return engine


def resolve_device(device: str | None) -> str:
    """`device`, or CUDA when there is a GPU and the CPU otherwise."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelUnavailable(f"--device {device}: no CUDA GPU is available here")
    return device


def _find_weights(
    model: str, adapters: list[Path], device: str, dtype: str, progress: Progress | None
) -> _Weights:
    """The weights `model` names (see `load_engine`), with `adapters` on top."""
    spec = MODELS.get(model)
    four_bit = False
    merged = False  # the weights already hold the adapters
    if spec is not None and spec.repo_id is None:
        path = ensure_base_checkpoint(progress)
        if not adapters and spec.adapter and (spec.adapter / adapter_files.CONFIG).is_file():
            adapters = [spec.adapter]
            try:
                path, merged = ensure_merged_checkpoint(spec.adapter, progress), True
            except OSError as e:  # a full or read-only cache: merge in memory, as before
                say(progress, f"Not saving the merged weights ({first_line(e)}); "
                              "merging at load instead.")
    elif spec is not None and spec.repo_id is not None:
        path = hub_download(spec.repo_id, spec.name, progress)
        four_bit = spec.four_bit and device.startswith("cuda")
        if spec.four_bit and not four_bit:
            say(
                progress,
                f"4-bit NF4 needs a CUDA GPU: loading {spec.name} in {dtype} on {device} "
                "(several GB of memory, slow).",
            )
    elif Path(model).expanduser().is_dir():
        path = Path(model).expanduser()
    elif model.count("/") == 1 and not model.startswith((".", "/", "~")):
        path = hub_download(model, model, progress)
    else:
        names = ", ".join(MODELS)
        raise ModelUnavailable(
            f"unknown model {model!r}: use one of {names}, a hub id or a local directory"
        )
    name = spec.name if spec is not None else model

    # A directory holding only an adapter: load the base it names, then the adapter on top.
    if not (path / "config.json").is_file() and (path / adapter_files.CONFIG).is_file():
        adapters.insert(0, path)
        path = _base_of_adapter(path, name, progress)
    return _Weights(name, path, adapters, four_bit=four_bit, merged=merged)


def _base_of_adapter(adapter_dir: Path, name: str, progress: Progress | None) -> Path:
    """The weights of the base model `adapter_dir` was trained on."""
    base = adapter_base(adapter_dir)
    if base in MODELS or base.rstrip("/").endswith(BASE_DIRNAME):
        return ensure_base_checkpoint(progress)
    if Path(base).expanduser().is_dir():
        return Path(base).expanduser()
    return hub_download(base, name, progress)
