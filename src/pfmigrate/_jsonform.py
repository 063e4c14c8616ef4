"""What every JSON form shares (docs/json.md): the error that names the path of a bad
value, the readers and writers of enums, flags, errnos, integers and bytes, and the
time stamp."""

from __future__ import annotations

import dataclasses
import enum
import errno as _errno
import time
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pfmigrate._enum import OpenIntEnum

EN = TypeVar("EN", bound=OpenIntEnum)


class JSONFormError(ValueError):
    """JSON that does not describe a valid message; ``path`` says where, ``reason`` why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def enum_json(value: int) -> dict[str, Any]:
    """``{"name": ..., "value": ...}``; the name is null for a number no member has."""
    return {"name": value._name_ if isinstance(value, enum.Enum) else None, "value": int(value)}


def flags_json(value: enum.IntFlag) -> dict[str, Any]:
    """``{"names": [...], "value": ...}``: the names of the known bits that are set."""
    return {"names": [m.name for m in type(value) if m in value and m.name], "value": int(value)}


def field_text(value: object) -> str:
    """A decoded field for a person, as the text decoders print it: an enum by name
    (its number if unnamed), flags joined by ``|``, bytes in hex."""
    if isinstance(value, enum.IntFlag):
        names = [m.name for m in type(value) if m in value and m.name]
        rest = value & ~sum(type(value)[n] for n in names)
        return "|".join(names + ([hex(rest)] if rest else [])) or "0"
    if isinstance(value, enum.Enum):
        return value._name_ if value._name_ is not None else str(value._value_)
    if isinstance(value, bytes):
        return value.hex() if value else '""'
    return str(value)


def errno_json(number: int) -> dict[str, Any]:
    """``{"name": "ENOENT", "value": 2}``; the name is null for 0 (no error) and for a
    number this system has no name for."""
    return {"name": _errno.errorcode.get(number) if number else None, "value": number}


def iso_time(seconds: float) -> str:
    """``seconds`` since the epoch as ISO 8601 UTC to the millisecond: ``2026-05-01T12:00:00.250Z``."""
    whole = int(seconds)
    millis = min(int((seconds - whole) * 1000), 999)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def enum_from(enum_cls: type[EN], raw: Any, path: str) -> EN:
    """An enum from its JSON object, a bare number or a name."""
    if isinstance(raw, Mapping):
        if "value" in raw:
            raw = raw["value"]
        elif "name" in raw:
            raw = raw["name"]
        else:
            raise JSONFormError(path, "an enum object needs a 'value' or a 'name'")
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise JSONFormError(path, f"expected a {enum_cls.__name__} name or number, got {raw!r}")
    try:
        return enum_cls.parse(raw)
    except ValueError as exc:
        raise JSONFormError(path, str(exc)) from None


def int_from(raw: Any, path: str) -> int:
    """An integer, bare or as the ``value`` of an object."""
    if isinstance(raw, Mapping) and "value" in raw:
        raw = raw["value"]
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise JSONFormError(path, f"expected an integer, got {raw!r}")
    return raw


def bytes_from(raw: Any, path: str) -> bytes:
    """Bytes from hex, with or without colons and spaces."""
    if not isinstance(raw, str):
        raise JSONFormError(path, f"expected a hex string, got {raw!r}")
    try:
        return bytes.fromhex(raw.replace(":", " "))
    except ValueError:
        raise JSONFormError(path, f"{raw!r} is not hex") from None


def check_required(cls: type, present: Iterable[str], path: str) -> None:
    """``JSONFormError`` at the first field of ``cls`` that has no default and is not in
    ``present``, rather than Python's complaint about ``__init__``'s arguments."""
    have = set(present)
    for f in dataclasses.fields(cls):
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.init and no_default and f.name not in have:
            raise JSONFormError(f"{path}.{f.name}", f"missing: {cls.__name__} needs it")
