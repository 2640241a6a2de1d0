"""One question on its way through the pipeline (`pipeline.ask`): what each step reads, the
answer the steps fill in, and the time budget every step after the first answer runs under
(`pipeline.budget`), drawing and voting on answers (`pipeline.vote`) included."""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from model.llm.pipeline.answer import Answer
from model.llm.pipeline.budget import Budget, Deadline, OutOfTime
from model.llm.pipeline.vote import (
    DRAW_BUDGET_S,
    DRAW_MIN_S,
    DRAW_TIME_FACTOR,
    REVIEW_READ_COST,
    REVIEWED,
    Candidate,
    Settled,
    draw_cost,
    settle,
    sure_of,
)
from model.llm.prompting.prompt import build_prompt
from model.llm.sql.extract import is_echo

if TYPE_CHECKING:
    from model.llm.prompting.context import Context
    from model.llm.protocol import TextEngine
    from model.sqlite.db import Database


@dataclass
class QuestionRun:
    """One question on its way through the pipeline: what each step reads, and the answer the
    steps fill in."""

    engine: TextEngine
    db: Database
    answer: Answer
    on_chunk: Callable[[str], None] | None
    cancel: threading.Event | None  # the user's, or a `Deadline` during a later step
    max_new_tokens: int
    budget: Budget
    kept: str = ""  # the beginning of its prompts whose reading the engine keeps
    samples: int = -1  # answers drawn beside the greedy one; -1: none, and nothing run
    read_rate: float = 0.0  # seconds the last prompt took to read, a character of it
    last_prompt: str = ""
    beam_texts: list[str] = field(default_factory=list)  # of the last prompt, when read
    drawn_on: set[str] = field(default_factory=set)  # the prompts answers were drawn on
    unsettled: list[str] = field(default_factory=list)  # why the focused answer did not do

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    @contextmanager
    def step(self, later: bool = True, reading: str = "", needs: float = 0.0) -> Iterator[None]:
        """A step of the chain. One after the first answer (`later`) starts only while the
        budget lasts, and leaves time to read its prompt (`reading`, at the last prompt's rate:
        a prompt read cannot stop halfway) or the `needs` seconds it is expected to take; it
        runs under a `Deadline`; when the budget runs out before it ends, the answer is put
        back as it was before it (its figures kept) and OutOfTime ends the chain. A user's
        cancel is not the budget's: the cancelled answer stands, as it always has."""
        if not later:
            yield
            return
        needs = max(needs, self.read_rate * len(reading))
        if self.budget.spent or self.budget.left() < needs:
            raise OutOfTime
        before, user_cancel = copy.deepcopy(self.answer), self.cancel
        self.cancel = Deadline(user_cancel, self.budget)
        try:
            yield
        finally:
            self.cancel = user_cancel
        if self.budget.spent and not self.cancelled:
            before.stats = self.answer.stats
            for f in fields(Answer):
                setattr(self.answer, f.name, getattr(before, f.name))
            raise OutOfTime

    def say(self, text: str) -> None:
        if self.on_chunk is not None:
            self.on_chunk(text)

    def prompt(self, question: str, context: Context) -> str:
        self.last_prompt = build_prompt(question, context.text, self.engine.prompt_layout)
        self.beam_texts = []
        return self.last_prompt

    def read(self, prompt: str) -> str:
        """The model's answer to `prompt`, streamed to `on_chunk`; its figures kept."""
        pieces: list[str] = []
        stream = self.engine.stream(prompt, cancel=self.cancel,
                                    max_new_tokens=self.max_new_tokens, shared=self.kept)
        for piece in stream:
            pieces.append(piece)
            self.say(piece)
            if is_echo("".join(pieces[-64:])):
                stream.close()  # no answer is coming: stop decoding now, not 256 tokens later
                break
        stats = self.engine.last_stats
        self.answer.stats.append(stats)
        if stats.first_token_s > 0:
            self.read_rate = stats.first_token_s / len(prompt)
        return "".join(pieces)

    def vote(self, first: Candidate) -> Settled | None:
        """`first` alone when the model was sure of it and it returns a row (`sure_of`);
        otherwise `settle`, as a step of its own, drawing `samples` answers, or half as many
        where only those fit in the budget (`draw_cost(n)` times the last answer's decoding,
        at one token a pass as the draws decode: `GenerationStats.one_token_seconds`, and the
        reading back, `review_seconds`); none where not even those fit. Its choice is taken
        only when it ends in time."""
        if self.samples < 0 or self.cancelled:
            return Settled(first)
        last = self.answer.stats[-1] if self.answer.stats else None
        if (sure := sure_of(first, last, self.db)) is not None:
            return sure
        decoding = last.one_token_seconds - last.first_token_s if last is not None else 0.0
        n = self.samples
        review = self.review_seconds(first)
        if self.budget.left() < draw_cost(n) * decoding + review:
            n = max(1, n // 2)
        with self.step(needs=draw_cost(n) * decoding + review):
            return self.settle(first, n)

    def review_seconds(self, first: Candidate) -> float:
        """What reading the question back from the REVIEWED best answers is expected to take,
        answers like `first`, at the last prompt's reading rate (REVIEW_READ_COST)."""
        chars = REVIEWED * (len(first.sql) + len(self.answer.question))
        return REVIEW_READ_COST * self.read_rate * chars

    def settle(self, first: Candidate, n: int) -> Settled | None:
        """The answer the database agrees with, among `first` (the pipeline's own), the beams
        read for the last prompt and `n` drawn on it (`pipeline.vote.settle`); None when none
        of them returned a row. Drawing takes at most DRAW_TIME_FACTOR times the last answer's
        time, and ends by DRAW_BUDGET_S after the question was asked, and by the end of its
        time budget. Without a budget (`eval`) every draw ends: what is voted on, and so the
        answer, does not depend on the machine's speed or load."""
        last = self.answer.stats[-1] if self.answer.stats else None
        tokens = last.tokens if last is not None else self.max_new_tokens
        deadline = math.inf
        if self.budget.limited:
            took = max(DRAW_MIN_S, DRAW_TIME_FACTOR * (last.one_token_seconds if last else 0.0))
            elapsed = self.budget.clock() - self.budget.started
            left = self.budget.left() - self.review_seconds(first)
            deadline = time.perf_counter() + min(took, DRAW_BUDGET_S - elapsed, left)
        drawn = self.last_prompt in self.drawn_on  # the same seed would draw the same again
        self.drawn_on.add(self.last_prompt)
        return settle(self.engine, self.db, self.last_prompt, first, self.beam_texts,
                      n=0 if drawn else n,
                      max_new_tokens=min(self.max_new_tokens, tokens * 3 // 2 + 16),
                      shared=self.kept, cancel=self.cancel, on_chunk=self.on_chunk,
                      deadline=deadline, question=self.answer.question)
