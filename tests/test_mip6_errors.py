"""Malformed Mobility Headers: each is refused with one ``DecodeError`` that says where
(the offset of the field at fault, in the message) and why; and what a receiver accepts
although a sender would not write it. Also the rules the value classes enforce."""

from __future__ import annotations

import struct
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import Any

import pytest

from pfmigrate.mip6 import (
    AlternateCareOfAddress,
    BAStatus,
    BEStatus,
    BindingAck,
    BindingAuthorizationData,
    BindingError,
    BindingRefreshAdvice,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlags,
    DecodeError,
    HomeTest,
    HomeTestInit,
    MHType,
    MobileNetworkPrefix,
    NonceIndices,
    OptType,
    UnknownMessage,
    UnknownOption,
    checksum,
    decode,
    encode,
)
from pfmigrate.mip6.codec import MIN_HEADER_LEN

HOA = IPv6Address("3ffe:501:ffff:100:1:2:3:4")
HA = IPv6Address("3ffe:501:ffff:100::1")
COA = IPv6Address("3ffe:501:ffff:500:1:2:3:4")
BU_FIXED = struct.pack("!HHH", 7, BUFlags.A | BUFlags.H, 100)  # the 6 octets after the header


def mh(mh_type: int, data: bytes, *, header_len: int | None = None, proto: int = 59) -> bytes:
    """A Mobility Header around ``data``; Header Len fits it unless given."""
    if header_len is None:
        header_len = (6 + len(data)) // 8 - 1
    return struct.pack("!BBBBH", proto, header_len, mh_type, 0, 0) + data


def bu(options: bytes) -> bytes:
    """A Binding Update with these raw options (their length must make it a multiple of 8)."""
    assert (12 + len(options)) % 8 == 0
    return mh(MHType.BINDING_UPDATE, BU_FIXED + options)


def opt(opt_type: int, data: bytes, *, length: int | None = None) -> bytes:
    return bytes([opt_type, len(data) if length is None else length]) + data


ALT_COA = opt(OptType.ALTERNATE_CARE_OF_ADDRESS, COA.packed)
AUTH = opt(OptType.BINDING_AUTHORIZATION_DATA, bytes(range(12)))
PADN2 = b"\x01\x00"

# (name, bytes, offset, words in the reason)
MALFORMED = [
    ("empty", b"", 0, "shorter than the 8-octet minimum"),
    ("seven octets", mh(0, b"\0\0", header_len=0)[:7], 0, "shorter than the 8-octet minimum"),
    ("payload proto TCP", mh(0, b"\0\0", proto=6), 0, "Payload Proto is 6, not 59"),
    ("header len past the data", mh(0, bytes(10), header_len=2), 1, "says 24 octets, the message has 16"),
    ("header len 255 on 8 octets", mh(0, b"\0\0", header_len=255), 1, "says 2048 octets"),
    ("bytes after header len", mh(0, b"\0\0", header_len=0) + bytes(8), 8, "8 octets after the 8"),
    ("odd tail after header len", mh(0, b"\0\0", header_len=0) + b"\0", 8, "1 octets after"),
    (
        "BU with header len 0",
        mh(5, BU_FIXED[:2], header_len=0),
        1,
        "Header Len 0 is less than the 1 of a BindingUpdate",
    ),
    ("BE with header len 1", mh(7, bytes(10), header_len=1), 1, "less than the 2 of a BindingError"),
    ("option overruns", bu(PADN2 + b"\x03\x11" + bytes(8)), 15, "Option Length 17 runs past the message"),
    ("PadN overruns", bu(b"\x01\x03\0\0"), 13, "Option Length 3 runs past"),
    ("type in the last octet", bu(b"\0\0\0\x02"), 15, "no Option Length"),
    (
        "alternate CoA of 15",
        bu(PADN2 + opt(3, bytes(15)) + b"\0"),
        15,
        "AlternateCareOfAddress has Option Length 15",
    ),
    ("nonce indices of 2", bu(opt(4, b"\0\x01")), 13, "NonceIndices has Option Length 2, not 4"),
    ("refresh advice of 3", bu(opt(2, b"\0\0\0") + bytes(7)), 13, "BindingRefreshAdvice has Option Length 3, not 2"),
    ("prefix of 16", bu(opt(6, bytes(16)) + b"\x01\x00"), 13, "MobileNetworkPrefix has Option Length 16, not 18"),
    ("prefix length 129", bu(opt(6, b"\0\x81" + bytes(16))), 15, "prefix length 129 is longer than 128"),
    ("option after authorization", bu(PADN2 + AUTH + opt(2, b"\0\x01")), 28, "must be last"),
    ("unknown after authorization", bu(PADN2 + AUTH + opt(200, b"") + PADN2), 28, "option type 200 after"),
]


@pytest.mark.parametrize(("data", "offset", "words"), [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_messages_are_refused_where_they_go_wrong(data: bytes, offset: int, words: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(data)
    assert caught.value.offset == offset, caught.value
    assert words in caught.value.reason
    assert str(caught.value) == f"offset {offset}: {caught.value.reason}"


@pytest.mark.parametrize("mh_type", sorted(MIN_HEADER_LEN), ids=lambda n: MHType(n).name)
def test_each_type_needs_its_least_header_len(mh_type: int) -> None:
    """RFC 6275 §9.2: Header Len below the type's length is refused, pointing at Header Len."""
    least = MIN_HEADER_LEN[mh_type]
    assert least == {0: 0, 1: 1, 2: 1, 3: 2, 4: 2, 5: 1, 6: 1, 7: 2}[mh_type]
    decode(mh(mh_type, bytes(8 * least + 2)))
    if least:
        with pytest.raises(DecodeError) as caught:
            decode(mh(mh_type, bytes(8 * least - 6)))
        assert caught.value.offset == 1


def test_a_wrong_checksum_points_at_the_checksum_field() -> None:
    wire = encode(BindingUpdate(7, BUFlags.A, 100, (AlternateCareOfAddress(COA),)), HOA, HA)
    assert decode(wire, HOA, HA) == decode(wire)
    with pytest.raises(DecodeError) as caught:
        decode(wire, HOA, COA)
    assert caught.value.offset == 4
    assert f"not 0x{checksum(wire, HOA, COA):04x} for {HOA} -> {COA}" in caught.value.reason
    zero = wire[:4] + b"\0\0" + wire[6:]
    with pytest.raises(DecodeError, match="offset 4: Checksum is 0x0000"):
        decode(zero, HOA, HA)


def test_the_checksum_is_checked_first() -> None:
    """RFC 6275 §9.2 checks the checksum before Payload Proto and Header Len."""
    with pytest.raises(DecodeError) as caught:
        decode(mh(0, b"\0\0", proto=6), HOA, HA)
    assert caught.value.offset == 4


def test_addresses_come_both_or_not_at_all() -> None:
    wire = BindingRefreshRequest().encode(None, None)
    with pytest.raises(ValueError, match="both"):
        decode(wire, HOA, None)
    with pytest.raises(ValueError, match="both"):
        BindingRefreshRequest().encode(None, HA)


def test_options_that_cannot_be_aligned_within_2048_octets_are_refused() -> None:
    """Packed back to back, 113 alternate care-of addresses fit; aligned they would not."""
    options = ALT_COA * 113
    tail = bytes(-(12 + len(options)) % 8)
    data = bu(options + tail)
    assert len(data) == 2048
    with pytest.raises(DecodeError, match="would not fit in 2048 octets") as caught:
        decode(data)
    assert caught.value.offset == 12 + 18 * 85  # the 86th: aligned, the 85th would end at 2048


# --- what a receiver accepts ---------------------------------------------------------------------


def test_padding_anywhere_pad_data_and_reserved_fields_are_ignored() -> None:
    canonical = BindingUpdate(7, BUFlags.A | BUFlags.H, 100, (AlternateCareOfAddress(COA),))
    odd = bytearray(bu(b"\0" + b"\x01\x01\xff" + ALT_COA + b"\x01\x04abcd"))
    odd[3] = 0xAA
    assert decode(bytes(odd)) == canonical
    assert decode(mh(7, b"\x02\xff" + HOA.packed)) == BindingError(HOA, BEStatus.UNRECOGNIZED_MH_TYPE)
    assert decode(mh(0, b"\xff\xff")) == BindingRefreshRequest()


def test_padding_after_the_authorization_data_is_accepted() -> None:
    message = decode(bu(PADN2 + AUTH + bytes(4)))
    assert message == BindingUpdate(7, BUFlags.A | BUFlags.H, 100, (BindingAuthorizationData(bytes(range(12))),))


def test_unknown_types_are_kept_byte_for_byte() -> None:
    data = mh(42, bytes(range(10)))
    message = decode(data)
    assert message == UnknownMessage(MHType(42), bytes(range(10)))
    assert message.encode(None, None) == data
    option = decode(bu(opt(99, b"xyz") + bytes(7)))
    assert isinstance(option, BindingUpdate)
    assert option.options == (UnknownOption(OptType(99), b"xyz"),)


def test_any_buffer_decodes() -> None:
    data = BindingAck(BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, sequence=9).encode(HA, HOA)
    assert (
        decode(bytearray(data), HA, HOA)
        == decode(memoryview(data))
        == BindingAck(BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, sequence=9)
    )


# --- what a sender cannot build ----------------------------------------------------------------------


def untyped(value: object) -> Any:
    """``value`` hidden from the type checker, to hand a constructor what it must refuse."""
    return value


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        (lambda: HomeTestInit(bytes(7)), ValueError, "cookie is 7 octets, not 8"),
        (lambda: HomeTest(1, bytes(8), bytes(9)), ValueError, "keygen_token is 9 octets"),
        (lambda: BindingUpdate(1 << 16), ValueError, "does not fit in 16 bits"),
        (lambda: BindingAck(untyped(256)), ValueError, "does not fit in 8 bits"),
        (lambda: BindingError(IPv6Address("fe80::1%eth0")), ValueError, "has a scope"),
        (lambda: BindingError(untyped("192.0.2.1")), ValueError, "192.0.2.1"),
        (lambda: AlternateCareOfAddress(untyped(1)), TypeError, "must be an IPv6Address"),
        (lambda: MobileNetworkPrefix(IPv6Address("2001:db8::"), 129), ValueError, "longer than 128"),
        (lambda: BindingAuthorizationData(bytes(256)), ValueError, "256 octets, not 0 to 255"),
        (lambda: UnknownOption(OptType.NONCE_INDICES, b""), ValueError, "is a known type"),
        (lambda: UnknownOption(OptType.PADN, b""), ValueError, "is padding"),
        (lambda: UnknownMessage(MHType.BINDING_ACK), ValueError, "is a known type"),
        (lambda: UnknownMessage(MHType(9), bytes(3)), ValueError, "do not make a message"),
        (lambda: BindingUpdate(options=(BindingAuthorizationData(), NonceIndices())), ValueError, "must be the last"),
        (
            lambda: BindingUpdate(options=(UnknownOption(OptType(9), bytes(255)),) * 8),
            ValueError,
            "longer than the 2048",
        ),
        (lambda: BindingRefreshRequest(untyped((BindingRefreshAdvice(), 5))), TypeError, "not a Option"),
    ],
)
def test_invalid_values_cannot_be_built(build: Callable[[], object], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        build()
