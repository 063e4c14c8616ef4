"""``pfmigrate demo``: the seed's MIGRATE, on the wire and carried out by the embedded engine.

First the message itself: built, encoded, decoded again. Then the mobile node's tunnel
SAs and Mobility Header policies go into pfmigrate's own key engine (in-process, no
kernel), the MIGRATE moves them to the new care-of address, and a listener standing
for the IKE daemon hears the announcement with its new local address (KMADDRESS).
"""

from __future__ import annotations

import argparse
import json
from ipaddress import ip_address
from typing import Any

from pfmigrate.backends.inprocess import Hub, open_inprocess
from pfmigrate.model import (
    ESP,
    MH,
    Algorithm,
    Dir,
    KMAddress,
    Lifetime,
    MigrateBundle,
    MigrateEvent,
    MigrateRequest,
    Mode,
    Policy,
    SecurityAssociation,
    Selector,
    Template,
)
from pfmigrate.pfkey import decode
from pfmigrate.pfkey.jsonform import to_json
from pfmigrate.pfkey.render import render
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA, seed_migrate


def register(commands: Any) -> None:
    demo = commands.add_parser("demo", help="the seed's MIGRATE on the wire and on the embedded engine")
    demo.add_argument("--json", action="store_true", help="also print the decoded message as JSON")
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


def on_the_engine() -> bool:
    hoa, ha, old, new = (ip_address(a) for a in (HOME_ADDRESS, HOME_AGENT, OLD_COA, NEW_COA))
    auth, enc = Algorithm("hmac(sha256)", bytes(32), 96), Algorithm("cbc(aes)", bytes(16))
    lifetime = Lifetime(soft_add=3000, hard_add=3600)
    out_sel, in_sel = Selector.host(hoa, ha, MH), Selector.host(ha, hoa, MH)
    hub = Hub()
    engine, ike = open_inprocess(hub), open_inprocess(hub)
    ike.subscribe()
    engine.add_sa(SecurityAssociation(old, ha, 0x1000, ESP, Mode.TUNNEL, 0, auth, enc, lifetime=lifetime))
    engine.add_sa(SecurityAssociation(ha, old, 0x1001, ESP, Mode.TUNNEL, 0, auth, enc, lifetime=lifetime))
    engine.add_policy(Policy(out_sel, Dir.OUT, (Template(ESP, Mode.TUNNEL, old, ha),)))
    engine.add_policy(Policy(in_sel, Dir.IN, (Template(ESP, Mode.TUNNEL, ha, old),)))
    print("Before the move, the engine holds:")
    _show(engine.dump_sas(), engine.dump_policies())
    kma = KMAddress(new, ha)
    engine.migrate(MigrateRequest(out_sel, Dir.OUT, (MigrateBundle(old, ha, new, ha),), kma))
    engine.migrate(MigrateRequest(in_sel, Dir.IN, (MigrateBundle(ha, old, ha, new),), kma))
    print("After the two MIGRATEs (outbound and inbound):")
    sas, policies = engine.dump_sas(), engine.dump_policies()
    _show(sas, policies)
    heard: list[MigrateEvent] = []
    for _ in range(8):  # every broadcast since it subscribed: two ADDs, two SPDADDs, two MIGRATEs
        heard += [e for e in ike.next_events(0.0) if isinstance(e, MigrateEvent)]
    for event in heard:
        request = event.request
        print(f"The IKE daemon heard: MIGRATE {request.dir.name} {request.selector}, new local address "
              f"{request.kmaddress.local if request.kmaddress else '?'}")  # fmt: skip
    engine.close()
    ike.close()
    moved = all(old not in (sa.src, sa.dst) for sa in sas) and len(sas) == 2
    return moved and len(heard) == 2


def _show(sas: list[SecurityAssociation], policies: list[Policy]) -> None:
    for sa in sorted(sas, key=lambda sa: sa.spi):
        print(f"  SA     {sa.src} -> {sa.dst} spi 0x{sa.spi:x} {sa.mode.name.lower()}")
    for policy in policies:
        [template] = policy.templates
        print(f"  policy {policy.dir.name:3} {policy.selector} via {template.src} -> {template.dst}")


def run(args: argparse.Namespace) -> int:
    print("The mobile node moves; Mobile IPv6 tells the key engine with PF_KEY MIGRATE:")
    print(f"  home address {HOME_ADDRESS}, home agent {HOME_AGENT}")
    print(f"  ESP tunnel   {OLD_COA} -> {HOME_AGENT}")
    print(f"  becomes      {NEW_COA} -> {HOME_AGENT}")
    print()
    wire_ok = on_the_wire(args)
    print()
    print("Carried out by pfmigrate's own key engine (in-process, no kernel needed):")
    engine_ok = on_the_engine()
    print()
    print(f"Result: {'the tunnel moved and the IKE daemon was told' if engine_ok else 'FAILED'}")
    return 0 if wire_ok and engine_ok else 1
