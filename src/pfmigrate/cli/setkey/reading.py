"""Reading a user's input file or standard input, bounded, as ``CommandError`` when it fails.

A regular file and a pipe (a FIFO, as ``-f <(...)`` gives, or standard input) are read,
at most ``limit`` bytes of them: more is refused without reading it all, so that
standard input from ``/dev/zero`` ends in an error rather than a MemoryError. Anything else
is refused before it is opened: a directory cannot be read, and a device such as
``/dev/zero`` never ends (opening some devices even acts on them).
(``pfmigrate pfkey`` reads its files the same way.)
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import TypeVar

from pfmigrate._files import kind_of
from pfmigrate.cli.errors import CommandError

#: What ``setkey -f`` reads at most. A SAD load of many thousands of SAs is a real use
#: (one ``add`` with its keys is about 200 bytes: 16 MiB is some 80,000 of them), and
#: 16 MiB, parsed whole, still fits any machine that runs this.
MAX_SETKEY_BYTES = 16 * 1024 * 1024

Data = TypeVar("Data", bytes, str)


def read_file(path: str, *, limit: int, reader: str, wanted: str) -> bytes:
    """The bytes of the regular file or FIFO ``path``, at most ``limit`` of them.
    ``reader`` (``setkey``) and ``wanted`` (``a file of statements``) word the errors."""
    try:
        mode = os.stat(path).st_mode
        _readable(path, mode, wanted)
        flags = os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC
        # A FIFO is opened blocking, so that it waits for its writer as a pipe should;
        # anything else without, so that a device swapped in since the stat cannot hold us.
        fd = os.open(path, flags if stat.S_ISFIFO(mode) else flags | os.O_NONBLOCK)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as file:
        try:
            _readable(path, os.fstat(fd).st_mode, wanted)  # (what was opened: the path may have changed)
            os.set_blocking(fd, True)  # a FIFO's reads wait for its writer
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
        return bounded(file.read, path, limit=limit, reader=reader)


def bounded(read: Callable[[int], Data], source: str, *, limit: int, reader: str) -> Data:
    """What ``read`` gives, asked for one more than ``limit`` to tell a longer input."""
    try:
        data = read(limit + 1)
    except OSError as exc:  # (EIO from a terminal gone, say)
        raise CommandError(f"cannot read {source}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise CommandError(f"cannot read {source}: it is larger than {_size(limit)}, the most {reader} reads")
    return data


def _readable(path: str, mode: int, wanted: str) -> None:
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise CommandError(
            f"cannot read {path}: it is {kind_of(mode)}, not {wanted}: give a file, a pipe, or - for standard input"
        )


def _size(limit: int) -> str:
    mib = limit / (1024 * 1024)
    return f"{limit} bytes ({mib:g} MiB)" if mib >= 1 else f"{limit} bytes"
