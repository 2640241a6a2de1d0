"""Untrusted text made displayable: what a database (or a model, or an error) says is shown as
data, never obeyed by the terminal or parsed as markup.

Control and bidirectional characters are drawn visibly by `shown` (model/text.py, the one
helper the command lines use too). And:

- Textual parses a plain `str` given to Label, Static.update, notify, DataTable cells and
  labels, Tree labels as markup ("[/x]" raises MarkupError, "[b]B[/b]" shows a bold B). So
  data goes to widgets as `rich.text.Text` (never parsed), built by `plain`.
"""

from __future__ import annotations

from rich.highlighter import Highlighter
from rich.text import Text

from model.text import shown

__all__ = ["VisibleControls", "plain", "shown"]


def plain(text: str, style: str = "", lines: bool = False) -> Text:
    """Data as a widget shows it: control characters visible, nothing parsed as markup."""
    return Text(shown(text, lines), style=style, end="")


class VisibleControls(Highlighter):
    """For an Input's `highlighter`: typed or pasted control characters are drawn visibly
    (the value itself keeps them)."""

    def highlight(self, text: Text) -> None:
        text.plain = shown(text.plain)
