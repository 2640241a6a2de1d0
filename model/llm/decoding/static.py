"""Greedy decoding over a static KV cache, captured as CUDA graphs on a GPU.

On a GPU a one-token step of the 270M is several hundred small kernels launched one by one
from Python: the engine decoded 28 tok/s on an H200, no faster than two CPU cores
(bench/README.md, "On a GPU"). A static cache keeps every tensor of a step at a fixed address
and shape, so the step can be compiled with `torch.compile(mode="reduce-overhead")`, which
records it once as CUDA graphs and replays them. The prompt is read eagerly into the static
cache. The answer vocabulary (`model.llm.decoding.vocab`) becomes a mask over the whole vocabulary,
whose shape never changes: on a GPU the full output layer costs next to nothing.

`Engine` uses this on CUDA only (`Engine.static_decoding`). Tested on CPU, uncompiled: the same
greedy tokens as the engine's own loop. Not yet measured on a GPU (none was lent since).
torch is imported inside functions: importing this module stays instant.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Static caches come in lengths that are multiples of this: few shapes, so few graphs to record.
CACHE_STEP = 256

log = logging.getLogger(__name__)


def cache_length(prompt_tokens: int, max_new_tokens: int) -> int:
    """The static cache's length for a prompt and an answer of at most `max_new_tokens`."""
    needed = prompt_tokens + max_new_tokens
    return -(-needed // CACHE_STEP) * CACHE_STEP


def _step(model: Any, token: torch.Tensor, position: torch.Tensor, cache: Any,
          allowed: torch.Tensor | None) -> torch.Tensor:
    """One decoding step: the next token id (a 1-element tensor), among `allowed` (a boolean
    mask over the vocabulary; None: all)."""
    import torch

    out = model(input_ids=token, position_ids=position, cache=cache, use_cache=True,
                logits_to_keep=1)
    logits = out.logits[:, -1]
    if allowed is not None:
        logits = logits.masked_fill(~allowed, -torch.inf)
    return logits.argmax(-1)


class StaticGreedy:
    """Greedy decoding of one model over a fresh static cache a prompt; `compiled`: the step
    as CUDA graphs (falls back to the plain step, once and for all, if compiling fails)."""

    def __init__(self, model: Any, compiled: bool) -> None:
        import torch

        self.model = model
        self.step = torch.compile(_step, mode="reduce-overhead") if compiled else _step

    def tokens(self, ids: list[int], allowed_ids: torch.Tensor | None,
               max_new_tokens: int) -> Iterator[int]:
        """The prompt's most likely next token, then the next, up to `max_new_tokens`."""
        import torch
        from transformers import StaticCache

        model, device = self.model, self.model.device
        cache = StaticCache(config=model.config,
                            max_cache_len=cache_length(len(ids), max_new_tokens))
        inputs = torch.tensor([ids], device=device)
        with torch.inference_mode():
            out = model(input_ids=inputs, cache=cache, use_cache=True,
                        logits_to_keep=torch.tensor([len(ids) - 1], device=device))
            token = int(out.logits[0, -1].argmax())
        yield token
        allowed = None
        if allowed_ids is not None:
            allowed = torch.zeros(out.logits.shape[-1], dtype=torch.bool, device=device)
            allowed[allowed_ids] = True
        for position in range(len(ids), len(ids) + max_new_tokens - 1):
            with torch.inference_mode():
                token = int(self._next(torch.tensor([[token]], device=device),
                                       torch.tensor([[position]], device=device), cache, allowed))
            yield token

    def _next(self, token: torch.Tensor, position: torch.Tensor, cache: Any,
              allowed: torch.Tensor | None) -> torch.Tensor:
        if self.step is _step:
            return _step(self.model, token, position, cache, allowed)
        try:
            return self.step(self.model, token, position, cache, allowed)
        except Exception as e:  # a compiler or driver without support: decode uncompiled
            log.warning("static decoding runs uncompiled: %s", e)
            self.step = _step
            return _step(self.model, token, position, cache, allowed)
