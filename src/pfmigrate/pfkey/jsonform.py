"""PF_KEY messages as JSON, for people and programs.

Each extension is an object with ``"ext"`` (its type) and one key per field. Enum
fields are ``{"name": ..., "value": ...}`` (``name`` is null for a number this code
does not know), bytes are hex strings, socket addresses are objects. ``from_json``
accepts that form back, and also a bare number or name wherever an enum is expected,
so a person can write ``"mode": "TUNNEL"``. Errors name the path of the bad value.
"""

from __future__ import annotations

import enum
import ipaddress
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from pfmigrate._jsonform import JSONFormError as JSONFormError  # the one error of both JSON forms
from pfmigrate._jsonform import bytes_from, check_required, enum_from, enum_json, int_from
from pfmigrate._value import FieldSpec, Value, field_specs
from pfmigrate.pfkey.constants import ExtType, MsgType, SAType
from pfmigrate.pfkey.extensions import EXTENSION_CLASSES, Extension, UnknownExtension
from pfmigrate.pfkey.message import Message
from pfmigrate.pfkey.sockaddr import SockAddr

VT = TypeVar("VT", bound=Value)


# --- to JSON ---------------------------------------------------------------------------


def _sockaddr_json(sa: SockAddr) -> dict[str, Any]:
    out: dict[str, Any] = {"address": str(sa.address), "port": sa.port}
    if sa.address.version == 6:
        out["flowinfo"] = sa.flowinfo
        out["scope_id"] = sa.scope_id
    return out


def _value_json(value: object) -> Any:
    if isinstance(value, enum.IntFlag):
        return {"names": [m.name for m in type(value) if m in value], "value": int(value)}
    if isinstance(value, enum.IntEnum):
        return enum_json(value)
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, SockAddr):
        return _sockaddr_json(value)
    if isinstance(value, tuple):
        return [_value_json(item) for item in value]
    if isinstance(value, Value):
        return {spec.name: _value_json(getattr(value, spec.name)) for spec in field_specs(type(value))}
    raise TypeError(f"cannot put {type(value).__name__} into JSON")


def extension_to_json(ext: Extension) -> dict[str, Any]:
    out: dict[str, Any] = {"ext": enum_json(ExtType.of(ext.exttype))}
    for spec in field_specs(type(ext)):
        if spec.name != "exttype":
            out[spec.name] = _value_json(getattr(ext, spec.name))
    return out


def to_json(msg: Message) -> dict[str, Any]:
    """The message as a JSON-ready dict."""
    return {
        "version": 2,
        "type": enum_json(msg.type),
        "satype": enum_json(msg.satype),
        "errno": msg.errno,
        "seq": msg.seq,
        "pid": msg.pid,
        "reserved": msg.reserved,
        "length": len(msg.encode()),
        "extensions": [extension_to_json(ext) for ext in msg.extensions],
    }


# --- from JSON ---------------------------------------------------------------------------


def _sockaddr_from(raw: Any, path: str) -> SockAddr:
    where = path if isinstance(raw, str) else f"{path}.address"  # (the short form is the address alone)
    if isinstance(raw, str):
        raw = {"address": raw}
    if not isinstance(raw, Mapping) or "address" not in raw:
        raise JSONFormError(path, f"expected a socket address object with an 'address', got {raw!r}")
    _reject_unknown(raw, {"address", "port", "flowinfo", "scope_id"}, path)
    address = raw["address"]
    if not isinstance(address, str):
        raise JSONFormError(where, f"expected an IP address as text, got {address!r}")
    if "%" in address:
        raise JSONFormError(where, f"write the zone of {address!r} as scope_id, an interface index")
    try:
        return SockAddr(
            ipaddress.ip_address(address),
            int_from(raw.get("port", 0), f"{path}.port"),
            int_from(raw.get("flowinfo", 0), f"{path}.flowinfo"),
            int_from(raw.get("scope_id", 0), f"{path}.scope_id"),
        )
    except ValueError as exc:
        if isinstance(exc, JSONFormError):
            raise
        raise JSONFormError(path, str(exc)) from None


def _reject_unknown(raw: Mapping[str, Any], known: set[str], path: str) -> None:
    unknown = set(raw) - known
    if unknown:
        raise JSONFormError(path, f"unknown field(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(known))}")


def _field_from(spec: FieldSpec, raw: Any, path: str) -> Any:
    if spec.kind == "enum":
        return enum_from(spec.cls, raw, path)
    if spec.kind in ("uint", "flag"):
        return int_from(raw, path)
    if spec.kind == "bytes":
        return bytes_from(raw, path)
    if spec.kind == "tuple":
        if not isinstance(raw, list):
            raise JSONFormError(path, f"expected a list, got {raw!r}")
        if spec.cls is int:
            return tuple(int_from(item, f"{path}[{i}]") for i, item in enumerate(raw))
        return tuple(_value_from(spec.cls, item, f"{path}[{i}]") for i, item in enumerate(raw))
    if spec.kind == "value":
        return _value_from(spec.cls, raw, path)
    # "other": a sockaddr (maybe optional) or an optional int
    options = typing.get_args(spec.cls) if isinstance(spec.cls, types.UnionType) else (spec.cls,)
    if raw is None and type(None) in options:
        return None
    if SockAddr in options:
        return _sockaddr_from(raw, path)
    if int in options:
        return int_from(raw, path)
    raise JSONFormError(path, f"cannot read a {spec.cls} from JSON")


def _value_from(cls: type[VT], raw: Any, path: str, skip: frozenset[str] = frozenset()) -> VT:
    if not isinstance(raw, Mapping):
        raise JSONFormError(path, f"expected an object for {cls.__name__}, got {raw!r}")
    specs = [spec for spec in field_specs(cls) if spec.name not in skip]
    _reject_unknown(raw, {spec.name for spec in specs} | set(skip), path)
    kwargs = {spec.name: _field_from(spec, raw[spec.name], f"{path}.{spec.name}") for spec in specs if spec.name in raw}
    check_required(cls, [*kwargs, *skip], path)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, JSONFormError):
            raise
        raise JSONFormError(path, f"{cls.__name__}: {exc}") from None


def extension_from_json(raw: Any, path: str = "extension") -> Extension:
    if not isinstance(raw, Mapping) or "ext" not in raw:
        raise JSONFormError(path, "an extension needs an 'ext' type")
    exttype = enum_from(ExtType, raw["ext"], f"{path}.ext")
    cls = EXTENSION_CLASSES.get(exttype)
    if cls is None:
        if exttype == 0:
            raise JSONFormError(f"{path}.ext", "type 0 is SADB_EXT_RESERVED")
        fields = {k: v for k, v in raw.items() if k != "ext"}
        return _value_from(UnknownExtension, {**fields, "exttype": int(exttype)}, path)
    return _value_from(cls, raw, path, skip=frozenset({"ext"}))


def from_json(raw: Any) -> Message:
    """A message from the form ``to_json`` writes; ``JSONFormError`` names what is wrong."""
    if not isinstance(raw, Mapping):
        raise JSONFormError("message", f"expected an object, got {type(raw).__name__}")
    known = {"version", "type", "satype", "errno", "seq", "pid", "reserved", "length", "extensions"}
    _reject_unknown(raw, known, "message")
    if "type" not in raw:
        raise JSONFormError("message", "a message needs a 'type'")
    if raw.get("version", 2) != 2:
        raise JSONFormError("message.version", "only PF_KEY version 2 exists")
    exts = raw.get("extensions", [])
    if not isinstance(exts, list):
        raise JSONFormError("message.extensions", "expected a list")
    try:
        return Message(
            enum_from(MsgType, raw["type"], "message.type"),
            enum_from(SAType, raw.get("satype", 0), "message.satype"),
            int_from(raw.get("seq", 0), "message.seq"),
            int_from(raw.get("pid", 0), "message.pid"),
            int_from(raw.get("errno", 0), "message.errno"),
            tuple(extension_from_json(ext, f"message.extensions[{i}]") for i, ext in enumerate(exts)),
            int_from(raw.get("reserved", 0), "message.reserved"),
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, JSONFormError):
            raise
        raise JSONFormError("message", str(exc)) from None
