"""How the model runs on a CPU: OpenMP's waiting policy, the thread count, and the kernels and
threads of each forward pass.

Imported by `weights.registry`, `decoding.loading` and `decoding.engine`, which import
torch only inside functions: whichever of them comes first, the OpenMP setting below is made
before torch loads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

# OpenMP threads that spin while waiting stall when another process holds a core (the app's
# own UI, a test run): 2 spinning threads fell to 3 tok/s on a busy 2-core machine, passive
# ones kept 12. libgomp reads this once, when torch loads, so it is set on import of this
# module, before any import of torch on the model's path; a value the user chose is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def set_threads() -> None:
    """On CPU, one intra-op thread per usable core; GEMMA_SQL_THREADS overrides.

    torch counts the host's cores, which oversubscribes a container pinned to fewer; more
    threads than cores slows decoding, fewer leaves the prompt read slower. (One-row
    decoding steps use one thread whatever this says: see `cpu_kernels`.) On cores busy with
    other work one thread read a prompt 10-25 % faster than two, both AVX2 and AMX; kept, as
    on idle cores the second thread pays more than that (bench/README.md, "Threads").
    """
    import torch

    wanted = os.environ.get("GEMMA_SQL_THREADS")
    if wanted:
        torch.set_num_threads(max(1, int(wanted)))
        return
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(max(1, min(torch.get_num_threads(), usable or 1)))


@contextmanager
def cpu_kernels(device: str, rows: int) -> Iterator[None]:
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
