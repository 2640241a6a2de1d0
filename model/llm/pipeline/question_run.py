"""One question on its way through the pipeline (`pipeline.ask`): what each step reads, the
answer the steps fill in, and the time budget every step after the first answer runs under
(`pipeline.budget`), drawing and voting on answers (`pipeline.vote`) included."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from model.llm.pipeline.answer import Answer
from model.llm.pipeline.budget import Budget, Deadline, OutOfTime
from model.llm.pipeline.choose import Candidate
from model.llm.pipeline.plan import DrawPlan, draw_tokens
from model.llm.pipeline.settings import Settings
from model.llm.pipeline.vote import Settled, settle, sure_of
from model.llm.prompting.prompt import build_prompt
from model.llm.sql.extract import is_echo

if TYPE_CHECKING:
    from model.llm.prompting.context import Context
    from model.llm.protocol import TextEngine
    from model.sqlite.db import Database


@dataclass
class QuestionRun:
    """One question on its way through the pipeline: what each step reads, and the answer the
    steps fill in. `answer` is the answer as it stands: a step works on a copy of it that
    becomes the answer only when the step ends in time, so read `run.answer` after each step,
    never a reference taken before it."""

    engine: TextEngine
    db: Database
    answer: Answer
    settings: Settings
    on_chunk: Callable[[str], None] | None
    cancel: threading.Event | None  # the user's, or a `Deadline` during a later step
    budget: Budget
    kept: str = ""  # the beginning of its prompts whose reading the engine keeps
    read_rate: float = 0.0  # seconds the last prompt took to read, a character of it
    last_prompt: str = ""
    beam_texts: list[str] = field(default_factory=list)  # of the last prompt, when read
    drawn_on: set[str] = field(default_factory=set)  # the prompts answers were drawn on
    unsettled: list[str] = field(default_factory=list)  # why the focused answer did not do

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    @property
    def drawing(self) -> bool:
        """Whether answers are drawn beside the greedy one and run to choose among them."""
        return self.settings.check_runs

    @contextmanager
    def step(self, later: bool = True, reading: str = "", needs: float = 0.0) -> Iterator[None]:
        """A step of the chain. One after the first answer (`later`) starts only while the
        budget lasts, and leaves time to read its prompt (`reading`, at the last prompt's rate:
        a prompt read cannot stop halfway) or the `needs` seconds it is expected to take; it
        runs under a `Deadline` on a draft of the answer (its lists are replaced, never changed
        in place; its figures are shared), which becomes the answer when the step ends in time.
        When the budget runs out first, the answer stays as it was and OutOfTime ends the
        chain. A user's cancel is not the budget's: the cancelled draft stands."""
        if not later:
            yield
            return
        needs = max(needs, self.read_rate * len(reading))
        if self.budget.spent or self.budget.left() < needs:
            raise OutOfTime
        before, user_cancel = self.answer, self.cancel
        self.answer = dataclasses.replace(before)
        self.cancel = Deadline(user_cancel, self.budget)
        try:
            yield
        finally:
            self.cancel = user_cancel
        if self.budget.spent and not self.cancelled:
            self.answer = before
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
                                    max_new_tokens=self.settings.max_new_tokens,
                                    shared=self.kept)
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

    def plan(self) -> DrawPlan:
        return DrawPlan(self.budget, self.answer.stats[-1] if self.answer.stats else None,
                        self.read_rate, self.settings.policy.reviewed)

    def vote(self, first: Candidate) -> Settled | None:
        """`first` alone when the model was sure of it and it returns a row (`sure_of`);
        otherwise `settle`, as a step of its own, drawing `samples` answers, or half as many
        where only those fit in the budget (`DrawPlan.size`); none where not even those fit.
        Its choice is taken only when it ends in time."""
        if not self.drawing or self.cancelled:
            return Settled(first)
        plan = self.plan()
        if (sure := sure_of(first, plan.last, self.db, self.settings)) is not None:
            return sure
        review = plan.review_seconds(first.sql, self.answer.question)
        n = plan.size(self.settings.samples, review)
        with self.step(needs=plan.needs(n, review)):
            return self.settle(first, n, plan, review)

    def settle(self, first: Candidate, n: int, plan: DrawPlan, review: float) -> Settled | None:
        """The answer the database agrees with, among `first` (the pipeline's own), the beams
        read for the last prompt and `n` drawn on it (`pipeline.vote.settle`); None when none
        of them returned a row. The draw ends when the plan says (`DrawPlan.seconds_left`);
        without a budget (`eval`) every draw ends, so what is voted on does not depend on the
        machine's speed or load."""
        last = plan.last
        tokens = last.tokens if last is not None else self.settings.max_new_tokens
        deadline = time.perf_counter() + plan.seconds_left(review)
        drawn = self.last_prompt in self.drawn_on  # the same seed would draw the same again
        self.drawn_on.add(self.last_prompt)
        return settle(self.engine, self.db, self.last_prompt, first, self.settings,
                      self.beam_texts, n=0 if drawn else n,
                      max_new_tokens=draw_tokens(tokens, self.settings.max_new_tokens),
                      shared=self.kept, cancel=self.cancel, on_chunk=self.on_chunk,
                      deadline=deadline, question=self.answer.question)
