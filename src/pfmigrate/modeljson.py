"""Model values as JSON-ready data: enums by value, addresses and prefixes as text.

Keys are left out (their length in bits stays) unless ``keys=True``: what this writes
ends up in logs and terminals.
"""

from __future__ import annotations

import dataclasses
import enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from pfmigrate.model import AcquireEvent, Algorithm, Event, EventsLost, ExpireEvent, MigrateEvent


def to_data(value: object, *, keys: bool = False) -> Any:
    if isinstance(value, enum.Flag):
        return [m.name.lower() for m in type(value) if m in value and m.name]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, IPv4Address | IPv6Address | IPv4Network | IPv6Network):
        return str(value)
    if isinstance(value, Algorithm):
        out: dict[str, Any] = {"name": value.name, "key_bits": value.key_bits}
        if value.icv_bits:
            out["icv_bits"] = value.icv_bits
        if keys:
            out["key"] = value.key.hex()
        return out
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [to_data(item, keys=keys) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name), keys=keys) for f in dataclasses.fields(value)}
    return value


EVENT_NAMES: dict[type, str] = {
    MigrateEvent: "migrate",
    AcquireEvent: "acquire",
    ExpireEvent: "expire",
    EventsLost: "events-lost",
}


def event_to_data(event: Event) -> dict[str, Any]:
    data: dict[str, Any] = {"event": EVENT_NAMES[type(event)]}
    data.update(to_data(event))
    return data
