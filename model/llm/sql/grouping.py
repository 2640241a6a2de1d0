"""The grouping check: a column selected beside an aggregate, in a SELECT without GROUP BY.

SQLite answers such a query with one row and takes the column from an arbitrary row of the
table (other databases refuse it), so `SELECT genres.Name, count(*) FROM genres JOIN tracks ...`
for "how many tracks does each genre have" names one genre beside the count of every track.
In Spider's 7,000 training queries it occurs 9 times, 5 of them SQLite's documented exception:
one lone min() or max(), whose row the other columns then come from; in the model's drawn
answers it marked 62 results, none of them right (docs/experiments.md, "Keys read as names,
loose grouping").
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from model.llm.sql.parsing import DIALECT, span
from model.llm.sql.problem import Problem


def check_grouping(scopes: list[Scope]) -> list[Problem]:
    """A "grouping" warning for each SELECT that has an aggregate and a column outside any
    aggregate among its columns, no GROUP BY, and not one lone min() or max()."""
    problems = []
    for scope in scopes:
        select = scope.expression
        if not isinstance(select, exp.Select) or select.args.get("group"):
            continue
        aggregates = [a for e in select.expressions for a in _own(e, select, exp.AggFunc)
                      if not isinstance(a.parent, exp.Window)]
        lone_extreme = len(aggregates) == 1 and isinstance(aggregates[0], exp.Max | exp.Min)
        if not aggregates or lone_extreme:
            continue
        loose = [c for e in select.expressions for c in _own(e, select, exp.Column)
                 if c.find_ancestor(exp.AggFunc, exp.Window, exp.Select) is select]
        if loose:
            column = loose[0].sql(DIALECT)
            start, end = span(loose[0].this)
            problems.append(Problem(
                f"{column} is neither grouped nor aggregated beside "
                f"{aggregates[0].sql(DIALECT)}: SQLite takes it from an arbitrary row",
                "grouping", False, start, end, column))
    return problems


def _own(node: exp.Expression, select: exp.Select,
         kind: type[exp.Expr]) -> list[exp.Expr]:
    """`node` and its descendants of `kind` that belong to `select`, not to a subquery in it."""
    return [n for n in node.find_all(kind) if n.find_ancestor(exp.Select) is select]
