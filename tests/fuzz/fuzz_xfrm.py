"""Fuzz the XFRM netlink decoder with random and mutated datagrams (not collected by pytest).

The contract: for any bytes, ``pfmigrate.xfrm.decode`` either raises ``DecodeError``
(offset inside the input, errno EINVAL or EMSGSIZE) or returns messages that re-encode
and decode back to equal ones. Anything else is a bug: the script prints the input as
hex, the seed and the case number, and exits 1.

Inputs come from ``random.Random(seed)`` (not Hypothesis, for speed): a pool of valid
datagrams built from the declared field widths (XFRM messages of every type with a known
layout, NLMSG_ERROR, NLMSG_DONE, other types), then per case one of: random bytes,
random attributes under a plausible header, bit flips, byte overwrites, truncation,
nlmsg_len / nla_len / inner u32 edits, trailing bytes, insertions and deletions,
attribute and message splicing between datagrams, or a stack of several of these.

    python tests/fuzz/fuzz_xfrm.py --cases 1000000 --seed 1
"""

from __future__ import annotations

import errno
import struct
import sys
import time
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from random import Random
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, when run as a script

from pfmigrate.xfrm import (
    AF_INET,
    AF_INET6,
    ATTRIBUTE_CLASSES,
    DUMP,
    FIXED,
    AddressFilter,
    AeventId,
    Algo,
    AlgoWithLength,
    Attribute,
    DecodeError,
    EncapTmpl,
    Migrate,
    MsgType,
    NetlinkDone,
    NetlinkError,
    NetlinkMessage,
    NlFlags,
    NlMsgType,
    OffloadDev,
    RawAddress,
    RawMessage,
    ReplayEsn,
    Scalar,
    SecCtx,
    Selector,
    Templates,
    UnknownAttribute,
    UserAcquire,
    UserKmaddress,
    UserMigrate,
    UserpolicyInfo,
    UsersaId,
    UsersaInfo,
    UserTmpl,
    XfrmId,
    XfrmMessage,
    decode,
)
from pfmigrate.xfrm.constants import CAPPED, XFRM_MAX_DEPTH
from pfmigrate.xfrm.message import ATTRIBUTES_ONLY, is_dump_request
from pfmigrate.xfrm.structs import IPAddress
from tests.fuzz.mutations import ByteMutator, ValueMaker, parse_arguments, run_cases

_HDR = struct.Struct("=IHHII")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")
_ERRNOS = (errno.EINVAL, errno.EMSGSIZE)
_XFRM_TYPES = sorted({*FIXED, *ATTRIBUTES_ONLY})
_INTERESTING_U8 = (0, 1, 2, 3, 4, 7, 8, 10, 15, 16, 17, 24, 50, 51, 63, 64, 127, 128, 254, 255)
_INTERESTING_U16 = (0, 1, 2, 3, 4, 5, 8, 12, 16, 17, 20, 24, 28, 36, 40, 44, 64, 68, 72, 76, 80, 0x7FFF, 0xFFFF)
_INTERESTING_U32 = (0, 1, 7, 8, 9, 16, 17, 63, 64, 65, 128, 256, 512, 4096, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF)
_ALGORITHM_NAMES = ("cbc(aes)", "hmac(sha256)", "rfc4106(gcm(aes))", "deflate", "")


def align4(n: int) -> int:
    return (n + 3) & ~3


# --- valid messages from the declared widths -----------------------------------------------------


class Maker(ValueMaker):
    """Random valid values; the same rules as ``tests/xfrm_strategies.py``, without Hypothesis."""

    def __init__(self, rng: Random) -> None:
        super().__init__(rng)
        self.special = {
            XfrmId: lambda cls: self.xfrm_id(self.family()),
            Selector: self.selector,
            UsersaInfo: lambda cls: self.with_family(cls, "id", "saddr"),
            UsersaId: lambda cls: self.with_family(cls, "daddr"),
            AeventId: self.aevent_id,
            UserTmpl: lambda cls: self.with_family(cls, "id", "saddr"),
            UserKmaddress: lambda cls: self.with_family(cls, "local", "remote"),
            UserAcquire: self.acquire,
            UserMigrate: self.migrate_entry,
            EncapTmpl: lambda cls: self.build(cls, oa=self.blob(16)),
            Algo: self.algo,
            AlgoWithLength: self.algo,
            Templates: lambda cls: self.build(cls, templates=self.several(UserTmpl, 0)),
            Migrate: lambda cls: self.build(cls, entries=self.several(UserMigrate, 1)),
            ReplayEsn: lambda cls: self.build(cls, bitmap=tuple(self.uint(32) for _ in range(self.size(128, 4)))),
            SecCtx: lambda cls: self.build(cls, context=self.blob(self.size(4096))),
            AddressFilter: lambda cls: self.build(cls, saddr=self.blob(16), daddr=self.blob(16)),
            OffloadDev: lambda cls: self.build(cls, ifindex=self.int32()),
            Scalar: lambda cls: self.build(cls, value=self.uint(8 * cls.FORMAT.size)),
            RawAddress: lambda cls: self.build(cls, address=self.blob(16)),
            UnknownAttribute: self.unknown,
        }

    def int32(self) -> int:
        return self.uint(32) - (1 << 31)

    def family(self) -> int:
        return AF_INET if self.rng.random() < 0.5 else AF_INET6

    def address(self, family: int) -> IPAddress:
        return IPv4Address(self.blob(4)) if family == AF_INET else IPv6Address(self.blob(16))

    def several(self, cls: type[Any], least: int) -> tuple[Any, ...]:
        return tuple(self.value(cls) for _ in range(self.rng.randint(least, XFRM_MAX_DEPTH)))

    def xfrm_id(self, family: int) -> XfrmId:
        result: XfrmId = self.build(XfrmId, daddr=self.address(family))
        return result

    def selector(self, cls: type[Selector]) -> Selector:
        family = 0 if self.rng.random() < 0.1 else self.family()  # AF_UNSPEC: kept as IPv6Address
        result: Selector = self.build(
            cls, family=family, daddr=self.address(family), saddr=self.address(family), ifindex=self.int32()
        )
        return result

    def with_family(self, cls: type[Any], *names: str) -> Any:
        """A struct whose addresses (and ``xfrm_id``) are of its own ``family``."""
        family = self.family()
        given: dict[str, Any] = {"family": family}
        for name in names:
            given[name] = self.xfrm_id(family) if name == "id" else self.address(family)
        return self.build(cls, **given)

    def aevent_id(self, cls: type[AeventId]) -> AeventId:
        sa_id: UsersaId = self.value(UsersaId)
        result: AeventId = self.build(cls, sa_id=sa_id, saddr=self.address(sa_id.family))
        return result

    def acquire(self, cls: type[UserAcquire]) -> UserAcquire:
        sel: Selector = self.value(Selector)
        policy: UserpolicyInfo = self.value(UserpolicyInfo)
        family = sel.family or policy.sel.family
        result: UserAcquire = self.build(
            cls, sel=sel, policy=policy, id=self.xfrm_id(family), saddr=self.address(family)
        )
        return result

    def migrate_entry(self, cls: type[UserMigrate]) -> UserMigrate:
        old, new = self.family(), self.family()
        result: UserMigrate = self.build(
            cls, old_family=old, new_family=new, old_daddr=self.address(old), old_saddr=self.address(old),
            new_daddr=self.address(new), new_saddr=self.address(new),
        )  # fmt: skip
        return result

    def algo(self, cls: type[Algo | AlgoWithLength]) -> Algo | AlgoWithLength:
        rng = self.rng
        if rng.random() < 0.5:
            name = rng.choice(_ALGORITHM_NAMES)
        else:
            name = "".join(chr(rng.randint(1, 127)) for _ in range(self.size(63, 16)))
        nbytes = self.size(1024)
        bits = 0 if nbytes == 0 else rng.randint(8 * nbytes - 7, 8 * nbytes)
        result: Algo | AlgoWithLength = self.build(cls, name=name, key_len=bits, key=self.blob(nbytes))
        return result

    def unknown(self, cls: type[UnknownAttribute]) -> UnknownAttribute:
        number = self.rng.randrange(0x4000)
        while number in ATTRIBUTE_CLASSES:
            number = self.rng.randrange(0x4000)
        result: UnknownAttribute = self.build(cls, attr=number)
        return result

    def attribute(self) -> Attribute:
        if self.rng.random() < 0.1:
            return self.unknown(UnknownAttribute)
        result: Attribute = self.value(self.rng.choice(list(ATTRIBUTE_CLASSES.values())))
        return result

    def xfrm_message(self, max_attrs: int = 4) -> XfrmMessage:
        rng = self.rng
        mtype = MsgType(rng.choice(_XFRM_TYPES))
        cls = FIXED.get(mtype)
        attrs = tuple(self.attribute() for _ in range(rng.randrange(max_attrs + 1)))
        if mtype in (MsgType.GETSA, MsgType.GETPOLICY) and rng.random() < 0.25:  # a dump request, with filters
            return XfrmMessage(mtype, self.uint(16) | DUMP | NlFlags.REQUEST, self.uint(32), self.uint(32), None, attrs)
        flags = self.uint(16)
        if is_dump_request(mtype, flags):
            flags &= ~DUMP
        result: XfrmMessage = self.build(
            XfrmMessage, type=mtype, flags=flags, fixed=None if cls is None else self.value(cls), attrs=attrs
        )
        return result

    def error(self) -> NetlinkError:
        """As ``netlink_ack`` builds them: the whole request echoed, or none and NLM_F_CAPPED."""
        rng = self.rng
        flags = self.uint(16)
        error = rng.choice((0, 0, -errno.EINVAL, -errno.ENOENT, -errno.EEXIST, -rng.randint(1, 1 << 31)))
        extack = tuple((self.uint(16), self.blob(self.size(64))) for _ in range(rng.choice((0, 0, 1, 2))))
        given: dict[str, Any] = {}
        if flags & CAPPED:
            payload, length = b"", rng.randint(16, (1 << 32) - 1)
        elif rng.random() < 0.5:
            echoed = self.xfrm_message(2)
            length = 16 + len(echoed.payload())
            payload = echoed.encode()[16:length]
            given = {"request_type": echoed.type, "request_flags": echoed.flags}
        else:
            payload = self.blob(self.size(64))
            length = 16 + len(payload)
        result: NetlinkError = self.build(
            NetlinkError, type=NlMsgType.ERROR, flags=flags, error=error, request_length=length,
            request_payload=payload, extack=extack, **given,
        )  # fmt: skip
        return result

    def message(self) -> NetlinkMessage:
        roll = self.rng.random()
        if roll < 0.7:
            return self.xfrm_message()
        if roll < 0.85:
            return self.error()
        if roll < 0.92:
            done: NetlinkDone = self.build(NetlinkDone, type=NlMsgType.DONE, error=-self.rng.choice((0, 0, 4, 22)))
            return done
        mtype = self.rng.randrange(0x10000)
        while mtype in FIXED or mtype in ATTRIBUTES_ONLY or mtype in (NlMsgType.ERROR, NlMsgType.DONE):
            mtype = self.rng.randrange(0x10000)
        raw: RawMessage = self.build(RawMessage, type=mtype)
        return raw

    def datagram(self) -> bytes:
        count = self.rng.choice((1, 1, 1, 2, 3, 4))
        return b"".join(self.message().encode() for _ in range(count))


# --- mutations ----------------------------------------------------------------------------------------


def message_spans(data: bytes | bytearray) -> list[tuple[int, int]]:
    """Where messages seem to be, following nlmsg_len as far as it makes sense."""
    spans = []
    pos, end = 0, len(data)
    while pos + 16 <= end:
        length = _U32.unpack_from(data, pos)[0]
        if length < 16:
            break
        spans.append((pos, min(pos + length, end)))
        pos += align4(length)
    return spans


def attribute_spans(data: bytes | bytearray) -> list[tuple[int, int]]:
    """Where the attributes of XFRM messages seem to be."""
    spans = []
    for start, end in message_spans(data):
        mtype = _U16.unpack_from(data, start + 4)[0]
        if mtype not in FIXED and mtype not in ATTRIBUTES_ONLY:
            continue
        pos = start + 16
        if mtype in FIXED and end > pos:
            pos += align4(FIXED[mtype].SIZE)
        while pos + 4 <= end:
            length = _U16.unpack_from(data, pos)[0]
            if length < 4:
                break
            spans.append((pos, min(pos + length, end)))
            pos += align4(length)
    return spans


def fix_last_len(data: bytearray) -> bytearray:
    """Make the last message's nlmsg_len reach the end of the data."""
    spans = message_spans(data)
    if spans:
        start = spans[-1][0]
        _U32.pack_into(data, start, len(data) - start)
    return data


class Mutator(ByteMutator):
    trailing_max = 20

    def __init__(self, rng: Random, pool: Sequence[bytes]) -> None:
        super().__init__(rng, pool, _INTERESTING_U8)
        self.byte_ops = [
            self.bit_flips, self.overwrite, self.truncate, self.msg_len, self.attr_len, self.inner_u32,
            self.trailing, self.insert_delete,
        ]  # fmt: skip
        self.kinds = [
            ("random-bytes", self.random_bytes),
            ("framed-random", self.framed_random),
            ("bit-flip", self.on_base(self.bit_flips)),
            ("overwrite", self.on_base(self.overwrite)),
            ("truncate", self.on_base(self.truncate)),
            ("nlmsg-len", self.on_base(self.msg_len)),
            ("nla-len", self.on_base(self.attr_len)),
            ("inner-u32", self.on_base(self.inner_u32)),
            ("trailing", self.on_base(self.trailing)),
            ("insert-delete", self.on_base(self.insert_delete)),
            ("splice", self.splice),
            ("havoc", self.havoc),
        ]

    def header(self, mtype: int) -> bytearray:
        return bytearray(_HDR.pack(16, mtype, self.rng.randrange(0x10000), self.rng.randrange(8), 0))

    def random_bytes(self) -> bytearray:
        rng = self.rng
        n = rng.randrange(64) if rng.random() < 0.7 else rng.randrange(1024)
        data = bytearray(rng.randbytes(n))
        if n >= 16 and rng.random() < 0.5:  # get past the header checks now and then
            _U16.pack_into(data, 4, rng.choice((*_XFRM_TYPES, NlMsgType.ERROR, NlMsgType.DONE)))
            _U32.pack_into(data, 0, n)
        return data

    def framed_random(self) -> bytearray:
        """A plausible header; maybe a fixed struct's worth of random bytes; random attributes."""
        rng = self.rng
        mtype = rng.choice(_XFRM_TYPES)
        data = self.header(mtype)
        cls = FIXED.get(mtype)
        if cls is not None and rng.random() < 0.8:
            data += rng.randbytes(cls.SIZE) + bytes(align4(cls.SIZE) - cls.SIZE)
        for _ in range(rng.randrange(6)):
            size = rng.choice((0, 1, 4, 8, 12, 16, 24, 36, 40, 64, 68, 72, 76, 100, rng.randrange(300)))
            declared = 4 + size if rng.random() < 0.7 else rng.choice(_INTERESTING_U16)
            number = rng.randrange(40) if rng.random() < 0.9 else rng.randrange(0x10000)
            data += _U16.pack(declared) + _U16.pack(number) + rng.randbytes(size) + bytes(align4(size) - size)
        return fix_last_len(data)

    def truncate(self, data: bytearray) -> bytearray:
        del data[self.rng.randrange(len(data) + 1) :]
        if self.rng.random() < 0.6:  # keep the last nlmsg_len consistent so its body is reached
            fix_last_len(data)
        return data

    def u16(self, old: int) -> int:
        roll = self.rng.random()
        if roll < 0.4:
            return max(0, min(0xFFFF, old + self.rng.randint(-4, 4)))
        if roll < 0.8:
            return self.rng.choice(_INTERESTING_U16)
        return self.rng.randrange(0x10000)

    def u32(self, old: int) -> int:
        roll = self.rng.random()
        if roll < 0.4:
            return max(0, min(0xFFFFFFFF, old + self.rng.randint(-8, 8)))
        if roll < 0.8:
            return self.rng.choice(_INTERESTING_U32)
        return self.rng.getrandbits(32)

    def msg_len(self, data: bytearray) -> bytearray:
        spans = message_spans(data)
        if spans:
            at = self.rng.choice(spans)[0]
            _U32.pack_into(data, at, self.u32(_U32.unpack_from(data, at)[0]))
        return data

    def attr_len(self, data: bytearray) -> bytearray:
        spans = attribute_spans(data)
        if spans:
            at = self.rng.choice(spans)[0]
            _U16.pack_into(data, at, self.u16(_U16.unpack_from(data, at)[0]))
        return data

    def inner_u32(self, data: bytearray) -> bytearray:
        """A length-like field inside an attribute or a message: key bits, ctx_len, bmp_len, error..."""
        spans = [(a + 4, b) for a, b in attribute_spans(data) if b - a >= 8]
        spans += [(a + 16, b) for a, b in message_spans(data) if b - a >= 20]
        if spans:
            start, end = self.rng.choice(spans)
            at = self.rng.randrange(start, end - 3)
            if self.rng.random() < 0.5:
                _U32.pack_into(data, at, self.u32(_U32.unpack_from(data, at)[0]))
            else:
                _U16.pack_into(data, at, self.u16(_U16.unpack_from(data, at)[0]))
        return data

    def insert_delete(self, data: bytearray) -> bytearray:
        rng = self.rng
        at = rng.randrange(len(data) + 1)
        n = rng.choice((1, 2, 4, 4, 8, 16))
        if rng.random() < 0.5:
            data[at:at] = rng.randbytes(n)
        else:
            del data[at : at + n]
        if rng.random() < 0.7:
            fix_last_len(data)
        return data

    def splice(self) -> bytearray:
        """Attributes from several datagrams under one XFRM header, or whole messages from several."""
        rng = self.rng
        donors = [rng.choice(self.pool) for _ in range(rng.randint(2, 3))]
        if rng.random() < 0.5:
            messages = [bytes(d[a : align4(b)]) for d in donors for a, b in message_spans(d)]
            return bytearray(b"".join(rng.choice(messages) for _ in range(rng.randint(1, 4))))
        pieces = [bytes(d[a:b]) + bytes(align4(b) - b) for d in donors for a, b in attribute_spans(d)]
        mtype = rng.choice(_XFRM_TYPES)
        data = self.header(mtype)
        cls = FIXED.get(mtype)
        if cls is not None:
            data += self.rng.choice((bytes(cls.SIZE), rng.randbytes(cls.SIZE))) + bytes(align4(cls.SIZE) - cls.SIZE)
        for _ in range(rng.randrange(min(len(pieces), 8) + 1)):
            data += rng.choice(pieces)
        return fix_last_len(data)


# --- the run ---------------------------------------------------------------------------------------


def check(data: bytes) -> DecodeError | None:
    """The contract for one input; raises ``AssertionError`` (or whatever escaped) if broken."""
    try:
        messages = decode(data)
    except DecodeError as exc:
        if not 0 <= exc.offset <= len(data):
            raise AssertionError(f"DecodeError offset {exc.offset} outside the {len(data)}-byte input") from exc
        if exc.errno not in _ERRNOS:
            raise AssertionError(f"DecodeError errno {exc.errno} is neither EINVAL nor EMSGSIZE") from exc
        return exc
    wire = b"".join(m.encode() for m in messages)
    again = decode(wire)
    if again != messages:
        raise AssertionError(f"re-decoded messages differ:\n  {messages!r}\n  {again!r}")
    if b"".join(m.encode() for m in again) != wire:
        raise AssertionError("re-encoding is not stable")
    return None


def run(cases: int, seed: int, pool_size: int) -> int:
    rng = Random(seed)
    started = time.perf_counter()
    maker = Maker(rng)
    pool = [maker.datagram() for _ in range(pool_size)]
    for wire in pool:  # the pool itself must round-trip
        if check(wire) is not None:
            print(f"a valid datagram failed to decode: {wire.hex()}", file=sys.stderr)
            return 1
    mutator = Mutator(rng, pool)
    print(f"seed {seed}: {pool_size} valid datagrams built in {time.perf_counter() - started:.1f} s", flush=True)

    return run_cases(
        mutator, check, cases, seed, "no exception other than DecodeError escaped; every decoded input round-tripped"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run(*parse_arguments(__doc__, argv, "datagrams"))


if __name__ == "__main__":
    sys.exit(main())
