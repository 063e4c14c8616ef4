"""Small file helpers the daemons and commands share."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def replace_atomically(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` so that a reader never sees half a file. The
    temporary file beside it has a name nobody can guess (``mkstemp``: O_EXCL, which
    follows no symlink): a daemon running as root must not write through a symlink
    planted at a fixed name by anyone who may write in that directory."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:
            os.fchmod(file.fileno(), mode)  # (mkstemp's 0600: a node exporter reads metrics as another user)
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def kind_of(mode: int) -> str:
    """What a file that is not a regular one is, for a person ("a directory", …)."""
    return next((name for test, name in _KINDS if test(mode)), "a special file")
