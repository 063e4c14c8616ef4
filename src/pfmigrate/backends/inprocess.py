"""The in-process backend: pfmigrate's own engine behind the key-engine interface.

A ``Hub`` holds one ``pfmigrate.sadb.Engine`` and a clock, and stands for the kernel:
each ``KeyEngine`` opened on it is a client (an AF_KEY socket) that sends PF_KEY
requests and receives what the engine delivers to it, through a queue. Everything that
runs on the Linux PF_KEY backend therefore runs here with no kernel support at all.

Queues are bounded like socket buffers: a client whose queue is full loses the message,
and its next receive says so (``EventsLostError``), where Linux would only drop it. A
dump is made as it is read (as Linux makes one as the socket is read), so a dump longer
than a queue comes whole, and a second dump while one is under way is refused (EBUSY).
The hub is thread-safe; timers run whenever a client sends or waits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno as _errno
import os
import threading
import time
from collections.abc import Callable

from pfmigrate.backends.pfkey_ops import PfKeyOperations
from pfmigrate.engine import AsyncKeyEngine, Capabilities, EventsLostError, KeyEngine
from pfmigrate.pfkey import Message, MsgType, SAType
from pfmigrate.sadb import Delivery, Engine
from pfmigrate.sadb.core import Batches, header_only

#: What a person should know of an engine opened without a hub of its own making.
LIFETIME = "an engine of this process alone: its SAs and policies are gone when the command ends"
DEFAULT_QUEUE = 4096  # messages a client may have waiting
_DUMPS = frozenset({MsgType.DUMP, MsgType.X_SPDDUMP})


class Hub:
    """One engine and the clients connected to it."""

    def __init__(
        self, engine: Engine | None = None, *, clock: Callable[[], float] = time.time, queue_limit: int = DEFAULT_QUEUE
    ) -> None:
        self.engine = engine or Engine()
        self.clock = clock
        self.queue_limit = queue_limit
        self.lock = threading.Condition()
        self.queues: dict[int, collections.deque[bytes]] = {}
        self.overflowed: set[int] = set()
        self.watchers: dict[int, Callable[[], None]] = {}  # called when a client's queue grows
        self.dumps: dict[int, Batches] = {}  # per client: the rest of its dump, made as it is read

    def connect(self) -> HubTransport:
        with self.lock:
            client = self.engine.connect()
            self.queues[client] = collections.deque()
        return HubTransport(self, client)

    def disconnect(self, client: int) -> None:
        with self.lock:
            self.engine.disconnect(client)
            self.queues.pop(client, None)
            self.overflowed.discard(client)
            self.watchers.pop(client, None)
            self.dumps.pop(client, None)

    def send(self, client: int, data: bytes) -> None:
        """``send()`` on the client's socket: the request is handled before it returns."""
        with self.lock:
            self._run_timers()
            if len(data) >= 16 and data[1] in _DUMPS and client in self.dumps:  # pfkey_dump: one at a time
                self._deliver((Delivery(client, header_only(data[:16], errno_=_errno.EBUSY)),))
                return
            outcome = self.engine.handle(client, data, self.clock(), stream=True)
            self._deliver(outcome.deliveries)
            if outcome.more is not None:
                self.dumps[client] = outcome.more
                self._make_dump(client)
        if outcome.send_errno:
            raise OSError(outcome.send_errno, os.strerror(outcome.send_errno))

    def receive(self, client: int, timeout: float | None) -> bytes | None:
        """The client's next message, waiting up to ``timeout`` seconds (``None``: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while True:
                self._run_timers()
                if client in self.overflowed:
                    self.overflowed.discard(client)
                    raise EventsLostError("the engine dropped messages for this client (its queue was full)")
                queue = self.queues.get(client)
                if queue is None:
                    raise OSError(_errno.EBADF, "the client is closed")
                if client in self.dumps:
                    self._make_dump(client)
                if queue:
                    return queue.popleft()
                wait = self.until_next_timer()
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self.lock.wait(wait)

    def drain(self, client: int) -> None:
        with self.lock:
            self._run_timers()
            queue = self.queues.get(client)
            if queue is not None:
                queue.clear()
            self.overflowed.discard(client)

    def outgoing(self, src: str, dst: str, *, proto: int = 0, sport: int = 0, dport: int = 0, nbytes: int = 0) -> int:
        """A packet the host sends (``Engine.outgoing``): 0 if it leaves, else the errno."""
        with self.lock:
            self._run_timers()
            outcome = self.engine.outgoing(src, dst, self.clock(), proto=proto, sport=sport, dport=dport, nbytes=nbytes)
            self._deliver(outcome.deliveries)
        return outcome.send_errno

    def tick(self) -> None:
        """Run the engine's timers now (``send`` and ``receive`` also do)."""
        with self.lock:
            self._run_timers()

    def _run_timers(self) -> None:
        due = self.engine.next_deadline()
        if due is not None and due <= self.clock():
            self._deliver(self.engine.tick(self.clock()))

    def until_next_timer(self) -> float | None:
        """Seconds until the engine's next timer is due (``None``: no timer)."""
        due = self.engine.next_deadline()
        return None if due is None else max(due - self.clock(), 0.0) + 0.001

    def _make_dump(self, client: int) -> None:
        """More of the client's dump, while its queue is less than half full; the dump is
        over once all of it is made."""
        queue, batches = self.queues[client], self.dumps[client]
        while len(queue) < max(1, self.queue_limit // 2):
            batch = next(batches, None)
            if batch is None:
                del self.dumps[client]
                return
            self._deliver(tuple(batch))

    def _deliver(self, deliveries: tuple[Delivery, ...]) -> None:
        for delivery in deliveries:
            queue = self.queues.get(delivery.client)
            if queue is None:
                continue
            if len(queue) >= self.queue_limit:
                self.overflowed.add(delivery.client)
                continue
            queue.append(delivery.data)
            watcher = self.watchers.get(delivery.client)
            if watcher is not None:
                watcher()
        if deliveries:
            self.lock.notify_all()


class HubTransport:
    """One client of a hub, as the key-engine interface's transport."""

    def __init__(self, hub: Hub, client: int) -> None:
        self.hub = hub
        self.client = client

    def send(self, data: bytes) -> None:
        self.hub.send(self.client, data)

    def recv_ready(self) -> bytes | None:
        return self.hub.receive(self.client, 0.0)

    def recv(self, timeout: float | None) -> bytes | None:
        return self.hub.receive(self.client, timeout)

    def drain(self) -> None:
        self.hub.drain(self.client)

    def close(self) -> None:
        self.hub.disconnect(self.client)


class AsyncHubTransport:
    """One client of a hub for asyncio: receiving awaits the hub's wake-up call."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.client = hub.connect().client
        self._ready: asyncio.Event | None = None

    async def send(self, data: bytes) -> None:
        self.hub.send(self.client, data)

    async def recv(self) -> bytes:
        if self._ready is None:
            loop, ready = asyncio.get_running_loop(), asyncio.Event()

            def wake() -> None:
                with contextlib.suppress(RuntimeError):  # (its loop has ended: nobody waits there)
                    loop.call_soon_threadsafe(ready.set)

            self.hub.watchers[self.client] = wake
            self._ready = ready
        while True:
            self._ready.clear()
            data = self.hub.receive(self.client, 0.0)
            if data is not None:
                return data
            with contextlib.suppress(TimeoutError):  # a timer may be due: look again then
                async with asyncio.timeout(self.hub.until_next_timer()):
                    await self._ready.wait()

    def recv_ready(self) -> bytes | None:
        return self.hub.receive(self.client, 0.0)

    def drain(self) -> None:
        self.hub.drain(self.client)

    def close(self) -> None:
        self.hub.disconnect(self.client)
        if self._ready is not None:  # a waiting ``recv`` wakes, and finds the client closed (EBADF)
            self._ready.set()


def _events(hub: Hub) -> HubTransport:
    transport = hub.connect()
    for satype in (SAType.ESP, SAType.AH, SAType.X_IPCOMP):  # registered clients hear ACQUIRE and EXPIRE
        transport.send(Message(MsgType.REGISTER, satype, 1, os.getpid()).encode())
    transport.drain()
    return transport


def open_inprocess(hub: Hub | None = None, *, timeout: float = 5.0) -> KeyEngine:
    """A blocking key engine on ``hub`` (a new hub with its own engine if none)."""
    hub = hub or Hub()
    return KeyEngine(
        PfKeyOperations(os.getpid(), name="inprocess"),
        hub.connect(),
        open_events=lambda: _events(hub),
        capabilities=_capabilities(hub),
        timeout=timeout,
    )


def _capabilities(hub: Hub) -> Capabilities:
    semantics = hub.engine.semantics
    return Capabilities(
        "inprocess",
        True,
        True,
        (f"pfmigrate engine, {semantics} semantics",),
        migrate_by_reqid=semantics == "pfmigrate",
    )


def _async_events(hub: Hub) -> AsyncHubTransport:
    transport = AsyncHubTransport(hub)
    for satype in (SAType.ESP, SAType.AH, SAType.X_IPCOMP):  # as ``_events``
        hub.send(transport.client, Message(MsgType.REGISTER, satype, 1, os.getpid()).encode())
    transport.drain()
    return transport


def open_inprocess_async(hub: Hub | None = None, *, timeout: float = 5.0) -> AsyncKeyEngine:
    """An asyncio key engine on ``hub`` (a new hub with its own engine if none)."""
    hub = hub or Hub()
    return AsyncKeyEngine(
        PfKeyOperations(os.getpid(), name="inprocess"),
        AsyncHubTransport(hub),
        open_events=lambda: _async_events(hub),
        capabilities=_capabilities(hub),
        timeout=timeout,
    )
