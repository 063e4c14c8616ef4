"""Handover time: from a care-of address change to "all MIGRATEs acknowledged" on the
mobile node (the IPsec part), and to its Binding Acknowledgement, on the in-process
engine and on Linux in User-Mode Linux, beside Linux's own XFRM_MSG_MIGRATE round trip
on this machine's kernel measured in the same run.

    python bench/handover.py [--rounds N] [--no-linux]

Both Mobile IPv6 agents run in this process, each with its own key engine, with the
seed's RFC 4877 protections and manual keys: a move between two care-of addresses
MIGRATEs four tunnel policies with their SAs and announces the new address on four
transport policies (KMADDRESS), on each side. The figures are the best and the median
of N moves back and forth (first moves from home, which add the tunnels, are not
counted). For Linux the same run boots UML, where each host's engine is Linux XFRM in a
network namespace of its own (testbed/hosts.py); every system call of a UML guest is a
trip through the host's ptrace, so those figures say more about UML than about Linux.
The kernel tier's real-handover test measures the packet gap with the agents as daemons.

Target: the IPsec part at most 2 ms on the in-process engine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # testbed/ and bench/, when run as a script

from testbed.hosts import xfrm_hosts
from testbed.netns import in_new_netns
from testbed.uml import KernelUnavailable, boot, find_kernel

from bench.engine import measure_linux
from pfmigrate.mobility.seedconfig import seed_configs
from pfmigrate.mobility.simulation import EngineFactory, Simulation, inprocess_engines
from pfmigrate.seed import NEW_COA, OLD_COA

TARGET_SECONDS = 0.002


Figures = tuple[list[float], list[float], int]  # IPsec part and BA per move (seconds), MIGRATEs per move


def measure(rounds: int, engines: EngineFactory = inprocess_engines) -> Figures:
    mn_config, ha_config = seed_configs()
    sim = Simulation(mn_config, ha_config, engines=engines)
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


def measure_in_uml(rounds: int) -> Figures | str:
    """The same moves with Linux's engines, in a UML guest; or why that could not run."""
    try:
        kernel = find_kernel()
    except KernelUnavailable as exc:
        return str(exc)
    with tempfile.TemporaryDirectory(prefix="pfmigrate-bench-") as work:
        command = [sys.executable, str(Path(__file__).resolve()), "--inside-uml", "--rounds", str(rounds)]
        result = boot(command, workdir=Path(work), cwd=Path(__file__).resolve().parent.parent, kernel=kernel)
        output = (Path(work) / "output.txt").read_text() if (Path(work) / "output.txt").exists() else ""
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if result.status != 0 or not lines:
        return f"the UML guest failed (status {result.status}):\n" + "\n".join(result.console.splitlines()[-20:])
    found = json.loads(lines[-1])
    return found["ipsec"], found["acknowledged"], found["migrates"]


def inside_uml(rounds: int) -> None:
    with xfrm_hosts("bench") as engines:
        ipsec, acknowledged, migrates = measure(rounds, engines)
    print(json.dumps({"ipsec": ipsec, "acknowledged": acknowledged, "migrates": migrates}))


def row(name: str, values: list[float]) -> str:
    return f"{name:56} {min(values) * 1e3:>7.3f}ms {statistics.median(values) * 1e3:>7.3f}ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400, help="care-of address changes to time")
    parser.add_argument("--no-linux", action="store_true", help="leave out Linux in User-Mode Linux")
    parser.add_argument("--inside-uml", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside_uml:
        inside_uml(args.rounds)
        return 0
    linux, moved = in_new_netns(lambda: measure_linux(2.0))
    ipsec, acknowledged, migrates = measure(args.rounds)
    in_uml = "left out (--no-linux)" if args.no_linux else measure_in_uml(args.rounds)
    print(f"handover, {args.rounds} moves between two care-of addresses, {migrates} MIGRATEs each on the MN")
    print(f"{'':56} {'best':>9} {'median':>9}")
    print(f"{'Linux XFRM_MSG_MIGRATE round trip (anchor, one MIGRATE)':56} {linux * 1e6:>7.2f}µs  (it moved {moved})")
    print(row("in-process engine: CoA change -> MIGRATEs acknowledged", ipsec))
    print(row("in-process engine: CoA change -> BA received", acknowledged))
    if isinstance(in_uml, str):
        print(f"Linux in UML: {in_uml}")
    else:
        print(row("Linux in UML: CoA change -> MIGRATEs acknowledged", in_uml[0]))
        print(row("Linux in UML: CoA change -> BA received", in_uml[1]))
    median = statistics.median(ipsec)
    verdict = "met" if median <= TARGET_SECONDS else "MISSED"
    print(f"IPsec part on the in-process engine (median) <= {TARGET_SECONDS * 1e3:.0f} ms: {verdict}")
    return 0 if median <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
