"""Helpers for tests that look inside the codecs' value objects."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any


def walk(obj: object) -> Iterator[Any]:
    """Every dataclass instance in ``obj``, depth first, ``obj`` itself included."""
    if isinstance(obj, tuple):
        for item in obj:
            yield from walk(item)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        yield obj
        for f in dataclasses.fields(obj):
            yield from walk(getattr(obj, f.name))
