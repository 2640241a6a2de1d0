"""The merged checkpoint cache (`ensure_merged_checkpoint`) with a tiny random Gemma and tiny
LoRA adapters: two installs sharing one cache keep each other's merged checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from model.llm.weights.gguf_base import BASE_FORMAT, BASE_MARKER, TOKENIZER_FILES
from model.llm.weights.registry import BASE_DIRNAME, ensure_merged_checkpoint


def tiny_gemma() -> torch.nn.Module:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                              head_dim=16, max_position_embeddings=128, sliding_window=32)
    return Gemma3ForCausalLM(config).to(torch.bfloat16)


def make_adapter(path: Path, seed: int) -> Path:
    from peft import LoraConfig, get_peft_model

    base = tiny_gemma()
    torch.manual_seed(seed)  # the LoRA weights, random (init_lora_weights=False): one a seed
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                   init_lora_weights=False))
    lora.save_pretrained(path)
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache holding a converted base: the tiny Gemma, marked as ours."""
    root = tmp_path / "cache"
    base = root / BASE_DIRNAME
    tiny_gemma().save_pretrained(base)
    for name in TOKENIZER_FILES:
        (base / name).write_text("{}")
    (base / BASE_MARKER).write_text(json.dumps({"format": BASE_FORMAT}))
    monkeypatch.setenv("GEMMA_SQL_CACHE", str(root))
    return root


def test_two_installs_keep_each_others_merged_checkpoint(cache: Path, tmp_path: Path) -> None:
    first = make_adapter(tmp_path / "install-a" / "adapters" / "gemma-3-270m-sql", seed=1)
    second = make_adapter(tmp_path / "install-b" / "adapters" / "gemma-3-270m-sql", seed=2)
    merged_first = ensure_merged_checkpoint(first)
    merged_second = ensure_merged_checkpoint(second)
    assert merged_first != merged_second
    assert merged_first.is_dir() and merged_second.is_dir()  # neither removed the other's
    written = (merged_first / "model.safetensors").stat().st_mtime_ns
    assert ensure_merged_checkpoint(first) == merged_first  # reused, not merged again
    assert (merged_first / "model.safetensors").stat().st_mtime_ns == written


def test_an_updated_or_removed_adapter_leaves_no_stale_merge(cache: Path, tmp_path: Path) -> None:
    adapter = make_adapter(tmp_path / "install" / "adapter", seed=1)
    gone = make_adapter(tmp_path / "uninstalled" / "adapter", seed=3)
    old, of_gone = ensure_merged_checkpoint(adapter), ensure_merged_checkpoint(gone)
    shutil.rmtree(gone)
    make_adapter(adapter, seed=2)  # the same install, a new version of its adapter
    new = ensure_merged_checkpoint(adapter)
    assert new != old and new.is_dir()
    assert not old.exists() and not of_gone.exists()
