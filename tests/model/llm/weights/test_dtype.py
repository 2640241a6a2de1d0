"""The compute dtype follows the hardware: bf16 only where it is native (faked machines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.llm.weights import dtype as dtypes
from model.llm.weights.dtype import choose_dtype, cpu_flags, resolve_dtype

SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
COOPER_LAKE = {"avx2", "avx512f", "avx512_bf16"}
ICE_LAKE = {"avx2", "avx512f", "avx512bw", "avx512_vnni"}  # AVX-512, no bf16
ZEN3 = {"avx2", "fma", "f16c"}


@pytest.mark.parametrize(("flags", "expected"), [
    (SAPPHIRE_RAPIDS, "bf16"), (COOPER_LAKE, "bf16"), (ICE_LAKE, "fp32"), (ZEN3, "fp32"),
    ({"amx_bf16"}, "bf16"), (set(), "fp32"),
])
def test_x86_gets_bf16_only_with_native_bf16_instructions(flags: set[str], expected: str) -> None:
    assert choose_dtype("cpu", flags, "x86_64", "AVX512") == expected


@pytest.mark.parametrize(("capability", "onednn", "expected"), [
    ("AVX512", "", "bf16"),
    ("AVX2", "", "fp32"),  # ATEN_CPU_CAPABILITY=avx2: torch's own kernels lack the bf16 path
    ("AVX512", "AVX2", "fp32"),  # ONEDNN_MAX_CPU_ISA=AVX2: oneDNN converts every bf16 matmul
    ("AVX512", "avx512_core", "fp32"),
    ("AVX512", "AVX512_CORE_BF16", "bf16"),
    ("AVX512", "AVX512_CORE_AMX", "bf16"),
    ("DEFAULT", "", "fp32"),
])
def test_a_lowered_runtime_capability_means_fp32(capability: str, onednn: str,
                                                  expected: str) -> None:
    assert choose_dtype("cpu", SAPPHIRE_RAPIDS, "x86_64", capability, onednn) == expected


@pytest.mark.parametrize(("flags", "expected"), [
    ({"fp", "asimd", "bf16", "sve"}, "bf16"),  # Graviton 3, Apple M2 under Linux
    ({"fp", "asimd", "crc32"}, "fp32"),  # Graviton 2, Raspberry Pi
])
def test_arm_gets_bf16_with_its_bf16_extension(flags: set[str], expected: str) -> None:
    assert choose_dtype("cpu", flags, "aarch64", "DEFAULT") == expected


def test_gpus_get_bf16_where_supported_else_fp16() -> None:
    assert choose_dtype("cuda", cuda_bf16=True) == "bf16"
    assert choose_dtype("cuda:1", cuda_bf16=False) == "fp16"  # a T4, the seed's Colab GPU
    assert choose_dtype("mps") == "fp32"
    assert choose_dtype("cpu", SAPPHIRE_RAPIDS, "riscv64", "DEFAULT") == "fp32"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 avx512_bf16\n\n"
                   "processor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd bf16\n")
    assert cpu_flags(x86) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(arm) == {"fp", "asimd", "bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.fixture
def no_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dtypes, "cpu_flags", lambda: frozenset(ZEN3))
    monkeypatch.setattr(dtypes.platform, "machine", lambda: "x86_64")
    monkeypatch.delenv(dtypes.ENV_VAR, raising=False)


def test_auto_reads_the_machine(no_bf16_cpu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_dtype(None, "cpu") == "fp32" and resolve_dtype("auto", "cpu") == "fp32"
    monkeypatch.setattr(dtypes, "cpu_flags", lambda: frozenset(SAPPHIRE_RAPIDS))
    pytest.importorskip("torch")
    monkeypatch.setattr("torch.backends.cpu.get_cpu_capability", lambda: "AVX512")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert resolve_dtype(None, "cpu") == "bf16"


def test_the_flag_beats_the_environment_which_beats_auto(
    no_bf16_cpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(dtypes.ENV_VAR, "BF16")
    assert resolve_dtype(None, "cpu") == "bf16"
    assert resolve_dtype("fp16", "cpu") == "fp16"
    monkeypatch.setenv(dtypes.ENV_VAR, "auto")
    assert resolve_dtype(None, "cpu") == "fp32"


def test_an_unknown_dtype_names_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dtypes.ENV_VAR, "int4")
    with pytest.raises(ValueError, match="GEMMA_SQL_DTYPE 'int4': use one of auto, bf16, fp32"):
        resolve_dtype(None, "cpu")
    with pytest.raises(ValueError, match="--dtype 'half'"):
        resolve_dtype("half", "cpu")
