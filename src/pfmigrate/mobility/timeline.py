"""A handover's timeline: what each party did and when, as text and as an SVG sequence
diagram (lanes for the mobile node's key engine, the mobile node, the home agent and
the home agent's key engine; arrows for Binding Updates and Acknowledgements)."""

from __future__ import annotations

from dataclasses import dataclass, field
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
