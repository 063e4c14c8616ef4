"""Frozen, slotted value objects whose wire widths are declared once.

A wire value class is a ``@dataclass(frozen=True, slots=True)`` subclass of ``Value``.
Integer fields declare their width with ``uint(bits)``; enum-typed fields take their
enum from the annotation. ``Value.__post_init__`` then checks every field on
construction (so ``encode()`` cannot fail later) and turns plain ints into enum members.
The same declarations drive the JSON form and the Hypothesis strategies, so a width
is written in exactly one place.

Decoders, which have already bounded every number by its struct format, build objects
through ``builder(cls)`` and skip the checks.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Callable
from dataclasses import field
from typing import Any, ClassVar, TypeVar

V = TypeVar("V", bound="Value")
T = TypeVar("T")


class InternTable(dict[bytes, T]):
    """Immutable decoded values by their exact wire bytes, bounded in size.

    The same sockaddrs and templates recur in message after message; since the values
    are immutable, one object per distinct encoding is correct and far cheaper than
    decoding again. When full the table starts over, so hostile input cannot grow it.
    """

    def __init__(self, limit: int = 4096) -> None:
        super().__init__()
        self.limit = limit

    def add(self, raw: bytes, value: T) -> T:
        if len(self) >= self.limit:
            self.clear()
        self[raw] = value
        return value


def uint(bits: int, default: int | None = 0) -> Any:
    """A field holding an unsigned integer of ``bits`` bits (``default=None``: required)."""
    if default is None:
        return field(metadata={"uint": bits})
    return field(default=default, metadata={"uint": bits})


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # "uint", "enum", "flag", "bytes", "tuple", "value", "other"
    bits: int = 0
    cls: Any = None


_SPECS: dict[type, tuple[FieldSpec, ...]] = {}


def _spec_of(f: dataclasses.Field[Any], hint: Any) -> FieldSpec:
    if "uint" in f.metadata:
        bits = f.metadata["uint"]
        if isinstance(hint, type) and issubclass(hint, enum.IntFlag):
            return FieldSpec(f.name, "flag", bits, hint)
        if isinstance(hint, type) and issubclass(hint, enum.IntEnum):
            return FieldSpec(f.name, "enum", bits, hint)
        return FieldSpec(f.name, "uint", bits)
    if hint is bytes:
        return FieldSpec(f.name, "bytes")
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return FieldSpec(f.name, "tuple", cls=typing.get_origin(item) or item)  # tuple[int, bytes] items: tuples
    if isinstance(hint, type) and issubclass(hint, Value):
        return FieldSpec(f.name, "value", cls=hint)
    return FieldSpec(f.name, "other", cls=hint)


def field_specs(cls: type) -> tuple[FieldSpec, ...]:
    """The declared fields of a value class, resolved once."""
    specs = _SPECS.get(cls)
    if specs is None:
        hints = typing.get_type_hints(cls)
        specs = tuple(_spec_of(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init)
        _SPECS[cls] = specs
    return specs


class Value:
    """Base of every frozen wire value; validates and normalises on construction."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        validate = _VALIDATORS.get(type(self))
        if validate is None:
            validate = _VALIDATORS[type(self)] = _validator(type(self))
        validate(self)

    def _check(self) -> None:
        """Rules that involve more than one field; subclasses override."""


def _not_int(obj: object, name: str, value: object) -> TypeError:
    return TypeError(f"{type(obj).__name__}.{name} must be an integer, not {value!r}")


def _too_wide(obj: object, name: str, value: int, bits: int) -> ValueError:
    return ValueError(f"{type(obj).__name__}.{name} = {value} does not fit in {bits} bits")


def _wrong_type(obj: object, name: str, value: object, expected: type) -> TypeError:
    return TypeError(f"{type(obj).__name__}.{name} holds {value!r}, not a {expected.__name__}")


def _validator(cls: type) -> Callable[[Any], None]:
    """The checks of ``Value.__post_init__`` for one class, generated from its field
    specs (as ``dataclasses`` generates ``__init__``): values are built often enough
    that a generic loop over the specs would cost more than the checks."""
    lines = ["def validate(self):"]
    namespace: dict[str, Any] = {
        "set_": object.__setattr__, "not_int": _not_int, "too_wide": _too_wide, "wrong_type": _wrong_type,
    }  # fmt: skip
    for i, spec in enumerate(field_specs(cls)):
        name, kind = spec.name, spec.kind
        namespace[f"C{i}"] = spec.cls
        get = f"    v = self.{name}"
        if kind in ("uint", "enum", "flag"):
            lines += [
                get,
                "    if v.__class__ is bool or not isinstance(v, int):",
                f"        raise not_int(self, {name!r}, v)",
                f"    if not 0 <= v < {1 << spec.bits}:",
                f"        raise too_wide(self, {name!r}, v, {spec.bits})",
            ]
            if kind != "uint":
                lines += [f"    if v.__class__ is not C{i}:", f"        set_(self, {name!r}, C{i}(v))"]
        elif kind == "bytes":
            lines += [
                get,
                "    if v.__class__ is not bytes:",
                "        if not isinstance(v, (bytes, bytearray, memoryview)):",
                f"            raise wrong_type(self, {name!r}, v, bytes)",
                f"        set_(self, {name!r}, bytes(v))",
            ]
        elif kind == "tuple":
            lines += [
                get,
                "    if v.__class__ is not tuple:",
                "        v = tuple(v)",
                f"        set_(self, {name!r}, v)",
                "    for item in v:",
                f"        if not isinstance(item, C{i}):",
                f"            raise wrong_type(self, {name!r}, item, C{i})",
            ]
        elif kind == "value":
            lines += [get, f"    if not isinstance(v, C{i}):", f"        raise wrong_type(self, {name!r}, v, C{i})"]
    lines.append("    self._check()")
    exec("\n".join(lines), namespace)
    validate: Callable[[Any], None] = namespace["validate"]
    return validate


_VALIDATORS: dict[type, Callable[[Any], None]] = {}


def builder(cls: type[Any]) -> Callable[..., Any]:
    """A constructor for decoders: positional fields, no checks.

    Its result is typed ``Any``: decoders assign it to a variable of their own type.

    Decoding builds many small objects, and a frozen dataclass pays a call to
    ``object.__setattr__`` per field. The builder fills a mutable twin of the class
    (same base, same slots, so the same memory layout) with plain attribute stores,
    then turns it into ``cls`` by assigning ``__class__``: a third of the cost, and the
    result is an ordinary frozen instance of ``cls``.
    """
    owner = next(c for c in cls.__mro__ if c.__dict__.get("__slots__"))
    twin = type(f"_{owner.__name__}Builder", owner.__bases__, {"__slots__": owner.__dict__["__slots__"]})
    names = [f.name for f in dataclasses.fields(cls)]  # init=False fields too: they are slots
    lines = [f"def build({', '.join(names)}):", "    obj = new(twin)"]
    lines += [f"    obj.{name} = {name}" for name in names]
    lines += ["    obj.__class__ = cls", "    return obj"]
    namespace: dict[str, Any] = {"new": object.__new__, "twin": twin, "cls": cls}
    exec("\n".join(lines), namespace)
    build: Callable[..., Any] = namespace["build"]
    build.__qualname__ = f"{cls.__qualname__}._build"
    return build
