"""``pfmigrate demo``: the example mobile node's journey with both Mobile IPv6 agents on
the embedded engine.

The mobile node goes from home to the old care-of address, to the new one, and home
again. Each agent has its own in-process key engine (two hosts, two engines); the
Mobility Headers go over an in-process link; an IKE listener on each engine hears the
MIGRATEs with KMADDRESS. The timeline shows each step with its time, the SAD and SPD
before and after each move; ``--svg`` draws it. No root and no kernel support needed.

``--from-logs MN.log HA.log`` draws the same picture from what ``pfmigrate mn`` and
``pfmigrate ha`` logged on real hosts; ``--files`` lists the files installed with
pfmigrate (examples, documentation, man pages, systemd units, shell completion).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pfmigrate
from pfmigrate.cli.errors import CommandError
from pfmigrate.mobility.seedconfig import seed_configs
from pfmigrate.mobility.simulation import Simulation
from pfmigrate.mobility.timeline import LogError, LogLine, from_logs, read_log
from pfmigrate.pfkey import decode
from pfmigrate.pfkey.jsonform import to_json
from pfmigrate.pfkey.render import render
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA, seed_migrate


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="the example mobile node moving, with both agents on the embedded engine",
        description="The example mobile node moves from home to two care-of addresses and home again, "
        "with both Mobile IPv6 agents on pfmigrate's own engine (no root, no kernel support).",
    )
    demo.add_argument("--svg", type=Path, help="also draw the timeline as an SVG picture in this file")
    demo.add_argument("--wire", action="store_true", help="first show the example MIGRATE message on the wire")
    demo.add_argument("--json", action="store_true", help="with --wire: the decoded message as JSON too")
    demo.add_argument(
        "--from-logs",
        type=Path,
        nargs="+",
        metavar="LOG",
        help="instead of the demo: the timeline of a real handover from the JSON logs of pfmigrate mn "
        "and pfmigrate ha (one or both; with --svg, drawn)",
    )
    demo.add_argument(
        "--files", action="store_true", help="list the installed examples, docs, man pages, systemd units and stop"
    )
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
    in-process engines, every RFC 4877 protection with manual keys."""
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
        _write_svg(svg, sim.timeline.svg("pfmigrate demo: the example mobile node moves twice and comes home"))
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


# What `make dist` ships beside the code (packaging/pfmigrate_build.py): installed under
# pfmigrate/share/; in a source tree (an editable install), where they are kept.
_SHARED = ("doc", "examples", "man", "systemd", "completion")
_SOURCE_TREE = {
    "doc": ("README.md", "LICENSE", "docs/*.md"),
    "examples": ("examples/*.toml",),
    "man": ("docs/man/*.[0-9]",),
    "systemd": ("packaging/*.service",),
    "completion": ("packaging/completion/pfmigrate.bash",),
}


def shipped_files(package: Path = Path(pfmigrate.__file__).parent) -> list[Path]:
    """The examples, documentation, man pages, systemd units and shell completion that
    came with this pfmigrate: under ``pfmigrate/share/`` once installed from a wheel, in
    the source tree for an editable install."""
    share = package / "share"
    if share.is_dir():
        return sorted(path for kind in _SHARED for path in (share / kind).glob("*") if path.is_file())
    tree = package.parent.parent
    if not (tree / "pyproject.toml").is_file():
        return []
    return sorted(path for patterns in _SOURCE_TREE.values() for p in patterns for path in tree.glob(p))


def list_files() -> int:
    found = shipped_files()
    if not found:
        raise CommandError("this pfmigrate was installed without its files (examples, docs, units)")
    for path in found:
        print(path)
    return 0


def timeline_from_logs(logs: list[Path], svg: Path | None) -> int:
    read: list[tuple[str, list[LogLine]]] = []
    for log in logs:
        if not log.is_file():
            raise CommandError(f"{log}: not a log file")
        try:
            with log.open(encoding="utf-8", errors="replace") as lines:
                read.append(read_log(lines, str(log)))
        except LogError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"cannot read {log}: {exc.strerror or exc}") from None
    roles = [role for role, _ in read]
    if len(set(roles)) < len(roles):
        raise CommandError(f"two logs of the same role ({', '.join(roles)}): give a mobile node's and a home agent's")
    timeline = from_logs(read)
    print(timeline.text())
    if svg is not None:
        hosts = " and ".join(
            "the mobile node" if role == "mn" else "the home agent" for role in sorted(roles, reverse=True)
        )
        _write_svg(svg, timeline.svg(f"pfmigrate: a handover as logged by {hosts}"))
    return 0


def _write_svg(svg: Path, picture: str) -> None:
    try:
        svg.write_text(picture)
    except OSError as exc:
        raise CommandError(f"cannot write the SVG to {svg}: {exc.strerror or exc}") from None
    print(f"\nthe timeline as a picture: {svg}")


def run(args: argparse.Namespace) -> int:
    if args.json and not args.wire:
        raise CommandError("--json shows the message on the wire: give --wire with it")
    if args.files:
        if args.wire or args.svg is not None or args.from_logs:
            raise CommandError("--files lists the installed files: give it alone")
        return list_files()
    if args.svg is not None:
        _writable(args.svg)
    if args.from_logs:
        if args.wire:
            raise CommandError("--from-logs draws real hosts' logs: --wire shows the demo's message, give one")
        return timeline_from_logs(args.from_logs, args.svg)
    print(f"The example mobile node (home address {HOME_ADDRESS}, home agent {HOME_AGENT})")
    print(f"moves from home to care-of address {OLD_COA}, then to {NEW_COA}, then home.")
    print("Each move: the mobile node MIGRATEs its IPsec, then sends a Binding Update;")
    print("the home agent MIGRATEs, then answers with a Binding Acknowledgement.")
    if args.wire:
        print()
        on_the_wire(args)
    ok = journey(args.svg)
    print(f"\nResult: {'every move registered, IPsec followed, and home again' if ok else 'FAILED'}")
    return 0 if ok else 1
