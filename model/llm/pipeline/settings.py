"""How a question is answered: one object the app, `gemma-sql ask`, `eval` and bench pass in.

The figures behind each default are in docs/experiments.md; bench/rules.py switches rules off
through these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Seconds a question may take in the app and `ask` (0: no limit, as `eval` runs): past 6 s on 36
# Chinook questions almost no answer came right that had not been right before.
DEFAULT_BUDGET_S = 6.0


@dataclass(frozen=True)
class Policy:
    """How the answers are weighed when choosing among them (`pipeline.choose`)."""

    # An answer taking a column from an arbitrary row (`sql.grouping`) counts this much.
    loose_weight: float = 0.25
    # The best supported results read back (`TextEngine.review`) ...
    reviewed: int = 2
    # ... each one's support times exp(review_weight x its log-probability less the best's).
    review_weight: float = 1.0
    # A greedy answer with no token less likely than this that returns a row stands undrawn.
    sure_logprob: float = -0.7


@dataclass(frozen=True)
class Settings:
    """Everything that decides how far the pipeline goes for one question."""

    budget: float = DEFAULT_BUDGET_S  # seconds in all; 0: no limit (every draw ends)
    beams: int = 4  # other answers checked when the first fails; 0: none
    samples: int = 8  # answers drawn beside the greedy one to vote on
    temperature: float = 0.7  # of the drawn answers
    check_runs: bool = True  # run the answers read-only to choose among them (else: no draws)
    focused: bool = True  # ask with the question's likeliest tables alone first
    max_repairs: int = 1  # times a failed question is asked again with its error
    max_new_tokens: int = 256
    mend_joins: bool = True  # remake FROM clauses along the foreign keys (`sql.joins`)
    link_values: bool = True  # look the question's values up in the data (`prompting.values`)
    policy: Policy = field(default_factory=Policy)


DEFAULT = Settings()
EVAL = Settings(budget=0.0)  # `eval`: no time budget, so accuracy does not hang on the machine
