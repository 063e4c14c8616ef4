"""Mobility Header messages as JSON, for people and programs.

A message is an object with ``"mh_type"`` and one key per field; each option is an
object with ``"type"`` and one key per field. Enums are ``{"name": ..., "value": ...}``
(``name`` is null for a number this code does not know), flags ``{"names": [...],
"value": ...}``, bytes hex strings, addresses text. ``from_json`` reads that form back,
and also a bare number or name for an enum, a number or a list of names for flags.
``"length"`` is written for people and ignored when read. Errors name the path of the
bad value.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from ipaddress import IPv6Address
from typing import Any, TypeVar

from pfmigrate._jsonform import JSONFormError as JSONFormError  # the one error of both JSON forms
from pfmigrate._jsonform import bytes_from, check_required, enum_from, enum_json, int_from
from pfmigrate._value import FieldSpec, Value, field_specs
from pfmigrate.mip6.constants import MHType, OptType
from pfmigrate.mip6.messages import MESSAGE_CLASSES, Message, UnknownMessage
from pfmigrate.mip6.options import OPTION_CLASSES, Option, UnknownOption

VT = TypeVar("VT", bound=Value)


# --- to JSON ---------------------------------------------------------------------------------


def _value_json(value: object) -> Any:
    if isinstance(value, enum.IntFlag):
        return {"names": [m.name for m in type(value) if m in value], "value": int(value)}
    if isinstance(value, enum.IntEnum):
        return enum_json(value)
    if isinstance(value, int):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, IPv6Address):
        return str(value)
    if isinstance(value, tuple):
        return [option_to_json(item) for item in value]
    raise TypeError(f"cannot put {type(value).__name__} into JSON")


def _fields_json(value: Value, skip: str) -> dict[str, Any]:
    return {spec.name: _value_json(getattr(value, spec.name)) for spec in field_specs(type(value)) if spec.name != skip}


def option_to_json(opt: Option) -> dict[str, Any]:
    return {"type": enum_json(OptType.of(opt.opt_type)), **_fields_json(opt, "opt_type")}


def to_json(msg: Message) -> dict[str, Any]:
    """The message as a JSON-ready dict."""
    head = {"mh_type": enum_json(MHType.of(msg.mh_type)), "length": len(msg.encode(None, None))}
    return {**head, **_fields_json(msg, "mh_type")}


# --- from JSON -----------------------------------------------------------------------------


def _flags_from(flag_cls: type[enum.IntFlag], raw: Any, path: str) -> int:
    if isinstance(raw, Mapping):
        raw = raw["value"] if "value" in raw else raw.get("names")
    if not isinstance(raw, list):
        return int_from(raw, path)
    value = 0
    for i, name in enumerate(raw):
        if not isinstance(name, str) or name.upper() not in flag_cls.__members__:
            raise JSONFormError(f"{path}[{i}]", f"{name!r} is not one of {', '.join(flag_cls.__members__)}")
        value |= flag_cls[name.upper()]
    return value


def _address_from(raw: Any, path: str) -> IPv6Address:
    try:
        return IPv6Address(raw)
    except ValueError as exc:
        raise JSONFormError(path, str(exc)) from None


def _field_from(spec: FieldSpec, raw: Any, path: str) -> Any:
    if spec.kind == "enum":
        return enum_from(spec.cls, raw, path)
    if spec.kind == "flag":
        return _flags_from(spec.cls, raw, path)
    if spec.kind == "uint":
        return int_from(raw, path)
    if spec.kind == "bytes":
        return bytes_from(raw, path)
    if spec.kind == "tuple":
        if not isinstance(raw, list):
            raise JSONFormError(path, f"expected a list of options, got {raw!r}")
        return tuple(option_from_json(item, f"{path}[{i}]") for i, item in enumerate(raw))
    if spec.cls is IPv6Address:
        return _address_from(raw, path)
    raise JSONFormError(path, f"cannot read a {spec.cls} from JSON")


def _value_from(cls: type[VT], raw: Mapping[str, Any], path: str, given: Mapping[str, Any]) -> VT:
    specs = [spec for spec in field_specs(cls) if spec.name not in given]
    unknown = set(raw) - {spec.name for spec in specs} - {"type", "mh_type", "length"}
    if unknown:
        raise JSONFormError(path, f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}")
    kwargs = {spec.name: _field_from(spec, raw[spec.name], f"{path}.{spec.name}") for spec in specs if spec.name in raw}
    check_required(cls, [*given, *kwargs], path)
    try:
        return cls(**given, **kwargs)
    except (TypeError, ValueError) as exc:
        raise JSONFormError(path, f"{cls.__name__}: {exc}") from None


def option_from_json(raw: Any, path: str = "option") -> Option:
    if not isinstance(raw, Mapping) or "type" not in raw:
        raise JSONFormError(path, "an option is an object with a 'type'")
    opt_type = enum_from(OptType, raw["type"], f"{path}.type")
    cls = OPTION_CLASSES.get(opt_type)
    if cls is None:
        return _value_from(UnknownOption, raw, path, {"opt_type": opt_type})
    return _value_from(cls, raw, path, {})


def from_json(raw: Any) -> Message:
    """A message from the form ``to_json`` writes; ``JSONFormError`` names what is wrong."""
    if not isinstance(raw, Mapping) or "mh_type" not in raw:
        raise JSONFormError("message", "a message is an object with an 'mh_type'")
    mh_type = enum_from(MHType, raw["mh_type"], "message.mh_type")
    cls = MESSAGE_CLASSES.get(mh_type)
    if cls is None:
        return _value_from(UnknownMessage, raw, "message", {"mh_type": mh_type})
    return _value_from(cls, raw, "message", {})
