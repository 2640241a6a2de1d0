"""Export an adapter: merge it into full weights, or upload it to the Hugging Face hub."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from model.llm import adapter_files
from model.llm.weights import registry as checkpoints
from model.llm.weights.registry import ModelUnavailable


class ExportError(Exception):
    """Said in one line to the user."""


def adapter_base(adapter: Path) -> str:
    """The base `adapter` was trained on; ExportError when it is not an adapter or names none."""
    try:
        return checkpoints.adapter_base(checkpoints.check_adapter(adapter))
    except ModelUnavailable as e:
        raise ExportError(f"{e}; pass --base" if "names no base" in str(e) else str(e)) from None


def merge(adapter: Path, out: Path, base: str | None = None,
          say: Callable[[str], None] = print) -> Path:
    """Base + adapter -> OUT with merged bf16 safetensors weights and the tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.lora import resolve_base

    name = base or adapter_base(adapter)
    try:
        path = resolve_base(name)
        say(f"loading {name}")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise ExportError(f"{name}: {str(e).splitlines()[0]}") from None
    say(f"merging {adapter}")
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # what the engine needs besides the weights: its decoding vocabulary and drafts, the layout
    for name in adapter_files.DECODING:
        if (adapter / name).is_file():
            shutil.copy(adapter / name, out / name)
    return out


def push_adapter(adapter: Path, repo_id: str, private: bool = False) -> str:
    """Upload the adapter folder (adapter, config, model card, metrics) to `repo_id`."""
    adapter_base(adapter)  # refuse a folder that is not an adapter
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(adapter), repo_id=repo_id,
                          ignore_patterns=["checkpoint/*", "checkpoint*/**"])
    except HfHubHTTPError as e:
        raise ExportError(f"{repo_id}: {str(e).splitlines()[0]}") from None
    except OSError as e:  # connection refused, DNS failure, offline mode
        raise ExportError(
            f"{repo_id}: cannot reach the Hugging Face hub ({type(e).__name__}); "
            "the adapter is still in " + str(adapter)
        ) from None
    return f"https://huggingface.co/{repo_id}"
