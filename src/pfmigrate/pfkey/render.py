"""PF_KEY messages as text a person reads, one line per extension.

The style follows ``setkey -D``/``-P``: addresses as ``addr/prefix[port]``, requests
as ``esp/tunnel/src-dst/require``, SPIs in hex. Enum values print as their names, or
as numbers when the number is unknown.
"""

from __future__ import annotations

import enum

from pfmigrate._value import Value, field_specs
from pfmigrate.pfkey.constants import AuthAlg, EncAlg, ExtType
from pfmigrate.pfkey.extensions import (
    SA,
    Address,
    Extension,
    IPsecRequest,
    Key,
    KMAddress,
    Policy,
    Supported,
    SupportedAuth,
    UnknownExtension,
)
from pfmigrate.pfkey.message import Message
from pfmigrate.pfkey.sockaddr import SockAddr


def _text(value: object) -> str:
    if isinstance(value, enum.IntFlag):
        names = [m.name for m in type(value) if m in value and m.name]
        return "|".join(names) if names and sum(type(value)[n] for n in names) == value else hex(value)
    if isinstance(value, enum.Enum):
        return value._name_ if value._name_ is not None else str(value._value_)
    if isinstance(value, bytes):
        return value.hex() if value else '""'
    if isinstance(value, SockAddr):
        return str(value)
    return str(value)


def _fields(value: Value) -> str:
    """``name=value`` for each scalar field; lists of values get lines of their own."""
    return " ".join(
        f"{spec.name}={_text(getattr(value, spec.name))}"
        for spec in field_specs(type(value))
        if not (spec.kind == "tuple" and spec.cls is not int)
    )


def render_request(rq: IPsecRequest) -> str:
    """A request as setkey writes it: ``esp/tunnel/src-dst/require``, plus the reqid."""
    ends = f"{rq.src.address}-{rq.dst.address}" if rq.src and rq.dst else ""
    level = _text(rq.level).lower()
    text = f"{_text(rq.proto).lower()}/{_text(rq.mode).lower()}/{ends}/{level}"
    return f"{text} reqid={rq.reqid}" if rq.reqid else text


def render_extension(ext: Extension) -> list[str]:
    """One line, or more for extensions that hold lists."""
    if isinstance(ext, SA):
        return [
            f"spi=0x{ext.spi:08x} ({ext.spi}) replay={ext.replay} state={_text(ext.state)} "
            f"auth={_text(ext.auth)} encrypt={_text(ext.encrypt)} flags={_text(ext.flags)}"
        ]
    if isinstance(ext, Address):
        sa = ext.address
        port = f"[{sa.port}]" if sa.port else ""
        return [f"{sa.address}/{ext.prefixlen}{port} proto={_text(ext.proto)}"]
    if isinstance(ext, Key):
        return [f"bits={ext.bits} key={ext.key.hex()}"]
    if isinstance(ext, KMAddress):
        return [f"local={ext.local} remote={ext.remote}" + (f" reserved={ext.reserved}" if ext.reserved else "")]
    if isinstance(ext, Policy):
        head = f"{_text(ext.type)} dir={_text(ext.dir)} id={ext.id} priority={ext.priority}"
        return [head] + [f"  {render_request(rq)}" for rq in ext.requests]
    if isinstance(ext, Supported):
        names = AuthAlg if isinstance(ext, SupportedAuth) else EncAlg
        algs = [f"  {_text(names.of(a.id))} ivlen={a.ivlen} bits={a.minbits}-{a.maxbits}" for a in ext.algs]
        return [f"{len(algs)} algorithms", *algs]
    if isinstance(ext, UnknownExtension):
        return [f"data={ext.data.hex()}"]
    lines = [_fields(ext)]
    for spec in field_specs(type(ext)):
        if spec.kind == "tuple" and spec.cls is not int:
            lines += [f"  {_fields(item)}" for item in getattr(ext, spec.name)]
    return lines


def render(msg: Message) -> str:
    """The message as text: a header line, then each extension."""
    errno = f" errno={msg.errno}" if msg.errno else ""
    errno += f" reserved={msg.reserved}" if msg.reserved else ""
    out = [
        f"SADB_{_text(msg.type)} satype={_text(msg.satype)}{errno} len={len(msg.encode())} seq={msg.seq} pid={msg.pid}"
    ]
    for ext in msg.extensions:
        exttype = ExtType.of(ext.exttype)
        name = exttype.name if exttype.known else f"type {ext.exttype}"
        lines = render_extension(ext)
        out.append(f"  {name:<17} {lines[0]}".rstrip())
        out.extend(f"  {'':<17} {line}" for line in lines[1:])
    return "\n".join(out)
