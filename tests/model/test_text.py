"""model/text.py: untrusted text on one line, and made visible."""

from __future__ import annotations

from model.text import one_line


def test_one_line_folds_every_kind_of_whitespace() -> None:
    assert one_line(" SELECT a\r\n\tFROM  t \n") == "SELECT a FROM t"
    assert one_line("") == ""


def test_an_error_is_its_message_or_its_name() -> None:
    assert one_line(ValueError("no such\ntable: x")) == "no such table: x"
    assert one_line(TimeoutError()) == "TimeoutError"
