"""The asyncio event channel under the two ways a listener stops waiting: a timeout that
fires as an event arrives must not take the event with it, and closing the engine wakes
a task that waits on it. The kernel is stood in for by a socket pair."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import time
from pathlib import Path

import pytest

from pfmigrate.backends.inprocess import Hub, open_inprocess_async
from pfmigrate.backends.linux import AsyncEventSocket, AsyncSocketTransport
from pfmigrate.backends.pfkey_ops import PfKeyOperations
from pfmigrate.engine import AsyncKeyEngine
from pfmigrate.model import AcquireEvent, Event

VECTORS = json.loads((Path(__file__).parent / "vectors" / "pfkey_linux.json").read_text())
ACQUIRE = bytes.fromhex(next(v["hex"] for v in VECTORS if v["name"] == "acquire"))


def stood_in() -> tuple[AsyncKeyEngine, socket.socket, list[socket.socket]]:
    """An engine whose event socket's far end (the kernel) the test writes to."""
    events, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    requests, far = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    engine = AsyncKeyEngine(
        PfKeyOperations(1), AsyncSocketTransport(requests), open_events=lambda: AsyncEventSocket(events)
    )
    return engine, kernel, [kernel, far]


def test_an_event_arriving_as_the_timeout_fires_is_not_lost() -> None:
    async def scenario() -> list[Event]:
        engine, kernel, ends = stood_in()
        try:
            waiting = asyncio.create_task(engine.next_events(0.01))
            await asyncio.sleep(0)  # it waits for the socket now
            kernel.send(ACQUIRE)
            time.sleep(0.05)  # the loop is busy past the deadline as the event comes
            return await waiting + engine.poll_events()
        finally:
            engine.close()
            for end in ends:
                end.close()

    events = asyncio.run(scenario())
    assert [type(event) for event in events] == [AcquireEvent]  # heard once, by one or the other


def test_closing_the_engine_wakes_a_task_waiting_for_events() -> None:
    async def scenario() -> BaseException | None:
        engine, _, ends = stood_in()
        try:
            engine.subscribe()
            listener = asyncio.create_task(engine.next_events())
            await asyncio.sleep(0.01)
            engine.close()
            try:
                await asyncio.wait_for(listener, 1.0)
            except OSError as exc:
                return exc
            return None
        finally:
            for end in ends:
                end.close()

    woken = asyncio.run(scenario())
    assert isinstance(woken, OSError)
    assert not isinstance(woken, TimeoutError)  # (an OSError too: it would mean it was never woken)
    assert woken.errno == errno.EBADF


def test_closing_an_in_process_engine_wakes_its_listener() -> None:
    async def scenario() -> None:
        engine = open_inprocess_async(Hub())
        engine.subscribe()
        listener = asyncio.create_task(engine.next_events())
        await asyncio.sleep(0.01)
        engine.close()
        with pytest.raises(OSError, match="the client is closed") as woken:
            await asyncio.wait_for(listener, 1.0)
        assert woken.value.errno == errno.EBADF

    asyncio.run(scenario())
