"""Backends by name, for the command line and the agents: one place that knows them all.

``linux-pfkey`` and ``linux-xfrm`` talk to this machine's kernel; ``keyd`` to a
``pfmigrate keyd`` (its socket from ``--keyd-socket``, ``$PFMIGRATE_KEYD_SOCKET`` or
``/run/pfmigrate/keyd.sock``); ``inprocess`` is an engine of this process alone, gone
when it exits (for scripts and tests).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pfmigrate.backends import inprocess, keyd, linux
from pfmigrate.engine import Capabilities, KeyEngine

NAMES = ("keyd", "linux-pfkey", "linux-xfrm", "inprocess")
#: The backends whose SAD and SPD are this machine's kernel's: what they change or flush
#: changes what every packet of the machine meets.
KERNEL = frozenset({"linux-pfkey", "linux-xfrm"})


class BackendUnavailable(Exception):
    """The named backend cannot be used here; the message says why."""


def _openers(keyd_socket: str | Path | None, timeout: float) -> dict[str, Callable[[], KeyEngine]]:
    return {
        "keyd": lambda: keyd.open_keyd(keyd_socket, timeout=timeout),
        "linux-pfkey": lambda: linux.open_pfkey(timeout=timeout),
        "linux-xfrm": lambda: linux.open_xfrm(timeout=timeout),
        "inprocess": lambda: inprocess.open_inprocess(timeout=timeout),
    }


def probe(name: str, keyd_socket: str | Path | None = None) -> Capabilities:
    if name == "keyd":
        return keyd.probe_keyd(keyd_socket)
    if name == "linux-pfkey":
        return linux.probe_pfkey()
    if name == "linux-xfrm":
        return linux.probe_xfrm()
    if name == "inprocess":
        return Capabilities("inprocess", True, migrate=True)
    raise BackendUnavailable(f"no backend {name!r}: choose one of {', '.join(NAMES)}")


def describe(name: str, keyd_socket: str | Path | None = None) -> str:
    """``name`` and where its SAD and SPD are, for a person ("keyd at /run/...")."""
    if name == "keyd":
        return f"keyd at {keyd.socket_path(keyd_socket)}"
    if name == "linux-pfkey":
        return "linux-pfkey (this kernel's SAD and SPD, through AF_KEY)"
    if name == "linux-xfrm":
        return "linux-xfrm (this kernel's SAD and SPD, through netlink XFRM)"
    if name == "inprocess":
        return f"inprocess ({inprocess.LIFETIME})"
    return name


def default_name(keyd_socket: str | Path | None = None) -> str:
    """keyd if one is listening, else Linux PF_KEY, else Linux XFRM."""
    for name in ("keyd", "linux-pfkey", "linux-xfrm"):
        if probe(name, keyd_socket).available:
            return name
    raise BackendUnavailable(
        "no key engine here: no keyd socket, and this kernel offers neither AF_KEY nor NETLINK_XFRM "
        "(start `pfmigrate keyd`, or choose --backend inprocess)"
    )


def open_backend(name: str | None = None, *, keyd_socket: str | Path | None = None, timeout: float = 5.0) -> KeyEngine:
    """The named backend (``None``: ``default_name()``), or ``BackendUnavailable`` saying why not."""
    chosen = name or default_name(keyd_socket)
    openers = _openers(keyd_socket, timeout)
    if chosen not in openers:
        raise BackendUnavailable(f"no backend {chosen!r}: choose one of {', '.join(NAMES)}")
    try:
        return openers[chosen]()
    except OSError as exc:
        found = probe(chosen, keyd_socket)  # says what is missing, where it can tell
        why = "; ".join(found.notes) if not found.available and found.notes else str(exc)
        raise BackendUnavailable(f"backend {chosen} is not available here: {why}") from exc
