"""``pfmigrate demo``: the seed's journey with both Mobile IPv6 agents on the embedded engine.

The mobile node goes from home to the old care-of address, to the new one, and home
again. Each agent has its own in-process key engine (two hosts, two engines); the
Mobility Headers go over an in-process link; an IKE listener on each engine hears the
MIGRATEs with KMADDRESS. The timeline shows each step with its time, the SAD and SPD
before and after each move; ``--svg`` draws it. No root and no kernel support needed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pfmigrate.cli.errors import CommandError
from pfmigrate.mobility.seedconfig import seed_configs
from pfmigrate.mobility.simulation import Simulation
from pfmigrate.pfkey import decode
from pfmigrate.pfkey.jsonform import to_json
from pfmigrate.pfkey.render import render
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA, seed_migrate


def register(commands: Any) -> None:
    demo = commands.add_parser("demo", help="the seed's mobile node moving, with both agents on the embedded engine")
    demo.add_argument("--svg", type=Path, help="also draw the timeline as an SVG picture in this file")
    demo.add_argument("--wire", action="store_true", help="first show the seed's MIGRATE message on the wire")
    demo.add_argument("--json", action="store_true", help="with --wire: the decoded message as JSON too")
    demo.set_defaults(run=run)


def _hexdump(data: bytes) -> str:
    return "\n".join(f"  {i:04x}  {data[i : i + 16].hex(' ')}" for i in range(0, len(data), 16))


def on_the_wire(args: argparse.Namespace) -> bool:
    msg = seed_migrate(seq=1)
    wire = msg.encode()
    print(f"Encoded ({len(wire)} bytes, host byte order as Linux af_key expects):")
    print(_hexdump(wire))
    decoded = decode(wire)
    print("Decoded again:")
    print(render(decoded))
    same = decoded == msg and decoded.encode() == wire
    print(f"Round trip: {'identical' if same else 'DIFFERENT'}")
    if args.json:
        print(json.dumps(to_json(decoded), indent=2))
    return same


def journey(svg: Path | None) -> bool:
    """Home, the old care-of address, the new one, home again: both agents, their own
    in-process engines, the seed's RFC 4877 protections with manual keys."""
    mn_config, ha_config = seed_configs()
    sim = Simulation(mn_config, ha_config)
    _tables(sim, "At home")
    legs = []
    for where in (OLD_COA, NEW_COA, "home"):
        mark = len(sim.timeline.entries)
        leg = sim.go_home() if where == "home" else sim.move(where)
        legs.append(leg)
        print(f"\n=== the mobile node moves to {where} ===")
        for entry in sim.timeline.entries[mark:]:
            print(f"{entry.at * 1000:9.3f} ms  {entry.describe()}")
        print(f"IPsec moved in {leg.ipsec * 1000:.2f} ms ({leg.migrates} MIGRATEs), "
              f"Binding Acknowledgement after {leg.acknowledged * 1000:.2f} ms")  # fmt: skip
        _tables(sim, f"After the move to {where}")
    if svg is not None:
        picture = sim.timeline.svg("pfmigrate demo: the seed's mobile node moves twice and comes home")
        try:
            svg.write_text(picture)
        except OSError as exc:
            raise CommandError(f"cannot write the SVG to {svg}: {exc.strerror or exc}") from None
        print(f"\nthe timeline as a picture: {svg}")
    moved = all(leg.acknowledged > 0 for leg in legs)
    home = not any("tunnel" in line for line in sim.tables()["MN"] + sim.tables()["HA"])
    sim.close()
    return moved and home


def _tables(sim: Simulation, heading: str) -> None:
    print(f"\n--- {heading}: the SAD and SPD ---")
    for host, lines in sim.tables().items():
        for line in lines:
            print(f"  {host}  {line}")


def _writable(svg: Path) -> None:
    """Refuse a picture path that cannot be written, before the demo runs."""
    if svg.is_dir() or str(svg) in ("", "."):
        raise CommandError(f"--svg {str(svg)!r} is a directory, not a file")
    if not svg.parent.is_dir():
        raise CommandError(f"cannot write the SVG to {svg}: no directory {svg.parent}")


def run(args: argparse.Namespace) -> int:
    if args.json and not args.wire:
        raise CommandError("--json shows the message on the wire: give --wire with it")
    if args.svg is not None:
        _writable(args.svg)
    print(f"The seed's mobile node (home address {HOME_ADDRESS}, home agent {HOME_AGENT})")
    print(f"moves from home to care-of address {OLD_COA}, then to {NEW_COA}, then home.")
    print("Each move: the mobile node MIGRATEs its IPsec, then sends a Binding Update;")
    print("the home agent MIGRATEs, then answers with a Binding Acknowledgement.")
    if args.wire:
        print()
        on_the_wire(args)
    ok = journey(args.svg)
    print(f"\nResult: {'every move registered, IPsec followed, and home again' if ok else 'FAILED'}")
    return 0 if ok else 1
