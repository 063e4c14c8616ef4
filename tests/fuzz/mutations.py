"""What the three fuzzers share: random values from declared field widths, byte-level
mutations of a pool of valid messages, the choice of a case, the run with its report,
and the command line. Each fuzzer adds the values and mutations that know its format
(length fields, extension or option spans) and its own contract check.

Every choice comes from the one ``random.Random(seed)``, in a fixed order, so a seed
replays a run case for case.
"""

from __future__ import annotations

import argparse
import errno
import re
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from random import Random
from typing import Any, Protocol

from pfmigrate._value import FieldSpec, field_specs

Make = Callable[[], bytearray]
Mutation = Callable[[bytearray], bytearray]


def random_uint(rng: Random, bits: int) -> int:
    """An unsigned number of ``bits``: often 0, 1 or the top, often small, else any."""
    top = (1 << bits) - 1
    roll = rng.random()
    if roll < 0.15:
        return rng.choice((0, 1, top))
    if roll < 0.5:
        return rng.randrange(min(top, 300) + 1)
    return rng.getrandbits(bits)


class ValueMaker:
    """Random valid values built from their classes' declared fields; ``special`` holds
    the classes (or their bases) that need rules of their own."""

    def __init__(self, rng: Random) -> None:
        self.rng = rng
        self.members: dict[type, list[int]] = {}
        self.special: dict[type, Callable[[Any], Any]] = {}

    def size(self, limit: int, usual: int = 48) -> int:
        """Mostly small, sometimes at or near ``limit``."""
        if self.rng.random() < 0.03:
            return limit - self.rng.randrange(min(limit, 8) + 1)
        return self.rng.randrange(min(limit, usual) + 1)

    def blob(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def uint(self, bits: int) -> int:
        return random_uint(self.rng, bits)

    def field(self, spec: FieldSpec) -> Any:
        if spec.kind == "uint":
            return self.uint(spec.bits)
        if spec.kind in ("enum", "flag"):  # known members, and any other number of the width
            members = self.members.get(spec.cls)
            if members is None:
                members = self.members[spec.cls] = [int(m) for m in spec.cls]
            return self.rng.choice(members) if self.rng.random() < 0.5 else self.uint(spec.bits)
        if spec.kind == "bytes":
            return self.blob(self.size(64))
        if spec.kind == "tuple":
            return tuple(self.value(spec.cls) for _ in range(self.rng.randrange(4)))
        if spec.kind == "value":
            return self.value(spec.cls)
        raise TypeError(f"no rule for field {spec.name} of kind {spec.kind}")

    def build(self, cls: type[Any], **given: Any) -> Any:
        kwargs = {s.name: given[s.name] if s.name in given else self.field(s) for s in field_specs(cls)}
        return cls(**kwargs)

    def value(self, cls: type[Any]) -> Any:
        for base in cls.__mro__:
            special = self.special.get(base)
            if special is not None:
                return special(cls)
        return self.build(cls)


class ByteMutator:
    """Mutations that know nothing of the format; ``interesting`` are byte values worth
    writing more often than chance would (lengths, types, edges)."""

    trailing_max = 16  # at most this many bytes appended by ``trailing``

    def __init__(self, rng: Random, pool: Sequence[bytes], interesting: Sequence[int]) -> None:
        self.rng = rng
        self.pool = pool
        self.interesting = interesting
        self.byte_ops: list[Mutation] = []  # what ``havoc`` stacks
        self.kinds: list[tuple[str, Make]] = []  # the cases, by name

    def base(self) -> bytearray:
        return bytearray(self.rng.choice(self.pool))

    def on_base(self, mutation: Mutation) -> Make:
        """A case: ``mutation`` applied to a message from the pool."""
        return lambda: mutation(self.base())

    def bit_flips(self, data: bytearray) -> bytearray:
        if data:
            for _ in range(self.rng.randint(1, 8)):
                bit = self.rng.randrange(8 * len(data))
                data[bit >> 3] ^= 1 << (bit & 7)
        return data

    def overwrite(self, data: bytearray) -> bytearray:
        rng = self.rng
        if data:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = (
                    rng.choice(self.interesting) if rng.random() < 0.5 else rng.randrange(256)
                )
        return data

    def trailing(self, data: bytearray) -> bytearray:
        data += self.rng.randbytes(self.rng.randint(1, self.trailing_max))
        return data

    def splice(self) -> bytearray:
        """Pieces of several pool messages in one; each format says what a piece is."""
        raise NotImplementedError

    def havoc(self) -> bytearray:
        data = self.splice() if self.rng.random() < 0.3 else self.base()
        for _ in range(self.rng.randint(2, 4)):
            data = self.rng.choice(self.byte_ops)(data)
        return data

    def case(self) -> tuple[str, bytes]:
        name, make = self.rng.choice(self.kinds)
        return name, bytes(make())


class Refusal(Protocol):
    """What the fuzzers' decode errors tell: why, and as which errno."""

    reason: str
    errno: int


def run_cases(mutator: ByteMutator, check: Callable[[bytes], Refusal | None], cases: int, seed: int, done: str) -> int:
    """Try ``cases`` inputs from ``mutator`` on ``check`` (``None``: decoded and round-tripped;
    a refusal; or any exception, which is a bug: the input, seed and case are printed and
    the run ends with 1), then print what happened. ``done`` is the last line of a good run."""
    reasons: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    kinds_ok: Counter[str] = Counter()
    errnos: Counter[int] = Counter()
    decoded = 0
    started = time.perf_counter()
    for i in range(cases):
        kind, data = mutator.case()
        kinds[kind] += 1
        try:
            refused = check(data)
        except Exception:
            print(f"FAILED at case {i} ({kind}), seed {seed}", file=sys.stderr)
            print(f"input ({len(data)} bytes): {data.hex()}", file=sys.stderr)
            traceback.print_exc()
            return 1
        if refused is None:
            decoded += 1
            kinds_ok[kind] += 1
        else:
            reasons[without_numbers(refused.reason)] += 1
            errnos[refused.errno] += 1
        if (i + 1) % 250_000 == 0:
            print(f"  {i + 1:>10,} cases, {time.perf_counter() - started:6.1f} s", flush=True)
    elapsed = time.perf_counter() - started

    print(f"cases:        {cases:,} (seed {seed})")
    print(f"decoded ok:   {decoded:,} ({100 * decoded / max(cases, 1):.1f} %), each re-encoded and re-decoded equal")
    errno_text = ", ".join(f"{errno.errorcode[e]} {n:,}" for e, n in errnos.most_common())
    print(f"DecodeError:  {cases - decoded:,} ({errno_text})")
    print_tail(reasons, 10, kinds, kinds_ok, elapsed, cases, done)
    return 0


def print_tail(
    reasons: Counter[str], most: int, kinds: Counter[str], kinds_ok: Counter[str], elapsed: float, cases: int, done: str
) -> None:
    """The end of every fuzzer's report: its commonest refusals, its cases by kind, its speed."""
    print("top DecodeError reasons:")
    for reason, n in reasons.most_common(most):
        print(f"  {n:>9,}  {reason}")
    print("cases by kind (decoded ok / all):")
    for kind, n in sorted(kinds.items()):
        print(f"  {kind:<14} {kinds_ok[kind]:>9,} / {n:,}")
    print(f"elapsed:      {elapsed:.1f} s ({cases / elapsed if elapsed else 0:,.0f} cases/s)")
    print(done)


def without_numbers(reason: str) -> str:
    """A decode error's reason without its numbers, so that errors of one kind count together."""
    return re.sub(r"\b\d+\b", "N", reason)[:72]


def parse_arguments(doc: str | None, argv: Sequence[str] | None, pooled: str) -> tuple[int, int, int]:
    """``(cases, seed, pool size)`` from the command line; a seed is chosen (and later
    printed) when none is given."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--cases", type=int, default=1_000_000, help="inputs to try (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: chosen and printed)")
    parser.add_argument("--pool", type=int, default=2000, help=f"valid {pooled} to mutate (default 2000)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else Random().randrange(1 << 32)
    return args.cases, seed, args.pool
