"""Handover time on the in-process engine: from a care-of address change to "all
MIGRATEs acknowledged" on the mobile node (the IPsec part), and to its Binding
Acknowledgement, beside Linux's own XFRM_MSG_MIGRATE round trip measured in the same run.

    python bench/handover.py [--rounds N]

Both Mobile IPv6 agents run in this process, each with its own in-process key engine,
with the seed's RFC 4877 protections and manual keys: a move between two care-of
addresses MIGRATEs four tunnel policies with their SAs and announces the new address on
four transport policies (KMADDRESS), on each side. The figures are the best and the
median of N moves back and forth (first moves from home, which add the tunnels, are
not counted). The Linux handover in UML is measured by the kernel tier's real-handover
test (it prints its gap); UML's timing says little about a real kernel.

Target: the IPsec part at most 2 ms on the in-process engine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # testbed/ and bench/, when run as a script

from testbed.netns import in_new_netns

from bench.engine import measure_linux
from pfmigrate.mobility.seedconfig import seed_configs
from pfmigrate.mobility.simulation import Simulation
from pfmigrate.seed import NEW_COA, OLD_COA

TARGET_SECONDS = 0.002


def measure(rounds: int) -> tuple[list[float], list[float], int]:
    mn_config, ha_config = seed_configs()
    sim = Simulation(mn_config, ha_config)
    sim.move(OLD_COA)  # leaving home adds the tunnels: not a care-of change
    ipsec, acknowledged, migrates = [], [], 0
    for i in range(rounds):
        leg = sim.move(NEW_COA if i % 2 == 0 else OLD_COA)
        ipsec.append(leg.ipsec)
        acknowledged.append(leg.acknowledged)
        migrates = leg.migrates
        if len(sim.timeline.entries) > 10_000:
            sim.timeline.entries.clear()  # a long run's timeline is not the point
    sim.close()
    return ipsec, acknowledged, migrates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400, help="care-of address changes to time")
    args = parser.parse_args()
    linux = in_new_netns(lambda: measure_linux(2.0))
    ipsec, acknowledged, migrates = measure(args.rounds)
    print(f"handover on the in-process engine, {args.rounds} moves between two care-of addresses")
    print(f"{'':52} {'best':>9} {'median':>9}")
    print(f"{'Linux XFRM_MSG_MIGRATE round trip (anchor, one MIGRATE)':52} {linux * 1e6:>7.2f}µs")
    print(f"{f'CoA change -> all {migrates} MIGRATEs acknowledged (MN)':52} "
          f"{min(ipsec) * 1e3:>7.3f}ms {statistics.median(ipsec) * 1e3:>7.3f}ms")  # fmt: skip
    print(f"{'CoA change -> Binding Acknowledgement received (MN)':52} "
          f"{min(acknowledged) * 1e3:>7.3f}ms {statistics.median(acknowledged) * 1e3:>7.3f}ms")  # fmt: skip
    median = statistics.median(ipsec)
    verdict = "met" if median <= TARGET_SECONDS else "MISSED"
    print(f"IPsec part (median) <= {TARGET_SECONDS * 1e3:.0f} ms: {verdict}")
    return 0 if median <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
