"""Untrusted text made displayable: what a database (or a model, or an error) says is shown as
data, never obeyed by the terminal or parsed as markup.

Two dangers, two rules:

- Control characters (C0, DEL, C1) would reach the terminal raw: ESC]2;…BEL retitles the
  window, ESC[7m restyles the screen. `shown` swaps each for one visible character of its
  own, so lengths and cursor offsets stay as they were: C0 and DEL as their Unicode control
  pictures (ESC as ␛, BEL as ␇, tab as ␉), C1, which has no pictures, as �.
- Bidirectional controls (RLO U+202E and its kin) would make the terminal, or the eye, read
  characters in another order than they are stored ("Trojan Source"): they are shown as � too.
- Textual parses a plain `str` given to Label, Static.update, notify, DataTable cells and
  labels, Tree labels as markup ("[/x]" raises MarkupError, "[b]B[/b]" shows a bold B). So
  data goes to widgets as `rich.text.Text` (never parsed), built by `plain`.
"""

from __future__ import annotations

from rich.highlighter import Highlighter
from rich.text import Text

_PICTURES = {code: chr(0x2400 + code) for code in range(0x20)} | {0x7F: "\u2421"}
_C1 = {code: "\ufffd" for code in range(0x80, 0xA0)}
_BIDI = {code: "\ufffd" for code in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F),
                                      *range(0x2066, 0x206A))}
_ONE_LINE = str.maketrans(_PICTURES | _C1 | _BIDI)
# Multi-line text (SQL in a dialog, a line of the editor) keeps its newlines and tabs.
_LINES = str.maketrans({c: p for c, p in (_PICTURES | _C1 | _BIDI).items()
                        if chr(c) not in "\n\t"})


def shown(text: str, lines: bool = False) -> str:
    """`text` with every control character swapped for a visible one, one for one.

    With `lines`, newline and tab stay: for text shown on several lines.
    """
    return text.translate(_LINES if lines else _ONE_LINE)


def plain(text: str, style: str = "", lines: bool = False) -> Text:
    """Data as a widget shows it: control characters visible, nothing parsed as markup."""
    return Text(shown(text, lines), style=style, end="")


class VisibleControls(Highlighter):
    """For an Input's `highlighter`: typed or pasted control characters are drawn visibly
    (the value itself keeps them)."""

    def highlight(self, text: Text) -> None:
        text.plain = shown(text.plain)
