"""Argument types that say what they want: argparse prints ``invalid <name> value`` with
the function's name, so each is named for what it accepts."""

from __future__ import annotations

import argparse


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected {least} or more, not {value}")
    return value


def count(text: str) -> int:
    """A whole number of things, 0 or more (0: no limit where an option says so)."""
    return _whole(text, 0)


def positive(text: str) -> int:
    """A whole number of at least 1."""
    return _whole(text, 1)


def seconds(text: str) -> float:
    """A duration, 0 or more seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not value >= 0:  # (NaN too)
        raise argparse.ArgumentTypeError(f"expected 0 seconds or more, not {text}")
    return value


def file_mode(text: str) -> int:
    """Permission bits in octal, as chmod takes them (``0660``, ``660``)."""
    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an octal file mode like 0660, not {text!r}") from None
    if not 0 <= value <= 0o7777:
        raise argparse.ArgumentTypeError(f"expected an octal file mode like 0660, not {text!r}")
    return value
