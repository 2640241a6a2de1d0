"""Values of a result made comparable: what the vote and `eval` compare rows by."""

from __future__ import annotations

from typing import Any

FLOAT_DIGITS = 6  # 0.1 + 0.2 agrees with 0.3


def comparable(v: Any) -> Any:
    """Floats rounded, whole ones as ints (`avg` of 2 and 2 agrees with `max`, in a row's repr
    too); every other value as it is."""
    if isinstance(v, float) and v == v and abs(v) != float("inf"):
        return int(v) if v.is_integer() else round(v, FLOAT_DIGITS)
    return v


def has_order_by(sql: str) -> bool:
    """Whether the statement's outermost query (or compound) orders its rows, so that their
    order counts: in `eval`'s comparison and in the chart (model/sqlite/chart.py). An ORDER BY
    inside a subquery, a CTE or a window does not. Unparsable: whether it says ORDER BY."""
    # Imported here: the chart asks only when it draws, and sqlglot takes a moment to load.
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    from model.llm.sql.parsing import parse

    try:
        trees = [t for t in parse(sql) if t is not None]
    except (ParseError, TokenError):
        trees = []
    if not trees:
        return " order by " in " ".join(sql.lower().split())
    tree = trees[0].this if isinstance(trees[0], exp.Subquery | exp.Paren) else trees[0]
    return tree.args.get("order") is not None
