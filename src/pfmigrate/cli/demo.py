"""``pfmigrate demo``: the seed's MIGRATE built, encoded and decoded."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pfmigrate.pfkey import decode
from pfmigrate.pfkey.jsonform import to_json
from pfmigrate.pfkey.render import render
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA, seed_migrate


def register(commands: Any) -> None:
    demo = commands.add_parser("demo", help="show the seed's MIGRATE built, encoded and decoded")
    demo.add_argument("--json", action="store_true", help="also print the decoded message as JSON")
    demo.set_defaults(run=run)


def _hexdump(data: bytes) -> str:
    return "\n".join(f"  {i:04x}  {data[i : i + 16].hex(' ')}" for i in range(0, len(data), 16))


def run(args: argparse.Namespace) -> int:
    print("The mobile node moves; Mobile IPv6 tells the key engine with PF_KEY MIGRATE:")
    print(f"  home address {HOME_ADDRESS}, home agent {HOME_AGENT}")
    print(f"  ESP tunnel   {OLD_COA} -> {HOME_AGENT}")
    print(f"  becomes      {NEW_COA} -> {HOME_AGENT}")
    print()
    msg = seed_migrate(seq=1)
    wire = msg.encode()
    print(f"Encoded ({len(wire)} bytes, host byte order as Linux af_key expects):")
    print(_hexdump(wire))
    print()
    decoded = decode(wire)
    print("Decoded again:")
    print(render(decoded))
    print()
    same = decoded == msg and decoded.encode() == wire
    print(f"Round trip: {'identical' if same else 'DIFFERENT'}")
    if args.json:
        print(json.dumps(to_json(decoded), indent=2))
    return 0 if same else 1
