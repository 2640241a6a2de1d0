"""The schema tree: tables and views; columns appear when a table is expanded.

Row counts are lazy: a table is counted when its node is on screen or expanded, never all at
once, so a database with thousands of tables paints at once. The app does the counting in a
thread worker (on its own connection) and hands the number back with `set_count`.
Names are data: labels are built with tui/safe_text.py, never parsed as markup.
An object SQLite cannot read (a view over a dropped table) is listed with SQLite's reason and
never counted or expanded.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from model.sqlite.schema import Schema, Table, quote
from tui.safe_text import plain, shown


@dataclass(frozen=True)
class SchemaItem:
    kind: str  # "table", "view" or "column"
    name: str
    table: str


class SchemaTree(Tree[SchemaItem]):
    BINDINGS = [
        Binding("enter", "choose", "Insert name"),
        Binding("space", "toggle_node", "Expand", show=False),
    ]

    class CountsWanted(Message):
        """Tables that have come into view (or were expanded) and have no row count yet."""

        def __init__(self, tables: list[str]) -> None:
            super().__init__()
            self.tables = tables

    class NameChosen(Message):
        """Enter on a node: its quoted name, for the editor."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, schema: Schema, label: str, **kwargs: object) -> None:
        super().__init__(plain(label), **kwargs)  # type: ignore[arg-type]
        self.auto_expand = False  # Enter inserts the name; space/click toggles
        self.show_root = False
        self._counts: dict[str, int | None] = {}
        self._asked: set[str] = set()
        self._table_nodes: dict[str, TreeNode[SchemaItem]] = {}
        self._table_info: dict[str, Table] = {}
        self.load(schema)

    def load(self, schema: Schema) -> None:
        self.clear()
        self._table_nodes.clear()
        every = sorted([*schema.tables, *schema.unreadable], key=lambda t: t.name)
        self._table_info = {t.name: t for t in every}
        # Counting one would only fail again: the reason is in its label instead.
        self._asked.update(t.name for t in schema.unreadable)
        for table in every:
            node = self.root.add(self._label(table), SchemaItem(table.kind, table.name,
                                                               table.name))
            self._table_nodes[table.name] = node
        self.root.expand()

    def _label(self, table: Table) -> Text:
        label = plain(table.name, style="bold" if table.kind == "table" else "italic")
        if table.kind == "view":
            label.append(" view", style="dim")
        if table.problem:
            label.append(f"  unreadable: {shown(table.problem)}", style="red")
            return label
        count = self._counts.get(table.name)
        if table.name in self._counts:
            label.append(f"  {count:,}" if count is not None else "  ?", style="dim")
        return label

    def set_count(self, table: str, count: int | None) -> None:
        self._counts[table] = count
        node = self._table_nodes.get(table)
        if node is not None:
            node.set_label(self._label(self._table_info[table]))

    def on_mount(self) -> None:
        self.cursor_line = 0  # Tree starts with no cursor; Enter should work at once
        self.watch(self, "scroll_y", self._want_visible_counts, init=False)
        self.call_after_refresh(self._want_visible_counts)

    def on_resize(self) -> None:
        self.call_after_refresh(self._want_visible_counts)

    def _want_visible_counts(self) -> None:
        top = int(self.scroll_y)
        wanted = []
        for line in range(top, top + self.size.height + 1):
            node = self.get_node_at_line(line)
            if node is None:
                break
            item = node.data
            if item and item.kind != "column" and item.name not in self._asked:
                wanted.append(item.name)
        self._ask(wanted)

    def _ask(self, tables: list[str]) -> None:
        tables = [t for t in tables if t not in self._asked]
        if tables:
            self._asked.update(tables)
            self.post_message(self.CountsWanted(tables))

    @on(Tree.NodeExpanded)
    def _add_columns(self, event: Tree.NodeExpanded[SchemaItem]) -> None:
        node, item = event.node, event.node.data
        if item is None or item.kind == "column" or node.children:
            return
        table = self._table_info[item.name]
        fks = {fk.column: fk for fk in table.foreign_keys}
        for col in table.columns:
            label = plain(col.name)
            label.append(f" {shown(col.type or 'ANY')}", style="dim")
            if col.primary_key:
                label.append(" PK", style="bold yellow")
            if col.not_null and not col.primary_key:
                label.append(" NOT NULL", style="dim")
            if fk := fks.get(col.name):
                label.append(f" -> {shown(fk.ref_table)}.{shown(fk.ref_column)}", style="cyan")
            node.add_leaf(label, SchemaItem("column", col.name, table.name))
        self._ask([item.name])

    def action_choose(self) -> None:
        node = self.cursor_node
        if node is not None and node.data is not None:
            self.post_message(self.NameChosen(quote(node.data.name)))
