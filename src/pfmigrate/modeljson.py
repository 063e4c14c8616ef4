"""Model values as JSON-ready data, in the vocabulary every JSON output shares (docs/json.md).

An enumerated field is ``{"name": ..., "value": ...}`` spelled as PF_KEY spells it
(``pfmigrate pfkey decode --json`` shows the same objects): ``"proto": {"name": "ESP",
"value": 50}``, ``"mode": {"name": "TUNNEL", "value": 2}``, ``"dir": {"name":
"OUTBOUND", "value": 2}``; the name is null for a number PF_KEY has no name for (a
selector's protocol 0, "any"). Flags are ``{"names": [...], "value": ...}``. An algorithm
is PF_KEY's name and number beside its Linux name, ``alg_name``. Addresses and prefixes
are text, SPIs and reqids numbers. Keys are left out (their length in bits stays) unless
``keys=True``: what this writes ends up in logs and terminals.

Values that are not the model's (an XFRM struct, say) keep the plain form: enums as
their numbers, flags as lists of names (what ``tests/vectors/xfrm_linux.json`` records).
"""

from __future__ import annotations

import dataclasses
import enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from pfmigrate import algorithms
from pfmigrate._jsonform import enum_json, flags_json
from pfmigrate.model import (
    AcquireEvent,
    Action,
    Algorithm,
    Counters,
    Dir,
    Encap,
    Event,
    EventsLost,
    ExpireEvent,
    KMAddress,
    Level,
    Lifetime,
    MigrateBundle,
    MigrateEvent,
    MigrateRequest,
    Mode,
    Policy,
    SAFlag,
    SAState,
    SecurityAssociation,
    Selector,
    Template,
)
from pfmigrate.pfkey import constants as pfkey

#: The model's enums as PF_KEY's.
_AS_PFKEY: dict[enum.Enum, enum.IntEnum] = {
    Dir.IN: pfkey.Direction.INBOUND,
    Dir.OUT: pfkey.Direction.OUTBOUND,
    Dir.FWD: pfkey.Direction.FWD,
    Mode.TRANSPORT: pfkey.Mode.TRANSPORT,
    Mode.TUNNEL: pfkey.Mode.TUNNEL,
    Mode.BEET: pfkey.Mode.BEET,
    Level.USE: pfkey.Level.USE,
    Level.REQUIRE: pfkey.Level.REQUIRE,
    Level.UNIQUE: pfkey.Level.UNIQUE,
    Action.IPSEC: pfkey.PolicyType.IPSEC,
    Action.NONE: pfkey.PolicyType.NONE,
    Action.DISCARD: pfkey.PolicyType.DISCARD,
    SAState.LARVAL: pfkey.SAState.LARVAL,
    SAState.MATURE: pfkey.SAState.MATURE,
    SAState.DYING: pfkey.SAState.DYING,
    SAState.DEAD: pfkey.SAState.DEAD,
}
_FLAGS = {SAFlag.NOECN: pfkey.SAFlags.NOECN, SAFlag.DECAP_DSCP: pfkey.SAFlags.DECAP_DSCP,
          SAFlag.NOPMTUDISC: pfkey.SAFlags.NOPMTUDISC}  # fmt: skip
_MODEL = frozenset({
    Selector, Template, Policy, Lifetime, Counters, Encap, SecurityAssociation, MigrateBundle, KMAddress,
    MigrateRequest, MigrateEvent, AcquireEvent, ExpireEvent, EventsLost,
})  # fmt: skip


def protocol_json(number: int) -> dict[str, Any]:
    """An IP protocol number: ``{"name": "ESP", "value": 50}``."""
    return enum_json(pfkey.IPProto.of(number))


def algorithm_json(role: str | None, alg: Algorithm, *, keys: bool = False) -> dict[str, Any]:
    """An SA's ``auth``, ``enc``, ``aead`` or ``comp`` algorithm: PF_KEY's name and number
    (null for an algorithm PF_KEY cannot name, or whose role is not known), the Linux
    name, the key's length."""
    number: int | None
    member: enum.IntEnum | None = None
    if role is None:
        number = None
    elif role == "auth":
        number = algorithms.AUTH_BY_NAME.get(alg.name, (None, 0))[0]
        member = None if number is None else pfkey.AuthAlg.of(number)
    elif role == "comp":
        number = algorithms.COMPRESS_BY_NAME.get(alg.name)
        member = None if number is None else pfkey.CompAlg.of(number)
    else:
        found = algorithms.AEAD_BY_NAME.get((alg.name, alg.icv_bits)) if role == "aead" else None
        number = found if role == "aead" else algorithms.ENCRYPT_BY_NAME.get(alg.name)
        member = None if number is None else pfkey.EncAlg.of(number)
    out: dict[str, Any] = {
        "name": None if member is None else member.name,
        "value": number,
        "alg_name": alg.name,
        "key_bits": alg.key_bits,
    }
    if alg.icv_bits:
        out["icv_bits"] = alg.icv_bits
    if keys:
        out["key"] = alg.key.hex()
    return out


def _model_fields(value: Any, keys: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if f.name == "proto" and isinstance(item, int):
            out[f.name] = protocol_json(item)
        elif isinstance(item, Algorithm):
            out[f.name] = algorithm_json(f.name, item, keys=keys)
        else:
            out[f.name] = to_data(item, keys=keys)
        if isinstance(value, Template) and f.name == "mode":
            out["level"] = to_data(value.level)
    return out


def to_data(value: object, *, keys: bool = False) -> Any:
    if isinstance(value, SAFlag):
        bits = pfkey.SAFlags(0)
        for flag, wire in _FLAGS.items():
            if flag in value:
                bits |= wire
        return flags_json(bits)
    if isinstance(value, enum.Enum) and value in _AS_PFKEY:
        return enum_json(_AS_PFKEY[value])
    if isinstance(value, enum.Flag):
        return [m.name.lower() for m in type(value) if m in value and m.name]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, IPv4Address | IPv6Address | IPv4Network | IPv6Network):
        return str(value)
    if isinstance(value, Algorithm):
        return algorithm_json(None, value, keys=keys)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [to_data(item, keys=keys) for item in value]
    if type(value) in _MODEL:
        return _model_fields(value, keys)
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
