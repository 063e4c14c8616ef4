"""The one exception subcommands raise for a failure the user can act on."""

import sys
from typing import TextIO

from pfmigrate.engine import KeyEngineError


class CommandError(Exception):
    """Printed as ``pfmigrate: <message>`` with exit status 1, without a traceback."""


def listening_failed(name: str, exc: OSError, *, started: bool) -> CommandError:
    """Why listening to the key engine ``name`` could not start or go on (a key engine
    error says its operation and meaning; a socket error its errno)."""
    said = str(exc) if isinstance(exc, KeyEngineError) else exc.strerror or str(exc)
    return CommandError(f"{'stopped listening to' if started else 'cannot listen to'} {name}: {said}")


def standard_input() -> TextIO:
    """``sys.stdin``, or a ``CommandError`` where the process has none (started with it
    closed, as a service may be)."""
    if sys.stdin is None:
        raise CommandError("there is no standard input to read (it is closed)")
    return sys.stdin
