"""Fake engines shared by the tests: scripted stand-ins for `TextEngine` (no model loaded).

`ScriptedEngine` and its kin answer the pipeline from a script; `FakeEngine` streams fixed chunks
for the app's tests. Import them as `from fakes import ...` (tests/ is on sys.path).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

from model.llm.prompting.prompt import QUESTION_FIRST
from model.llm.protocol import GenerationStats, Sampled


class ScriptedEngine:
    """An engine that answers from a script, a few characters at a time, and records prompts.
    It has no other answers to offer (`beams`, `sample`)."""

    name = "scripted"
    device = "cpu"
    dtype = "fp32"
    prompt_layout = QUESTION_FIRST

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []
        self.last_stats = GenerationStats()

    def stream(
        self, prompt: str, cancel: threading.Event | None = None, max_new_tokens: int = 256,
        shared: str = "",
    ) -> Generator[str, None, None]:
        self.prompts.append(prompt)
        text = self.answers.pop(0)
        self.last_stats = GenerationStats(tokens=len(text) // 4, stop="eos")
        for i in range(0, len(text), 4):
            if cancel is not None and cancel.is_set():
                self.last_stats.stop = "cancel"
                return
            yield text[i : i + 4]

    def beams(self, prompt: str, n: int = 4, cancel: threading.Event | None = None,
              max_new_tokens: int = 192, shared: str = "") -> list[str]:
        return []

    def sample(self, prompt: str, n: int = 4, temperature: float = 0.7,
               cancel: threading.Event | None = None, max_new_tokens: int = 128,
               shared: str = "", seed: int = 0) -> list[Sampled]:
        return []

    def warm(self, shared: str) -> None:
        pass

    def review(self, question: str, sqls: Sequence[str],
               cancel: threading.Event | None = None) -> list[float]:
        return []


class ScriptedBeamEngine(ScriptedEngine):
    """A scripted engine whose beam search returns the given candidates."""

    def __init__(self, candidates: list[str], *answers: str) -> None:
        super().__init__(*answers)
        self.candidates = candidates
        self.beam_prompts: list[str] = []

    def beams(self, prompt: str, n: int = 4, cancel: threading.Event | None = None,
              max_new_tokens: int = 192, shared: str = "") -> list[str]:
        self.beam_prompts.append(prompt)
        return self.candidates[:n]


class FakeClock:
    """Seconds that pass only when the engine works (`tick`)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


class TimedEngine(ScriptedBeamEngine):
    """A scripted engine on a fake clock: each piece it streams takes `per_piece` seconds,
    a beam search `per_search`."""

    def __init__(self, clock: FakeClock, per_piece: float, per_search: float,
                 candidates: list[str], *answers: str) -> None:
        super().__init__(candidates, *answers)
        self.clock, self.per_piece, self.per_search = clock, per_piece, per_search
        self.stopped: list[bool] = []  # whether each beam search ended told to stop

    def stream(self, prompt: str, cancel: threading.Event | None = None,
               max_new_tokens: int = 256, shared: str = "") -> Generator[str, None, None]:
        for piece in super().stream(prompt, cancel, max_new_tokens, shared):
            self.clock.tick(self.per_piece)
            yield piece

    def beams(self, prompt: str, n: int = 4, cancel: threading.Event | None = None,
              max_new_tokens: int = 192, shared: str = "") -> list[str]:
        self.clock.tick(self.per_search)
        self.stopped.append(cancel is not None and cancel.is_set())
        return super().beams(prompt, n, cancel, max_new_tokens, shared)


class ScriptedSampler(ScriptedEngine):
    """A scripted engine whose `sample` draws the given answers (best scored first)."""

    def __init__(self, drawn: list[str], *answers: str) -> None:
        super().__init__(*answers)
        self.drawn = drawn
        self.sample_prompts: list[str] = []

    def sample(self, prompt: str, n: int = 4, temperature: float = 0.7,
               cancel: threading.Event | None = None, max_new_tokens: int = 128,
               shared: str = "", seed: int = 0) -> list[Sampled]:
        self.sample_prompts.append(prompt)
        return [Sampled(text, -0.1 * i) for i, text in enumerate(self.drawn[:n])]


class ScriptedReviewer(ScriptedSampler):
    """A scripted sampler that reads questions back with the given scores, by SQL text."""

    def __init__(self, scores: dict[str, float], drawn: list[str], *answers: str) -> None:
        super().__init__(drawn, *answers)
        self.scores = scores
        self.reviewed: list[tuple[str, list[str]]] = []

    def review(self, question: str, sqls: Sequence[str],
               cancel: threading.Event | None = None) -> list[float]:
        self.reviewed.append((question, list(sqls)))
        return [self.scores[" ".join(sql.split())] for sql in sqls] if self.scores else []


@dataclass
class FakeEngine:
    """Streams `chunks` whatever the prompt; no beams to offer, and `drawn` as samples."""

    chunks: list[str]
    name: str = "fake-270m"
    device: str = "cpu"
    dtype: str = "fp32"
    delay: float = 0.0
    prompt_layout: str = QUESTION_FIRST
    last_stats: GenerationStats = field(default_factory=GenerationStats)
    budgets: list[float] = field(default_factory=list)  # what each question was given
    drawn: list[str] = field(default_factory=list)  # what `sample` draws

    def stream(self, prompt: str, cancel: threading.Event | None = None,
               max_new_tokens: int = 256, shared: str = "") -> Generator[str, None, None]:
        for chunk in self.chunks:
            if cancel is not None and cancel.is_set():
                return
            time.sleep(self.delay)
            yield chunk
        self.last_stats = GenerationStats(tokens_per_s=42.0)

    def beams(self, prompt: str, n: int = 4, cancel: threading.Event | None = None,
              max_new_tokens: int = 192, shared: str = "") -> list[str]:
        return []

    def sample(self, prompt: str, n: int = 4, temperature: float = 0.7,
               cancel: threading.Event | None = None, max_new_tokens: int = 128,
               shared: str = "", seed: int = 0) -> list[Sampled]:
        return [Sampled(text, -0.1) for text in self.drawn[:n]]

    def warm(self, shared: str) -> None:
        pass

    def review(self, question: str, sqls: Sequence[str],
               cancel: threading.Event | None = None) -> list[float]:
        return []
