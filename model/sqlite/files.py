"""Checks on a path given on the command line, before anything opens it.

Only a regular file is ever opened: opening a FIFO for reading blocks until a writer comes
(forever, for a user who typed the wrong name), and a device or a socket is no database.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = {
    stat.S_ISDIR: "is a directory",
    stat.S_ISFIFO: "is a FIFO (named pipe), not a file",
    stat.S_ISCHR: "is a character device, not a file",
    stat.S_ISBLK: "is a block device, not a file",
    stat.S_ISSOCK: "is a socket, not a file",
}


def file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a regular file ("no such file", "is a directory", ...), in
    a few words; None when it can. Never opens anything but a regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as e:  # a path through a plain file, a symlink loop, a name too long
        return f"cannot read ({e.strerror})"
    if not stat.S_ISREG(mode):
        return next((kind for test, kind in _KINDS.items() if test(mode)), "not a regular file")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        return f"cannot read ({e.strerror})"
    return None
