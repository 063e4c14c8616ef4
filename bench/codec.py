"""PF_KEY codec speed: the seed's MIGRATE (with KMADDRESS, 320 bytes) decoded and encoded,
beside a raw ``struct`` walk of the same bytes measured in the same run.

    python bench/codec.py [--seconds S]

The anchor walks only the 16-byte header and each extension header: the least any
decoder must do. "Same message" repeats one message, as a daemon sees one peer's
MIGRATE again and again; "distinct" cycles through 10,000 MIGRATEs whose addresses all
differ (more than the decoder's intern tables hold), the cold case.
"""

from __future__ import annotations

import argparse
import ipaddress
import platform
import struct
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/, when run as a script

from bench.timing import best_per_call
from pfmigrate.pfkey import AddressDst, AddressSrc, IPProto, KMAddress, Message, Policy, SockAddr, decode
from pfmigrate.seed import seed_migrate, tunnel_request

TARGET = 150_000  # messages per second, decode and encode
_HEADER = struct.Struct("=BBBBHHII")
_EXT = struct.Struct("=HH")


def raw_walk(data: bytes) -> int:
    """The anchor: check the header and step over each extension header."""
    version, _, _, _, length, _, _, _ = _HEADER.unpack_from(data)
    if version != 2 or length * 8 != len(data):
        raise ValueError("bad header")
    pos, count = 16, 0
    while pos < len(data):
        ext_len, _ = _EXT.unpack_from(data, pos)
        if ext_len == 0:
            raise ValueError("bad extension")
        pos += ext_len * 8
        count += 1
    return count


def distinct_migrates(n: int) -> list[Message]:
    base = seed_migrate(seq=1)
    out = []
    for i in range(n):
        hoa = ipaddress.IPv6Address(f"2001:db8:1::{i + 1:x}")
        old = ipaddress.IPv6Address(f"2001:db8:5::{i + 1:x}")
        new = ipaddress.IPv6Address(f"2001:db8:4::{i + 1:x}")
        ha = "2001:db8:1::ffff"
        exts = (
            AddressSrc(SockAddr(hoa), 128, IPProto.MH),
            base.require(AddressDst),
            Policy(requests=(tunnel_request(str(old), ha), tunnel_request(str(new), ha))),
            KMAddress(SockAddr(new), SockAddr.of(ha)),
        )
        out.append(Message(base.type, base.satype, i, 0, 0, exts))
    return out


def rate(fn: Callable[[int], object], items: int, seconds: float) -> float:
    """Calls per second: the best of several timed rounds of ``items`` calls."""
    return 1 / best_per_call(fn, items, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time spent on each figure")
    args = parser.parse_args()

    msg = seed_migrate(seq=1)
    wire = msg.encode()
    assert len(wire) == 320
    assert decode(wire) == msg
    many = distinct_migrates(10_000)
    many_wire = [m.encode() for m in many]
    n = len(many)

    def loop_raw(k: int) -> None:
        for _ in range(k):
            raw_walk(wire)

    def loop_decode(k: int) -> None:
        for _ in range(k):
            decode(wire)

    def loop_encode(k: int) -> None:
        for _ in range(k):
            msg.encode()

    def loop_decode_distinct(k: int) -> None:
        for i in range(k):
            decode(many_wire[i % n])

    def loop_encode_distinct(k: int) -> None:
        for i in range(k):
            many[i % n].encode()

    rows = [
        ("raw struct walk (anchor)", rate(loop_raw, 20_000, args.seconds), None),
        ("decode, same message", rate(loop_decode, 20_000, args.seconds), TARGET),
        ("encode, same message", rate(loop_encode, 20_000, args.seconds), TARGET),
        ("decode, 10,000 distinct", rate(loop_decode_distinct, n, args.seconds), None),
        ("encode, 10,000 distinct", rate(loop_encode_distinct, n, args.seconds), None),
    ]
    anchor = rows[0][1]
    print(f"PF_KEY codec: seed MIGRATE with KMADDRESS ({len(wire)} bytes), Python {platform.python_version()}")
    print(f"{'':28} {'msgs/s':>11} {'µs each':>8} {'/ anchor':>9}  target")
    failed = False
    for name, per_second, target in rows:
        verdict = ""
        if target is not None:
            ok = per_second >= target
            failed |= not ok
            verdict = f">= {target:,}: {'met' if ok else 'MISSED'}"
        print(f"{name:28} {per_second:>11,.0f} {1e6 / per_second:>8.2f} {anchor / per_second:>9.1f}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
