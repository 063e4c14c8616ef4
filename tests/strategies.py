"""Hypothesis strategies for every PF_KEY value class, driven by the declared field widths.

``values(cls)`` builds any wire value. Integer, enum and flag fields take their range from
``pfmigrate._value.field_specs``, so a width is still written in one place; enum fields range
over every number of their width, known or not, because the enums are open (``Mode(200)`` is
a value). Only the rules that tie fields together are written out here, class by class: a
prefix length bounded by its address's family, key bits by key bytes, an identity without
trailing NULs (the decoder strips its NUL padding), kmprivate data in 8-byte units, a
security context of at most a page, 16-byte filter addresses, bitmaps of at most 255 u64
words, and tunnel endpoints of one family.

Sizes stay small by default and reach their wire limits now and then (``_rarely``), so
messages stay well under the 0xFFFF * 8 byte limit.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, TypeVar, cast

from hypothesis import strategies as st

from pfmigrate._value import FieldSpec, field_specs
from pfmigrate.pfkey import (
    AF_INET,
    AF_INET6,
    Address,
    Extension,
    Filter,
    Identity,
    IPsecRequest,
    Key,
    KMAddress,
    KMPrivate,
    Message,
    SecCtx,
    Sensitivity,
    SockAddr,
    UnknownExtension,
)
from pfmigrate.pfkey.constants import SADB_EXT_MAX
from pfmigrate.pfkey.extensions import EXTENSION_CLASSES

__all__ = [
    "EXTENSION_TYPES", "MAX_BYTES", "MAX_ITEMS", "enum_numbers", "extensions", "field_strategy",
    "from_fields", "messages", "sockaddrs", "uints", "valid_wire_messages", "values",
]  # fmt: skip

T = TypeVar("T")

#: Every extension class: the known ones in wire-number order, then ``UnknownExtension``.
EXTENSION_TYPES: tuple[type[Extension], ...] = (*EXTENSION_CLASSES.values(), UnknownExtension)
#: The usual bound on a variable-length byte field and on a list of nested values.
MAX_BYTES = 64
MAX_ITEMS = 4

_PAGE_SIZE = 4096  # Linux's bound on a security context
_MAX_KEY_BYTES = ((1 << 16) - 1 + 7) // 8  # the most bytes a u16 bit count can ask for
_MAX_BITMAP_WORDS = 0xFF  # sadb_sens_sens_len and _integ_len are u8


def uints(bits: int) -> st.SearchStrategy[int]:
    """Any unsigned integer of ``bits`` bits."""
    return st.integers(0, (1 << bits) - 1)


def enum_numbers(cls: type[enum.IntEnum] | type[enum.IntFlag], bits: int) -> st.SearchStrategy[Any]:
    """Known members, and any other number of the field's width as a pseudo-member (or unknown flag bits)."""
    return st.one_of(st.sampled_from(list(cls)), uints(bits).map(cls))


def _rarely(rare: st.SearchStrategy[T], usual: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``rare`` about one time in eight, else ``usual``: wire limits without huge examples.
    (Hypothesis shrinks towards 0, so 0 must pick ``usual``.)"""
    return st.integers(0, 7).flatmap(lambda n: rare if n == 7 else usual)


def field_strategy(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """The strategy for one declared field, from its kind and width."""
    if spec.kind == "uint":
        return uints(spec.bits)
    if spec.kind in ("enum", "flag"):
        return enum_numbers(spec.cls, spec.bits)
    if spec.kind == "bytes":
        return st.binary(max_size=MAX_BYTES)
    if spec.kind == "tuple" and isinstance(spec.cls, type) and spec.cls is not int:
        return st.lists(values(spec.cls), max_size=MAX_ITEMS).map(tuple)
    if spec.kind == "value":
        return values(spec.cls)
    raise TypeError(f"field {spec.name!r} ({spec.kind}, {spec.cls!r}) needs a strategy of its own")


def from_fields(cls: type[T], **overrides: st.SearchStrategy[Any]) -> st.SearchStrategy[T]:
    """``cls`` built through its public constructor; each field from ``overrides`` or its declaration."""
    specs = field_specs(cls)
    unknown = set(overrides) - {spec.name for spec in specs}
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {sorted(unknown)}")
    kwargs = {spec.name: overrides[spec.name] if spec.name in overrides else field_strategy(spec) for spec in specs}
    return st.builds(cls, **kwargs)


# --- the classes whose fields need rules of their own ----------------------------------------


def sockaddrs(family: int | None = None) -> st.SearchStrategy[SockAddr]:
    """IPv4 or IPv6 socket addresses; only IPv6 ones carry flowinfo and scope_id."""
    ports = uints(16)
    v4 = st.builds(SockAddr, st.ip_addresses(v=4), ports)
    v6 = st.builds(SockAddr, st.ip_addresses(v=6), ports, uints(32), uints(32))
    if family == AF_INET:
        return v4
    if family == AF_INET6:
        return v6
    return st.one_of(v4, v6)


def _address_families() -> st.SearchStrategy[int]:
    return st.sampled_from([AF_INET, AF_INET6])


@st.composite
def _addresses(draw: st.DrawFn, cls: type[Address]) -> Address:
    sockaddr = draw(sockaddrs())
    prefixlens = st.integers(0, sockaddr.address.max_prefixlen)
    return draw(from_fields(cls, address=st.just(sockaddr), prefixlen=prefixlens))


@st.composite
def _keys(draw: st.DrawFn, cls: type[Key]) -> Key:
    nbytes = draw(_rarely(st.integers(_MAX_KEY_BYTES - 16, _MAX_KEY_BYTES), st.integers(0, MAX_BYTES)))
    # Any bit count that needs exactly nbytes bytes, within the u16 field.
    bits = 0 if nbytes == 0 else draw(st.integers(8 * nbytes - 7, min(8 * nbytes, (1 << 16) - 1)))
    return draw(from_fields(cls, bits=st.just(bits), key=st.binary(min_size=nbytes, max_size=nbytes)))


def _identities(cls: type[Identity]) -> st.SearchStrategy[Identity]:
    # NULs inside the string survive; trailing ones are padding to the decoder.
    return from_fields(cls, data=st.binary(max_size=MAX_BYTES).map(lambda b: b.rstrip(b"\0")))


def _kmprivates(cls: type[KMPrivate]) -> st.SearchStrategy[KMPrivate]:
    return from_fields(cls, data=st.binary(max_size=MAX_BYTES).map(lambda b: b[: len(b) - len(b) % 8]))


def _sec_ctxs(cls: type[SecCtx]) -> st.SearchStrategy[SecCtx]:
    contexts = _rarely(st.binary(min_size=_PAGE_SIZE - 8, max_size=_PAGE_SIZE), st.binary(max_size=MAX_BYTES))
    return from_fields(cls, context=contexts)


def _filters(cls: type[Filter]) -> st.SearchStrategy[Filter]:
    xfrm_addresses = st.binary(min_size=16, max_size=16)
    return from_fields(cls, src=xfrm_addresses, dst=xfrm_addresses)


def _sensitivities(cls: type[Sensitivity]) -> st.SearchStrategy[Sensitivity]:
    words = uints(64)
    bitmaps = _rarely(
        st.lists(words, min_size=_MAX_BITMAP_WORDS - 4, max_size=_MAX_BITMAP_WORDS),
        st.lists(words, max_size=MAX_ITEMS),
    ).map(tuple)
    return from_fields(cls, sens_bitmap=bitmaps, integ_bitmap=bitmaps)


@st.composite
def _unknown_extensions(draw: st.DrawFn, cls: type[UnknownExtension]) -> UnknownExtension:
    (exttype_spec,) = (spec for spec in field_specs(cls) if spec.name == "exttype")
    exttype = st.integers(SADB_EXT_MAX + 1, (1 << exttype_spec.bits) - 1)
    units = draw(st.integers(0, MAX_BYTES // 8))  # whole 8-byte units after the 4-byte sadb_ext
    data = st.binary(min_size=8 * units + 4, max_size=8 * units + 4)
    return draw(from_fields(cls, exttype=exttype, data=data))


@st.composite
def _requests(draw: st.DrawFn, cls: type[IPsecRequest]) -> IPsecRequest:
    src = dst = None
    if draw(st.booleans()):  # tunnel endpoints, both of one family
        family = draw(_address_families())
        src, dst = draw(sockaddrs(family)), draw(sockaddrs(family))
    return draw(from_fields(cls, src=st.just(src), dst=st.just(dst)))


@st.composite
def _kmaddresses(draw: st.DrawFn, cls: type[KMAddress]) -> KMAddress:
    family = draw(_address_families())
    return draw(from_fields(cls, local=sockaddrs(family), remote=sockaddrs(family)))


_SPECIAL: dict[type, Callable[[Any], st.SearchStrategy[Any]]] = {
    SockAddr: lambda cls: sockaddrs(),
    Address: _addresses,
    Key: _keys,
    Identity: _identities,
    KMPrivate: _kmprivates,
    SecCtx: _sec_ctxs,
    Filter: _filters,
    Sensitivity: _sensitivities,
    UnknownExtension: _unknown_extensions,
    IPsecRequest: _requests,
    KMAddress: _kmaddresses,
}
_CACHE: dict[type, st.SearchStrategy[Any]] = {}


def values(cls: type[T]) -> st.SearchStrategy[T]:
    """Any valid instance of the value class ``cls``, built through its public constructor."""
    strategy = _CACHE.get(cls)
    if strategy is None:
        exact = _EXACT.get(cls)
        special = next((_SPECIAL[base] for base in cls.__mro__ if base in _SPECIAL), None)
        if exact is not None:
            strategy = exact()
        elif special is not None:
            strategy = special(cls)
        else:
            strategy = from_fields(cls)
        _CACHE[cls] = strategy
    return cast("st.SearchStrategy[T]", strategy)


# --- extensions and whole messages -------------------------------------------------------------


def extensions() -> st.SearchStrategy[Extension]:
    """Any extension: every known class and ``UnknownExtension``."""
    return st.one_of([values(cls) for cls in EXTENSION_TYPES])


@st.composite
def messages(draw: st.DrawFn, max_known: int = 8, max_unknown: int = 3) -> Message:
    """A whole message: each known extension type at most once, unknown types possibly repeated,
    in any order."""
    numbers = draw(st.lists(st.sampled_from(sorted(EXTENSION_CLASSES)), unique=True, max_size=max_known))
    exts: list[Extension] = [draw(values(EXTENSION_CLASSES[n])) for n in numbers]
    exts += draw(st.lists(values(UnknownExtension), max_size=max_unknown))
    ordered = tuple(draw(st.permutations(exts)))
    return draw(from_fields(Message, extensions=st.just(ordered)))


def valid_wire_messages(max_known: int = 8, max_unknown: int = 3) -> st.SearchStrategy[bytes]:
    """The wire bytes of ``messages()``."""
    return messages(max_known, max_unknown).map(Message.encode)


# Looked up by exact class only: every extension class has ``Extension`` among its bases.
_EXACT: dict[type, Callable[[], st.SearchStrategy[Any]]] = {
    Message: messages,
    Extension: extensions,
}
