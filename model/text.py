"""Untrusted text made visible, never interpreted: what a database, a model or a server says is
printed as data, not obeyed by the terminal.

Control characters (C0, DEL, C1) would reach the terminal raw: ESC]2;…BEL retitles the window,
ESC[7m restyles the screen. `shown` swaps each for one visible character of its own, so lengths
and cursor offsets stay as they were: C0 and DEL as their Unicode control pictures (ESC as ␛,
BEL as ␇, tab as ␉), C1, which has no pictures, as �. Bidirectional controls (RLO U+202E and its
kin) would make the terminal, or the eye, read characters in another order than they are stored
("Trojan Source"): they are shown as � too.

The one helper for it: the command lines' stdout and stderr use it here, the app's widgets
through tui/safe_text.py (which adds what Textual needs: no markup). `one_line` folds a
message, an error or an answer onto one line (the prompt, the status bar, the wire's errors).
"""

from __future__ import annotations

import re

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


def one_line(text: str | BaseException) -> str:
    """All whitespace (newlines, tabs, a stray \\r) collapsed to single spaces; an error as its
    message, or its type's name when the message is empty."""
    line = re.sub(r"\s+", " ", str(text)).strip()
    if isinstance(text, BaseException):
        return line or type(text).__name__
    return line


def counted(n: int, noun: str) -> str:
    """"1 row", "2,000 rows": a count with its noun, plural when it is not one."""
    return f"{n:,} {noun}{'s' * (n != 1)}"
