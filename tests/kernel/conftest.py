"""Fixtures for tests against Linux ``af_key`` (they run inside User-Mode Linux).

Every PF_KEY socket a test opens through ``pfkey_socket`` records what Linux sent; at
the end of the test each received message must decode and re-encode to the very same
bytes. With ``PFMIGRATE_CAPTURE_DIR`` set, ``vectors.keep`` also stores chosen messages
as hex vectors for the plain tier (see ``testbed/capture_vectors.py``).
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pfmigrate.backends.pfkey_socket import PfKeySocket
from pfmigrate.pfkey import Message, MsgType, SAType, decode
from pfmigrate.xfrm import NetlinkMessage
from pfmigrate.xfrm import decode as xfrm_decode
from tests.vectorlib import zero_address_padding


class Vectors:
    """Messages Linux sent, to be kept as test vectors when capturing."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.received: list[bytes] = []
        self.received_xfrm: list[bytes] = []

    def trace(self, direction: str, raw: bytes) -> None:
        if direction == "recv":
            self.received.append(raw)

    def keep(self, name: str, msg: Message, meaning: str) -> None:
        """Keep the received bytes of ``msg`` as vector ``name``, described by ``meaning``."""
        raw = next((raw for raw in reversed(self.received) if decode(raw) == msg), None)
        assert raw is not None, f"{name}: message was not received on a traced socket"
        self._store("pfkey", name, raw, meaning)

    def keep_xfrm(self, name: str, msg: NetlinkMessage, meaning: str) -> None:
        """The same for an XFRM netlink message: its own bytes as Linux sent them, cut
        from the datagram that carried it (by its ``nlmsg_len``), kept as one datagram."""
        for raw in reversed(self.received_xfrm):
            for part in _netlink_messages(raw):
                if xfrm_decode(part) == [msg]:
                    self._store("xfrm", name, part, meaning)
                    return
        raise AssertionError(f"{name}: not received on a traced socket")

    def _store(self, codec: str, name: str, raw: bytes, meaning: str) -> None:
        if self.directory is not None:
            assert re.fullmatch(r"[a-z0-9_]+", name), name
            record = {"name": name, "meaning": meaning, "kernel": f"Linux {platform.release()}", "hex": raw.hex()}
            (self.directory / codec).mkdir(exist_ok=True)
            (self.directory / codec / f"{name}.json").write_text(json.dumps(record, indent=1))


@pytest.fixture
def vectors() -> Iterator[Vectors]:
    directory = os.environ.get("PFMIGRATE_CAPTURE_DIR")
    kept = Vectors(Path(directory) if directory else None)
    yield kept
    for raw in kept.received:  # byte-exact with everything Linux said during the test
        assert decode(raw).encode() == zero_address_padding(raw), (
            f"round trip changed a message Linux sent: {raw.hex()}"
        )
    for raw in kept.received_xfrm:  # (and on XFRM netlink)
        assert b"".join(m.encode() for m in xfrm_decode(raw)) == raw, f"round trip changed XFRM bytes: {raw.hex()}"


def _netlink_messages(datagram: bytes) -> list[bytes]:
    """Each message of a netlink datagram, as its bytes (padded to 4, as sent)."""
    parts, at = [], 0
    while at + 16 <= len(datagram):
        length = int.from_bytes(datagram[at : at + 4], "little")
        end = min(len(datagram), at + ((length + 3) & ~3))
        parts.append(datagram[at:end])
        at = end if length else len(datagram)
    return parts


def flush() -> None:
    """Empty Linux's SAD and SPD, through a socket of its own (a busy one may have a full queue)."""
    with PfKeySocket() as sock:
        sock.request(Message(MsgType.FLUSH, SAType.UNSPEC))
        sock.request(Message(MsgType.X_SPDFLUSH))


@pytest.fixture
def pfkey_socket(vectors: Vectors) -> Iterator[Callable[[], PfKeySocket]]:
    """Opens traced AF_KEY sockets; the SAD and SPD are flushed before and after."""
    opened: list[PfKeySocket] = []

    def open_socket() -> PfKeySocket:
        sock = PfKeySocket(trace=vectors.trace)
        opened.append(sock)
        return sock

    flush()
    yield open_socket
    for sock in opened:
        sock.close()
    flush()


@pytest.fixture
def pfkey(pfkey_socket: Callable[[], PfKeySocket]) -> PfKeySocket:
    return pfkey_socket()
