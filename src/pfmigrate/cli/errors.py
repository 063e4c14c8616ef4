"""The one exception subcommands raise for a failure the user can act on."""

import sys
from typing import TextIO

from pfmigrate.engine import KeyEngineError


class CommandError(Exception):
    """Printed as ``pfmigrate: <message>`` with exit status 1, without a traceback."""


def reason(exc: OSError) -> str:
    """What went wrong, for a person: a key engine error with its operation and meaning,
    a socket error by its words, without Python's "[Errno n]"."""
    return str(exc) if isinstance(exc, KeyEngineError) else exc.strerror or str(exc)


def listening_failed(name: str, exc: OSError, *, started: bool) -> CommandError:
    """Why listening to the key engine ``name`` could not start or go on."""
    return CommandError(f"{'stopped listening to' if started else 'cannot listen to'} {name}: {reason(exc)}")


def standard_input() -> TextIO:
    """``sys.stdin``, or a ``CommandError`` where the process has none (started with it
    closed, as a service may be)."""
    if sys.stdin is None:
        raise CommandError("there is no standard input to read (it is closed)")
    return sys.stdin
