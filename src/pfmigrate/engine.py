"""One key-engine interface over every backend.

A backend is two pieces. Its *operations* object is sans-IO: each call (``add_sa``,
``migrate``…) returns an ``Exchange``, the request's bytes plus a small state machine
that is fed what comes back and knows when it has its answer; it also turns event
datagrams into model events. A *transport* moves bytes. ``KeyEngine`` (blocking) and
``AsyncKeyEngine`` (asyncio) join the two, so both modes share every line of protocol
logic, and the in-process engine plugs in the same way as Linux.
"""

from __future__ import annotations

import abc
import asyncio
import errno as _errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Generic, Protocol, TypeVar

from pfmigrate.model import Dir, Event, EventsLost, MigrateRequest, Mode, Policy, SecurityAssociation, Selector

T = TypeVar("T")
#: The SPIs ``allocate_spi`` picks from unless told otherwise (below 256 is reserved).
SPI_RANGE = (0x100, 0x0FFFFFFF)
IPAddress = IPv4Address | IPv6Address
AddressLike = IPAddress | str


_NO_SA = "no SA with that destination, SPI and protocol"
_NO_POLICY = "no policy with that selector and direction"
_TOO_DEEP = "a policy holds at most 6 templates"
# What Linux means by an errno, operation by operation (pfmigrate's engine answers as
# it does): the kernel says only the number, and strerror's words are about files.
_MEANINGS = {
    ("add SA", _errno.EEXIST): "an SA with that destination, SPI and protocol exists",
    ("update SA", _errno.ESRCH): _NO_SA,
    ("get SA", _errno.ESRCH): _NO_SA,
    ("delete SA", _errno.ESRCH): _NO_SA,
    ("allocate SPI", _errno.ENOENT): "no free SPI in the range",
    ("add policy", _errno.EEXIST): "a policy with that selector and direction exists",
    ("add policy", _errno.ELOOP): _TOO_DEEP,
    ("update policy", _errno.ELOOP): _TOO_DEEP,
    ("get policy", _errno.ENOENT): _NO_POLICY,
    ("delete policy", _errno.ENOENT): _NO_POLICY,
    ("migrate", _errno.ENOENT): _NO_POLICY,
    ("migrate", _errno.ENODATA): "no template of the policy, or no SA, has those old endpoints",
    ("migrate", _errno.ENOTUNIQ): "that names SAs or templates of several reqids: give the reqid",
    ("migrate", _errno.ENOPROTOOPT): "this kernel has no MIGRATE (CONFIG_XFRM_MIGRATE or CONFIG_NET_KEY_MIGRATE)",
}
_MEANINGS_ANYWHERE = {
    _errno.EPERM: "the SAD and SPD need CAP_NET_ADMIN (with keyd: its admin group, or its read group to read)",
    _errno.EOPNOTSUPP: "this engine does not do that",
}


def meaning(operation: str, errno: int) -> str:
    """What ``errno`` says in answer to ``operation``, in its words ("" if nothing more
    than ``strerror``)."""
    return _MEANINGS.get((operation, errno)) or _MEANINGS_ANYWHERE.get(errno, "")


class KeyEngineError(OSError):
    """The key engine refused an operation; ``errno`` is its answer, ``meaning`` what
    that answer says about this operation."""

    def __init__(self, errno: int, operation: str, detail: str = "") -> None:
        self.meaning = meaning(operation, errno)
        said = f"{os.strerror(errno)}: {self.meaning}" if self.meaning else os.strerror(errno)
        super().__init__(errno, f"{operation}: {said}" + (f" ({detail})" if detail else ""))
        self.operation = operation
        self.detail = detail

    def __str__(self) -> str:
        return str(self.strerror)


class Unsupported(KeyEngineError):
    """The backend cannot express the request (PF_KEY has no word for it, or the kernel
    was built without it)."""

    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(_errno.EOPNOTSUPP, operation, detail)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do here, found by probing; ``notes`` say why not.
    ``migrate_by_reqid``: a MIGRATE may name its bundles by reqid alone (pfmigrate's
    engine with its own semantics; Linux wants the old endpoints)."""

    name: str
    available: bool
    migrate: bool = False
    notes: tuple[str, ...] = ()
    migrate_by_reqid: bool = False


class Exchange(abc.ABC, Generic[T]):
    """One request and the answers that complete it.

    ``lingers``: its answers keep coming after the engine stopped waiting for them (a
    dump); such an exchange is read to its end before the next request, which would
    otherwise be refused (EBUSY) or, on PF_KEY, take the old dump's tail for its own.
    """

    lingers = False

    def __init__(self, operation: str, request: bytes) -> None:
        self.operation = operation
        self.request = request

    @abc.abstractmethod
    def feed(self, raw: bytes) -> bool:
        """Take one received datagram; ``True`` once the answer is complete. Datagrams
        that are not part of this exchange are ignored."""

    @abc.abstractmethod
    def result(self) -> T:
        """The answer, or ``KeyEngineError`` with the engine's errno."""

    def follow_up(self) -> bytes | None:
        """Once ``feed`` said done: a further request to send, if the exchange has one."""
        return None


class Operations(Protocol):
    """A backend's sans-IO side."""

    name: str

    def add_sa(self, sa: SecurityAssociation) -> Exchange[None]: ...
    def update_sa(self, sa: SecurityAssociation) -> Exchange[None]: ...
    def get_sa(self, dst: IPAddress, spi: int, proto: int) -> Exchange[SecurityAssociation]: ...
    def delete_sa(self, dst: IPAddress, spi: int, proto: int) -> Exchange[None]: ...
    def allocate_spi(
        self, src: IPAddress, dst: IPAddress, proto: int, reqid: int, spi_range: tuple[int, int], mode: Mode
    ) -> Exchange[int]: ...
    def add_policy(self, policy: Policy) -> Exchange[Policy]: ...
    def update_policy(self, policy: Policy) -> Exchange[Policy]: ...
    def get_policy(self, selector: Selector, dir: Dir) -> Exchange[Policy]: ...
    def delete_policy(self, selector: Selector, dir: Dir) -> Exchange[None]: ...
    def flush_sas(self) -> Exchange[None]: ...
    def flush_policies(self) -> Exchange[None]: ...
    def dump_sas(self) -> Exchange[list[SecurityAssociation]]: ...
    def dump_policies(self) -> Exchange[list[Policy]]: ...
    def migrate(self, request: MigrateRequest) -> Exchange[None]: ...
    def events(self, raw: bytes) -> list[Event]: ...


class Transport(Protocol):
    def send(self, data: bytes) -> None: ...
    def recv_ready(self) -> bytes | None:
        """A datagram that is already there, without waiting."""
        ...

    def recv(self, timeout: float) -> bytes | None: ...
    def drain(self) -> None: ...
    def close(self) -> None: ...


class EventTransport(Protocol):
    def recv(self, timeout: float | None) -> bytes | None:
        """The next datagram; ``EventsLostError`` if the kernel dropped some."""
        ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    async def send(self, data: bytes) -> None: ...
    async def recv(self) -> bytes: ...
    def drain(self) -> None: ...
    def close(self) -> None: ...


class AsyncEventTransport(Protocol):
    async def recv(self) -> bytes:
        """The next datagram; ``EventsLostError`` if the kernel dropped some."""
        ...

    def recv_ready(self) -> bytes | None:
        """A datagram that is already there, without waiting; ``EventsLostError`` as ``recv``."""
        ...

    def close(self) -> None: ...


class EventsLostError(Exception):
    """Raised by an event transport when the kernel says it dropped messages (ENOBUFS)."""


E = TypeVar("E")


class _Engine(Generic[E]):
    """What both interfaces share: the operations, what the backend can do, and the
    event channel of type ``E``, opened on first use."""

    def __init__(
        self, ops: Operations, open_events: Callable[[], E] | None, capabilities: Capabilities | None, timeout: float
    ) -> None:
        self.ops = ops
        self.capabilities = capabilities or Capabilities(ops.name, True)
        self.timeout = timeout
        self._open_events = open_events
        self._events: E | None = None
        self._abandoned: Exchange[Any] | None = None  # a dump that timed out, its answers still coming

    @property
    def name(self) -> str:
        return self.ops.name

    def subscribe(self) -> None:
        """Start listening for events now (``next_events`` does it on first use)."""
        self._listening()

    def _listening(self) -> E:
        if self._events is None:
            if self._open_events is None:
                raise Unsupported("events", f"{self.name} has no event channel")
            try:
                self._events = self._open_events()
            except KeyEngineError:
                raise
            except OSError as exc:  # (a netlink group needs CAP_NET_ADMIN; keyd may be gone)
                code = exc.errno or _errno.EIO
                detail = exc.strerror if exc.strerror and exc.strerror != os.strerror(code) else ""
                raise KeyEngineError(code, "listen for events", detail) from exc
        return self._events

    def _poll(self, read: Callable[[], bytes | None]) -> list[Event]:
        """The events of every datagram ``read`` gives until it gives ``None``."""
        out: list[Event] = []
        while True:
            try:
                raw = read()
            except EventsLostError as exc:
                out.append(EventsLost(str(exc)))
                continue
            if raw is None:
                return out
            out += self.ops.events(raw)


class KeyEngine(_Engine[EventTransport]):
    """The blocking interface: every call returns when the engine has answered."""

    def __init__(
        self,
        ops: Operations,
        transport: Transport,
        *,
        open_events: Callable[[], EventTransport] | None = None,
        capabilities: Capabilities | None = None,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(ops, open_events, capabilities, timeout)
        self.transport = transport

    def run(self, exchange: Exchange[T]) -> T:
        """Send one request and wait for its answer."""
        transport = self.transport
        if self._abandoned is not None:
            self._finish(self._abandoned, exchange.operation)
        transport.drain()  # broadcasts that arrived meanwhile would crowd out the reply
        transport.send(exchange.request)
        try:
            self._complete(exchange)
        except KeyEngineError as exc:
            if exc.errno == _errno.ETIMEDOUT and exchange.lingers:
                self._abandoned = exchange
            raise
        return exchange.result()

    def _complete(self, exchange: Exchange[Any]) -> None:
        """Feed ``exchange`` what arrives until it is done; ETIMEDOUT after the timeout."""
        transport = self.transport
        deadline = 0.0
        while True:
            try:
                raw = transport.recv_ready()  # Linux often answers before send() returns
                if raw is None:
                    deadline = deadline or time.monotonic() + self.timeout
                    raw = transport.recv(max(deadline - time.monotonic(), 0.0))
            except EventsLostError:  # broadcasts nobody reads here were dropped: not this request's
                continue
            if raw is None:
                raise KeyEngineError(_errno.ETIMEDOUT, exchange.operation, f"no answer from {self.name}")
            if exchange.feed(raw):
                follow_up = exchange.follow_up()
                if follow_up is None:
                    return
                transport.send(follow_up)

    def _finish(self, abandoned: Exchange[Any], operation: str) -> None:
        """Read the rest of a dump that timed out, so that its tail is not taken for the
        answer to ``operation``."""
        try:
            self._complete(abandoned)
        except KeyEngineError as exc:
            detail = f"the rest of an earlier {abandoned.operation} is still coming from {self.name}"
            raise KeyEngineError(exc.errno or _errno.ETIMEDOUT, operation, detail) from None
        self._abandoned = None

    def add_sa(self, sa: SecurityAssociation) -> None:
        self.run(self.ops.add_sa(sa))

    def update_sa(self, sa: SecurityAssociation) -> None:
        self.run(self.ops.update_sa(sa))

    def get_sa(self, dst: AddressLike, spi: int, proto: int) -> SecurityAssociation:
        return self.run(self.ops.get_sa(ip_address(dst), spi, proto))

    def delete_sa(self, dst: AddressLike, spi: int, proto: int) -> None:
        self.run(self.ops.delete_sa(ip_address(dst), spi, proto))

    def allocate_spi(
        self,
        src: AddressLike,
        dst: AddressLike,
        proto: int,
        *,
        reqid: int = 0,
        spi_range: tuple[int, int] = (0x100, 0x0FFFFFFF),
        mode: Mode = Mode.TRANSPORT,
    ) -> int:
        """A larval SA (no keys yet) from ``src`` to ``dst`` with an SPI the engine picks
        in ``spi_range``; the SPI. The SA that completes it gives the rest."""
        return self.run(self.ops.allocate_spi(ip_address(src), ip_address(dst), proto, reqid, spi_range, mode))

    def add_policy(self, policy: Policy) -> Policy:
        return self.run(self.ops.add_policy(policy))

    def update_policy(self, policy: Policy) -> Policy:
        return self.run(self.ops.update_policy(policy))

    def get_policy(self, selector: Selector, dir: Dir) -> Policy:
        return self.run(self.ops.get_policy(selector, dir))

    def delete_policy(self, selector: Selector, dir: Dir) -> None:
        self.run(self.ops.delete_policy(selector, dir))

    def flush(self) -> None:
        self.run(self.ops.flush_sas())
        self.run(self.ops.flush_policies())

    def dump_sas(self) -> list[SecurityAssociation]:
        return self.run(self.ops.dump_sas())

    def dump_policies(self) -> list[Policy]:
        return self.run(self.ops.dump_policies())

    def migrate(self, request: MigrateRequest) -> None:
        self.run(self.ops.migrate(request))

    def next_events(self, timeout: float | None = None) -> list[Event]:
        """The events of the next datagram, or ``[]`` after ``timeout`` seconds."""
        events = self._listening()
        try:
            raw = events.recv(timeout)
        except EventsLostError as exc:
            return [EventsLost(str(exc))]
        return [] if raw is None else self.ops.events(raw)

    def poll_events(self) -> list[Event]:
        """Every event already received, without waiting (``[]`` if none)."""
        events = self._listening()
        return self._poll(lambda: events.recv(0.0))

    def close(self) -> None:
        self.transport.close()
        if self._events is not None:
            self._events.close()

    def __enter__(self) -> KeyEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncKeyEngine(_Engine[AsyncEventTransport]):
    """The asyncio interface: the same operations and events, awaited."""

    def __init__(
        self,
        ops: Operations,
        transport: AsyncTransport,
        *,
        open_events: Callable[[], AsyncEventTransport] | None = None,
        capabilities: Capabilities | None = None,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(ops, open_events, capabilities, timeout)
        self.transport = transport
        self._lock = asyncio.Lock()  # one exchange at a time on the socket

    async def run(self, exchange: Exchange[T]) -> T:
        async with self._lock:
            if self._abandoned is not None:
                try:
                    await self._complete(self._abandoned)
                except TimeoutError:
                    detail = f"the rest of an earlier {self._abandoned.operation} is still coming from {self.name}"
                    raise KeyEngineError(_errno.ETIMEDOUT, exchange.operation, detail) from None
                self._abandoned = None
            self.transport.drain()
            await self.transport.send(exchange.request)
            try:
                await self._complete(exchange)
            except TimeoutError:
                if exchange.lingers:  # (its tail is read before the next request)
                    self._abandoned = exchange
                raise KeyEngineError(_errno.ETIMEDOUT, exchange.operation, f"no answer from {self.name}") from None
            return exchange.result()

    async def _complete(self, exchange: Exchange[Any]) -> None:
        """Feed ``exchange`` what arrives until it is done; ``TimeoutError`` after the timeout."""
        async with asyncio.timeout(self.timeout):
            while True:
                try:
                    raw = await self.transport.recv()
                except EventsLostError:  # broadcasts nobody reads here were dropped: not this request's
                    continue
                if exchange.feed(raw):
                    follow_up = exchange.follow_up()
                    if follow_up is None:
                        return
                    await self.transport.send(follow_up)

    async def add_sa(self, sa: SecurityAssociation) -> None:
        await self.run(self.ops.add_sa(sa))

    async def update_sa(self, sa: SecurityAssociation) -> None:
        await self.run(self.ops.update_sa(sa))

    async def get_sa(self, dst: AddressLike, spi: int, proto: int) -> SecurityAssociation:
        return await self.run(self.ops.get_sa(ip_address(dst), spi, proto))

    async def delete_sa(self, dst: AddressLike, spi: int, proto: int) -> None:
        await self.run(self.ops.delete_sa(ip_address(dst), spi, proto))

    async def allocate_spi(
        self,
        src: AddressLike,
        dst: AddressLike,
        proto: int,
        *,
        reqid: int = 0,
        spi_range: tuple[int, int] = (0x100, 0x0FFFFFFF),
        mode: Mode = Mode.TRANSPORT,
    ) -> int:
        return await self.run(self.ops.allocate_spi(ip_address(src), ip_address(dst), proto, reqid, spi_range, mode))

    async def add_policy(self, policy: Policy) -> Policy:
        return await self.run(self.ops.add_policy(policy))

    async def update_policy(self, policy: Policy) -> Policy:
        return await self.run(self.ops.update_policy(policy))

    async def get_policy(self, selector: Selector, dir: Dir) -> Policy:
        return await self.run(self.ops.get_policy(selector, dir))

    async def delete_policy(self, selector: Selector, dir: Dir) -> None:
        await self.run(self.ops.delete_policy(selector, dir))

    async def flush(self) -> None:
        await self.run(self.ops.flush_sas())
        await self.run(self.ops.flush_policies())

    async def dump_sas(self) -> list[SecurityAssociation]:
        return await self.run(self.ops.dump_sas())

    async def dump_policies(self) -> list[Policy]:
        return await self.run(self.ops.dump_policies())

    async def migrate(self, request: MigrateRequest) -> None:
        await self.run(self.ops.migrate(request))

    async def next_events(self, timeout: float | None = None) -> list[Event]:
        """The events of the next datagram, or ``[]`` after ``timeout`` seconds."""
        events = self._listening()
        try:
            async with asyncio.timeout(timeout):
                raw = await events.recv()
        except TimeoutError:
            return []
        except EventsLostError as exc:
            return [EventsLost(str(exc))]
        return self.ops.events(raw)

    def poll_events(self) -> list[Event]:
        """Every event already received, without waiting (``[]`` if none)."""
        return self._poll(self._listening().recv_ready)

    def close(self) -> None:
        self.transport.close()
        if self._events is not None:
            self._events.close()

    async def __aenter__(self) -> AsyncKeyEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
