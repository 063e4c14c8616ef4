"""A handover's timeline: what each party did and when, as text and as an SVG sequence
diagram (lanes for the mobile node's key engine, the mobile node, the home agent and
the home agent's key engine; arrows for Binding Updates and Acknowledgements), made by
the demo's simulation or read from the logs of ``pfmigrate mn`` and ``pfmigrate ha``
(``from_logs``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any

LANES = ("MN engine", "MN", "HA", "HA engine")


@dataclass(frozen=True, slots=True)
class Entry:
    at: float  # seconds since the timeline began
    who: str  # a lane
    event: str
    fields: dict[str, Any] = field(default_factory=dict)
    to: str | None = None  # an arrow's other end

    def describe(self) -> str:
        details = " ".join(f"{k}={v}" for k, v in self.fields.items())
        arrow = f" -> {self.to}" if self.to else ""
        return f"{self.who}{arrow}: {self.event} {details}".rstrip()


@dataclass
class Timeline:
    entries: list[Entry] = field(default_factory=list)
    tables: list[tuple[str, list[str]]] = field(default_factory=list)  # (heading, lines) snapshots

    def add(self, at: float, who: str, event: str, fields: dict[str, Any] | None = None, to: str | None = None) -> None:
        self.entries.append(Entry(at, who, event, dict(fields or {}), to))

    def snapshot(self, heading: str, lines: list[str]) -> None:
        self.tables.append((heading, lines))

    def text(self) -> str:
        return "\n".join(f"{entry.at * 1000:9.3f} ms  {entry.describe()}" for entry in self.entries)

    def svg(self, title: str = "pfmigrate handover") -> str:
        """A sequence diagram: one row per entry, in order (not to scale; times are printed)."""
        lane_x = {lane: 150 + i * 220 for i, lane in enumerate(LANES)}
        row, top = 22, 70
        height = top + row * (len(self.entries) + 1) + 20
        width = 150 + 220 * len(LANES)
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="monospace" font-size="11">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
        ]
        for lane, x in lane_x.items():
            out.append(f'<text x="{x}" y="50" text-anchor="middle" font-weight="bold">{escape(lane)}</text>')
            out.append(f'<line x1="{x}" y1="56" x2="{x}" y2="{height - 10}" stroke="#999" stroke-dasharray="4 3"/>')
        for i, entry in enumerate(self.entries):
            y = top + i * row
            out.append(f'<text x="10" y="{y + 4}" fill="#555">{entry.at * 1000:8.3f} ms</text>')
            x = lane_x.get(entry.who, 150)
            label = escape(_short(entry))
            if entry.to in lane_x:
                x2 = lane_x[entry.to]
                out.append(f'<line x1="{x}" y1="{y}" x2="{x2}" y2="{y}" stroke="#1565c0" stroke-width="1.5" '
                           'marker-end="url(#arrow)"/>')  # fmt: skip
                out.append(f'<text x="{(x + x2) / 2}" y="{y - 4}" text-anchor="middle" fill="#1565c0">{label}</text>')
            else:
                colour = "#2e7d32" if "engine" in entry.who else "#000"
                out.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>')
                out.append(f'<text x="{x + 8}" y="{y + 4}" fill="{colour}">{label}</text>')
        out.insert(1, '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
                      'markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
                      'fill="#1565c0"/></marker></defs>')  # fmt: skip
        out.append("</svg>")
        return "\n".join(out) + "\n"


def _short(entry: Entry) -> str:
    keep = ("coa", "new", "status", "sequence", "to", "dir", "changes")
    details = " ".join(f"{k}={v}" for k, v in entry.fields.items() if k in keep)
    return f"{entry.event} {details}".strip()


# --- the picture from the agents' logs -------------------------------------------------------------
#
# `pfmigrate mn` and `pfmigrate ha` log JSON lines (pfmigrate.jsonlogs), one per step, each
# with its wall-clock "time" and its "event". The two logs come from two hosts: they are
# put on one time line by those times, so the hosts' clocks must agree (NTP) for the
# arrows between them to point forward.

# event -> (lane relative to the agent, arrow's far end relative to the agent, or None)
_ENGINE, _AGENT, _PEER = "engine", "agent", "peer"
_LOGGED: dict[str, tuple[str, str | None]] = {
    "migrate": (_AGENT, _ENGINE),  # the agent asks its key engine to move the tunnels
    "migrate-done": (_ENGINE, _AGENT),
    "migrate-failed": (_ENGINE, _AGENT),
    "restore-home": (_AGENT, _ENGINE),
    "restore-home-done": (_ENGINE, _AGENT),
    "restore-home-failed": (_ENGINE, _AGENT),
    "read-back-again": (_ENGINE, None),
    "read-back-failed": (_ENGINE, None),
    "engine-lost": (_ENGINE, None),
    "engine-back": (_ENGINE, None),
    "bu-sent": (_AGENT, _PEER),  # a Binding Update on its way to the home agent
    "ba-sent": (_AGENT, _PEER),
    "be-sent": (_AGENT, _PEER),
}
_LABELS = {"bu-sent": "BU", "ba-sent": "BA", "be-sent": "BE", "migrate": "MIGRATE"}
_MN_ONLY = frozenset({"moved", "bu-sent", "ba-received", "registered", "home", "detached", "attached"})
_HA_ONLY = frozenset({"bu-received", "ba-sent", "bound", "unbound"})


class LogError(ValueError):
    """A log that cannot be drawn; the message names the file and why."""


@dataclass(frozen=True, slots=True)
class LogLine:
    at: float  # seconds since the epoch, from the line's "time"
    role: str  # "mn" or "ha"
    fields: dict[str, Any]


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def read_log(lines: Iterable[str], source: str) -> tuple[str, list[LogLine]]:
    """The agent's role (``"mn"`` or ``"ha"``) and its events, from a log as the daemon
    writes it (JSON lines) or as ``journalctl`` shows it (a prefix before each ``{``).
    Lines that are not an agent's JSON events (a traceback, another program) are skipped."""
    events: list[tuple[float, dict[str, Any]]] = []
    role: str | None = None
    for line in lines:
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("event"), str):
            continue
        try:
            at = _epoch(str(record.get("time")))
        except ValueError:
            continue
        if record["event"] == "started" and record.get("role") in ("mn", "ha"):
            role = record["role"]
        events.append((at, record))
    if not events:
        raise LogError(f"{source}: no events of pfmigrate mn or pfmigrate ha in it")
    if role is None:
        said = {str(fields["event"]) for _, fields in events}
        role = "mn" if said & _MN_ONLY else "ha" if said & _HA_ONLY else None
    if role is None:
        raise LogError(f"{source}: cannot tell a mobile node's log from a home agent's (no 'started' line)")
    return role, [LogLine(at, role, fields) for at, fields in events]


_SENT_AS = {"bu-received": "bu-sent", "ba-received": "ba-sent", "be-received": "be-sent"}
TIE = 0.002  # seconds: the logs' times are in milliseconds; closer than this, the order comes from causes


def _merge(logs: list[list[LogLine]]) -> list[LogLine]:
    """The logs' lines in one order: by time, except that a message is received after it
    was sent where the two times are too close to tell (a receipt waits for its sending
    when the other log's next line is no more than ``TIE`` later)."""
    heads = [0] * len(logs)
    sent: dict[str, int] = {}
    received: dict[str, int] = {}
    merged: list[LogLine] = []

    def ready(line: LogLine) -> bool:
        cause = _SENT_AS.get(str(line.fields["event"]))
        return cause is None or sent.get(cause, 0) > received.get(cause, 0)

    while True:
        waiting = [(log[i], n) for n, (log, i) in enumerate(zip(logs, heads, strict=True)) if i < len(log)]
        if not waiting:
            return merged
        line, n = min(waiting, key=lambda candidate: candidate[0].at)
        if not ready(line):
            causes = [c for c in waiting if c[1] != n and ready(c[0]) and c[0].at <= line.at + TIE]
            if causes:
                line, n = min(causes, key=lambda candidate: candidate[0].at)
        event = str(line.fields["event"])
        if event in _SENT_AS:
            received[_SENT_AS[event]] = received.get(_SENT_AS[event], 0) + 1
        else:
            sent[event] = sent.get(event, 0) + 1
        merged.append(line)
        heads[n] += 1


def from_logs(logs: Iterable[tuple[str, list[LogLine]]]) -> Timeline:
    """One timeline from the logs of a mobile node and its home agent (either may be
    missing), each event on its lane, times from the earliest event."""
    merged = _merge([lines for _, lines in logs])
    timeline = Timeline()
    if not merged:
        return timeline
    start = min(line.at for line in merged)
    for line in merged:
        agent = "MN" if line.role == "mn" else "HA"
        lanes = {_AGENT: agent, _ENGINE: f"{agent} engine", _PEER: "HA" if agent == "MN" else "MN"}
        event = str(line.fields["event"])
        where, toward = _LOGGED.get(event, (_AGENT, None))
        fields = {k: v for k, v in line.fields.items() if k not in ("time", "level", "message", "event")}
        timeline.add(line.at - start, lanes[where], _LABELS.get(event, event), fields,
                     lanes[toward] if toward else None)  # fmt: skip
    return timeline
