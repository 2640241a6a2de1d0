"""What the pipeline (`model.llm.ask`) and the app ask of an engine: the seam between them.

`model.llm.engine.Engine` is the one real engine; tests stand in for it with scripted ones.
Nothing here imports torch, so the app and the tests type against it without loading a model.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from model.llm.engine import GenerationStats


@dataclass(frozen=True)
class Sampled:
    """An answer drawn by `TextEngine.sample`, with its mean log-probability a token."""

    text: str
    logprob: float
    finished: bool = True  # False: cut off by the token limit or `cancel`


@runtime_checkable
class TextEngine(Protocol):
    name: str  # shown in the status bar and recorded in each Answer
    device: str
    dtype: str  # compute dtype, "bf16", "fp32" or "fp16" (model.llm.dtype): shown with device
    prompt_layout: str  # the layout the model was trained on (model.llm.prompt)
    last_stats: GenerationStats  # figures of the last `stream` (zeros before the first)

    def stream(
        self,
        prompt: str,
        cancel: threading.Event | None = None,
        max_new_tokens: int = 256,
        shared: str = "",
    ) -> Generator[str, None, None]:
        """The answer to `prompt` as text pieces, greedily; `shared` is the prompt's beginning
        that later prompts will share (its reading may be kept). A generator: the caller may
        `close()` it to stop decoding early."""
        ...

    def beams(
        self,
        prompt: str,
        n: int = 4,
        cancel: threading.Event | None = None,
        max_new_tokens: int = 192,
        shared: str = "",
    ) -> list[str]:
        """The `n` most likely answers to `prompt`, best first."""
        ...

    def sample(
        self,
        prompt: str,
        n: int = 4,
        temperature: float = 0.7,
        cancel: threading.Event | None = None,
        max_new_tokens: int = 128,
        shared: str = "",
        seed: int = 0,
    ) -> list[Sampled]:
        """`n` answers drawn at `temperature` (seeded, reproducible), in one batched decode;
        on `cancel`, those drawn so far (unfinished ones marked)."""
        ...

    def warm(self, shared: str) -> None:
        """Read a prompt beginning ahead of the question (while the user types)."""
        ...

    def review(self, question: str, sqls: Sequence[str],
               cancel: threading.Event | None = None) -> list[float]:
        """How well each SQL accounts for `question`: the log-probability of the question read
        back from it (higher: better); [] when the engine cannot tell, or on `cancel`."""
        ...
