"""Fuzz the Mobility Header decoder with random and mutated messages (not collected by pytest).

The contract: for any bytes, ``pfmigrate.mip6.decode`` either raises ``DecodeError``
(offset inside the input) or returns a message that re-encodes and decodes back to an
equal one, byte-stable from then on. Given addresses, it raises ``DecodeError`` at
offset 4 exactly when the checksum is wrong, and otherwise answers as without them.
Anything else is a bug: the script prints the input as hex, the seed and the case
number, and exits 1.

Inputs come from ``random.Random(seed)`` (not Hypothesis, for speed): a pool of valid
messages built from the declared field widths, then per case one of: random bytes,
random options under a plausible header, bit flips, byte overwrites, truncation, Header
Len, Option Length and option type edits, inserted or deleted bytes, trailing bytes,
options spliced between messages, options packed without alignment up to the size
limit, or a stack of several of these. A third of the cases
also carry addresses, half of those with the checksum made right after the mutation.

    python tests/fuzz/fuzz_mip6.py --cases 1000000 --seed 1
"""

from __future__ import annotations

import re
import sys
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from ipaddress import IPv6Address
from pathlib import Path
from random import Random
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, when run as a script

from pfmigrate._value import field_specs
from pfmigrate.mip6 import (
    BindingAuthorizationData,
    DecodeError,
    Message,
    MHType,
    MobileNetworkPrefix,
    OptType,
    UnknownMessage,
    UnknownOption,
    checksum,
    checksum_ok,
    decode,
)
from pfmigrate.mip6.messages import MESSAGE_CLASSES
from pfmigrate.mip6.options import OPTION_CLASSES
from tests.fuzz.mutations import ByteMutator, parse_arguments, print_tail, random_uint

_INTERESTING_U8 = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 15, 16, 17, 18, 19, 59, 127, 128, 135, 254, 255)
#: Options that may come anywhere: all but Binding Authorization Data, which comes last.
_MIDDLE_OPTIONS = [cls for cls in OPTION_CLASSES.values() if cls is not BindingAuthorizationData]


# --- valid messages from the declared widths -----------------------------------------------------


class Maker:
    """Random valid messages; the same rules as ``tests/mip6_strategies.py``, without Hypothesis."""

    def __init__(self, rng: Random) -> None:
        self.rng = rng

    def uint(self, bits: int) -> int:
        return random_uint(self.rng, bits)

    def blob(self, limit: int = 255) -> bytes:
        n = limit - self.rng.randrange(8) if self.rng.random() < 0.03 else self.rng.randrange(min(limit, 32) + 1)
        return self.rng.randbytes(n)

    def address(self) -> IPv6Address:
        return IPv6Address(self.rng.randbytes(16))

    def build(self, cls: type[Any], **given: Any) -> Any:
        kwargs = {}
        for spec in field_specs(cls):
            if spec.name in given:
                kwargs[spec.name] = given[spec.name]
            elif spec.kind in ("uint", "enum", "flag"):
                kwargs[spec.name] = self.uint(spec.bits)
            elif spec.name in ("cookie", "keygen_token"):
                kwargs[spec.name] = self.rng.randbytes(8)
            elif spec.kind == "bytes":
                kwargs[spec.name] = self.blob()
            elif spec.cls is IPv6Address:
                kwargs[spec.name] = self.address()
            else:
                raise TypeError(f"no rule for {cls.__name__}.{spec.name}")
        return cls(**kwargs)

    def option(self) -> Any:
        rng = self.rng
        if rng.random() < 0.2:
            return self.build(UnknownOption, opt_type=rng.randint(2 + len(OPTION_CLASSES), 255))
        cls = rng.choice(_MIDDLE_OPTIONS)
        if cls is MobileNetworkPrefix:
            return self.build(cls, prefixlen=rng.randint(0, 128))
        return self.build(cls)

    def message(self) -> Message:
        rng = self.rng
        if rng.random() < 0.1:
            size = 8 * rng.randrange(1, 12) - 6
            return UnknownMessage(MHType.of(rng.randint(len(MESSAGE_CLASSES), 255)), rng.randbytes(size))
        options = [self.option() for _ in range(rng.choice((0, 0, 1, 1, 2, 3, 5)))]
        if rng.random() < 0.2:
            options.append(self.build(BindingAuthorizationData))
        cls = MESSAGE_CLASSES[rng.randrange(len(MESSAGE_CLASSES))]
        message: Message = self.build(cls, options=tuple(options))
        return message


# --- mutations ------------------------------------------------------------------------------------------


def option_spans(data: bytes | bytearray) -> list[tuple[int, int]]:
    """Where options seem to be in a message, following lengths as far as they make sense."""
    if len(data) < 8 or data[2] not in MESSAGE_CLASSES:
        return []
    pos, end = 6 + MESSAGE_CLASSES[data[2]].fixed.size, len(data)
    spans = []
    while pos + 2 <= end:
        size = 1 if data[pos] == 0 else 2 + data[pos + 1]
        spans.append((pos, min(pos + size, end)))
        pos += size
    return spans


def fix_header_len(data: bytearray) -> bytearray:
    if len(data) >= 8:
        data[1] = min(len(data) // 8 - 1, 255)
    return data


class Mutator(ByteMutator):
    def __init__(self, rng: Random, pool: Sequence[bytes]) -> None:
        super().__init__(rng, pool, _INTERESTING_U8)
        self.byte_ops = [
            self.bit_flips, self.overwrite, self.truncate, self.header_len, self.option_len, self.option_type,
            self.insert_delete, self.trailing,
        ]  # fmt: skip
        self.kinds = [
            ("random-bytes", self.random_bytes),
            ("framed-random", self.framed_random),
            ("bit-flip", self.on_base(self.bit_flips)),
            ("overwrite", self.on_base(self.overwrite)),
            ("truncate", self.on_base(self.truncate)),
            ("header-len", self.on_base(self.header_len)),
            ("option-len", self.on_base(self.option_len)),
            ("option-type", self.on_base(self.option_type)),
            ("insert-delete", self.on_base(self.insert_delete)),
            ("trailing", self.on_base(self.trailing)),
            ("splice", self.splice),
            ("dense", self.dense),
            ("havoc", self.havoc),
        ]

    def random_bytes(self) -> bytearray:
        rng = self.rng
        data = bytearray(rng.randbytes(rng.randrange(48) if rng.random() < 0.7 else rng.randrange(600)))
        if len(data) >= 8 and rng.random() < 0.6:  # get past the header checks now and then
            data[0] = 59
            data[2] = rng.randrange(10)
            del data[len(data) - len(data) % 8 :]
            fix_header_len(data)
        return data

    def framed_random(self) -> bytearray:
        """A known message's fixed part, then random options (known types mostly)."""
        rng = self.rng
        mh_type = rng.randrange(len(MESSAGE_CLASSES))
        data = bytearray([59, 0, mh_type, 0, 0, 0]) + rng.randbytes(MESSAGE_CLASSES[mh_type].fixed.size)
        for _ in range(rng.randrange(6)):
            opt_type = rng.randrange(9) if rng.random() < 0.9 else rng.randrange(256)
            size = rng.choice((0, 1, 2, 3, 4, 12, 16, 17, 18, 19)) if rng.random() < 0.8 else rng.randrange(256)
            declared = size if rng.random() < 0.8 else rng.randrange(256)
            data += bytes([opt_type, declared]) + rng.randbytes(size)
        data += bytes(-len(data) % 8)
        return fix_header_len(data)

    def truncate(self, data: bytearray) -> bytearray:
        del data[self.rng.randrange(len(data) + 1) :]
        if self.rng.random() < 0.6:  # keep Header Len consistent so the options are reached
            del data[len(data) - len(data) % 8 :]
            fix_header_len(data)
        return data

    def u8(self, old: int) -> int:
        roll = self.rng.random()
        if roll < 0.4:
            return max(0, min(255, old + self.rng.randint(-3, 3)))
        return self.rng.choice(_INTERESTING_U8) if roll < 0.8 else self.rng.randrange(256)

    def header_len(self, data: bytearray) -> bytearray:
        if len(data) >= 2:
            data[1] = self.u8(data[1])
        return data

    def option_len(self, data: bytearray) -> bytearray:
        spans = [s for s in option_spans(data) if s[1] - s[0] >= 2]
        if spans:
            at = self.rng.choice(spans)[0] + 1
            data[at] = self.u8(data[at])
        return data

    def option_type(self, data: bytearray) -> bytearray:
        spans = option_spans(data)
        if spans:
            at = self.rng.choice(spans)[0]
            data[at] = self.rng.randrange(9) if self.rng.random() < 0.8 else self.rng.randrange(256)
        return data

    def insert_delete(self, data: bytearray) -> bytearray:
        rng = self.rng
        at = rng.randrange(len(data) + 1)
        n = rng.choice((1, 2, 4, 8, 8, 16))
        if rng.random() < 0.5:
            data[at:at] = rng.randbytes(n)
        else:
            del data[at : at + n]
        if rng.random() < 0.7:
            fix_header_len(data)
        return data

    def splice(self) -> bytearray:
        """One message's fixed part with options taken from several, any order."""
        rng = self.rng
        donors = [rng.choice(self.pool) for _ in range(rng.randint(2, 3))]
        pieces = [bytes(d[a:b]) for d in donors for a, b in option_spans(d) if d[a] > OptType.PADN]
        first = donors[0]
        fixed = MESSAGE_CLASSES[first[2]].fixed.size if first[2] in MESSAGE_CLASSES else 2
        data = bytearray(first[: 6 + fixed])
        for _ in range(rng.randrange(min(len(pieces), 8) + 1)):
            data += rng.choice(pieces)
        data += bytes(-len(data) % 8)
        return fix_header_len(data)

    def dense(self) -> bytearray:
        """Options packed back to back without alignment, up to the 2048-octet limit: the
        decoder must refuse what would not fit once aligned."""
        rng = self.rng
        data = bytearray([59, 0, 5, 0, 0, 0]) + rng.randbytes(6)  # a Binding Update
        pieces = [
            bytes(d[a:b]) for d in self.pool[:200] for a, b in option_spans(d)
            if d[a] > OptType.PADN and d[a] != OptType.BINDING_AUTHORIZATION_DATA
        ]  # fmt: skip
        limit = rng.choice((2048, 2048, rng.randrange(16, 2049)))
        while pieces:
            piece = rng.choice(pieces)
            if len(data) + len(piece) > limit:
                break
            data += piece
        data += bytes(-len(data) % 8)
        return fix_header_len(data)


# --- the run ---------------------------------------------------------------------------------------------


def normalise(reason: str) -> str:
    """A reason without its numbers and addresses, so that errors of one kind count together."""
    return re.sub(r"\b(0x[0-9a-f]+|\d+)\b", "N", re.sub(r"for \S+ -> \S+", "for S -> D", reason))[:72]


def check(data: bytes, addresses: tuple[IPv6Address, IPv6Address] | None) -> DecodeError | Message:
    """The contract for one input; raises ``AssertionError`` (or whatever escaped) if broken."""
    try:
        message = decode(data)
    except DecodeError as exc:
        if not 0 <= exc.offset <= len(data):
            raise AssertionError(f"DecodeError offset {exc.offset} outside the {len(data)}-byte input") from exc
        plain: DecodeError | Message = exc
    else:
        wire = message.encode(None, None)
        again = decode(wire)
        if again != message:
            raise AssertionError(f"re-decoded message differs:\n  {message!r}\n  {again!r}")
        if again.encode(None, None) != wire:
            raise AssertionError("re-encoding is not stable")
        plain = message
    if addresses is None:
        return plain
    src, dst = addresses
    try:
        checked: DecodeError | Message = decode(data, src, dst)
    except DecodeError as exc:
        checked = exc
    if len(data) >= 8 and not checksum_ok(data, src, dst):
        if not isinstance(checked, DecodeError) or checked.offset != 4:
            raise AssertionError(f"a wrong checksum gave {checked!r}, not a DecodeError at offset 4")
    elif (
        isinstance(checked, DecodeError) != isinstance(plain, DecodeError)
        or (isinstance(checked, DecodeError) and isinstance(plain, DecodeError) and checked.offset != plain.offset)
        or (not isinstance(checked, DecodeError) and checked != plain)
    ):
        raise AssertionError(f"with a right checksum decode gave {checked!r}, without addresses {plain!r}")
    return checked


def with_checksum(data: bytes, src: IPv6Address, dst: IPv6Address) -> bytes:
    if len(data) < 6:
        return data
    value = checksum(data, src, dst)
    return data[:4] + value.to_bytes(2, "big") + data[6:]


def run(cases: int, seed: int, pool_size: int) -> int:
    rng = Random(seed)
    started = time.perf_counter()
    maker = Maker(rng)
    pool = [maker.message().encode(None, None) for _ in range(pool_size)]
    for wire in pool:  # the pool itself must round-trip
        if not isinstance(check(wire, None), Message) or decode(wire).encode(None, None) != wire:
            print(f"a valid message failed to round-trip: {wire.hex()}", file=sys.stderr)
            return 1
    mutator = Mutator(rng, pool)
    print(f"seed {seed}: {pool_size} valid messages built in {time.perf_counter() - started:.1f} s", flush=True)

    reasons: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    kinds_ok: Counter[str] = Counter()
    decoded = canonical = with_addresses = checksum_refused = 0
    started = time.perf_counter()
    for i in range(cases):
        kind, data = mutator.case()
        kinds[kind] += 1
        addresses = None
        if rng.random() < 1 / 3:
            addresses = (maker.address(), maker.address())
            with_addresses += 1
            if rng.random() < 0.5:
                data = with_checksum(data, *addresses)
        try:
            outcome = check(data, addresses)
        except Exception:
            print(f"FAILED at case {i} ({kind}), seed {seed}", file=sys.stderr)
            print(f"input ({len(data)} bytes): {data.hex()}", file=sys.stderr)
            if addresses:
                print(f"addresses: {addresses[0]} -> {addresses[1]}", file=sys.stderr)
            traceback.print_exc()
            return 1
        if isinstance(outcome, DecodeError):
            reasons[normalise(outcome.reason)] += 1
            checksum_refused += outcome.offset == 4 and addresses is not None
        else:
            decoded += 1
            kinds_ok[kind] += 1
            wire = outcome.encode(None, None)
            canonical += wire[:4] + wire[6:] == data[:4] + data[6:]
        if (i + 1) % 250_000 == 0:
            print(f"  {i + 1:>10,} cases, {time.perf_counter() - started:6.1f} s", flush=True)
    elapsed = time.perf_counter() - started

    print(f"cases:        {cases:,} (seed {seed}); {with_addresses:,} with addresses")
    print(f"decoded ok:   {decoded:,} ({100 * decoded / max(cases, 1):.1f} %), each re-encoded and re-decoded equal;")
    print(f"              {canonical:,} of them re-encoded to the same bytes (canonical padding, zero reserved)")
    print(f"DecodeError:  {cases - decoded:,}, of which {checksum_refused:,} for a wrong checksum")
    print_tail(reasons, 16, kinds, kinds_ok, elapsed, cases, "no exception other than DecodeError escaped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(*parse_arguments(__doc__, argv, "messages"))


if __name__ == "__main__":
    sys.exit(main())
