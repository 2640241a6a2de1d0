"""A top-N list shows the figure it is ranked by.

"Name the top 10 albums with the highest sales amount" is answered by a query that groups
albums, orders them by SUM(...) and selects their titles alone: the reader sees ten names and
can neither see the amounts nor check the order. When a grouped query returns a top N (LIMIT
above 1) ranked by an aggregate it does not select, that aggregate is added as its last column.
One row ("the album with the most sales") is left alone: that question asks for a name, as
Spider's answers have it.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from model.llm.parsing import DIALECT, parse


def show_ranked_figure(sql: str) -> tuple[str, str] | None:
    """(sql with the figure its top N is ranked by selected last, that figure); None when the
    query is not such a list or selects the figure already."""
    try:
        trees = [t for t in parse(sql) if t is not None]
    except (ParseError, TokenError):
        return None
    tree = trees[0] if len(trees) == 1 else None
    if not isinstance(tree, exp.Select) or not tree.args.get("group"):
        return None
    limit, order = tree.args.get("limit"), tree.args.get("order")
    count = limit.expression if limit is not None else None
    if not isinstance(count, exp.Literal) or not count.is_int or int(count.name) < 2:
        return None
    if order is None or not order.expressions[0].this.find(exp.AggFunc):
        return None
    figure = order.expressions[0].this
    shown = {s.unalias().sql(DIALECT).lower() for s in tree.selects}
    if figure.sql(DIALECT).lower() in shown:
        return None
    tree.select(figure.copy(), copy=False)
    return tree.sql(DIALECT), figure.sql(DIALECT)
