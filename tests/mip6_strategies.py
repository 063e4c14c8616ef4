"""Hypothesis strategies for every Mobility Header message and option class.

Widths come from the declared fields through ``tests.strategies.from_fields`` (enum
fields range over every number of their width, known or not); only what ties fields
together is written here: 8-octet cookies and tokens, IPv6 addresses without scope,
prefix lengths up to 128, option data of at most 255 octets, unknown types outside the
known ones, Binding Authorization Data only as the last option, and unknown messages
whose data fills whole 8-octet units. Sizes stay small and reach their limits now and
then, so messages stay within the 2048 octets Header Len allows.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv6Address
from typing import Any, TypeVar, cast

from hypothesis import strategies as st

from pfmigrate._value import field_specs
from pfmigrate.mip6 import (
    AlternateCareOfAddress,
    BindingAuthorizationData,
    KnownMessage,
    Message,
    MobileNetworkPrefix,
    Option,
    UnknownMessage,
    UnknownOption,
)
from pfmigrate.mip6.messages import MESSAGE_CLASSES
from pfmigrate.mip6.options import OPTION_CLASSES
from tests.strategies import from_fields

__all__ = [
    "MESSAGE_TYPES", "OPTION_TYPES", "addresses", "messages", "option_lists", "options", "values", "wire_messages",
]  # fmt: skip

T = TypeVar("T")

#: Every message class: the known ones by MH type, then ``UnknownMessage``.
MESSAGE_TYPES: tuple[type[Message], ...] = (*MESSAGE_CLASSES.values(), UnknownMessage)
#: Every option class: the known ones by type, then ``UnknownOption``.
OPTION_TYPES: tuple[type[Option], ...] = (*OPTION_CLASSES.values(), UnknownOption)

_MAX_OPTIONS = 5  # plus a Binding Authorization Data: 6 * (2 + 255 + 7) octets at most


def _rarely(rare: st.SearchStrategy[T], usual: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``rare`` about one time in eight, else ``usual`` (which Hypothesis shrinks towards)."""
    return st.integers(0, 7).flatmap(lambda n: rare if n == 7 else usual)


def addresses() -> st.SearchStrategy[IPv6Address]:
    return st.ip_addresses(v=6).map(IPv6Address)


def _option_data(limit: int = 0xFF) -> st.SearchStrategy[bytes]:
    return _rarely(st.binary(min_size=limit - 8, max_size=limit), st.binary(max_size=32))


def _eight() -> st.SearchStrategy[bytes]:
    return st.binary(min_size=8, max_size=8)


def options() -> st.SearchStrategy[Option]:
    """Any option but Binding Authorization Data, which can only come last."""
    return st.one_of([values(cls) for cls in OPTION_TYPES if cls is not BindingAuthorizationData])


@st.composite
def option_lists(draw: st.DrawFn) -> tuple[Option, ...]:
    """Up to five options in any order, and now and then Binding Authorization Data last."""
    found: list[Option] = draw(st.lists(options(), max_size=_MAX_OPTIONS))
    if draw(st.booleans()):
        found.append(draw(values(BindingAuthorizationData)))
    return tuple(found)


@st.composite
def _unknown_messages(draw: st.DrawFn, cls: type[UnknownMessage]) -> UnknownMessage:
    units = draw(_rarely(st.integers(250, 255), st.integers(0, 8)))  # 8-octet units after the first 8
    data = st.binary(min_size=8 * units + 2, max_size=8 * units + 2)
    return draw(from_fields(cls, mh_type=st.integers(len(MESSAGE_CLASSES), 0xFF), data=data))


def _known_messages(cls: type[KnownMessage]) -> st.SearchStrategy[KnownMessage]:
    names = {spec.name for spec in field_specs(cls)}
    fields: dict[str, st.SearchStrategy[Any]] = {"options": option_lists()}
    fields.update({name: _eight() for name in names & {"cookie", "keygen_token"}})
    fields.update({name: addresses() for name in names & {"home_address"}})
    return from_fields(cls, **fields)


_SPECIAL: dict[type, Callable[[Any], st.SearchStrategy[Any]]] = {
    AlternateCareOfAddress: lambda cls: from_fields(cls, address=addresses()),
    MobileNetworkPrefix: lambda cls: from_fields(cls, prefix=addresses(), prefixlen=st.integers(0, 128)),
    BindingAuthorizationData: lambda cls: from_fields(cls, authenticator=_option_data()),
    UnknownOption: lambda cls: from_fields(
        cls, opt_type=st.integers(2 + len(OPTION_CLASSES), 0xFF), data=_option_data()
    ),
    UnknownMessage: _unknown_messages,
    KnownMessage: _known_messages,
}
_CACHE: dict[type, st.SearchStrategy[Any]] = {}


def values(cls: type[T]) -> st.SearchStrategy[T]:
    """Any valid instance of the message or option class ``cls``, built through its constructor."""
    strategy = _CACHE.get(cls)
    if strategy is None:
        special = next((_SPECIAL[base] for base in cls.__mro__ if base in _SPECIAL), None)
        strategy = _CACHE[cls] = special(cls) if special is not None else from_fields(cls)
    return cast("st.SearchStrategy[T]", strategy)


def messages() -> st.SearchStrategy[Message]:
    """Any message: every known class and ``UnknownMessage``."""
    return st.one_of([values(cls) for cls in MESSAGE_TYPES])


def wire_messages() -> st.SearchStrategy[tuple[bytes, IPv6Address, IPv6Address]]:
    """A message on the wire with a right checksum, and its source and destination."""
    return st.tuples(messages(), addresses(), addresses()).map(lambda t: (t[0].encode(t[1], t[2]), t[1], t[2]))
