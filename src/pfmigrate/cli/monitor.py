"""``pfmigrate monitor``: watch a key engine's announcements, like ``ip xfrm monitor
-timestamp`` and ``setkey -x``, but MIGRATE (with KMADDRESS), ACQUIRE and EXPIRE decoded
in full. Each event carries its time: text lines start with it, JSON lines have ``time``
(ISO 8601 UTC, as the daemons' logs). With ``--reconnect`` a key engine that goes away
is opened again, with back-off; the monitor then says ``reconnected`` and
``events-lost``, since what the engine announced meanwhile is lost."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pfmigrate._jsonform import iso_time
from pfmigrate.backends import registry
from pfmigrate.cli import argtypes
from pfmigrate.cli.errors import CommandError, listening_failed, reason
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
    monitor.add_argument(
        "--reconnect",
        action="store_true",
        help="when the key engine goes away (keyd restarted), reconnect with back-off and say so, instead of exiting",
    )
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


def stamped(event: Event | Reconnected, now: float) -> str:
    """The event as text after its time, as ``ip xfrm monitor -timestamp`` prints it."""
    text = describe(event) if not isinstance(event, Reconnected) else event.describe()
    return f"{iso_time(now)} {text}"


def event_json(event: Event | Reconnected, now: float) -> str:
    """One JSON line: ``time``, ``event``, then the event's fields (docs/json.md)."""
    data = event.to_data() if isinstance(event, Reconnected) else event_to_data(event)
    return json.dumps({"time": iso_time(now), **data})


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The monitor is listening again, to a new connection to the same key engine."""

    backend: str
    down_seconds: float
    attempts: int

    def describe(self) -> str:
        return f"RECONNECTED to {self.backend} after {self.down_seconds:.1f} s ({self.attempts} attempts)"

    def to_data(self) -> dict[str, Any]:
        return {"event": "reconnected", "backend": self.backend, "down_seconds": round(self.down_seconds, 3),
                "attempts": self.attempts}  # fmt: skip


#: Back-off between reconnection attempts: from the first to at most the last, doubling.
FIRST_RETRY, LAST_RETRY = 0.1, 5.0


class Monitor:
    """Listens to one backend, and with ``reconnect`` opens it again when it goes away."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.deadline = time.monotonic() + args.timeout if args.timeout else None
        try:
            self.backend = args.backend or registry.default_name(args.keyd_socket)
        except registry.BackendUnavailable as exc:
            raise CommandError(str(exc)) from None
        self.seen = 0

    def open(self) -> KeyEngine:
        engine = registry.open_backend(self.backend, keyd_socket=self.args.keyd_socket)
        try:
            engine.subscribe()
        except BaseException:
            engine.close()
            raise
        return engine

    def emit(self, event: Event | Reconnected) -> None:
        now = time.time()
        print(event_json(event, now) if self.args.json else stamped(event, now), file=self.out, flush=True)

    def left(self) -> float | None:
        """Seconds until ``--timeout`` (``None``: no limit), at least 0."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def done(self) -> bool:
        return bool(self.args.count and self.seen >= self.args.count) or self.left() == 0.0

    def listen(self, engine: KeyEngine) -> None:
        """Print events until done; ``OSError`` when the engine goes away."""
        while not self.done():
            wait = self.left()
            for event in engine.next_events(1.0 if wait is None else min(wait, 1.0)):
                self.seen += 1
                self.emit(event)
                if self.done():
                    return

    def reopen(self, why: OSError) -> KeyEngine | None:
        """Open the backend again, waiting longer after each failure; ``None`` when the
        time is up first."""
        lost_at = time.monotonic()
        print(f"pfmigrate: lost {self.backend}: {reason(why)}; reconnecting", file=sys.stderr, flush=True)
        pause, attempts = FIRST_RETRY, 0
        while True:
            left = self.left()
            if left == 0.0:
                return None
            time.sleep(pause if left is None else min(pause, left))
            attempts += 1
            try:
                engine = self.open()
            except (registry.BackendUnavailable, OSError):
                pause = min(2 * pause, LAST_RETRY)
                continue
            self.emit(Reconnected(self.backend, time.monotonic() - lost_at, attempts))
            self.emit(EventsLost(f"{self.backend} was out of reach: what it announced meanwhile is lost"))
            return engine


def run(args: argparse.Namespace) -> int:
    monitor = Monitor(args, sys.stdout)
    try:
        engine = monitor.open()
    except registry.BackendUnavailable as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise listening_failed(monitor.backend, exc, started=False) from None
    print(f"listening on {engine.name} for MIGRATE, ACQUIRE and EXPIRE", file=sys.stderr, flush=True)
    try:
        while True:
            try:
                with engine:
                    monitor.listen(engine)
                return 0
            except OSError as exc:  # (keyd stopped, say)
                if not args.reconnect:
                    raise listening_failed(engine.name, exc, started=True) from None
                again = monitor.reopen(exc)
                if again is None:
                    return 0
                engine = again
    except KeyboardInterrupt:
        engine.close()
        return 0
