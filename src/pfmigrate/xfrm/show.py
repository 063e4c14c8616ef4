"""XFRM netlink messages for people and programs: ``to_json`` in the vocabulary of every
pfmigrate JSON output (docs/json.md), ``render`` as text, one line per struct or attribute.

Enums are ``{"name": ..., "value": ...}`` with XFRM's own names and numbers (``"mode":
{"name": "TUNNEL", "value": 1}``), flags ``{"names": [...], "value": ...}``, an IP
protocol by its name (``"proto": {"name": "ESP", "value": 50}``), an address family as
``{"name": "INET6", "value": 10}``, an errno as ``{"name": "ENOENT", "value": 2}``. An
algorithm's kernel name is ``alg_name``, as ``struct xfrm_algo`` calls it. Bytes are hex,
addresses text, SPIs numbers.
"""

from __future__ import annotations

import enum
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from pfmigrate._jsonform import enum_json, errno_json, field_text, flags_json
from pfmigrate._value import Value, field_specs
from pfmigrate.pfkey.constants import IPProto
from pfmigrate.xfrm.attributes import Algo, AlgoWithLength, Attribute, UnknownAttribute
from pfmigrate.xfrm.constants import AF_INET, AF_INET6, Attr, MsgType, NlFlags, NlMsgType
from pfmigrate.xfrm.message import NetlinkDone, NetlinkError, NetlinkMessage, RawMessage, XfrmMessage

FAMILIES = {AF_INET: "INET", AF_INET6: "INET6"}
#: Fields renamed for JSON: an algorithm's ``name`` is ``alg_name``, as in the C struct.
_RENAMED = {"name": "alg_name"}


def _named_int(key: str, value: int) -> Any:
    if key == "proto":
        return enum_json(IPProto.of(value))
    if key.endswith("family"):
        return {"name": FAMILIES.get(value), "value": value}
    return value


def _value_json(key: str, value: object) -> Any:
    if isinstance(value, enum.IntFlag):
        return flags_json(value)
    if isinstance(value, enum.IntEnum):
        return enum_json(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return _named_int(key, value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, IPv4Address | IPv6Address):
        return str(value)
    if isinstance(value, tuple):
        return [_value_json(key, item) for item in value]
    if isinstance(value, Value):
        return _fields_json(value)
    raise TypeError(f"cannot put {type(value).__name__} into JSON")


def _fields_json(value: Value, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    renames = _RENAMED if isinstance(value, Algo | AlgoWithLength) else {}
    return {
        renames.get(spec.name, spec.name): _value_json(spec.name, getattr(value, spec.name))
        for spec in field_specs(type(value))
        if spec.name not in skip
    }


def attribute_json(attr: Attribute) -> dict[str, Any]:
    skip = frozenset({"attr"}) if isinstance(attr, UnknownAttribute) else frozenset()
    return {"attr": enum_json(Attr.of(attr.attr)), **_fields_json(attr, skip)}


def _message_type(msg: NetlinkMessage) -> dict[str, Any]:
    if isinstance(msg, XfrmMessage):
        return enum_json(msg.type)
    kind = NlMsgType.of(msg.type) if msg.type < 16 else MsgType.of(msg.type)  # (below 16: netlink's own)
    return enum_json(kind)


def to_json(msg: NetlinkMessage) -> dict[str, Any]:
    """The message as a JSON-ready dict."""
    out: dict[str, Any] = {
        "type": _message_type(msg),
        "flags": flags_json(NlFlags(msg.flags)),
        "seq": msg.seq,
        "pid": msg.pid,
        "length": len(msg.encode()),
    }
    if isinstance(msg, XfrmMessage):
        out["fixed"] = None if msg.fixed is None else _fields_json(msg.fixed)
        out["attrs"] = [attribute_json(a) for a in msg.attrs]
    elif isinstance(msg, NetlinkError):
        out["errno"] = errno_json(msg.errno)
        out["message"] = msg.message
        out["request"] = {
            "type": enum_json(MsgType.of(msg.request_type)),
            "flags": flags_json(NlFlags(msg.request_flags)),
            "seq": msg.request_seq,
            "pid": msg.request_pid,
            "length": msg.request_length,
        }
        out["extack"] = [{"type": kind, "data": data.hex()} for kind, data in msg.extack]
    elif isinstance(msg, NetlinkDone):
        out["errno"] = errno_json(-msg.error)
    elif isinstance(msg, RawMessage):
        out["data"] = msg.data.hex()
    return out


# --- text ------------------------------------------------------------------------------------


def _text(key: str, value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool | enum.Enum):
        named = _named_int(key, value)
        return str(named["name"] or value) if isinstance(named, dict) else str(value)
    return field_text(value)


def _lines(label: str, value: Value, indent: str) -> list[str]:
    """``label k=v ...`` for the scalar fields, then a line of its own for each nested struct."""
    scalars, nested = [], []
    for spec in field_specs(type(value)):
        item = getattr(value, spec.name)
        if isinstance(item, Value):
            nested.append((spec.name, item))
        elif isinstance(item, tuple) and item and isinstance(item[0], Value):
            nested += [(f"{spec.name}[{i}]", entry) for i, entry in enumerate(item)]
        elif spec.name != "attr":
            scalars.append(f"{spec.name}={_text(spec.name, item)}")
    out = [f"{indent}{label} {' '.join(scalars)}".rstrip()]
    for name, item in nested:
        out += _lines(name, item, indent + "  ")
    return out


def render(msg: NetlinkMessage) -> str:
    """The message as text: a header line, the fixed struct, then each attribute."""
    kind = enum_json(msg.type) if isinstance(msg, XfrmMessage) else _message_type(msg)
    name = f"XFRM_MSG_{kind['name']}" if isinstance(msg, XfrmMessage) else f"NLMSG_{kind['name']}"
    if kind["name"] is None:
        name = f"type {kind['value']}"
    head = f"{name} flags={_text('flags', NlFlags(msg.flags))} len={len(msg.encode())} seq={msg.seq} pid={msg.pid}"
    out = [head]
    if isinstance(msg, XfrmMessage):
        if msg.fixed is not None:
            out += _lines(type(msg.fixed).__name__, msg.fixed, "  ")
        for attr in msg.attrs:
            label = Attr.of(attr.attr).label
            out += _lines(label, attr, "  ")
    elif isinstance(msg, NetlinkError):
        errno = errno_json(msg.errno)
        said = f"{errno['name'] or errno['value']} ({msg.message})" if msg.error else "0 (ACK)"
        request = MsgType.of(msg.request_type).label
        out.append(f"  error={said} request={request} seq={msg.request_seq} len={msg.request_length}")
    elif isinstance(msg, NetlinkDone):
        out.append(f"  status={msg.error}")
    elif isinstance(msg, RawMessage):
        out.append(f"  data={_text('data', msg.data)}")
    return "\n".join(out)
