"""The building blocks: the bounded reader, open enums, and checks on construction."""

from __future__ import annotations

import dataclasses
import errno
import struct

import pytest

from pfmigrate._enum import MemberTable
from pfmigrate._wire import DecodeError, Reader
from pfmigrate.pfkey import (
    SA,
    AddressSrc,
    Comb,
    Direction,
    IdentitySrc,
    IPProto,
    IPsecRequest,
    KeyAuth,
    KMAddress,
    Message,
    Mode,
    MsgType,
    Policy,
    Proposal,
    SAType,
    SecCtx,
    SockAddr,
    UnknownExtension,
    decode,
)
from pfmigrate.pfkey.render import render
from pfmigrate.seed import seed_migrate


def test_reader_sub_view_cannot_read_past_its_end() -> None:
    r = Reader(bytes(range(16)))
    sub = r.sub(4, "part")
    assert r.pos == 4
    assert sub.take(4, "all") == bytes(range(4))
    with pytest.raises(DecodeError) as exc:
        sub.take(1, "one more")
    assert exc.value.offset == 4
    assert "one more needs 1 bytes, only 0 left" in exc.value.reason


def test_reader_unpack_reports_absolute_offset() -> None:
    r = Reader(bytes(10), pos=8)
    with pytest.raises(DecodeError) as exc:
        r.unpack(struct.Struct("=I"), "u32")
    assert (exc.value.offset, exc.value.errno) == (8, errno.EINVAL)
    assert str(exc.value) == "offset 8: u32 needs 4 bytes, only 2 left"


def test_open_enum_keeps_unknown_numbers() -> None:
    mode = Mode(77)
    assert mode == 77
    assert not mode.known
    assert mode.label == "77"
    assert repr(mode) == "<Mode.77: 77>"
    assert Mode.of(2) is Mode.TUNNEL
    assert Mode.parse("tunnel") is Mode.TUNNEL
    assert Mode.parse("77") == 77
    with pytest.raises(ValueError, match="unknown Mode 'tunel'"):
        Mode.parse("tunel")
    with pytest.raises(ValueError, match="-1 is not a valid Mode"):
        Mode(-1)


def test_member_table_looks_up_known_and_unknown() -> None:
    table = MemberTable(Direction)
    assert table[2] is Direction.OUTBOUND
    assert table[99] == 99
    assert isinstance(table[99], Direction)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SA(1 << 32), "SA.spi = 4294967296 does not fit in 32 bits"),
        (lambda: SA(-1), "SA.spi = -1 does not fit in 32 bits"),
        (lambda: SA(True), "SA.spi must be an integer"),
        (lambda: AddressSrc(SockAddr.of("10.0.0.1"), 33), "prefix length 33 is too long for 10.0.0.1"),
        (lambda: KeyAuth(129, bytes(16)), "129 bits need 17 key bytes, got 16"),
        (lambda: IPsecRequest(src=SockAddr.of("::1")), "both tunnel endpoints or neither"),
        (lambda: IPsecRequest(src=SockAddr.of("::1"), dst=SockAddr.of("10.0.0.1")), "different families"),
        (lambda: KMAddress(SockAddr.of("::1"), SockAddr.of("10.0.0.1")), "different families"),
        (lambda: SecCtx(context=bytes(4097)), "at most 4096 bytes"),
        (lambda: UnknownExtension(5, bytes(4)), "extension type 5 is a known type"),
        (lambda: UnknownExtension(40, bytes(8)), "whole number of 8-byte units"),
        (lambda: SockAddr.of("::1", port=70000), "port 70000 is not a u16"),
        (lambda: Policy(requests=[1]), "holds 1, not a IPsecRequest"),  # type: ignore[arg-type]
        (lambda: Message(MsgType.ADD, extensions=(SA(1), SA(2))), "extension SA appears twice"),
    ],
)
def test_values_are_checked_on_construction(build: object, message: str) -> None:
    assert callable(build)
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)")):
        build()


def test_constructors_normalise_to_enums_and_tuples() -> None:
    policy = Policy(dir=3, requests=[IPsecRequest(mode=2)])  # type: ignore[arg-type]
    assert policy.dir is Direction.FWD
    assert policy.requests == (IPsecRequest(mode=Mode.TUNNEL),)
    assert AddressSrc.of("2001:db8::1/64", IPProto.MH).prefixlen == 64
    assert AddressSrc.of("192.0.2.1").prefixlen == 32


def test_values_are_frozen() -> None:
    sa = SA(5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sa.spi = 6  # type: ignore[misc]


def test_keys_never_show_in_repr() -> None:
    assert repr(KeyAuth.of(b"secret-key-bytes")) == "KeyAuth(bits=128, key=<hidden>)"


def test_message_get_and_require() -> None:
    msg = seed_migrate()
    assert msg.require(Policy).dir == Direction.OUTBOUND
    assert msg.get(SA) is None
    with pytest.raises(LookupError, match="X_MIGRATE message has no SA extension"):
        msg.require(SA)


def test_render_names_unknown_numbers() -> None:
    msg = Message(MsgType(99), SAType(42), extensions=(UnknownExtension(300, b"\x01\x02\x03\x04"),))
    text = render(msg)
    assert text.splitlines()[0] == "SADB_99 satype=42 len=24 seq=0 pid=0"
    assert "type 300          data=01020304" in text


def test_identity_strings_cannot_end_in_nul() -> None:
    with pytest.raises(ValueError, match="cannot end in NUL"):
        IdentitySrc(data=b"user@example\0")


def test_a_partial_trailing_comb_is_ignored_as_linux_ignores_it() -> None:
    full = Message(MsgType.ACQUIRE, extensions=(Proposal(32, (Comb(),)),)).encode()
    # Grow the proposal by 8 bytes that are not a whole sadb_comb (72 bytes).
    raw = bytearray(full + bytes(8))
    raw[4:6] = struct.pack("=H", len(raw) // 8)
    raw[16:18] = struct.pack("=H", (len(raw) - 16) // 8)
    assert decode(bytes(raw)).require(Proposal).combs == (Comb(),)
