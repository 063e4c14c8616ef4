"""XFRM MIGRATE round trip: pfmigrate's XFRM backend beside a raw hand-built netlink
MIGRATE, on this machine's kernel, in a fresh network namespace, in the same run.

    python bench/xfrm.py [--rounds N] [--seconds S]

All move the seed's policy template from the old care-of address to the new one and
back, waiting for the kernel's ACK each time. Two raw anchors: one sends two prebuilt
messages (only the system calls), the other packs each message by hand with ``struct``
from the addresses, as a minimal client written for this one message would, and checks
the ACK's error field. The backend builds each request from the model
(``MigrateRequest``), encodes it, sends it, and checks the answer. The target compares
the backend with the hand-built client.
"""

from __future__ import annotations

import argparse
import ipaddress
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # testbed/, when run as a script

from testbed.netns import in_new_netns

from pfmigrate.backends.linux import open_xfrm, xfrm_socket
from pfmigrate.model import ESP, MH, Dir, KMAddress, MigrateBundle, MigrateRequest, Mode, Policy, Selector, Template
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA

TARGET_RATIO = 1.5
HOA, HA, OLD, NEW = (ipaddress.IPv6Address(a) for a in (HOME_ADDRESS, HOME_AGENT, OLD_COA, NEW_COA))
SELECTOR = Selector.host(HOA, HA, MH)
AF_INET6 = 10


def raw_migrate(seq: int, old: ipaddress.IPv6Address, new: ipaddress.IPv6Address) -> bytes:
    return hand_built(seq, old.packed, new.packed)


def hand_built(seq: int, old: bytes, new: bytes) -> bytes:
    """XFRM_MSG_MIGRATE written out with struct alone: header, xfrm_userpolicy_id,
    XFRMA_MIGRATE with one xfrm_user_migrate, XFRMA_KMADDRESS."""
    selector = struct.pack("=16s16sHHHHHBBB3xiI", HA.packed, HOA.packed, 0, 0, 0, 0, AF_INET6, 128, 128, MH, 0, 0)
    policy_id = selector + struct.pack("=IB3x", 0, 1)  # index 0, dir OUT
    entry = struct.pack("=16s16s16s16sBBHIHH", HA.packed, old, HA.packed, new, 50, 1, 0, 0, 10, 10)
    kma = struct.pack("=16s16sIH2x", new, HA.packed, 0, AF_INET6)
    attrs = struct.pack("=HH", 4 + len(entry), 17) + entry + struct.pack("=HH", 4 + len(kma), 19) + kma
    body = policy_id + attrs
    return struct.pack("=IHHII", 16 + len(body), 0x21, 0x5, seq, 0) + body


def measure(rounds: int, seconds: float) -> dict[str, float]:
    with open_xfrm() as engine:
        engine.add_policy(Policy(SELECTOR, Dir.OUT, (Template(ESP, Mode.TUNNEL, OLD, HA),)))
        there = MigrateRequest(SELECTOR, Dir.OUT, (MigrateBundle(OLD, HA, NEW, HA),), KMAddress(NEW, HA))
        back = MigrateRequest(SELECTOR, Dir.OUT, (MigrateBundle(NEW, HA, OLD, HA),), KMAddress(OLD, HA))
        raw_sock = xfrm_socket()
        raw = [raw_migrate(i, *((OLD, NEW) if i % 2 == 0 else (NEW, OLD))) for i in range(2)]

        def run_raw() -> float:
            start = time.perf_counter()
            for i in range(rounds):
                raw_sock.send(raw[i & 1])
                answer = raw_sock.recv(65536)
                if struct.unpack_from("=i", answer, 16)[0] != 0:
                    raise RuntimeError(f"raw MIGRATE failed: {answer.hex()}")
            return (time.perf_counter() - start) / rounds

        old_new = (OLD.packed, NEW.packed)

        def run_hand_built() -> float:
            start = time.perf_counter()
            for i in range(rounds):
                old, new = old_new if i & 1 == 0 else old_new[::-1]
                raw_sock.send(hand_built(i, old, new))
                answer = raw_sock.recv(65536)
                if struct.unpack_from("=i", answer, 16)[0] != 0:
                    raise RuntimeError(f"hand-built MIGRATE failed: {answer.hex()}")
            return (time.perf_counter() - start) / rounds

        def run_backend() -> float:
            start = time.perf_counter()
            for _ in range(rounds // 2):
                engine.migrate(there)
                engine.migrate(back)
            return (time.perf_counter() - start) / (rounds // 2 * 2)

        runs = {"raw": run_raw, "hand": run_hand_built, "backend": run_backend}
        best = dict.fromkeys(runs, float("inf"))
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:  # interleaved rounds: all see the same machine
            for name, run in runs.items():
                best[name] = min(best[name], run())
        raw_sock.close()
        return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5000, help="round trips per timed round")
    parser.add_argument("--seconds", type=float, default=6.0, help="total time to spend")
    args = parser.parse_args()
    best = in_new_netns(lambda: measure(args.rounds, args.seconds))
    ratio = best["backend"] / best["hand"]
    print("XFRM MIGRATE round trip (seed policy, one bundle, KMADDRESS), this kernel, fresh netns")
    print(f"{'':40} {'µs each':>8} {'per second':>11}")
    rows = [
        ("raw: prebuilt bytes, system calls only", best["raw"]),
        ("raw: hand-built with struct (anchor)", best["hand"]),
        ("pfmigrate XFRM backend", best["backend"]),
    ]
    for name, seconds in rows:
        print(f"{name:40} {seconds * 1e6:>8.2f} {1 / seconds:>11,.0f}")
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(f"backend / hand-built = {ratio:.2f} (target <= {TARGET_RATIO}: {verdict}); ", end="")
    print(f"backend / prebuilt = {best['backend'] / best['raw']:.2f}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
