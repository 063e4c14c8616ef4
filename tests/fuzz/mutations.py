"""What the three fuzzers share: byte-level mutations of a pool of valid messages, the
choice of a case, and the command line. Each fuzzer adds the mutations that know its
format (length fields, extension or option spans) and its own contract check.

Every choice comes from the one ``random.Random(seed)``, in a fixed order, so a seed
replays a run case for case.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from random import Random

Make = Callable[[], bytearray]
Mutation = Callable[[bytearray], bytearray]


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
