"""A question's time budget: how long the pipeline (`pipeline.ask`) may go on checking and
improving its first answer.

The first answer is always read to the end. The steps after it (every table, the beam
candidates, a repair) each run only while time is left, and are stopped, their work thrown
away, when it runs out: on a slow CPU the whole chain took over a minute (issue 19), and the
worst case is what users remember.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class OutOfTime(Exception):
    """The budget ran out: the steps still to come are skipped."""


@dataclass
class Budget:
    """`seconds` from `started` by `clock` (0: unlimited)."""

    seconds: float
    clock: Callable[[], float] = time.perf_counter
    started: float = field(default=math.nan)

    def __post_init__(self) -> None:
        if math.isnan(self.started):
            self.started = self.clock()

    @property
    def limited(self) -> bool:
        return self.seconds > 0

    def left(self) -> float:
        if not self.limited:
            return math.inf
        return self.seconds - (self.clock() - self.started)

    @property
    def spent(self) -> bool:
        return self.left() <= 0

    def note(self) -> str:
        """What the pipeline tells the user when the budget stopped it: when, and why (a step
        that would not end in time is not started, so the checks may stop well before it)."""
        at = self.clock() - self.started
        if at < self.seconds:
            return (f"checks stopped at {at:.1f} s: the next would not end within the "
                    f"{self.seconds:g} s time budget")
        return f"time budget of {self.seconds:g} s reached: further checks skipped"


class Deadline(threading.Event):
    """The cancel event a step after the first answer runs under: set when the user cancels
    (`cancel`) or when the budget runs out. The engine polls `is_set` before every forward
    pass, so a step stops within a token of the deadline."""

    def __init__(self, cancel: threading.Event | None, budget: Budget) -> None:
        super().__init__()
        self.cancel = cancel
        self.budget = budget

    def is_set(self) -> bool:
        user = self.cancel is not None and self.cancel.is_set()
        return user or super().is_set() or self.budget.spent
