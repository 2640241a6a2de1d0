"""Which dtype the model computes in: bf16 only where the hardware does bf16 arithmetic itself.

Without native bf16 instructions every bf16 matmul converts its operands: on a user's 2-core
AVX2 EPYC the 270M read a 500-token prompt in 32 s in bf16 against 6.5 s in fp32, and 4.5x
slower in bf16 on an emulated AVX2 CPU too, while a CPU with AMX reads it 2.6x faster in bf16
(bench/README.md, "Fast on the CPUs people have"). So: bf16 on x86 CPUs with AVX512-BF16 or
AMX-BF16 that torch and oneDNN are allowed to use, on ARM CPUs with the bf16 extension, and on
CUDA GPUs that support it (fp16 on older ones, the seed's Colab T4); fp32 on every other CPU.

`choose_dtype` is the rule, a pure function of what the machine says (tests fake it);
`resolve_dtype` asks the machine and applies the user's choice (`--dtype`, GEMMA_SQL_DTYPE).
torch is imported inside functions: importing this module stays instant.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    import torch

AUTO = "auto"
Choice = Literal["auto", "bf16", "fp32", "fp16"]  # what --dtype and GEMMA_SQL_DTYPE take
CHOICES: tuple[str, ...] = get_args(Choice)
DTYPES = CHOICES[1:]
ENV_VAR = "GEMMA_SQL_DTYPE"

# x86 CPU flags (/proc/cpuinfo) that mean native bf16 dot products.
X86_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below the first one with bf16 instructions
# (AVX512_CORE_BF16): under them oneDNN emulates bf16 with conversions.
_ONEDNN_WITHOUT_BF16 = frozenset({
    "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
})


def choose_dtype(
    device: str,
    cpu_flags: frozenset[str] | set[str] = frozenset(),
    arch: str = "",
    capability: str = "",
    onednn_max_isa: str = "",
    cuda_bf16: bool = False,
) -> str:
    """The compute dtype for `device`: "bf16", "fp32" or "fp16".

    `cpu_flags`: the CPU's feature flags (/proc/cpuinfo); `arch`: platform.machine();
    `capability`: torch's CPU kernels' level (torch.backends.cpu.get_cpu_capability(), lowered
    by ATEN_CPU_CAPABILITY); `onednn_max_isa`: ONEDNN_MAX_CPU_ISA ("" when unset);
    `cuda_bf16`: torch.cuda.is_bf16_supported() on a CUDA device.
    """
    if device.startswith("cuda"):
        return "bf16" if cuda_bf16 else "fp16"
    if device != "cpu":
        return "fp32"  # mps and others: no measured reason for anything else
    arch = arch.lower()
    if arch in ("x86_64", "amd64", "i386", "i686"):
        native = bool(X86_BF16_FLAGS & set(cpu_flags))
        # torch's bf16 kernels need its AVX-512 level; oneDNN's, an ISA cap that allows bf16.
        allowed = (capability.upper().startswith("AVX512")
                   and onednn_max_isa.upper() not in _ONEDNN_WITHOUT_BF16)
        return "bf16" if native and allowed else "fp32"
    if arch in ("aarch64", "arm64"):
        return "bf16" if "bf16" in cpu_flags else "fp32"
    return "fp32"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags: x86's "flags" line, ARM's "Features"; none where there is no
    /proc/cpuinfo (macOS, Windows: fp32 there)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def machine_dtype(device: str) -> str:
    """`choose_dtype` for this machine."""
    import torch

    if device.startswith("cuda"):
        return choose_dtype(device, cuda_bf16=torch.cuda.is_bf16_supported())
    return choose_dtype(
        device,
        cpu_flags=cpu_flags(),
        arch=platform.machine(),
        capability=torch.backends.cpu.get_cpu_capability(),
        onednn_max_isa=os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
    )


def resolve_dtype(requested: str | None, device: str) -> str:
    """The dtype to load in: `requested` (--dtype), else GEMMA_SQL_DTYPE, else the machine's;
    "auto" means the machine's. A name outside `CHOICES` is a ValueError naming them."""
    chosen = (requested or os.environ.get(ENV_VAR) or AUTO).strip().lower()
    if chosen not in CHOICES:
        source = "--dtype" if requested else ENV_VAR
        raise ValueError(f"{source} {chosen!r}: use one of {', '.join(CHOICES)}")
    return machine_dtype(device) if chosen == AUTO else chosen


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of one of `DTYPES`."""
    import torch

    return {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[name]


def dtype_name(dtype: Any) -> str:
    """"bf16", "fp32" or "fp16" for a torch dtype; its own name for any other."""
    names = {"torch.bfloat16": "bf16", "torch.float32": "fp32", "torch.float16": "fp16"}
    return names.get(str(dtype), str(dtype).removeprefix("torch."))
