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
