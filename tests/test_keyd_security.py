"""keyd against the users of its machine: the metrics file cannot be turned on a file of
root's, a refused start leaves nothing behind, and a process keyd gives no privilege, or
only the right to read, changes nothing and never sees a key.

The peers here are processes of the user nobody: a child connects as nobody and hands
the socket to the test (keyd knows a client by the credentials the kernel recorded when
it connected, SO_PEERCRED and SO_PEERGROUPS), which then speaks for nobody."""

from __future__ import annotations

import errno
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from pfmigrate.backends.keyd import connect
from pfmigrate.keyd.metrics import Metrics
from pfmigrate.keyd.server import Server
from pfmigrate.keyd.service import READ_TYPES, AccessRules, Service
from pfmigrate.pfkey import (
    SA,
    SA2,
    Direction,
    KeyAuth,
    KeyEncrypt,
    Message,
    Mode,
    MsgType,
    Policy,
    PolicyType,
    SAType,
    SPIRange,
    decode,
)
from pfmigrate.sadb import Engine
from pfmigrate.seed import HOME_AGENT, NEW_COA, OLD_COA
from tests.keyd_harness import has_type, keyd_thread, read_all, read_until
from tests.sadb_box import addresses, esp_sa, mh_policy, migrate, sa_key

NOBODY = 65534
READ_GID = 4243
needs_root = pytest.mark.skipif(os.getuid() != 0, reason="changing to another uid needs root (CI runs as root)")
KEY_EXTENSIONS = {8, 9}  # SADB_EXT_KEY_AUTH, SADB_EXT_KEY_ENCRYPT
PID = 4242  # (the pid in every request here: answers carry it back)


# --- the metrics file ---------------------------------------------------------------------------


def test_metrics_are_not_written_through_a_symlink_planted_beside_them(tmp_path: Path) -> None:
    """keyd writes its metrics as root, often into a directory others may write
    (a textfile collector's): a symlink at the name of its temporary file once made it
    write over the file the symlink named."""
    victim = tmp_path / "shadow"
    victim.write_text("root's secrets\n")
    target = tmp_path / "keyd.prom"
    planted = tmp_path / "keyd.prom.tmp"  # the name keyd used to write before renaming
    planted.symlink_to(victim)
    metrics = Metrics(sas=3)
    metrics.write(target)
    metrics.write(target)  # (and again, over the first)
    assert victim.read_text() == "root's secrets\n"
    assert not target.is_symlink()
    assert "pfmigrate_keyd_sas 3\n" in target.read_text()
    assert target.stat().st_mode & 0o777 == 0o644  # a node exporter reads it as another user
    assert planted.readlink() == victim  # left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyd.prom", "keyd.prom.tmp", "shadow"]


def test_keyd_writes_its_metrics_past_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root's secrets\n")
    (tmp_path / "keyd.prom.tmp").symlink_to(victim)
    server = Server(Service(Engine(), None, AccessRules(os.getuid())), tmp_path / "keyd.sock",
                    metrics_path=tmp_path / "keyd.prom")  # fmt: skip
    try:
        server.turn(0.0)  # (the metrics are due at once)
    finally:
        server.close()
    assert victim.read_text() == "root's secrets\n"
    assert "pfmigrate_keyd_clients 0" in (tmp_path / "keyd.prom").read_text()


# --- a refused start ----------------------------------------------------------------------------


def _keyd(*args: str) -> subprocess.CompletedProcess[str]:
    """``pfmigrate keyd`` as a user starts it; it must refuse (a started keyd would hang)."""
    command = [sys.executable, "-m", "pfmigrate", "keyd", "--log-level", "warning", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def _journal_files(journal: Path) -> list[str]:
    return sorted(p.name for p in journal.parent.iterdir() if p.name.startswith(journal.name))


@pytest.mark.parametrize("socket_path", ["a-file", "served", "too-long", "parent-is-a-file"])
def test_a_refused_start_creates_no_journal(tmp_path: Path, socket_path: str) -> None:
    journal = tmp_path / "state" / "keyd.db"
    journal.parent.mkdir()
    served = tmp_path / "other"
    served.mkdir()
    path = {
        "a-file": tmp_path / "notes",
        "served": served / "keyd.sock",
        "too-long": tmp_path / ("s" * 120),
        "parent-is-a-file": tmp_path / "notes" / "keyd.sock",
    }[socket_path]
    (tmp_path / "notes").write_text("an operator's notes\n")
    with keyd_thread(served):  # (another keyd, with its own journal)
        done = _keyd("--socket", str(path), "--journal", str(journal))
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"pfmigrate: {path if socket_path != 'parent-is-a-file' else path.parent}")
    assert "Traceback" not in done.stderr
    assert _journal_files(journal) == []  # no keyd.db, keyd.db-wal, keyd.db-shm


def test_a_start_refused_for_its_journal_gives_up_its_socket(tmp_path: Path) -> None:
    """Another keyd holds the journal: this one must not leave a socket nobody serves
    (the next start would take it for one left by a keyd that died, which is right, but
    clients meanwhile are told nobody listens)."""
    with keyd_thread(tmp_path):  # serving tmp_path/keyd.sock with tmp_path/keyd.db
        done = _keyd("--socket", str(tmp_path / "second.sock"), "--journal", str(tmp_path / "keyd.db"))
        assert done.returncode == 1
        assert "the journal is in use by another keyd" in done.stderr
        assert not (tmp_path / "second.sock").exists()
        assert (tmp_path / "keyd.sock").is_socket()  # the first one's is still served


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_journal_that_is_not_a_regular_file_is_refused_before_anything(tmp_path: Path, kind: str) -> None:
    journal = tmp_path / "keyd.db"
    if kind == "fifo":
        os.mkfifo(journal)
    else:
        journal.mkdir()
    done = _keyd("--socket", str(tmp_path / "keyd.sock"), "--journal", str(journal))
    assert done.returncode == 1
    assert done.stderr == f"pfmigrate: {journal}: the journal must be a regular file, and this is not one\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyd.db"]  # no socket, no SQLite files beside it


# --- peers with no privilege, or only the right to read ---------------------------------------------


def connected_as_nobody(path: Path, groups: Sequence[int] = ()) -> socket.socket:
    """A socket connected to keyd at ``path`` by a child process running as nobody with
    ``groups``, handed over to this process (the caller must be root)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    child = os.fork()
    if child == 0:
        try:
            ours.close()
            os.setgroups(list(groups))
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            sock = connect(path)
            socket.send_fds(theirs, [b"ok"], [sock.fileno()])
        except BaseException as exc:
            theirs.send(f"{exc!r}".encode())
        finally:
            os._exit(0)
    theirs.close()
    try:
        said, fds, _, _ = socket.recv_fds(ours, 4096, 1)
    finally:
        ours.close()
        os.waitpid(child, 0)
    assert fds, f"nobody could not connect: {said.decode()}"
    return socket.socket(fileno=fds[0])


def _policy(kind: MsgType, index: int = 0) -> Message:
    policy = Policy(PolicyType.IPSEC, Direction.OUTBOUND, id=index)
    return Message(kind, SAType.UNSPEC, extensions=(policy,))


def _changing(index: int = 0) -> dict[MsgType, Message]:
    """A well-formed request of every type that is not a read, each of which an
    administrator may send (the SA 0x1000 and an outbound MH policy of ``index`` are there)."""
    getspi = Message(
        MsgType.GETSPI, SAType.ESP,
        extensions=(SA2(Mode.TUNNEL), *addresses(OLD_COA, HOME_AGENT), SPIRange(0x3000, 0x3FFF)),
    )  # fmt: skip
    selector_only = mh_policy(kind=MsgType.X_SPDDELETE)
    selector_only = Message(
        MsgType.X_SPDDELETE, SAType.UNSPEC,
        extensions=(*selector_only.extensions[:2], Policy(PolicyType.IPSEC, Direction.OUTBOUND)),
    )  # fmt: skip
    return {
        MsgType.GETSPI: getspi,
        MsgType.UPDATE: esp_sa(0x1000, kind=MsgType.UPDATE),
        MsgType.ADD: esp_sa(0x1001),
        MsgType.DELETE: sa_key(0x1000, kind=MsgType.DELETE),
        MsgType.ACQUIRE: Message(MsgType.ACQUIRE, SAType.ESP, errno=errno.ENOENT),  # (a key manager's failure)
        MsgType.REGISTER: Message(MsgType.REGISTER, SAType.ESP),
        MsgType.EXPIRE: esp_sa(0x1000, kind=MsgType.EXPIRE),
        MsgType.FLUSH: Message(MsgType.FLUSH, SAType.UNSPEC),
        MsgType.X_PROMISC: Message(MsgType.X_PROMISC, SAType.of(1)),
        MsgType.X_PCHANGE: Message(MsgType.X_PCHANGE, SAType.UNSPEC),
        MsgType.X_SPDUPDATE: mh_policy(NEW_COA, kind=MsgType.X_SPDUPDATE),
        MsgType.X_SPDADD: mh_policy(NEW_COA, inbound=True),
        MsgType.X_SPDDELETE: selector_only,
        MsgType.X_SPDACQUIRE: _policy(MsgType.X_SPDACQUIRE),
        MsgType.X_SPDFLUSH: Message(MsgType.X_SPDFLUSH, SAType.UNSPEC),
        MsgType.X_SPDSETIDX: mh_policy(kind=MsgType.X_SPDSETIDX),
        MsgType.X_SPDEXPIRE: _policy(MsgType.X_SPDEXPIRE, index),
        MsgType.X_SPDDELETE2: _policy(MsgType.X_SPDDELETE2, index),
        MsgType.X_NAT_T_NEW_MAPPING: sa_key(0x1000, kind=MsgType.X_NAT_T_NEW_MAPPING),
        MsgType.X_MIGRATE: migrate(),
        MsgType.RESERVED: Message(MsgType.RESERVED, SAType.UNSPEC),
        MsgType.of(99): Message(MsgType.of(99), SAType.UNSPEC),  # (a type PF_KEY does not define)
    }


def _reading(index: int = 0) -> dict[MsgType, Message]:
    return {
        MsgType.GET: sa_key(0x1000),
        MsgType.DUMP: Message(MsgType.DUMP, SAType.UNSPEC),
        MsgType.X_SPDGET: _policy(MsgType.X_SPDGET, index),
        MsgType.X_SPDDUMP: Message(MsgType.X_SPDDUMP, SAType.UNSPEC),
    }


def test_every_type_of_message_is_known_to_these_tests() -> None:
    """A message type added to PF_KEY must be added here: as changing, or as a read."""
    assert set(_changing()) | set(_reading()) >= set(MsgType)
    assert set(_reading()) | {MsgType.REGISTER} == READ_TYPES


def _numbered(message: Message, seq: int) -> bytes:
    return Message(message.type, message.satype, seq, PID, message.errno, message.extensions).encode()


DUMPS = (MsgType.DUMP, MsgType.X_SPDDUMP)


def _ask(
    sock: socket.socket, requests: dict[MsgType, Message], *, all_answered: bool = True
) -> dict[MsgType, list[bytes]]:
    """What keyd answered each request (sent with the seq of its place, from 1), a
    dump's every message; broadcasts of other clients' requests are left out. Without
    ``all_answered``, some may go unanswered (as an ACQUIRE does): a GET after them all
    marks the end."""
    order = list(enumerate(requests, 1))
    for seq, mtype in order:
        sock.send(_numbered(requests[mtype], seq))
    if all_answered:
        received = read_until(sock, lambda received: all(_over(received, seq, mtype) for seq, mtype in order))
    else:
        barrier = len(order) + 1
        sock.send(_numbered(sa_key(0x1000), barrier))
        received = read_until(sock, lambda received: _over(received, barrier, MsgType.GET))
    return {mtype: [data for data in received if _answers(data, seq, mtype)] for seq, mtype in order}


def _seq(data: bytes) -> int:
    seq: int = struct.unpack_from("=I", data, 8)[0]
    return seq


def _answers(data: bytes, seq: int, mtype: MsgType) -> bool:
    """Whether ``data`` answers the request of type ``mtype`` sent with ``seq`` (Linux
    numbers a dump's messages down to 0, not by the request's seq, and answers a
    MIGRATE with its broadcast, of seq and pid 0)."""
    if data[1] != mtype:
        return False
    if mtype == MsgType.X_MIGRATE and not data[2]:
        return True
    return struct.unpack_from("=I", data, 12)[0] == PID and (mtype in DUMPS or _seq(data) == seq)


def _over(received: list[bytes], seq: int, mtype: MsgType) -> bool:
    """Whether the whole answer has come: a dump ends with seq 0 (or an error)."""
    mine = [data for data in received if _answers(data, seq, mtype)]
    return any(_seq(data) == 0 or data[2] for data in mine) if mtype in DUMPS else bool(mine)


def _extension_types(data: bytes) -> list[int]:
    """The type of each extension of a PF_KEY message, read from the wire."""
    found, pos = [], 16
    while pos + 4 <= len(data):
        length, exttype = struct.unpack_from("=HH", data, pos)
        assert length, f"an extension of length 0 at {pos}"
        found.append(exttype)
        pos += 8 * length
    return found


@dataclass(frozen=True, slots=True)
class Served:
    server: Server
    path: Path
    index: int  # the outbound MH policy's


@pytest.fixture
def served(open_directory: Path) -> Iterator[Served]:
    """keyd with the SA 0x1000 (keys and all) and the seed's outbound MH policy, whose
    read group is ``READ_GID``."""
    with keyd_thread(open_directory, rules=AccessRules(0, read_gid=READ_GID)) as server:
        path = open_directory / "keyd.sock"
        with connect(path) as admin:
            answers = _ask(admin, {MsgType.ADD: esp_sa(0x1000), MsgType.X_SPDADD: mh_policy()})
        assert [data[2] for got in answers.values() for data in got] == [0, 0]
        policy = decode(answers[MsgType.X_SPDADD][0]).get(Policy)
        assert policy is not None
        yield Served(server, path, policy.id)


def _state(server: Server) -> tuple[object, ...]:
    engine = server.service.engine
    return (sorted(map(repr, engine.sad.values())), sorted(map(repr, engine.spd.values())), engine.counters())


@needs_root
@pytest.mark.parametrize("who", ["no privilege", "reader"])
def test_a_peer_that_may_not_change_anything_is_refused_every_change(served: Served, who: str) -> None:
    server, path = served.server, served.path
    before = _state(server)
    changing = _changing(served.index)
    if who == "reader":
        del changing[MsgType.REGISTER]  # (a reader may, to hear ACQUIRE and EXPIRE; see the test below)
    with connected_as_nobody(path, [READ_GID] if who == "reader" else []) as peer:
        answers = _ask(peer, changing)
    assert {mtype.name: [data[2] for data in got] for mtype, got in answers.items()} == {
        mtype.name: [errno.EPERM] for mtype in changing
    }
    assert _state(server) == before  # (nothing changed, not even a counter)
    assert server.service.metrics.refused == len(changing)
    with connect(path) as admin:  # and an administrator's same requests are carried out (or refused for cause)
        answers = _ask(admin, changing, all_answered=False)
    assert [mtype.name for mtype, got in answers.items() if [data[2] for data in got] == [errno.EPERM]] == []
    assert _state(server) != before


@needs_root
def test_a_peer_with_no_privilege_may_not_read_either(served: Served) -> None:
    path, reading = served.path, _reading(served.index)
    with connected_as_nobody(path) as peer:
        answers = _ask(peer, reading)
    assert {mtype.name: [data[2] for data in got] for mtype, got in answers.items()} == {
        mtype.name: [errno.EPERM] for mtype in reading
    }


@needs_root
def test_a_reader_reads_everything_and_sees_no_key(served: Served) -> None:
    path = served.path
    with connected_as_nobody(path, [READ_GID]) as reader:
        answers = _ask(reader, {**_reading(served.index), MsgType.REGISTER: Message(MsgType.REGISTER, SAType.ESP)})
    assert {mtype.name: {data[2] for data in got} for mtype, got in answers.items()} == {
        "GET": {0}, "DUMP": {0}, "X_SPDGET": {0}, "X_SPDDUMP": {0}, "REGISTER": {0},
    }  # fmt: skip
    assert [_seq(data) for data in answers[MsgType.DUMP]] == [0]  # the one SA, whole but for its keys
    for mtype in (MsgType.GET, MsgType.DUMP):
        [sa] = answers[mtype]
        assert 1 in _extension_types(sa)  # (an SA extension: it is the SA)
        assert KEY_EXTENSIONS.isdisjoint(_extension_types(sa)), mtype.name
    with connect(path) as admin:  # an administrator gets the keys
        [full] = _ask(admin, {MsgType.GET: sa_key(0x1000)})[MsgType.GET]
    assert set(_extension_types(full)) >= KEY_EXTENSIONS


@needs_root
def test_what_is_broadcast_to_a_reader_carries_no_key(served: Served) -> None:
    """A reader registered for ESP hears the SAs added and updated (with their keys, to
    an administrator), the keys cut out; a peer with no privilege hears nothing."""
    path = served.path
    with (
        connected_as_nobody(path, [READ_GID]) as reader,
        connected_as_nobody(path) as outsider,
        connect(path) as admin,
        connect(path) as watcher,
    ):
        for sock in (reader, watcher):
            sock.send(_numbered(Message(MsgType.REGISTER, SAType.ESP), 1))
            read_until(sock, has_type(MsgType.REGISTER))
        [spi] = _ask(admin, {MsgType.GETSPI: _changing()[MsgType.GETSPI]})[MsgType.GETSPI]
        larval = decode(spi).get(SA)
        assert larval is not None
        changes = {
            MsgType.UPDATE: esp_sa(larval.spi, kind=MsgType.UPDATE),
            MsgType.ADD: esp_sa(0x2000, NEW_COA),
            MsgType.X_MIGRATE: migrate(),
            MsgType.DELETE: sa_key(0x2000, NEW_COA, kind=MsgType.DELETE),
        }
        answers = _ask(admin, changes)
        assert {mtype.name: [data[2] for data in got] for mtype, got in answers.items()} == {
            mtype.name: [0] for mtype in changes
        }
        keyed = {MsgType.UPDATE, MsgType.ADD}

        def all_heard(received: list[bytes]) -> bool:
            return {data[1] for data in received} >= {*keyed, MsgType.X_MIGRATE, MsgType.DELETE}

        heard, seen = read_until(reader, all_heard), read_until(watcher, all_heard)
        nothing = read_all(outsider, 0.3)
    for data in seen:  # (so the reader's would have keys, were they not cut)
        if data[1] in keyed:
            assert set(_extension_types(data)) >= KEY_EXTENSIONS, MsgType.of(data[1]).name
    assert {data[1] for data in heard} >= keyed
    for data in heard:
        types = _extension_types(data)
        assert KEY_EXTENSIONS.isdisjoint(types), (MsgType.of(data[1]).name, types)
        message = decode(data)
        assert (message.get(KeyAuth), message.get(KeyEncrypt)) == (None, None)
    assert nothing == []
