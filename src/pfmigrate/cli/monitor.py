"""``pfmigrate monitor``: watch a key engine's announcements, like ``ip xfrm monitor``
and ``setkey -x``, but MIGRATE (with KMADDRESS), ACQUIRE and EXPIRE decoded in full."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from pfmigrate.backends import registry
from pfmigrate.cli import argtypes
from pfmigrate.cli.errors import CommandError, listening_failed
from pfmigrate.engine import KeyEngine
from pfmigrate.model import AcquireEvent, Event, EventsLost, ExpireEvent, MigrateEvent
from pfmigrate.modeljson import event_to_data


def register(commands: Any) -> None:
    monitor = commands.add_parser("monitor", help="print MIGRATE, ACQUIRE and EXPIRE announcements as they come")
    monitor.add_argument(
        "--backend", choices=registry.NAMES, help="where to listen (default: keyd if running, else Linux)"
    )
    monitor.add_argument("--keyd-socket", type=Path, help="keyd's socket (for --backend keyd)")
    monitor.add_argument("--json", action="store_true", help="one JSON object per line")
    monitor.add_argument("--count", type=argtypes.count, default=0, help="stop after this many events")
    monitor.add_argument("--timeout", type=argtypes.seconds, default=0.0, help="stop after this many seconds")
    monitor.set_defaults(run=run)


def describe(event: Event) -> str:
    if isinstance(event, MigrateEvent):
        r = event.request
        lines = [f"MIGRATE {r.dir.value} {r.selector}"]
        for b in r.bundles:
            reqid = f" reqid {b.reqid}" if b.reqid else ""
            moved = f"{b.old_src} -> {b.old_dst}  becomes  {b.new_src} -> {b.new_dst}"
            lines.append(f"  proto {b.proto} {b.mode.value}{reqid}: {moved}")
        if r.kmaddress is not None:
            lines.append(f"  kmaddress local {r.kmaddress.local} remote {r.kmaddress.remote}")
        return "\n".join(lines)
    if isinstance(event, AcquireEvent):
        selector = f" for {event.selector}" if event.selector else ""
        return (
            f"ACQUIRE proto {event.proto} {event.mode.value} {event.src} -> {event.dst}{selector} "
            f"(policy {event.policy_index}, reqid {event.reqid}, seq {event.seq})"
        )
    if isinstance(event, ExpireEvent):
        sa = event.sa
        kind = "hard" if event.hard else "soft"
        return f"EXPIRE ({kind}) proto {sa.proto} spi 0x{sa.spi:08x} {sa.src} -> {sa.dst} reqid {sa.reqid}"
    assert isinstance(event, EventsLost)
    return f"EVENTS LOST: {event.reason}; dump the SAD and SPD to resynchronise"


def open_engine(args: argparse.Namespace) -> KeyEngine:
    try:
        return registry.open_backend(args.backend, keyd_socket=args.keyd_socket)
    except registry.BackendUnavailable as exc:
        raise CommandError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    engine = open_engine(args)
    seen = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    with engine:
        try:
            engine.subscribe()
        except OSError as exc:
            raise listening_failed(engine.name, exc, started=False) from None
        print(f"listening on {engine.name} for MIGRATE, ACQUIRE and EXPIRE", file=sys.stderr, flush=True)
        try:
            while not (args.count and seen >= args.count):
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    break
                for event in engine.next_events(wait if wait is None else min(wait, 1.0)):
                    seen += 1
                    line = json.dumps(event_to_data(event)) if args.json else describe(event)
                    print(line, flush=True)
        except KeyboardInterrupt:
            pass
        except OSError as exc:  # (keyd stopped, say)
            raise listening_failed(engine.name, exc, started=True) from None
    return 0
