"""Properties of the Mobility Header codec.

* Every message and option class survives ``decode(encode(m)) == m`` and
  ``encode(decode(b)) == b``, with the checksum right for the addresses it was made for.
* Encoded messages are laid out as RFC 6275 asks: a multiple of 8 octets, Header Len
  in 8-octet units after the first 8, each option at its alignment after the least
  padding, Pad1 for one octet and PadN for more.
* Decoded objects are frozen instances of the public classes, equal (and hashing equal)
  to the same values built through the public constructors.
* ``decode`` raises nothing but ``DecodeError`` (offset inside the input) for arbitrary
  bytes and mutated messages; whatever it accepts re-encodes and decodes back equal.
* Padding laid out differently, PadN data and reserved fields do not change the message.
"""

from __future__ import annotations

import dataclasses
import enum
from ipaddress import IPv6Address
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pfmigrate.mip6 as mip6
from pfmigrate.mip6 import (
    BindingUpdate,
    DecodeError,
    KnownMessage,
    Message,
    Option,
    OptType,
    checksum,
    checksum_ok,
    decode,
    encode,
)
from tests.mip6_strategies import MESSAGE_TYPES, OPTION_TYPES, addresses, messages, values, wire_messages
from tests.values import walk

PUBLIC_CLASSES = frozenset(obj for name in mip6.__all__ if isinstance(obj := getattr(mip6, name), type))
HOA = IPv6Address("3ffe:501:ffff:100:1:2:3:4")
HA = IPv6Address("3ffe:501:ffff:100::1")

SOME = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MANY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- helpers -----------------------------------------------------------------------------------


def rebuild(obj: Any) -> Any:
    """The same value built again through the public constructors, from plain ints and text."""
    if isinstance(obj, tuple):
        return tuple(rebuild(item) for item in obj)
    if isinstance(obj, enum.IntEnum | enum.IntFlag):
        return int(obj)
    if isinstance(obj, IPv6Address):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return type(obj)(**{f.name: rebuild(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
    return obj


def assert_like_constructed(decoded: Message) -> None:
    for obj in walk(decoded):
        cls = type(obj)
        assert cls in PUBLIC_CLASSES, f"decoded a {cls!r}, not a public class"
        assert not hasattr(obj, "__dict__")
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, dataclasses.fields(obj)[0].name, None)
        twin = rebuild(obj)
        assert type(twin) is cls
        assert twin == obj
        assert hash(twin) == hash(obj)
        for f in dataclasses.fields(obj):
            assert type(getattr(obj, f.name)) is type(getattr(twin, f.name)), f"{cls.__name__}.{f.name}"


def check_error(exc: DecodeError, data: bytes) -> None:
    """An error says where (inside the input) and what."""
    assert 0 <= exc.offset <= len(data), exc
    assert exc.reason
    assert str(exc) == f"offset {exc.offset}: {exc.reason}"


def check_decode(data: bytes) -> Message | None:
    """``DecodeError`` with an offset inside ``data``, or a message that re-encodes and
    decodes back to itself; any other exception fails the test."""
    try:
        message = decode(data)
    except DecodeError as exc:
        check_error(exc, data)
        return None
    wire = message.encode(None, None)
    assert decode(wire) == message
    assert decode(wire).encode(None, None) == wire
    return message


def option_spans(wire: bytes, start: int) -> list[tuple[int, int, int]]:
    """``(offset, type, total length)`` of every option and padding from ``start``, read
    independently of the codec (Pad1 is one octet, everything else Type, Length, data)."""
    spans = []
    pos = start
    while pos < len(wire):
        size = 1 if wire[pos] == OptType.PAD1 else 2 + wire[pos + 1]
        spans.append((pos, wire[pos], size))
        pos += size
    assert pos == len(wire)
    return spans


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
@SOME
@given(data=st.data(), src=addresses(), dst=addresses())
def test_every_message_class_round_trips(
    cls: type[Message], data: st.DataObject, src: IPv6Address, dst: IPv6Address
) -> None:
    message = data.draw(values(cls))
    wire = encode(message, src, dst)
    assert checksum_ok(wire, src, dst)
    assert checksum(wire, src, dst) == int.from_bytes(wire[4:6], "big")
    assert decode(wire, src, dst) == message
    decoded = decode(wire)
    assert decoded == message
    assert_like_constructed(decoded)
    assert encode(decoded, src, dst) == wire
    assert message.encode(None, None) == wire[:4] + b"\0\0" + wire[6:]


@pytest.mark.parametrize("cls", OPTION_TYPES, ids=lambda cls: cls.__name__)
@SOME
@given(data=st.data())
def test_every_option_class_round_trips_at_its_alignment(cls: type[Option], data: st.DataObject) -> None:
    """The option, after a random set of others, lands where its alignment says and comes back."""
    message = data.draw(values(BindingUpdate))
    options = tuple(o for o in message.options if not isinstance(o, mip6.BindingAuthorizationData))
    option = data.draw(values(cls))
    message = BindingUpdate(message.sequence, message.flags, message.lifetime, (*options, option))
    wire = encode(message, HOA, HA)
    assert decode(wire, HOA, HA) == message
    offset, opt_type, size = [span for span in option_spans(wire, 12) if span[1] > OptType.PADN][-1]
    x, y = cls.align
    assert offset % x == y % x
    assert (opt_type, wire[offset : offset + size]) == (option.opt_type, option.pack())


@MANY
@given(message=messages())
def test_layout_is_the_one_rfc_6275_asks_for(message: Message) -> None:
    wire = message.encode(None, None)
    assert len(wire) % 8 == 0
    assert (wire[0], wire[1], wire[2], wire[3]) == (59, len(wire) // 8 - 1, message.mh_type, 0)
    if not isinstance(message, KnownMessage):
        return
    start = 6 + message.fixed.size
    pos = start
    real = iter(message.options)
    for offset, opt_type, size in option_spans(wire, start):
        if opt_type == OptType.PAD1:
            assert size == 1
        elif opt_type == OptType.PADN:
            assert size >= 2
            assert wire[offset + 2 : offset + size] == bytes(size - 2)
        else:
            option = next(real)
            x, y = option.align
            assert offset - pos == (y - pos) % x, "not the least padding before the option"
            pos = offset + size
    assert next(real, None) is None
    assert len(wire) - pos == -pos % 8, "not the least padding at the end"


# --- decoding whatever comes ---------------------------------------------------------------------


@MANY
@given(data=st.binary(max_size=96))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    check_decode(data)


@MANY
@given(data=st.binary(min_size=2, max_size=94))
def test_framed_bytes_raise_only_decode_error(data: bytes) -> None:
    """Past the Payload Proto and Header Len checks, into the messages and options."""
    framed = bytes([59, (len(data) + 2 + 7) // 8 - 1]) + data
    check_decode(framed + bytes(-len(framed) % 8))


@MANY
@given(wire=wire_messages(), data=st.data())
def test_mutated_messages_raise_only_decode_error(
    wire: tuple[bytes, IPv6Address, IPv6Address], data: st.DataObject
) -> None:
    raw = bytearray(wire[0])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    check_decode(bytes(raw))
    check_decode(bytes(raw[:cut]))


@SOME
@given(wire=wire_messages(), data=st.data())
def test_any_flipped_bit_fails_the_checksum(wire: tuple[bytes, IPv6Address, IPv6Address], data: st.DataObject) -> None:
    raw, src, dst = wire
    bit = data.draw(st.integers(0, 8 * len(raw) - 1))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 0x80 >> bit % 8
    assert not checksum_ok(bytes(flipped), src, dst)
    with pytest.raises(DecodeError) as caught:
        decode(bytes(flipped), src, dst)
    assert caught.value.offset == 4


@SOME
@given(wire=wire_messages(), other=addresses())
def test_the_checksum_covers_the_addresses(wire: tuple[bytes, IPv6Address, IPv6Address], other: IPv6Address) -> None:
    raw, src, dst = wire
    assert checksum_ok(raw, dst, src), "the sum cannot tell source from destination"
    if other not in (src, dst):
        assert checksum_ok(raw, other, dst) == (sum_of(other) == sum_of(src))


def sum_of(address: IPv6Address) -> int:
    """An address's 16-bit words summed in ones' complement: addresses with equal sums
    are the only ones the Internet checksum cannot tell apart."""
    return int(address) % 0xFFFF


# --- what a receiver ignores -----------------------------------------------------------------------


@SOME
@given(message=st.one_of([values(cls) for cls in MESSAGE_TYPES if cls is not mip6.UnknownMessage]), data=st.data())
def test_other_padding_pad_data_and_reserved_fields_do_not_change_the_message(
    message: KnownMessage, data: st.DataObject
) -> None:
    wire = bytearray(message.encode(None, None))
    start = 6 + message.fixed.size
    rebuilt = bytearray(wire[:start])
    rebuilt[3] = data.draw(st.integers(0, 255))  # the Mobility Header's Reserved
    for offset, opt_type, size in option_spans(bytes(wire), start):
        if opt_type > OptType.PADN:
            rebuilt += data.draw(padding_runs())
            rebuilt += wire[offset : offset + size]
    rebuilt += data.draw(padding_runs())
    rebuilt += padding_to_eight(len(rebuilt))
    rebuilt[1] = len(rebuilt) // 8 - 1
    if len(rebuilt) <= mip6.MAX_MH_LEN:
        assert decode(bytes(rebuilt)) == message


@st.composite
def padding_runs(draw: st.DrawFn) -> bytes:
    """Pad1s and PadNs with any data, in any mix."""
    runs = draw(
        st.lists(st.one_of(st.just(b"\0"), st.binary(max_size=9).map(lambda b: bytes([1, len(b)]) + b)), max_size=3)
    )
    return b"".join(runs)


def padding_to_eight(size: int) -> bytes:
    return bytes(-size % 8)  # Pad1s
