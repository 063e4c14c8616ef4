"""What a client can make keyd hold, and what keyd does when something goes wrong under
it: clients that write without reading, pipelined dumps, too many connections, a
process out of descriptors, a bug in a handler, a damaged journal."""

from __future__ import annotations

import errno
import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pfmigrate.backends.keyd import connect, open_keyd
from pfmigrate.keyd.journal import Journal, JournalError
from pfmigrate.keyd.server import Server
from pfmigrate.keyd.service import AccessRules, Service, Session
from pfmigrate.pfkey import MsgType, SAType
from pfmigrate.sadb import Engine, Outcome
from tests.keyd_harness import (
    HA,
    OLD,
    as_nobody,
    journal_with_two_sas,
    keyd_listening,
    keyd_thread,
    read_until,
    request,
    tunnel_sa,
    wait_until,
)

NOBODY = 65534


def _busy(answers: list[bytes]) -> bool:
    return any(a[2] == errno.EBUSY for a in answers)


def session_of(server: Server, pid: int) -> Session:
    return next(s for s in server.service.sessions.values() if s.peer.pid == pid)


def test_a_client_that_writes_without_reading_is_held_back_and_loses_nothing(tmp_path: Path) -> None:
    with keyd_thread(tmp_path, outbox=16) as server:
        greedy = connect(tmp_path / "keyd.sock")
        greedy.setblocking(False)
        sent = 0
        try:
            while sent < 100_000:  # GETs of an SA that is not there: each has an answer
                greedy.send(request(MsgType.GET, sent))
                sent += 1
        except BlockingIOError:
            pass  # keyd stopped reading: the socket is full, as a kernel's would be
        assert sent < 100_000, "keyd kept reading a client that never read its answers"
        time.sleep(0.2)
        held = len(session_of(server, os.getpid()).outbox)
        assert held <= 16 + 64, f"{held} answers waiting: keyd went on reading"
        other = open_keyd(tmp_path / "keyd.sock")
        other.add_sa(tunnel_sa(0x1000, OLD, HA))  # the others are served meanwhile
        other.close()
        greedy.setblocking(True)
        everything = read_until(greedy, lambda got: sum(a[1] == MsgType.GET for a in got) == sent)
        answers = [a for a in everything if a[1] == MsgType.GET]  # (it hears the ADD too)
        assert len(answers) == sent, "an answer was lost"
        assert {a[2] for a in answers} == {answers[0][2]} != {0}  # one refusal, the same for each
        assert [int.from_bytes(a[8:12], "little") for a in answers] == list(range(sent))
        greedy.close()


SAS = 1000  # their dump is more than an outbox of 64 holds: it cannot all be queued at once


def test_a_dump_while_the_last_is_not_all_queued_is_busy_as_in_linux(tmp_path: Path) -> None:
    with keyd_thread(tmp_path, outbox=64) as server:
        engine = open_keyd(tmp_path / "keyd.sock")
        for spi in range(0x1000, 0x1000 + SAS):
            engine.add_sa(tunnel_sa(spi, OLD, HA))
        reader = connect(tmp_path / "keyd.sock")
        reader.send(request(MsgType.DUMP, 1))
        reader.send(request(MsgType.DUMP, 2))
        # (read nothing until keyd has taken the second: else it may come late)
        wait_until(lambda: bool(server.service.metrics.errors[errno.EBUSY]), "keyd refuses the second dump")
        answers = read_until(reader, lambda got: sum(a[2] == 0 for a in got) == SAS and _busy(got))
        assert len([a for a in answers if a[2] == 0]) == SAS
        busy = [a for a in answers if a[2] == errno.EBUSY]
        assert [int.from_bytes(a[8:12], "little") for a in busy] == [2]
        reader.send(request(MsgType.DUMP, 3))  # all read: the next one is served
        assert [a[2] for a in read_until(reader, lambda got: len(got) == SAS)] == [0] * SAS
        reader.close()
        engine.close()


def test_a_dump_all_queued_at_once_is_over_and_the_next_is_served(tmp_path: Path) -> None:
    with keyd_thread(tmp_path, outbox=64):
        engine = open_keyd(tmp_path / "keyd.sock")
        for spi in range(0x1000, 0x1000 + 3):
            engine.add_sa(tunnel_sa(spi, OLD, HA))
        reader = connect(tmp_path / "keyd.sock")
        reader.send(request(MsgType.DUMP, 1))
        reader.send(request(MsgType.DUMP, 2))  # pfkey_do_dump ended the first one in sendmsg()
        answers = read_until(reader, lambda got: len(got) == 6)
        assert [(int.from_bytes(a[8:12], "little"), a[2]) for a in answers] == [(1, 0), (2, 0), (0, 0)] * 2
        reader.close()
        engine.close()


def test_a_bug_in_a_handler_costs_one_answer_not_keyd(tmp_path: Path) -> None:
    with keyd_thread(tmp_path) as server:
        engine = server.service.engine
        handle = engine.handle

        def broken(client: int, data: bytes, now: float, *, stream: bool = False) -> Outcome:
            if data[1] == MsgType.GET:
                raise RuntimeError("a bug")
            return handle(client, data, now, stream=stream)

        engine.handle = broken  # type: ignore[method-assign]
        with connect(tmp_path / "keyd.sock") as sock:
            sock.send(request(MsgType.GET, 7))
            [answer] = read_until(sock, lambda got: len(got) == 1)
        assert (answer[1], answer[2]) == (MsgType.GET, errno.EINVAL)
        client = open_keyd(tmp_path / "keyd.sock")
        client.add_sa(tunnel_sa(0x1000, OLD, HA))
        assert len(client.dump_sas()) == 1
        client.close()


@pytest.mark.skipif(os.getuid() != 0, reason="changing to another uid needs root (CI runs as root)")
def test_a_user_holds_a_bounded_number_of_connections(open_directory: Path) -> None:
    with keyd_thread(open_directory, per_user=3) as server:
        assert _connections_as_nobody(open_directory / "keyd.sock", 5) == ["EPERM"] * 3 + ["closed"] * 2
        wait_until(lambda: not server.connections[NOBODY], "keyd sees nobody's five connections close")
        assert _connections_as_nobody(open_directory / "keyd.sock", 1) == ["EPERM"]


def _connections_as_nobody(path: Path, count: int) -> list[str]:
    """What each of ``count`` connections held at once by nobody gets for a FLUSH."""

    def connections() -> str:
        socks = [connect(path) for _ in range(count)]  # (keyd takes them in this order)
        outcomes = []
        for sock in socks:
            sock.settimeout(10.0)  # (a refused one is closed as soon as keyd takes it)
            try:
                sock.send(request(MsgType.FLUSH, 1, SAType.UNSPEC))
                answer = sock.recv(65536)
            except OSError:
                answer = b""
            outcomes.append(errno.errorcode[answer[2]] if answer else "closed")
        return json.dumps(outcomes)

    return list(json.loads(as_nobody(connections)))


def test_keyd_out_of_descriptors_waits_and_serves_on(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "pfmigrate", "keyd", "--socket", str(tmp_path / "keyd.sock"),
               "--journal", str(tmp_path / "keyd.db"), "--log-level", "warning"]  # fmt: skip
    few = (40, 40)  # descriptors keyd may have
    with (tmp_path / "keyd.log").open("wb") as log:
        keyd = subprocess.Popen(command, stderr=log, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, few))
    try:
        deadline = time.monotonic() + 20
        while not keyd_listening(tmp_path / "keyd.sock"):
            assert keyd.poll() is None, (tmp_path / "keyd.log").read_text()
            assert time.monotonic() < deadline, "keyd did not start"
            time.sleep(0.05)
        hogs = [connect(tmp_path / "keyd.sock") for _ in range(60)]  # more than that (root: no per-user bound)
        time.sleep(0.5)
        assert keyd.poll() is None, f"keyd died:\n{(tmp_path / 'keyd.log').read_text()}"
        for sock in hogs:
            sock.close()
        time.sleep(0.5)
        client = open_keyd(tmp_path / "keyd.sock")
        client.add_sa(tunnel_sa(0x1000, OLD, HA))
        assert len(client.dump_sas()) == 1
        client.close()
        assert "accept-paused" in (tmp_path / "keyd.log").read_text()
    finally:
        keyd.terminate()
        keyd.wait(10)


def test_a_damaged_journal_row_is_refused_with_its_name(tmp_path: Path) -> None:
    path = journal_with_two_sas(tmp_path)
    db = sqlite3.connect(path)
    key, data = db.execute("SELECT key, data FROM rows WHERE tbl = 'sad' ORDER BY key").fetchone()
    damaged = data.replace('"spi": 4096', '"spi": 4097') if '"spi": 4096' in data else data.replace("1", "2", 1)
    db.execute("UPDATE rows SET data = ? WHERE tbl = 'sad' AND key = ?", (damaged, key))
    db.commit()
    db.close()
    with pytest.raises(JournalError, match=rf"row sad/{key} is damaged: its CRC-32 does not match"):
        Journal(path).load()


def test_a_journal_row_under_another_serial_is_refused(tmp_path: Path) -> None:
    path = journal_with_two_sas(tmp_path)
    db = sqlite3.connect(path)
    first, second = (k for (k,) in db.execute("SELECT key FROM rows WHERE tbl = 'sad' ORDER BY key"))
    db.execute("DELETE FROM rows WHERE tbl = 'sad' AND key = ?", (second,))
    db.execute("UPDATE rows SET key = ? WHERE tbl = 'sad' AND key = ?", (second, first))
    db.commit()
    db.close()
    with pytest.raises(JournalError, match=rf"row sad/{second} is damaged: it holds serial {first}"):
        Journal(path).load()


def test_a_journal_of_another_format_is_refused(tmp_path: Path) -> None:
    path = journal_with_two_sas(tmp_path)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = 1 WHERE name = 'format'")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match="journal format 1, this keyd reads format 2"):
        Journal(path)


def test_metrics_that_cannot_be_written_do_not_stop_keyd(tmp_path: Path) -> None:
    service = Service(Engine(), None, AccessRules(os.getuid()))
    server = Server(service, tmp_path / "keyd.sock", metrics_path=tmp_path / "gone" / "keyd.prom")
    try:
        server.turn(0.0)  # (the metrics are due at once)
        with connect(tmp_path / "keyd.sock") as sock:
            sock.send(request(MsgType.GET, 1))
            server.turn(0.1)
            server.turn(0.1)
            assert sock.recv(65536)[1] == MsgType.GET
    finally:
        server.close()


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE meta SET value = value + 1 WHERE name = 'serial'",
        "DELETE FROM meta WHERE name != 'format'",  # rows, and no counters to go with them
    ],
)
def test_damaged_or_missing_counters_are_refused(tmp_path: Path, damage: str) -> None:
    path = journal_with_two_sas(tmp_path)
    db = sqlite3.connect(path)
    db.execute(damage)
    db.commit()
    db.close()
    with pytest.raises(JournalError, match="the engine's counters are missing or damaged"):
        Journal(path).load()
