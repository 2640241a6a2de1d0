"""sql/results.py: what makes two results comparable (values, and whether row order counts)."""

from __future__ import annotations

import pytest

from model.llm.sql.results import comparable, has_order_by


@pytest.mark.parametrize(("sql", "ordered"), [
    ("SELECT name FROM item ORDER BY price", True),
    ("SELECT a FROM x UNION SELECT b FROM y ORDER BY 1", True),
    ("SELECT a FROM t ORDER BY a;", True),
    ("(SELECT a FROM t ORDER BY a)", True),
    ("SELECT name FROM (SELECT name FROM item ORDER BY price LIMIT 2)", False),
    ("SELECT count(*) FROM item WHERE id IN (SELECT id FROM item ORDER BY price LIMIT 3)", False),
    ("WITH c AS (SELECT a FROM t ORDER BY a) SELECT a FROM c", False),
    ("SELECT a, row_number() OVER (ORDER BY a) FROM t", False),
    ("SELECT 'unterminated FROM t ORDER BY a", True),  # unparsable: the words decide
    ("SELECT 'unterminated FROM t", False),
])
def test_only_the_outermost_order_by_orders_the_result(sql: str, ordered: bool) -> None:
    assert has_order_by(sql) is ordered


def test_a_run_of_bare_joins_is_not_handed_to_the_parser() -> None:
    """sqlglot would take days over 30 JOINs without ON: the words decide."""
    sql = "SELECT * FROM t" + " JOIN t" * 30 + " ORDER BY 1"
    assert has_order_by(sql)


def test_values_compare_with_floats_rounded() -> None:
    assert comparable(0.1 + 0.2) == comparable(0.3) and comparable(2.0) == 2
    assert comparable("2.0") == "2.0" and comparable(None) is None
