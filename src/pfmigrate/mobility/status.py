"""What ``pfmigrate mn status`` and ``pfmigrate ha status`` show: the binding update list
or the binding cache, as ``mip6d -n`` lists it, with each binding's IPsec bundles.

Sans-IO: the daemon builds a ``Status`` from its machines and the policies it read from
its key engine (``bundles``); it travels as JSON (``to_json``, ``from_json``) over the
control socket; the command prints it as JSON or as an aligned table (``render``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pfmigrate.model import Policy


class StatusError(Exception):
    """An answer that is not a status this code can read; says what and where."""


@dataclass(frozen=True, slots=True)
class Bundle:
    """One IPsec policy of a binding: its traffic, its direction and the template that
    ties it to SAs (tunnel endpoints for tunnel mode, and the reqid)."""

    selector: str
    direction: str
    mode: str
    reqid: int
    tunnel_src: str | None = None
    tunnel_dst: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One binding: a binding update list entry (mobile node) or a binding cache entry
    (home agent). ``lifetime_left`` in seconds, ``None`` without a confirmed binding;
    ``acknowledged`` is false where the home agent could not send its acknowledgement."""

    home_address: str
    care_of_address: str | None
    home_agent: str
    state: str
    sequence: int
    lifetime_left: float | None
    key_management: bool
    acknowledged: bool = True
    bundles: tuple[Bundle, ...] = ()


@dataclass(frozen=True, slots=True)
class Status:
    role: str
    backend: str
    route_optimisation: bool
    entries: tuple[Entry, ...]
    bundles_error: str | None = None  # why the bundles could not be read (the key engine away)


def policy_bundles(policies: Iterable[Policy], reqids: frozenset[int]) -> tuple[Bundle, ...]:
    """The policies whose templates name one of ``reqids`` (one binding's), in the
    engine's order."""
    found: list[Bundle] = []
    for policy in policies:
        for template in policy.templates:
            if template.reqid in reqids:
                src, dst = template.src, template.dst
                found.append(
                    Bundle(
                        str(policy.selector), policy.dir.value, template.mode.name.lower(), template.reqid,
                        None if src is None else str(src), None if dst is None else str(dst),
                    )
                )  # fmt: skip
    return tuple(found)


def to_json(status: Status) -> dict[str, Any]:
    return {
        "role": status.role,
        "backend": status.backend,
        "route_optimisation": status.route_optimisation,
        "bundles_error": status.bundles_error,
        "entries": [
            {
                "home_address": e.home_address,
                "care_of_address": e.care_of_address,
                "home_agent": e.home_agent,
                "state": e.state,
                "sequence": e.sequence,
                "lifetime_left": e.lifetime_left,
                "key_management": e.key_management,
                "acknowledged": e.acknowledged,
                "bundles": [_bundle_json(b) for b in e.bundles],
            }
            for e in status.entries
        ],
    }


def _bundle_json(b: Bundle) -> dict[str, Any]:
    return {"selector": b.selector, "direction": b.direction, "mode": b.mode, "reqid": b.reqid,
            "tunnel_src": b.tunnel_src, "tunnel_dst": b.tunnel_dst}  # fmt: skip


def from_json(data: object) -> Status:
    """The ``Status`` a daemon answered, or ``StatusError`` naming the field that is wrong."""
    top = _Fields(data, "status")
    entries = []
    for i, raw in enumerate(top.list("entries")):
        e = _Fields(raw, f"entries[{i}]")
        found = []
        for j, raw_bundle in enumerate(e.list("bundles")):
            b = _Fields(raw_bundle, f"entries[{i}].bundles[{j}]")
            found.append(
                Bundle(b.get("selector", str), b.get("direction", str), b.get("mode", str), b.get("reqid", int),
                       b.maybe("tunnel_src", str), b.maybe("tunnel_dst", str))
            )  # fmt: skip
        left = e.maybe("lifetime_left", float)
        entries.append(
            Entry(e.get("home_address", str), e.maybe("care_of_address", str), e.get("home_agent", str),
                  e.get("state", str), e.get("sequence", int), left, e.get("key_management", bool),
                  e.get("acknowledged", bool), tuple(found))
        )  # fmt: skip
    return Status(
        top.get("role", str), top.get("backend", str), top.get("route_optimisation", bool), tuple(entries),
        top.maybe("bundles_error", str),
    )  # fmt: skip


class _Fields:
    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, Mapping):
            raise StatusError(f"{where}: expected an object, found {type(data).__name__}")
        self.data, self.where = data, where

    def maybe(self, key: str, kind: type[Any]) -> Any:
        value = self.data.get(key)
        if value is None:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise StatusError(f"{self.where}.{key}: expected {kind.__name__}, found {type(value).__name__}")
        return value

    def get(self, key: str, kind: type[Any]) -> Any:
        value = self.maybe(key, kind)
        if value is None:
            raise StatusError(f"{self.where}.{key}: missing")
        return value

    def list(self, key: str) -> list[object]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise StatusError(f"{self.where}.{key}: expected a list, found {type(value).__name__}")
        return value


def render(status: Status) -> str:
    """An aligned table: one line per binding, its bundles indented beneath it."""
    ro = "with" if status.route_optimisation else "without"
    role = "mobile node" if status.role == "mn" else "home agent"
    lines = [f"{role} on {status.backend}, {ro} route optimisation; {len(status.entries)} binding(s)"]
    if not status.entries:
        return "\n".join(lines) + "\n"
    head = ("home address", "care-of address", "home agent", "seq", "lifetime left", "state", "K")
    rows = [head]
    for e in status.entries:
        left = "-" if e.lifetime_left is None else f"{e.lifetime_left:.0f} s"
        state = e.state if e.acknowledged else f"{e.state} (BA not delivered)"
        rows.append((e.home_address, e.care_of_address or "-", e.home_agent, str(e.sequence), left, state,
                     "yes" if e.key_management else "no"))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    numeric = {3, 4}

    def line(row: tuple[str, ...]) -> str:
        cells = (c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        return "  ".join(cells).rstrip()

    lines.append(line(head))
    for e, row in zip(status.entries, rows[1:], strict=True):
        lines.append(line(row))
        table = [("dir", "selector", "mode", "tunnel", "reqid")] + [
            (b.direction, b.selector, b.mode, f"{b.tunnel_src} -> {b.tunnel_dst}" if b.tunnel_src else "-",
             str(b.reqid))
            for b in e.bundles
        ]  # fmt: skip
        if len(table) > 1:
            inner = [max(len(r[i]) for r in table) for i in range(5)]
            lines += ["    " + "  ".join(c.ljust(w) for c, w in zip(r, inner, strict=True)).rstrip() for r in table]
    if status.bundles_error:
        lines.append(f"(bundles not shown: {status.bundles_error})")
    return "\n".join(lines) + "\n"
