"""The time plan of drawing answers under a budget: how many fit, and when drawing must end.

Separate from the choice (`pipeline.choose`): these decide only how much there is to choose
from. Measured costs are in bench/README.md; without a budget (`eval`) nothing here binds and
every draw ends, so what is voted on does not depend on the machine's speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from model.llm.pipeline.budget import Budget
from model.llm.protocol import GenerationStats

# Under a budget a draw takes at most this many times the greedy answer's decoding (at least
# DRAW_MIN_S) and ends DRAW_BUDGET_S after the question was asked: a slow or busy machine gets
# fewer votes, not a longer wait.
DRAW_TIME_FACTOR = 2.0
DRAW_MIN_S = 1.0
DRAW_BUDGET_S = 15.0
# Reading an answer back costs this many times reading as many characters of a long prompt
# (one pass over a few dozen tokens, the output layer at each of the question's).
REVIEW_READ_COST = 6.0


def draw_tokens(greedy_tokens: int, cap: int) -> int:
    """Tokens a drawn answer may take: 1.5 times the greedy answer's and 16 more, at most `cap`
    (a draw that runs on past that is rambling, not answering)."""
    return min(cap, greedy_tokens * 3 // 2 + 16)


def draw_cost(n: int) -> float:
    """Drawing `n` answers (a batch of n rows a step, the prompt's reading kept), in units of the
    greedy answer's decoding at one token a pass."""
    return 1.1 + 0.15 * n


@dataclass(frozen=True)
class DrawPlan:
    """What one question's draw may do, from its greedy answer's figures."""

    budget: Budget
    last: GenerationStats | None  # the greedy answer's figures
    read_rate: float  # seconds a character of prompt took to read
    reviewed: int  # answers read back after the vote

    def review_seconds(self, sql: str, question: str) -> float:
        """Reading the question back after `reviewed` answers like `sql`."""
        return REVIEW_READ_COST * self.read_rate * self.reviewed * (len(sql) + len(question))

    def needs(self, n: int, review: float) -> float:
        """Seconds drawing `n` answers and reading back are expected to take."""
        last = self.last
        decoding = last.one_token_seconds - last.first_token_s if last is not None else 0.0
        return draw_cost(n) * decoding + review

    def size(self, n: int, review: float) -> int:
        """`n`, or half as many when only those fit in what is left of the budget."""
        return n if self.budget.left() >= self.needs(n, review) else max(1, n // 2)

    def seconds_left(self, review: float) -> float:
        """How long the draw itself may run from now (inf without a budget)."""
        if not self.budget.limited:
            return math.inf
        last = self.last
        took = max(DRAW_MIN_S, DRAW_TIME_FACTOR * (last.one_token_seconds if last else 0.0))
        elapsed = self.budget.clock() - self.budget.started
        return min(took, DRAW_BUDGET_S - elapsed, self.budget.left() - review)
