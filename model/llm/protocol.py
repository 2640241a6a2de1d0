"""What the pipeline (`model.llm.pipeline.ask`) and the app ask of an engine: the seam between them.

`model.llm.decoding.engine.Engine` is the one real engine; tests stand in for it with scripted ones.
Nothing here imports torch, so the app and the tests type against it without loading a model.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass
class GenerationStats:
    """Figures of the last `Engine.stream` call."""

    prompt_tokens: int = 0
    cached_tokens: int = 0  # of those, not read again (an earlier prompt's shared beginning)
    tokens: int = 0  # new tokens, the stop token not counted
    first_token_s: float = 0.0  # prompt read + first token (time to first token)
    seconds: float = 0.0
    tokens_per_s: float = 0.0  # decoding rate after the first token
    passes: int = 0  # forward passes after the prompt's (fewer than tokens where guesses held)
    stop: str = ""  # "eos", "length", "cancel" or "closed" (the caller stopped reading)
    # The log-probability of the least likely token the greedy answer chose (its stop token
    # included, over the output rows in use): how sure the model was at its most doubtful
    # step. None where it was not measured (a static cache, a server without logprobs).
    min_logprob: float | None = None

    @property
    def one_token_seconds(self) -> float:
        """`seconds` as decoding one token a pass would have taken: what a draw, which decodes
        one token a pass in each row, is measured against. Slightly more than without drafts
        (a pass that checks guesses costs a little more than one that does not)."""
        steps = self.tokens + (self.stop == "eos") - 1  # tokens chosen after the first
        if self.passes <= 0 or steps <= self.passes:
            return self.seconds
        return self.first_token_s + (self.seconds - self.first_token_s) * steps / self.passes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Sampled:
    """An answer drawn by `TextEngine.sample`, with its mean log-probability a token."""

    text: str
    logprob: float
    finished: bool = True  # False: cut off by the token limit or `cancel`


@runtime_checkable
class TextEngine(Protocol):
    @property
    def name(self) -> str:  # shown in the status bar and recorded in each Answer
        ...

    device: str
    dtype: str  # compute dtype, "bf16", "fp32" or "fp16" (weights.dtype): shown with device
    prompt_layout: str  # the layout the model was trained on (model.llm.prompting.prompt)
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
