"""Properties of the PF_KEY v2 codec.

* Every extension class, and whole messages, survive ``decode(encode(m)) == m`` and
  ``encode(decode(b)) == b``.
* Decoded objects are frozen instances of exactly the public classes, equal (and hashing
  equal) to the same values built through the public constructors, although the decoder
  builds them with the unchecked ``pfmigrate._value.builder``.
* ``decode`` raises nothing but ``DecodeError`` (with an in-range offset and Linux's errno)
  for arbitrary bytes, truncations, mutations and mangled length fields; whatever it
  accepts re-encodes and decodes back to an equal message.
* Hand-built messages check each rule Linux's af_key enforces before a handler runs
  (``pfkey_get_base_msg`` and ``parse_exthdrs``), plus the request and KMADDRESS rules of
  ``parse_sockaddr_pair``.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import struct
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pfmigrate.pfkey as pfkey
from pfmigrate._value import builder
from pfmigrate.pfkey import (
    AF_INET,
    AF_INET6,
    SA2,
    Address,
    Alg,
    Comb,
    DecodeError,
    Extension,
    ExtType,
    IPProto,
    IPsecRequest,
    Key,
    KMAddress,
    Message,
    Mode,
    MsgType,
    Policy,
    SockAddr,
    UnknownExtension,
    decode,
)
from tests.strategies import EXTENSION_TYPES, messages, valid_wire_messages, values
from tests.values import walk

_MSG = struct.Struct("=BBBBHHII")
_EXT = struct.Struct("=HH")
_U16 = struct.Struct("=H")
_ERRNOS = (errno.EINVAL, errno.EMSGSIZE)
_MAX_LEN = 0xFFFF * 8
E = TypeVar("E", bound=Extension)

#: Every public class of the PF_KEY package: decoded objects must be of exactly one of these.
PUBLIC_CLASSES = frozenset(obj for name in pfkey.__all__ if isinstance(obj := getattr(pfkey, name), type))
#: Every value class the decoder builds, nested ones included.
VALUE_CLASSES: tuple[type, ...] = (*EXTENSION_TYPES, Comb, Alg, IPsecRequest, SockAddr, Message)

V4 = SockAddr.of("192.0.2.1", 500)
V4B = SockAddr.of("198.51.100.7", 4500)
V6 = SockAddr.of("2001:db8::1", 500)
V6B = SockAddr.of("2001:db8:ffff::2")

FEW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MANY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- helpers -------------------------------------------------------------------------------------


def rebuild(obj: Any) -> Any:
    """The same value built again through the public constructors, from plain ints where the
    fields hold enum members, so the constructors' own normalisation is exercised."""
    if isinstance(obj, tuple):
        return tuple(rebuild(item) for item in obj)
    if isinstance(obj, enum.IntEnum | enum.IntFlag):
        return int(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return type(obj)(**{f.name: rebuild(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init})
    return obj


def assert_frozen(obj: Any) -> None:
    for f in dataclasses.fields(obj):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, f.name, getattr(obj, f.name))
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(obj, f.name)
    assert not hasattr(obj, "__dict__"), f"{type(obj).__name__} has a __dict__: not a slotted instance"


def assert_like_constructed(decoded: Message) -> None:
    """Every object in ``decoded`` is a frozen public-class instance equal to its constructor-built twin."""
    for obj in walk(decoded):
        cls = type(obj)
        assert cls in PUBLIC_CLASSES, f"decoded a {cls!r}, not a public class"
        assert_frozen(obj)
        twin = rebuild(obj)
        assert type(twin) is cls
        assert twin == obj
        assert hash(twin) == hash(obj)
        for f in dataclasses.fields(obj):  # compare=False fields too (SockAddr.packed), and field types
            mine, theirs = getattr(obj, f.name), getattr(twin, f.name)
            assert type(mine) is type(theirs), f"{cls.__name__}.{f.name}: {type(mine)!r} vs {type(theirs)!r}"
            assert mine == theirs, f"{cls.__name__}.{f.name}: {mine!r} vs {theirs!r}"


def check_error(exc: DecodeError, data: bytes) -> None:
    """An error says where (inside the input) and what Linux would answer."""
    assert 0 <= exc.offset <= len(data), f"offset {exc.offset} outside {len(data)} bytes: {exc}"
    assert exc.errno in _ERRNOS, exc
    assert exc.reason
    assert str(exc) == f"offset {exc.offset}: {exc.reason}"


def check_decode(data: bytes) -> Message | None:
    """Decode ``data``: either ``DecodeError`` with a sane offset and errno, or a message
    that re-encodes and decodes back to itself. Any other exception fails the test."""
    try:
        message = decode(data)
    except DecodeError as exc:
        check_error(exc, data)
        return None
    wire = message.encode()
    assert len(wire) <= len(data)
    again = decode(wire)
    assert again == message
    assert again.encode() == wire
    return message


def extension_offsets(wire: bytes) -> list[int]:
    """Where each extension of a valid message starts."""
    offsets: list[int] = []
    pos = _MSG.size
    while pos < len(wire):
        offsets.append(pos)
        pos += 8 * _U16.unpack_from(wire, pos)[0]
    return offsets


def set_u16(data: bytes, at: int, value: int) -> bytes:
    out = bytearray(data)
    _U16.pack_into(out, at, value)
    return bytes(out)


def header(units: int, *, version: int = 2, mtype: int = MsgType.X_MIGRATE, reserved: int = 0) -> bytes:
    return _MSG.pack(version, mtype, 0, 0, units, reserved, 7, 4242)


def msg(*exts: bytes, **kw: int) -> bytes:
    """A header whose sadb_msg_len covers ``exts`` exactly, then ``exts``."""
    body = b"".join(exts)
    assert len(body) % 8 == 0
    return header(2 + len(body) // 8, **kw) + body


def ext(exttype: int, body: bytes, *, units: int | None = None) -> bytes:
    """A raw extension; ``units`` defaults to the true length of 4 + ``body`` bytes."""
    return _EXT.pack((4 + len(body)) // 8 if units is None else units, exttype) + body


def address_ext(sockaddr: bytes, *, prefixlen: int = 32, exttype: int = ExtType.ADDRESS_SRC) -> bytes:
    padded = sockaddr + bytes(-len(sockaddr) % 8)
    return ext(exttype, struct.pack("=BBH", IPProto.ANY, prefixlen, 0) + padded)


def sin(family: int, size: int) -> bytes:
    """A sockaddr of ``size`` bytes claiming ``family``."""
    return _U16.pack(family) + bytes(size - 2)


def request(length: int, tail: bytes = b"") -> bytes:
    """One sadb_x_ipsecrequest whose length field says ``length``, followed by ``tail``."""
    return struct.pack("=HHBB2xI4x", length, IPProto.ESP, Mode.TUNNEL, 2, 1) + tail


def padded_pair(first: SockAddr, second: SockAddr) -> bytes:
    """Two sockaddrs packed, padded to 8 and to at least the pair size of ``first``'s family,
    so that only the second address's family is wrong."""
    pair = first.packed + second.packed
    return pair + bytes(max(-len(pair) % 8, (32 if first.family == AF_INET else 56) - len(pair)))


def policy_ext(body: bytes) -> bytes:
    return ext(ExtType.X_POLICY, struct.pack("=HB1xII", 2, 2, 0, 0) + body)


def only(wire: bytes, cls: type[E]) -> E:
    """The single extension of the message ``wire``, which must be a ``cls``."""
    (extension,) = decode(wire).extensions
    assert isinstance(extension, cls)
    return extension


def rejects(data: bytes, *, errno_: int = errno.EINVAL, within: tuple[int, int] | None = None) -> DecodeError:
    """``decode(data)`` raises ``DecodeError`` with ``errno_``, at an offset in ``[start, end)``."""
    with pytest.raises(DecodeError) as info:
        decode(data)
    exc = info.value
    check_error(exc, data)
    assert exc.errno == errno_, exc
    if within is not None:
        assert within[0] <= exc.offset < within[1], exc
    return exc


# --- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", EXTENSION_TYPES, ids=lambda cls: cls.__name__)
@given(data=st.data())
@FEW
def test_extension_round_trip(cls: type[Extension], data: st.DataObject) -> None:
    extension = data.draw(values(cls), label="extension")
    mtype = data.draw(st.integers(0, 255), label="type")
    message = Message(MsgType(mtype), extensions=(extension,))
    wire = message.encode()
    packed = extension.pack()
    assert wire[_MSG.size :] == packed
    assert len(packed) % 8 == 0
    assert 8 * _U16.unpack_from(packed)[0] == len(packed)
    assert _U16.unpack_from(packed, 2)[0] == extension.exttype
    back = decode(wire)
    assert back == message
    assert type(back.extensions[0]) is cls
    assert back.encode() == wire
    assert_like_constructed(back)


@given(messages())
@SOME
def test_message_round_trip(message: Message) -> None:
    wire = message.encode()
    assert len(wire) % 8 == 0
    assert len(wire) < _MAX_LEN
    assert 8 * _U16.unpack_from(wire, 4)[0] == len(wire)
    back = decode(wire)
    assert back == message
    assert hash(back) == hash(message)
    assert back.encode() == wire
    assert Message.decode(wire) == message


@given(valid_wire_messages())
@SOME
def test_wire_round_trip(wire: bytes) -> None:
    assert decode(wire).encode() == wire
    assert decode(bytearray(wire)).encode() == wire
    assert decode(memoryview(wire)).encode() == wire


@given(messages())
@SOME
def test_decoded_objects_are_frozen_public_and_equal_to_constructed(message: Message) -> None:
    decoded = decode(message.encode())
    assert_like_constructed(decoded)
    assert rebuild(decoded) == message


@pytest.mark.parametrize("cls", VALUE_CLASSES, ids=lambda cls: cls.__name__)
@given(data=st.data())
@FEW
def test_builder_products_match_constructor(cls: type[Any], data: st.DataObject) -> None:
    constructed = data.draw(values(cls), label="constructed")
    build = builder(cls)
    built = build(*(getattr(constructed, f.name) for f in dataclasses.fields(cls)))
    assert type(built) is cls
    assert built == constructed
    assert constructed == built
    assert hash(built) == hash(constructed)
    assert repr(built) == repr(constructed)
    assert {built, constructed} == {constructed}
    assert_frozen(built)


# --- decode never raises anything but DecodeError ------------------------------------------------------


@given(st.binary(max_size=256))
@MANY
def test_arbitrary_bytes(data: bytes) -> None:
    check_decode(data)


@st.composite
def framed_garbage(draw: st.DrawFn) -> bytes:
    """A plausible header over extensions with random type, length and contents."""
    chunks: list[bytes] = []
    for _ in range(draw(st.integers(0, 6))):
        exttype = draw(st.one_of(st.integers(0, 30), st.integers(0, 0xFFFF)))
        units = draw(st.integers(1, 12))
        declared = draw(st.one_of(st.just(units), st.integers(0, 14)))
        chunks.append(ext(exttype, draw(st.binary(min_size=8 * units - 4, max_size=8 * units - 4)), units=declared))
    return msg(*chunks, mtype=draw(st.integers(0, 255)))


@given(framed_garbage())
@MANY
def test_framed_garbage(data: bytes) -> None:
    check_decode(data)


@given(valid_wire_messages())
@FEW
def test_every_truncation(wire: bytes) -> None:
    for n in range(len(wire)):
        rejects(wire[:n], errno_=errno.EMSGSIZE)  # sadb_msg_len no longer matches
    for n in range(_MSG.size, len(wire), 8):  # the same, with sadb_msg_len fixed to match
        check_decode(set_u16(wire[:n], 4, n // 8))


@given(valid_wire_messages(), st.data())
@MANY
def test_single_byte_mutation(wire: bytes, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(wire) - 1), label="at")
    value = data.draw(st.integers(0, 255), label="value")
    mutated = bytearray(wire)
    mutated[at] = value
    check_decode(bytes(mutated))


@given(valid_wire_messages(), st.data())
@MANY
def test_multi_byte_mutation(wire: bytes, data: st.DataObject) -> None:
    mutated = bytearray(wire)
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(wire) - 1), st.integers(0, 255)), min_size=2, max_size=12))
    for at, value in edits:
        mutated[at] = value
    check_decode(bytes(mutated))


@given(valid_wire_messages(), st.data())
@SOME
def test_bit_flips(wire: bytes, data: st.DataObject) -> None:
    mutated = bytearray(wire)
    for bit in data.draw(st.lists(st.integers(0, 8 * len(wire) - 1), min_size=1, max_size=8), label="bits"):
        mutated[bit // 8] ^= 1 << (bit % 8)
    check_decode(bytes(mutated))


@given(valid_wire_messages(), st.integers(0, 0xFFFF))
@SOME
def test_mangled_message_length(wire: bytes, units: int) -> None:
    mangled = set_u16(wire, 4, units)
    if units == len(wire) // 8:
        assert decode(mangled).encode() == wire
    else:
        rejects(mangled, errno_=errno.EMSGSIZE, within=(4, 5))


@given(valid_wire_messages(max_known=8, max_unknown=2).filter(lambda w: len(w) > _MSG.size), st.data())
@MANY
def test_mangled_extension_length(wire: bytes, data: st.DataObject) -> None:
    at = data.draw(st.sampled_from(extension_offsets(wire)), label="extension at")
    units = _U16.unpack_from(wire, at)[0]
    new = data.draw(st.one_of(st.integers(0, 0xFFFF), st.integers(max(0, units - 3), units + 3)), label="units")
    check_decode(set_u16(wire, at, new))


@given(valid_wire_messages(max_known=6).filter(lambda w: len(w) > _MSG.size), st.data())
@SOME
def test_mangled_inner_field(wire: bytes, data: st.DataObject) -> None:
    """Length-like u16 fields inside an extension (key bits, ctx_len, request len, families...)."""
    at = data.draw(st.sampled_from(extension_offsets(wire)), label="extension at")
    size = 8 * _U16.unpack_from(wire, at)[0]
    field = data.draw(st.integers(at + 4, at + size - 2), label="field at")
    value = data.draw(st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0, 1, 2, 10, 15, 16, 17, 47, 48, 72, 4097])))
    check_decode(set_u16(wire, field, value))


@given(messages(max_known=5), messages(max_known=5), st.data())
@SOME
def test_spliced_extensions(first: Message, second: Message, data: st.DataObject) -> None:
    pool = [e.pack() for e in first.extensions + second.extensions]
    chosen = data.draw(st.lists(st.sampled_from(pool), max_size=8) if pool else st.just([]), label="chosen")
    spliced = msg(*chosen)
    decoded = check_decode(spliced)
    known = [_U16.unpack_from(raw, 2)[0] for raw in chosen if _U16.unpack_from(raw, 2)[0] <= 26]
    if len(known) == len(set(known)):
        assert decoded is not None, "well-formed extensions without duplicates must decode"
        assert decoded.encode()[_MSG.size :] == b"".join(chosen)
    else:
        assert decoded is None


# --- Linux's rules, byte by byte -------------------------------------------------------------------------


def test_minimal_message() -> None:
    m = decode(msg())
    assert m == Message(MsgType.X_MIGRATE, seq=7, pid=4242)
    assert m.encode() == msg()


@pytest.mark.parametrize("size", range(16))
def test_shorter_than_header_is_emsgsize(size: int) -> None:
    rejects(msg()[:size], errno_=errno.EMSGSIZE, within=(0, 1))


@pytest.mark.parametrize("version", [0, 1, 3, 255])
def test_version_must_be_2(version: int) -> None:
    rejects(msg(version=version), within=(0, 1))


@pytest.mark.parametrize("reserved", [1, 0x100, 0xFFFF])
def test_reserved_is_kept_not_refused(reserved: int) -> None:
    # Linux's pfkey_get_base_msg refuses a request whose sadb_msg_reserved is not 0, but
    # Linux itself writes the policy's reference count there in SPD replies and dumps, so
    # the codec keeps the field (Message.reserved) and leaves the request rule to an engine.
    wire = msg(reserved=reserved)
    m = decode(wire)
    assert m.reserved == reserved
    assert m.encode() == wire


@pytest.mark.parametrize("units", [0, 1, 2, 4, 0xFFFF])
def test_msg_len_mismatch_is_emsgsize(units: int) -> None:
    data = header(units) + ext(ExtType.X_NAT_T_TYPE, bytes(4))  # 24 bytes: the right answer is 3
    rejects(data, errno_=errno.EMSGSIZE, within=(4, 5))


@pytest.mark.parametrize("units", [0, 1])
def test_msg_len_below_header_is_emsgsize(units: int) -> None:
    rejects(header(units), errno_=errno.EMSGSIZE, within=(4, 5))


def test_extension_length_zero() -> None:
    rejects(msg(ext(ExtType.X_NAT_T_TYPE, bytes(4), units=0)), within=(16, 24))


@pytest.mark.parametrize("units", [2, 3, 0xFFFF])
def test_extension_past_end(units: int) -> None:
    rejects(msg(ext(ExtType.X_NAT_T_TYPE, bytes(4), units=units)), within=(16, 24))


@pytest.mark.parametrize("exttype", [ExtType.SA, ExtType.LIFETIME_HARD, ExtType.IDENTITY_SRC, ExtType.X_FILTER])
def test_extension_below_minimum_length(exttype: int) -> None:
    rejects(msg(ext(exttype, bytes(4))), within=(16, 24))


def test_extension_type_zero() -> None:
    rejects(msg(ext(0, bytes(4))), within=(16, 24))


def test_duplicate_known_extension() -> None:
    sa2 = SA2(Mode.TUNNEL, 1, 2).pack()
    rejects(msg(sa2, ext(ExtType.X_NAT_T_TYPE, bytes(4)), sa2), within=(32, 48))


def test_unknown_extensions_kept_byte_for_byte_and_may_repeat() -> None:
    first = ext(27, bytes(range(12)))
    again = ext(27, b"\xff" * 4)
    last = ext(0xFFFF, b"abcd")
    wire = msg(first, SA2(Mode.TUNNEL, 1, 2).pack(), again, last)
    m = decode(wire)
    assert m.extensions == (
        UnknownExtension(27, bytes(range(12))),
        SA2(Mode.TUNNEL, 1, 2),
        UnknownExtension(27, b"\xff" * 4),
        UnknownExtension(0xFFFF, b"abcd"),
    )
    assert m.encode() == wire


@pytest.mark.parametrize(
    ("family", "size", "padded"),
    [(AF_INET, 16, 32), (AF_INET6, 28, 24), (AF_INET6, 28, 48), (AF_INET, 16, 8)],
)
def test_address_length_must_match_family(family: int, size: int, padded: int) -> None:
    body = struct.pack("=BBH", IPProto.ANY, 0, 0) + (sin(family, size) + bytes(64))[:padded]
    rejects(msg(ext(ExtType.ADDRESS_DST, body)), within=(16, 16 + 8 + padded))


@pytest.mark.parametrize("family", [0, 1, 28, 30, 0xFFFF])
def test_address_unknown_family(family: int) -> None:
    rejects(msg(address_ext(sin(family, 16), prefixlen=0)), within=(16, 40))


@pytest.mark.parametrize(
    "exttype", [ExtType.ADDRESS_SRC, ExtType.ADDRESS_DST, ExtType.ADDRESS_PROXY, ExtType.X_NAT_T_OA]
)
def test_address_prefixlen_bounded_by_family(exttype: int) -> None:
    assert only(msg(address_ext(V4.packed, prefixlen=32, exttype=exttype)), Address).prefixlen == 32
    assert only(msg(address_ext(V6.packed, prefixlen=128, exttype=exttype)), Address).prefixlen == 128
    rejects(msg(address_ext(V4.packed, prefixlen=33, exttype=exttype)), within=(16, 40))
    rejects(msg(address_ext(V6.packed, prefixlen=129, exttype=exttype)), within=(16, 56))


def test_address_canonicalises_sin_zero() -> None:
    dirty = V4.packed[:8] + b"\xaa" * 8
    m = decode(msg(address_ext(dirty)))
    assert m.encode() == msg(address_ext(V4.packed))
    assert_like_constructed(m)


@pytest.mark.parametrize("exttype", [ExtType.KEY_AUTH, ExtType.KEY_ENCRYPT])
def test_key_bits_must_fit(exttype: int) -> None:
    def key_ext(bits: int, key: bytes) -> bytes:
        return ext(exttype, struct.pack("=HH", bits, 0) + key)

    assert only(msg(key_ext(64, bytes(range(8)))), Key).key == bytes(range(8))
    assert decode(msg(key_ext(57, bytes(8)))).encode() == msg(key_ext(57, bytes(8)))
    rejects(msg(key_ext(65, bytes(8))), within=(16, 32))
    rejects(msg(key_ext(0xFFFF, bytes(8))), within=(16, 32))
    # Longer than needed is allowed (Linux checks only ``needed <= len``), and re-encodes canonically.
    assert decode(msg(key_ext(8, bytes(16)))).encode() == msg(key_ext(8, bytes(8)))


@pytest.mark.parametrize(("ctx_len", "body_len"), [(5, 16), (5, 0), (8, 16), (0, 8), (4097, 4104), (0xFFFF, 8)])
def test_sec_ctx_length_must_be_exact(ctx_len: int, body_len: int) -> None:
    body = struct.pack("=BBH", 1, 1, ctx_len) + bytes(body_len)
    rejects(msg(ext(ExtType.X_SEC_CTX, body)), within=(16, 24))


@pytest.mark.parametrize("ctx_len", [0, 1, 8, 9, 4096])
def test_sec_ctx_exact_lengths_accepted(ctx_len: int) -> None:
    body = struct.pack("=BBH", 1, 1, ctx_len) + b"c" * ctx_len + bytes(-ctx_len % 8)
    wire = msg(ext(ExtType.X_SEC_CTX, body))
    assert decode(wire).encode() == wire


@pytest.mark.parametrize("length", [0, 1, 8, 15])
def test_ipsecrequest_shorter_than_header(length: int) -> None:
    rejects(msg(policy_ext(request(length))), within=(16 + 16, 16 + 32))


@pytest.mark.parametrize(("length", "tail"), [(17, b""), (48, b""), (48, V4.packed), (72, V6.packed + V6B.packed[:20])])
def test_ipsecrequest_overrunning_policy(length: int, tail: bytes) -> None:
    tail += bytes(-len(tail) % 8)
    rejects(msg(policy_ext(request(length, tail))), within=(16 + 16, 16 + 32))


@pytest.mark.parametrize(("first", "second"), [(V4, V6), (V6, V4)])
def test_ipsecrequest_mixed_families(first: SockAddr, second: SockAddr) -> None:
    pair = padded_pair(first, second)
    rejects(msg(policy_ext(request(16 + len(pair), pair))), within=(16, 16 + 16 + 16 + len(pair)))


def test_ipsecrequests_decode_with_and_without_endpoints() -> None:
    transport = request(16)
    tunnel4 = request(48, V4.packed + V4B.packed)
    tunnel6 = request(72, V6.packed + V6B.packed)
    wire = msg(policy_ext(transport + tunnel4 + tunnel6))
    policy = only(wire, Policy)
    assert [(r.src, r.dst) for r in policy.requests] == [(None, None), (V4, V4B), (V6, V6B)]
    assert decode(wire).encode() == wire


@pytest.mark.parametrize(("local", "remote"), [(V4, V6), (V6, V4)])
def test_kmaddress_mixed_families(local: SockAddr, remote: SockAddr) -> None:
    pair = padded_pair(local, remote)
    rejects(msg(ext(ExtType.X_KMADDRESS, bytes(4) + pair)), within=(16, 16 + 8 + len(pair)))


@pytest.mark.parametrize(("local", "remote"), [(V4, V4B), (V6, V6B)])
def test_kmaddress_pair(local: SockAddr, remote: SockAddr) -> None:
    wire = KMAddress(local, remote, 0xDEADBEEF).pack()
    assert len(wire) == 8 + (32 if local.family == AF_INET else 56)
    m = decode(msg(wire))
    assert m.extensions == (KMAddress(local, remote, 0xDEADBEEF),)
    assert m.encode() == msg(wire)
    rejects(msg(ext(ExtType.X_KMADDRESS, bytes(4) + local.packed + bytes(-len(local.packed) % 8))), within=(16, 48))


# Linux's pfkey_get_base_msg accepts 1..7 bytes after sadb_msg_len (it compares with skb->len / 8),
# but parse_exthdrs then walks ``int len = skb->len`` - 16 bytes, not sadb_msg_len * 8: after the
# last extension the 1..7 trailing bytes are left, and ``len < sizeof(*ehdr)`` or
# ``ext_len > len`` returns -EINVAL (net/key/af_key.c; seen in UML: tests/kernel).
@pytest.mark.parametrize("extra", range(1, 8))
def test_trailing_bytes_rejected_like_parse_exthdrs(extra: int) -> None:
    body = msg(address_ext(V4.packed), SA2(Mode.TUNNEL, 1, 2).pack())
    wire = body + b"\xa5" * extra
    # pfkey_get_base_msg alone is satisfied: sadb_msg_len == skb->len / 8.
    assert _U16.unpack_from(wire, 4)[0] == len(wire) // 8
    rejects(wire, errno_=errno.EINVAL, within=(len(body), len(wire)))
