"""Fuzz the PF_KEY v2 decoder with random and mutated messages (not collected by pytest).

The contract (h11's ``fuzz/afl-server.py`` contract, for PF_KEY): for any bytes,
``pfmigrate.pfkey.decode`` either raises ``DecodeError`` (offset inside the input, errno
EINVAL or EMSGSIZE) or returns a message that re-encodes and decodes back to an equal one.
Anything else is a bug: the script prints the input as hex, the seed and the case number,
and exits 1.

Inputs come from ``random.Random(seed)`` (not Hypothesis, for speed): a pool of valid
messages built from the declared field widths, then per case one of: random bytes,
random extensions under a plausible header, bit flips, byte overwrites, truncation,
sadb_msg_len / extension length / inner u16 edits, trailing bytes, extension splicing
between messages, or a stack of several of these.

    python tests/fuzz/fuzz_pfkey.py --cases 1000000 --seed 1
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, when run as a script

from pfmigrate.pfkey import (
    AF_INET,
    Address,
    DecodeError,
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
    decode,
)
from pfmigrate.pfkey.constants import SADB_EXT_MAX
from pfmigrate.pfkey.extensions import EXTENSION_CLASSES
from tests.fuzz.mutations import ByteMutator, ValueMaker, parse_arguments, run_cases

_HDR = struct.Struct("=BBBBHHII")
_U16 = struct.Struct("=H")
_ERRNOS = (errno.EINVAL, errno.EMSGSIZE)
_INTERESTING_U8 = (0, 1, 2, 3, 7, 8, 10, 15, 16, 17, 24, 25, 26, 27, 32, 33, 127, 128, 129, 254, 255)
_INTERESTING_U16 = (0, 1, 2, 3, 4, 5, 8, 10, 15, 16, 17, 28, 32, 47, 48, 55, 56, 72, 4096, 4097, 0x7FFF, 0xFFFF)


# --- valid messages from the declared widths -----------------------------------------------------


class Maker(ValueMaker):
    """Random valid values; the same rules as ``tests/strategies.py``, without Hypothesis."""

    def __init__(self, rng: Random) -> None:
        super().__init__(rng)
        self.special = {
            Address: self.address,
            Key: self.key,
            Identity: self.identity,
            KMPrivate: lambda cls: self.build(cls, data=self.blob(8 * self.rng.randrange(8))),
            SecCtx: lambda cls: self.build(cls, context=self.blob(self.size(4096))),
            Filter: lambda cls: self.build(cls, src=self.blob(16), dst=self.blob(16)),
            Sensitivity: self.sensitivity,
            UnknownExtension: self.unknown,
            IPsecRequest: self.request,
            KMAddress: self.kmaddress,
        }

    def sockaddr(self, family: int | None = None) -> SockAddr:
        rng = self.rng
        v4 = family == AF_INET if family is not None else rng.random() < 0.5
        port = self.uint(16)
        if v4:
            return SockAddr(IPv4Address(self.blob(4)), port)
        return SockAddr(IPv6Address(self.blob(16)), port, self.uint(32), self.uint(32))

    def address(self, cls: type[Address]) -> Address:
        sockaddr = self.sockaddr()
        result: Address = self.build(
            cls, address=sockaddr, prefixlen=self.rng.randrange(sockaddr.address.max_prefixlen + 1)
        )
        return result

    def key(self, cls: type[Key]) -> Key:
        nbytes = self.size(8192)
        bits = 0 if nbytes == 0 else self.rng.randint(8 * nbytes - 7, min(8 * nbytes, 0xFFFF))
        result: Key = self.build(cls, bits=bits, key=self.blob(nbytes))
        return result

    def identity(self, cls: type[Identity]) -> Identity:
        result: Identity = self.build(cls, data=self.blob(self.size(64)).rstrip(b"\0"))
        return result

    def sensitivity(self, cls: type[Sensitivity]) -> Sensitivity:
        def bitmap() -> tuple[int, ...]:
            return tuple(self.uint(64) for _ in range(self.size(255, 4)))

        result: Sensitivity = self.build(cls, sens_bitmap=bitmap(), integ_bitmap=bitmap())
        return result

    def unknown(self, cls: type[UnknownExtension]) -> UnknownExtension:
        exttype = self.rng.randint(SADB_EXT_MAX + 1, 0xFFFF)
        result: UnknownExtension = self.build(cls, exttype=exttype, data=self.blob(8 * self.rng.randrange(6) + 4))
        return result

    def request(self, cls: type[IPsecRequest]) -> IPsecRequest:
        src = dst = None
        if self.rng.random() < 0.6:
            src = self.sockaddr()
            dst = self.sockaddr(src.family)
        result: IPsecRequest = self.build(cls, src=src, dst=dst)
        return result

    def kmaddress(self, cls: type[KMAddress]) -> KMAddress:
        local = self.sockaddr()
        result: KMAddress = self.build(cls, local=local, remote=self.sockaddr(local.family))
        return result

    def message(self) -> Message:
        rng = self.rng
        numbers = rng.sample(sorted(EXTENSION_CLASSES), rng.randrange(9))
        exts = [self.value(EXTENSION_CLASSES[n]) for n in numbers]
        exts += [self.value(UnknownExtension) for _ in range(rng.choice((0, 0, 0, 1, 2)))]
        rng.shuffle(exts)
        result: Message = self.build(Message, extensions=tuple(exts))
        return result


# --- mutations ----------------------------------------------------------------------------------------


def ext_spans(data: bytes | bytearray) -> list[tuple[int, int]]:
    """Where extensions seem to be, following length fields as far as they make sense."""
    spans = []
    pos, end = _HDR.size, len(data)
    while pos + 4 <= end:
        units = _U16.unpack_from(data, pos)[0]
        if units == 0:
            break
        spans.append((pos, min(pos + 8 * units, end)))
        pos += 8 * units
    return spans


def fix_len(data: bytearray) -> bytearray:
    if len(data) >= _HDR.size:
        _U16.pack_into(data, 4, len(data) // 8)
    return data


class Mutator(ByteMutator):
    trailing_max = 7

    def __init__(self, rng: Random, pool: Sequence[bytes]) -> None:
        super().__init__(rng, pool, _INTERESTING_U8)
        self.byte_ops = [
            self.bit_flips, self.overwrite, self.truncate, self.msg_len, self.ext_len, self.inner_u16,
            self.trailing, self.insert_delete,
        ]  # fmt: skip
        self.kinds = [
            ("random-bytes", self.random_bytes),
            ("framed-random", self.framed_random),
            ("bit-flip", self.on_base(self.bit_flips)),
            ("overwrite", self.on_base(self.overwrite)),
            ("truncate", self.on_base(self.truncate)),
            ("msg-len", self.on_base(self.msg_len)),
            ("ext-len", self.on_base(self.ext_len)),
            ("inner-u16", self.on_base(self.inner_u16)),
            ("trailing", self.on_base(self.trailing)),
            ("splice", self.splice),
            ("havoc", self.havoc),
        ]

    def random_bytes(self) -> bytearray:
        rng = self.rng
        n = rng.randrange(64) if rng.random() < 0.7 else rng.randrange(1024)
        data = bytearray(rng.randbytes(n))
        if n >= _HDR.size and rng.random() < 0.5:  # get past the header checks now and then
            data[0] = 2
            _U16.pack_into(data, 6, 0)
            fix_len(data)
        return data

    def framed_random(self) -> bytearray:
        rng = self.rng
        data = bytearray(_HDR.pack(2, rng.randrange(256), 0, rng.randrange(256), 0, 0, 0, 0))
        for _ in range(rng.randrange(7)):
            units = rng.randint(1, 12)
            declared = units if rng.random() < 0.7 else rng.randrange(16)
            exttype = rng.randrange(31) if rng.random() < 0.9 else rng.randrange(0x10000)
            data += _U16.pack(declared) + _U16.pack(exttype) + rng.randbytes(8 * units - 4)
        return fix_len(data)

    def truncate(self, data: bytearray) -> bytearray:
        rng = self.rng
        del data[rng.randrange(len(data) + 1) :]
        if rng.random() < 0.6:  # keep sadb_msg_len consistent so the extensions are reached
            del data[len(data) - len(data) % 8 :]
            fix_len(data)
        return data

    def u16(self, old: int) -> int:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4:
            return max(0, min(0xFFFF, old + rng.randint(-3, 3)))
        if roll < 0.8:
            return rng.choice(_INTERESTING_U16)
        return rng.randrange(0x10000)

    def msg_len(self, data: bytearray) -> bytearray:
        if len(data) >= _HDR.size:
            _U16.pack_into(data, 4, self.u16(_U16.unpack_from(data, 4)[0]))
        return data

    def ext_len(self, data: bytearray) -> bytearray:
        spans = ext_spans(data)
        if spans:
            at = self.rng.choice(spans)[0]
            _U16.pack_into(data, at, self.u16(_U16.unpack_from(data, at)[0]))
        return data

    def inner_u16(self, data: bytearray) -> bytearray:
        """A length-like field inside an extension: key bits, ctx_len, a request's length, a family..."""
        spans = [s for s in ext_spans(data) if s[1] - s[0] >= 6]
        if spans:
            start, end = self.rng.choice(spans)
            at = self.rng.randrange(start + 2, end - 1)
            _U16.pack_into(data, at, self.u16(_U16.unpack_from(data, at)[0]))
        return data

    def insert_delete(self, data: bytearray) -> bytearray:
        rng = self.rng
        at = rng.randrange(len(data) + 1)
        n = rng.choice((1, 4, 8, 8, 16))
        if rng.random() < 0.5:
            data[at:at] = rng.randbytes(n)
        else:
            del data[at : at + n]
        if rng.random() < 0.7:
            fix_len(data)
        return data

    def splice(self) -> bytearray:
        """Extensions taken from several messages (duplicates possible) under one header."""
        rng = self.rng
        donors = [self.rng.choice(self.pool) for _ in range(rng.randint(2, 3))]
        pieces = [bytes(d[a:b]) for d in donors for a, b in ext_spans(d)]
        data = bytearray(donors[0][: _HDR.size])
        if pieces:
            for _ in range(rng.randrange(min(len(pieces), 10) + 1)):
                data += rng.choice(pieces)
        return fix_len(data)


# --- the run ---------------------------------------------------------------------------------------


def check(data: bytes) -> DecodeError | None:
    """The contract for one input; raises ``AssertionError`` (or whatever escaped) if broken."""
    try:
        message = decode(data)
    except DecodeError as exc:
        if not 0 <= exc.offset <= len(data):
            raise AssertionError(f"DecodeError offset {exc.offset} outside the {len(data)}-byte input") from exc
        if exc.errno not in _ERRNOS:
            raise AssertionError(f"DecodeError errno {exc.errno} is neither EINVAL nor EMSGSIZE") from exc
        return exc
    wire = message.encode()
    again = decode(wire)
    if again != message:
        raise AssertionError(f"re-decoded message differs:\n  {message!r}\n  {again!r}")
    if again.encode() != wire:
        raise AssertionError("re-encoding is not stable")
    return None


def run(cases: int, seed: int, pool_size: int) -> int:
    rng = Random(seed)
    started = time.perf_counter()
    maker = Maker(rng)
    pool = [maker.message().encode() for _ in range(pool_size)]
    for wire in pool:  # the pool itself must round-trip
        if check(wire) is not None:
            print(f"a valid message failed to decode: {wire.hex()}", file=sys.stderr)
            return 1
    mutator = Mutator(rng, pool)
    print(f"seed {seed}: {pool_size} valid messages built in {time.perf_counter() - started:.1f} s", flush=True)

    return run_cases(mutator, check, cases, seed, "no exception other than DecodeError escaped")


def main(argv: Sequence[str] | None = None) -> int:
    return run(*parse_arguments(__doc__, argv, "messages"))


if __name__ == "__main__":
    sys.exit(main())
