"""Mobility Header messages as text a person reads: a line for the message, one per option.

Enum values print as their names (numbers when unknown), flags as ``A|H|K`` (unknown bits
in hex), lifetimes and intervals also in seconds, cookies and tokens in hex.
"""

from __future__ import annotations

from pfmigrate._jsonform import field_text
from pfmigrate._value import Value, field_specs
from pfmigrate.mip6.constants import MHType, OptType
from pfmigrate.mip6.messages import KnownMessage, Message
from pfmigrate.mip6.options import MobileNetworkPrefix, Option

_IN_4_SECONDS = frozenset({"lifetime", "interval"})
_NOT_SHOWN = frozenset({"options", "mh_type", "opt_type"})


def _fields(value: Value) -> str:
    parts = []
    for spec in field_specs(type(value)):
        if spec.name in _NOT_SHOWN:
            continue
        field = getattr(value, spec.name)
        seconds = f" ({4 * field} s)" if spec.name in _IN_4_SECONDS else ""
        parts.append(f"{spec.name}={field_text(field)}{seconds}")
    return " ".join(parts)


def render_option(opt: Option) -> str:
    """One option on one line: its type, then its fields."""
    opt_type = OptType.of(opt.opt_type)
    name = opt_type.name if opt_type.known else f"option {opt.opt_type}"
    if isinstance(opt, MobileNetworkPrefix):
        return f"{name} {opt.prefix}/{opt.prefixlen}"
    return f"{name} {_fields(opt)}".rstrip()


def render(msg: Message) -> str:
    """The message as text: its type, length and fields, then each option indented."""
    mh_type = MHType.of(msg.mh_type)
    name = mh_type.name if mh_type.known else f"MH type {msg.mh_type}"
    head = f"{name} len={len(msg.encode(None, None))} {_fields(msg)}".rstrip()
    options = msg.options if isinstance(msg, KnownMessage) else ()
    return "\n".join([head, *(f"  {render_option(opt)}" for opt in options)])
