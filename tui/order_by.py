"""Whether a query orders its own rows: its chart then keeps that order (model/sqlite/chart.py
sorts bars longest first otherwise). sqlglot tells, as model/sqlite does without a parser."""

from __future__ import annotations


def has_order_by(sql: str) -> bool:
    """True when the statement's outermost SELECT (or compound) has an ORDER BY; an ORDER BY
    inside a subquery, a CTE or a window does not order the result. Unparsable: False."""
    import sqlglot  # imported here: only charts need it, and it takes a moment to load
    from sqlglot.errors import SqlglotError

    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except SqlglotError:
        return False
    return tree is not None and tree.args.get("order") is not None
