"""keyd at its edges: the paths it is given, messages of sizes Linux refuses, credentials
as the kernel gives them, what readers may see, and journals it must not trust."""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from pfmigrate.backends.keyd import LOST_NOTICE, connect, open_keyd, semantics_of
from pfmigrate.keyd import journal as journal_module
from pfmigrate.keyd.journal import Journal, JournalError
from pfmigrate.keyd.metrics import Metrics
from pfmigrate.keyd.server import Server, ServerError
from pfmigrate.keyd.service import MAX_REQUEST, READER_REGISTERS_PER_SECOND, AccessRules, Peer, Privilege, Service
from pfmigrate.pfkey import ExtType, KeyAuth, KeyEncrypt, Message, MsgType, SAType, decode
from pfmigrate.sadb import Engine
from pfmigrate.sadb.records import PolicyRecord, SARecord
from tests.keyd_harness import as_nobody, has_type, journal_with_two_sas, keyd_thread, read_until, request, wait_until
from tests.sadb_box import esp_sa
from tests.seed_scenario import HA, OLD, mn_policies, tunnel_sa

NOW = 1_800_000_000.0


def _server(path: Path) -> Server:
    return Server(Service(Engine(), None, AccessRules(os.getuid())), path)


# --- the socket's path -------------------------------------------------------------------


def test_a_file_at_the_socket_path_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "keyd.sock"
    path.write_text("an operator's notes\n")
    with pytest.raises(ServerError, match="there is a file there that is not a socket"):
        _server(path)
    assert path.read_text() == "an operator's notes\n"


def test_the_socket_of_another_program_is_not_taken(tmp_path: Path) -> None:
    path = tmp_path / "keyd.sock"
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(path))
    other.listen()
    try:
        with pytest.raises(ServerError, match="another program listens there"):
            _server(path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(path))  # its clients still reach it
    finally:
        other.close()


def test_a_stale_socket_is_replaced_and_removed_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "keyd.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on
    server = _server(path)
    server.close()
    assert not path.exists()


@pytest.mark.parametrize("make", ["directory", "file-as-parent"])
def test_a_path_keyd_cannot_use_is_named(tmp_path: Path, make: str) -> None:
    if make == "directory":
        path = tmp_path / "adir"
        path.mkdir()
    else:
        (tmp_path / "plain").write_text("")
        path = tmp_path / "plain" / "keyd.sock"
    with pytest.raises(ServerError, match=str(path) if make == "directory" else str(path.parent)):
        _server(path)


# --- message sizes ---------------------------------------------------------------------------


def _promisc(path: Path) -> socket.socket:
    sock = connect(path)
    sock.send(Message(MsgType.X_PROMISC, SAType.of(1), 1, 77).encode())
    read_until(sock, has_type(MsgType.X_PROMISC))
    return sock


def test_a_request_longer_than_linux_takes_is_refused_and_hurts_nobody(tmp_path: Path) -> None:
    path = tmp_path / "keyd.sock"
    with keyd_thread(tmp_path):
        listener = _promisc(path)  # it would get a copy of the raw request
        big = bytearray(Message(MsgType.GET, SAType.ESP, 5, 4242).encode() + bytes(MAX_REQUEST + 8 - 16))
        big[4:6] = (len(big) // 8).to_bytes(2, "little")
        with connect(path) as sender:
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * len(big))
            sender.send(bytes(big))
            answer = sender.recv(65536)
        assert (answer[1], answer[2], len(answer)) == (MsgType.GET, errno.EMSGSIZE, 16)
        listener.send(request(MsgType.GET, 6))  # still served
        read_until(listener, lambda got: any(m[1] == MsgType.GET and m[2] == errno.EINVAL for m in got))
        listener.close()


def test_a_message_larger_than_a_clients_socket_takes_is_lost_not_the_client(tmp_path: Path) -> None:
    path = tmp_path / "keyd.sock"
    with keyd_thread(tmp_path) as server:
        victim = connect(path)
        wait_until(lambda: bool(server.service.sessions), "keyd takes the connection")
        [session] = server.service.sessions.values()
        server.sockets[session.id].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # keyd's end, made small
        big = (KeyAuth.of(bytes(8000)), KeyEncrypt.of(bytes(8000)))  # 16 kB, where 8 kB fit
        with connect(path) as admin:  # an X_PROMISC goes to every client, whatever it carries
            admin.send(Message(MsgType.X_PROMISC, SAType.UNSPEC, 1, 4242, extensions=big).encode())
        read_until(victim, lambda received: LOST_NOTICE in received)
        victim.send(request(MsgType.GET, 2))
        read_until(victim, has_type(MsgType.GET))
        victim.close()


def test_an_empty_packet_is_answered_as_linux_answers_it(tmp_path: Path) -> None:
    with keyd_thread(tmp_path), connect(tmp_path / "keyd.sock") as sock:
        sock.send(b"")
        assert sock.recv(65536)[2] == errno.EMSGSIZE
        sock.send(request(MsgType.GET, 2))  # and the client is still there
        assert sock.recv(65536)[1] == MsgType.GET


# --- a client that closes --------------------------------------------------------------------


def _turns(server: Server, count: int = 5) -> None:
    for _ in range(count):
        server.turn(0.05)


def _spis(server: Server) -> list[int]:
    return sorted(sa.spi for sa in server.service.engine.sad.values())


@pytest.mark.parametrize("before", [b"", b"unread"])
def test_what_a_client_sent_before_it_closed_is_carried_out(tmp_path: Path, before: bytes) -> None:
    """As on Linux, where each send() is carried out before it returns: an empty packet
    ahead of it, or an answer the client left unread, changes nothing."""
    server = _server(tmp_path / "keyd.sock")
    try:
        client = connect(tmp_path / "keyd.sock")
        _turns(server, 1)
        if before:
            client.send(request(MsgType.REGISTER, 1))
            _turns(server, 2)  # its answer waits, unread
        else:
            client.send(b"")
        client.send(esp_sa(0x1234).encode())
        client.close()
        _turns(server)
        assert _spis(server) == [0x1234]
        assert not server.sockets  # and the session is gone
    finally:
        server.close()


def test_a_client_that_never_reads_its_answers_has_all_it_sent_carried_out(tmp_path: Path) -> None:
    server = _server(tmp_path / "keyd.sock")
    try:
        client = connect(tmp_path / "keyd.sock")
        _turns(server, 1)
        for spi in range(0x1000, 0x1000 + 100):
            client.send(esp_sa(spi).encode())
        client.close()
        _turns(server, 10)
        assert _spis(server) == list(range(0x1000, 0x1000 + 100))
    finally:
        server.close()


def test_a_client_that_shuts_its_sending_side_gets_every_answer_then_the_end(tmp_path: Path) -> None:
    """``shutdown(SHUT_WR)`` after the requests, as ``socat`` does at the end of its input:
    the answers still come, a dump longer than the outbox included, and then keyd closes."""
    count = 5000  # more than the 4,096-message outbox, so the dump is made as it is read
    with keyd_thread(tmp_path) as server, connect(tmp_path / "keyd.sock") as client:
        for first in range(0x1000, 0x1000 + count, 500):
            for spi in range(first, first + 500):
                client.send(esp_sa(spi).encode())
            assert all(decode(client.recv(65536)).errno == 0 for _ in range(500))
        client.send(request(MsgType.GET, 1))  # (naming no SA: EINVAL, as from Linux)
        client.send(request(MsgType.DUMP, 2))
        client.shutdown(socket.SHUT_WR)
        client.settimeout(10)
        answers = []
        while data := client.recv(65536):  # b"": keyd closed the connection
            answers.append(decode(data))
        assert (answers[0].type, answers[0].errno) == (MsgType.GET, errno.EINVAL)
        dumped = answers[1:]
        assert [m.type for m in dumped] == [MsgType.DUMP] * count
        assert [m.seq for m in dumped][-1] == 0  # (the last of a dump says so with seq 0)
        wait_until(lambda: not server.sockets, "keyd drops the session with the connection")


# --- credentials and readers -----------------------------------------------------------------


@pytest.mark.skipif(os.getuid() != 0, reason="changing to another uid needs root (CI runs as root)")
def test_groups_are_those_the_process_holds(open_directory: Path) -> None:
    """A service given the admin group as a supplementary group (systemd's
    ``SupplementaryGroups=``) is an administrator, though /etc/group does not say so."""
    with keyd_thread(open_directory, rules=AccessRules(0, admin_gid=4242)):
        flush = Message(MsgType.FLUSH, SAType.UNSPEC, 1, 99).encode()
        assert _errno_as_nobody(open_directory / "keyd.sock", flush, groups=[4242]) == 0
        assert _errno_as_nobody(open_directory / "keyd.sock", flush, groups=[]) == errno.EPERM
        many = [4242, *range(5000, 5100)]  # more than Python reads of SO_PEERGROUPS at first try
        assert _errno_as_nobody(open_directory / "keyd.sock", flush, groups=many) == 0


def _errno_as_nobody(path: Path, request: bytes, groups: list[int]) -> int:
    def ask() -> str:
        with connect(path) as sock:
            sock.send(request)
            return str(sock.recv(65536)[2])

    return int(as_nobody(ask, groups))


@pytest.mark.skipif(os.getuid() != 0, reason="changing to another uid needs root (CI runs as root)")
def test_a_reader_over_its_registers_still_learns_which_semantics_keyd_keeps(open_directory: Path) -> None:
    path = open_directory / "keyd.sock"

    def spend_then_ask() -> str:
        with connect(path) as sock:
            for seq in range(READER_REGISTERS_PER_SECOND + 1):
                sock.send(Message(MsgType.REGISTER, SAType.UNSPEC, seq, 1).encode())
            last = [sock.recv(65536)[2] for _ in range(READER_REGISTERS_PER_SECOND + 1)][-1]
        return f"{last} {semantics_of(path)}"

    served: list[Server] = []

    def clock() -> float:  # still until keyd refuses a REGISTER, a second on after: the burst is in one second
        return NOW + bool(served and served[0].service.metrics.errors[errno.EAGAIN])

    with keyd_thread(open_directory, rules=AccessRules(0, read_gid=4243), clock=clock) as server:
        served.append(server)
        assert as_nobody(spend_then_ask, [4243]) == f"{errno.EAGAIN} pfmigrate"


def test_a_reader_never_sees_what_an_x_promisc_carries() -> None:
    keys = (KeyAuth.of(bytes(range(32))), KeyEncrypt.of(bytes(range(16))))
    wrapped = Message(MsgType.X_PROMISC, SAType.UNSPEC, 3, 9, extensions=keys).encode()
    service = Service(Engine(), None, AccessRules(0, read_gid=50))
    reader = service.open(Peer(1, 1000, 50))
    admin = service.open(Peer(2, 0, 0))
    assert reader.privilege == Privilege.READ
    service.request(admin, wrapped, NOW)  # X_PROMISC goes to every client
    service.commit()
    [seen] = [decode(m) for m in reader.outbox if m[1] == MsgType.X_PROMISC]
    assert seen.get(KeyAuth) is None
    assert seen.get(KeyEncrypt) is None
    assert (seen.seq, seen.extensions) == (3, ())


def test_a_reader_cannot_flood_the_key_managers_with_registers() -> None:
    service = Service(Engine(), None, AccessRules(0, read_gid=50))
    key_manager = service.open(Peer(1, 0, 0))
    service.request(key_manager, Message(MsgType.REGISTER, SAType.ESP, 1, 1).encode(), NOW)
    readers = [service.open(Peer(2, 1000, 50)), service.open(Peer(3, 1000, 50))]  # one user, two sockets
    errnos = []
    for second in (NOW, NOW + 0.5, NOW + 1):
        for i in range(READER_REGISTERS_PER_SECOND):
            reader = readers[i % 2]
            service.request(reader, Message(MsgType.REGISTER, SAType.UNSPEC, i, 2).encode(), second)
            service.commit()
            errnos.append(reader.outbox.pop()[2])
    bound = READER_REGISTERS_PER_SECOND
    assert errnos == [0] * bound + [errno.EAGAIN] * bound + [0] * bound  # (the second half-second is full)
    heard = [m for m in key_manager.outbox if m[1] == MsgType.REGISTER]
    assert len(heard) == 1 + 2 * bound


def test_each_unknown_message_type_keeps_a_series_of_its_own() -> None:
    metrics = Metrics()
    for mtype in (99, 200, MsgType.GET):
        metrics.count_message(mtype)
    lines = [line for line in metrics.render().splitlines() if line.startswith("pfmigrate_keyd_messages_total")]
    assert lines == [
        'pfmigrate_keyd_messages_total{type="GET"} 1',
        'pfmigrate_keyd_messages_total{type="99"} 1',
        'pfmigrate_keyd_messages_total{type="200"} 1',
    ]


# --- the journal ----------------------------------------------------------------------------


def test_one_journal_serves_one_keyd(tmp_path: Path) -> None:
    first = Journal(tmp_path / "keyd.db")
    with pytest.raises(JournalError, match="the journal is in use by another keyd"):
        Journal(tmp_path / "keyd.db")
    first.close()
    Journal(tmp_path / "keyd.db").close()  # free again


def test_a_restored_engine_never_hands_out_a_loaded_serial() -> None:
    filled = Engine()
    client = filled.connect()
    for spi in (0x1000, 0x1001, 0x1002):
        filled.handle(client, _add(spi), NOW)
    sas = list(filled.sad.values())
    restored = Engine()
    restored.restore(sas, [], {"serial": 1})  # counters older than the rows
    restored.handle(restored.connect(), _add(0x2000), NOW)
    assert sorted(sa.spi for sa in restored.sad.values()) == [0x1000, 0x1001, 0x1002, 0x2000]


def _add(spi: int) -> bytes:
    return esp_sa(spi).encode()


def test_broadcast_numbers_go_on_after_a_restart(tmp_path: Path) -> None:
    """A REGISTER changes no row but is a numbered broadcast: its number is kept too."""
    journal = Journal(tmp_path / "keyd.db")
    engine = Engine()
    service = Service(engine, journal, AccessRules(0))
    session = service.open(Peer(1, 0, 0))
    for seq in range(3):
        service.request(session, Message(MsgType.REGISTER, SAType.UNSPEC, seq, 1).encode(), NOW)
        service.commit()
    journal.close()
    journal = Journal(tmp_path / "keyd.db")
    again = Engine()
    again.restore(*journal.load())
    journal.close()
    assert again.generation == engine.generation == 3


def test_a_journal_that_cannot_be_written_is_refused_when_opened(tmp_path: Path) -> None:
    path = journal_with_two_sas(tmp_path)
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable files (chattr +i)")
    try:
        with pytest.raises(JournalError, match=str(path)):
            Journal(path)
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_row_whose_text_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = journal_with_two_sas(tmp_path)
    db = sqlite3.connect(path)
    key, data = db.execute("SELECT key, CAST(data AS BLOB) FROM rows WHERE tbl = 'sad' ORDER BY key").fetchone()
    db.execute("UPDATE rows SET data = CAST(? AS TEXT) WHERE tbl = 'sad' AND key = ?", (b"\xff" + data[1:], key))
    db.commit()
    db.close()
    with pytest.raises(JournalError, match=rf"row sad/{key} is damaged"):
        Journal(path).load()


# --- a journal taken away while keyd runs ------------------------------------------------------


def _journal_spis(path: Path) -> list[int]:
    return sorted(sa.spi for sa in _journal(path)[0])


def _journal(path: Path) -> tuple[list[SARecord], list[PolicyRecord]]:
    journal = Journal(path)
    try:
        sas, policies, _ = journal.load()
    finally:
        journal.close()
    return sas, policies


@pytest.mark.parametrize("idle", [False, True], ids=["at-the-next-change", "while-idle"])
def test_a_journal_deleted_under_keyd_is_written_anew_with_everything(tmp_path: Path, idle: bool) -> None:
    """Every acknowledged SA and policy survives a restart, the ones before the deletion
    included, whether a change or keyd's stop finds the file gone."""
    path = tmp_path / "keyd.db"
    with keyd_thread(tmp_path):
        client = open_keyd(tmp_path / "keyd.sock")
        client.add_sa(tunnel_sa(0x1000, OLD, HA))
        policy = client.add_policy(mn_policies(OLD)[0])
        for name in ("keyd.db", "keyd.db-wal", "keyd.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        if not idle:
            client.add_sa(tunnel_sa(0x1001, HA, OLD))
        client.close()
    assert _journal_spis(path) == ([0x1000] if idle else [0x1000, 0x1001])
    [kept] = _journal(path)[1]
    assert (kept.index, kept.templates[0].saddr) == (policy.index, OLD.packed)


def test_a_journal_deleted_without_its_log_holds_what_the_engine_holds(tmp_path: Path) -> None:
    """The old write-ahead log left beside the path is not read into the new journal:
    an SA deleted before the journal was does not come back."""
    journal = Journal(tmp_path / "keyd.db")
    service = Service(Engine(), journal, AccessRules(0))
    session = service.open(Peer(1, 0, 0))
    for spi in (0x1000, 0x1001):
        service.request(session, _add(spi), NOW)
        service.commit()
    added = decode(_add(0x1001))
    wanted = (ExtType.SA, ExtType.ADDRESS_SRC, ExtType.ADDRESS_DST)
    delete = Message(
        MsgType.DELETE, SAType.ESP, 9, 1, extensions=tuple(e for e in added.extensions if e.exttype in wanted)
    )
    service.request(session, delete.encode(), NOW)  # (the deletion is in the log, not yet in the file)
    service.commit()
    assert sorted(sa.spi for sa in service.engine.sad.values()) == [0x1000]
    (tmp_path / "keyd.db").unlink()
    assert (tmp_path / "keyd.db-wal").exists()
    service.request(session, _add(0x1002), NOW)
    service.commit()
    service.request(session, _add(0x1003), NOW)  # (and the new file is the one written from then on)
    service.commit()
    journal.close()
    assert _journal_spis(tmp_path / "keyd.db") == [0x1000, 0x1002, 0x1003]


def test_a_file_that_takes_the_journals_place_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    path = journal_with_two_sas(tmp_path / "other")
    journal = Journal(tmp_path / "keyd.db")
    service = Service(Engine(), journal, AccessRules(0))
    session = service.open(Peer(1, 0, 0))
    os.replace(path, tmp_path / "keyd.db")
    service.request(session, _add(0x2000), NOW)
    with pytest.raises(JournalError, match="another file took the journal's place"):
        service.commit()
    journal.close()
    assert _journal_spis(tmp_path / "keyd.db") == [0x1000, 0x1001]


def test_an_idle_keyd_finds_its_journal_gone_within_a_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a change to write, a batch still checks the file (at most once a second)."""
    journal = Journal(tmp_path / "keyd.db")
    service = Service(Engine(), journal, AccessRules(0))
    service.request(service.open(Peer(1, 0, 0)), _add(0x1000), NOW)
    service.commit()
    (tmp_path / "keyd.db").unlink()
    service.commit()
    assert not (tmp_path / "keyd.db").exists()  # (checked less than a second ago)
    monkeypatch.setattr(journal_module, "CHECK_EVERY", 0.0)
    service.commit()
    assert (tmp_path / "keyd.db").exists()
    journal.close()
    assert _journal_spis(tmp_path / "keyd.db") == [0x1000]
