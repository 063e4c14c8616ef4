"""What every part of the engine shares: requests, deliveries and who gets them.

A ``Request`` is one PF_KEY message a client sent, already split into its raw
extensions; a handler answers it by appending ``Delivery`` values (one message for one
client) through ``Engine.broadcast``, which follows Linux's ``pfkey_broadcast``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pfmigrate.sadb.engine import Engine

# pfkey_broadcast's flags
ALL, ONE, REGISTERED, PROMISC_ONLY = 0, 1, 2, 4
SATYPE_TO_PROTO = {0: 255, 2: 51, 3: 50, 9: 108}
ACQ_EXPIRES = 30  # net.core.xfrm_acq_expires


@dataclass(frozen=True, slots=True)
class Delivery:
    client: int
    data: bytes


#: A dump's messages, produced as they are asked for: one batch per entry dumped (the
#: entry's message for the dumper, and a copy for each promiscuous client).
Batches = Iterator[list[Delivery]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request caused: ``send()``'s errno and the messages delivered. When the
    request was refused, ``reason`` says why (PF_KEY itself carries only the errno).
    ``more``: the rest of a dump, when it was asked for as a stream."""

    send_errno: int
    deliveries: tuple[Delivery, ...]
    reason: str = ""
    more: Batches | None = None


@dataclass(slots=True)
class Client:
    id: int
    registered: int = 0  # a bit per satype
    promisc: bool = False


@dataclass(slots=True)
class Request:
    """One request being handled: who sent it, its header fields, its extensions."""

    client: int
    data: bytes
    type: int
    satype: int
    seq: int
    pid: int
    exts: dict[int, bytes]
    now: float
    more: Batches | None = None  # a dump handler's messages, made as they are read

    @property
    def header(self) -> bytes:
        return self.data[:16]


def header_only(header: bytes, *, errno_: int = 0, satype: int | None = None) -> bytes:
    """A copy of a request header as a 16-byte message (``pfkey_error``, FLUSH's echo)."""
    out = bytearray(header)
    out[2] = errno_
    if satype is not None:
        out[3] = satype
    out[4:6] = (2).to_bytes(2, "little")
    return bytes(out)


Handler = Callable[["Engine", Request, list[Delivery]], None]

#: The request handlers by message type (filled in by ``pfmigrate.sadb``).
HANDLERS: dict[int, Handler] = {}
