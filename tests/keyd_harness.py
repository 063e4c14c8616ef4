"""Running keyd in tests: in a thread of the test process, or as a process of its own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pfmigrate.backends.keyd import connect, open_keyd
from pfmigrate.keyd.journal import Journal
from pfmigrate.keyd.server import DEFAULT_PER_USER, Server
from pfmigrate.keyd.service import AccessRules, Service
from pfmigrate.model import (
    ESP,
    Dir,
    IPAddress,
    Mode,
    Policy,
    Template,
)
from pfmigrate.pfkey import Message, MsgType, SAType
from pfmigrate.sadb import Engine
from tests.seed_scenario import HA, HOA, NEW, OLD, OUT_SELECTOR, tunnel_sa


def out_policy(coa: IPAddress) -> Policy:
    return Policy(OUT_SELECTOR, Dir.OUT, (Template(ESP, Mode.TUNNEL, coa, HA),))


@contextmanager
def keyd_thread(
    directory: Path,
    *,
    rules: AccessRules | None = None,
    outbox: int = 4096,
    clock: object = None,
    per_user: int = DEFAULT_PER_USER,
    semantics: str = "pfmigrate",
) -> Iterator[Server]:
    """keyd serving ``directory/keyd.sock`` with its journal in ``directory``, in a thread."""
    journal = Journal(directory / "keyd.db")
    engine = Engine(semantics=semantics)
    engine.restore(*journal.load())
    service = Service(engine, journal, rules or AccessRules(os.getuid()), outbox_limit=outbox)
    server = Server(service, directory / "keyd.sock", clock=clock or time.time, per_user=per_user)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(5)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.01)


def keyd_listening(path: Path) -> bool:
    """Whether a keyd takes connections at ``path`` (its socket file comes before it listens)."""
    try:
        connect(path).close()
    except OSError:
        return False
    return True


class KeydProcess:
    """``pfmigrate keyd`` as a process of its own, for tests that kill it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "keyd.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> subprocess.Popen[bytes]:
        """Start keyd without waiting for it to take connections."""
        command = [sys.executable, "-m", "pfmigrate", "keyd", "--socket", str(self.socket),
                   "--journal", str(self.directory / "keyd.db"), "--log-level", "warning"]  # fmt: skip
        with (self.directory / "keyd.log").open("ab") as stderr:
            self.process = subprocess.Popen(command, stderr=stderr)
        return self.process

    def start(self) -> None:
        log = self.directory / "keyd.log"
        self.process = self.launch()
        deadline = time.monotonic() + 20
        while not keyd_listening(self.socket):  # (a socket file may be left by the keyd killed before)
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"keyd did not start: {log.read_text()[-2000:]}")
            time.sleep(0.01)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


__all__ = ["HA", "HOA", "NEW", "OLD", "OUT_SELECTOR", "KeydProcess", "keyd_thread", "out_policy", "tunnel_sa"]


def as_nobody(call: Callable[[], str], groups: Sequence[int] = ()) -> str:
    """What ``call`` returns, run in a child process as the user nobody holding ``groups``
    (the caller must be root)."""
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.setgroups(list(groups))
            os.setgid(65534)
            os.setuid(65534)
            os.write(writer, call().encode())
        finally:
            os._exit(0)
    os.close(writer)
    chunks = []
    while chunk := os.read(reader, 65536):
        chunks.append(chunk)
    os.close(reader)
    os.waitpid(child, 0)
    return b"".join(chunks).decode()


def request(mtype: MsgType, seq: int, satype: SAType = SAType.ESP) -> bytes:
    return Message(mtype, satype, seq, 4242).encode()


def read_all(sock: socket.socket, quiet: float = 0.5) -> list[bytes]:
    """Every message until none has come for ``quiet`` seconds, or keyd hung up."""
    received = []
    sock.settimeout(quiet)
    try:
        while data := sock.recv(0x80000):
            received.append(data)
    except TimeoutError:
        pass
    return received


def read_until(sock: socket.socket, done: Callable[[list[bytes]], bool], timeout: float = 10.0) -> list[bytes]:
    """Every message until ``done`` holds for those read, then any that follow within a
    moment (so that an extra one is seen). An answer waits for keyd's journal commit, which
    a busy disk can hold up for longer than any quiet time: silence is not taken for the end."""
    received: list[bytes] = []
    deadline = time.monotonic() + timeout
    while not done(received):
        left = deadline - time.monotonic()
        assert left > 0, f"what was awaited did not come within {timeout} s; got {[m[:16].hex() for m in received]}"
        sock.settimeout(left)
        try:
            data = sock.recv(0x80000)
        except TimeoutError:
            continue
        assert data, f"keyd hung up; got {[m[:16].hex() for m in received]}"
        received.append(data)
    return received + read_all(sock, 0.1)


def has_type(mtype: MsgType) -> Callable[[list[bytes]], bool]:
    """For ``read_until``: a message of type ``mtype`` has come."""
    return lambda received: any(m[1] == mtype for m in received)


def journal_with_two_sas(directory: Path) -> Path:
    with keyd_thread(directory):
        client = open_keyd(directory / "keyd.sock")
        client.add_sa(tunnel_sa(0x1000, OLD, HA))
        client.add_sa(tunnel_sa(0x1001, HA, OLD))
        client.close()
    return directory / "keyd.db"
