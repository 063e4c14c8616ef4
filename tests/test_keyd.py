"""keyd: clients share one engine over its socket, the journal keeps what was
acknowledged, privileges come from the peer's credentials, slow clients only hurt
themselves."""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pfmigrate.backends.keyd import LOST_NOTICE, connect, open_keyd, probe_keyd, semantics_of
from pfmigrate.cli import build_parser
from pfmigrate.engine import KeyEngineError
from pfmigrate.keyd.service import AccessRules, Peer, Privilege, Service, without_keys
from pfmigrate.model import (
    Dir,
    EventsLost,
    KMAddress,
    Lifetime,
    MigrateBundle,
    MigrateEvent,
    MigrateRequest,
    Policy,
    Selector,
)
from pfmigrate.pfkey import KeyAuth, KeyEncrypt, Message, MsgType, SAType, decode
from pfmigrate.sadb import Delivery, Engine, Outcome
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT
from tests.keyd_harness import HA, NEW, OLD, OUT_SELECTOR, as_nobody, keyd_thread, out_policy, read_until, tunnel_sa
from tests.sadb_box import esp_sa, sa_key

MOVE = MigrateRequest(OUT_SELECTOR, Dir.OUT, (MigrateBundle(OLD, HA, NEW, HA),), KMAddress(NEW, HA))


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def keyd(directory: Path) -> Iterator[Path]:
    with keyd_thread(directory):
        yield directory / "keyd.sock"


def test_a_pf_key_client_works_by_swapping_the_socket(keyd: Path) -> None:
    with connect(keyd) as sock:
        sock.send(Message(MsgType.REGISTER, SAType.ESP, 7, os.getpid()).encode())
        reply = decode(sock.recv(65536))
    assert (reply.type, reply.seq, reply.errno) == (MsgType.REGISTER, 7, 0)


@pytest.mark.parametrize("semantics", ["pfmigrate", "linux"])
def test_a_client_learns_which_semantics_keyd_keeps(directory: Path, semantics: str) -> None:
    """Agents name a MIGRATE's bundles by reqid only where the engine takes it so."""
    with keyd_thread(directory, semantics=semantics) as server:
        registered = open_keyd(directory / "keyd.sock")
        registered.subscribe()  # a key manager listening: it hears the question's answer too
        assert semantics_of(directory / "keyd.sock") == semantics
        engine = open_keyd(directory / "keyd.sock")
        probed = probe_keyd(directory / "keyd.sock")
        before = server.service.engine.counters()
        engine.close()
        registered.close()
    assert engine.capabilities.migrate_by_reqid == (semantics == "pfmigrate")
    assert f"{semantics} semantics" in engine.capabilities.notes
    assert probed.available  # (a probe only connects: asking costs a REGISTER every key manager hears)
    assert (len(server.service.engine.sad), len(server.service.engine.spd)) == (0, 0)
    assert before["serial"] == 0  # the question made nothing


@pytest.mark.skipif(os.getuid() != 0, reason="changing to another uid needs root (CI runs as root)")
def test_a_client_that_may_not_use_keyd_learns_it_when_it_opens(open_directory: Path) -> None:
    path = open_directory / "keyd.sock"

    def open_and_probe() -> str:
        try:
            open_keyd(path)
        except OSError as exc:
            return f"{exc.errno} {exc} | {probe_keyd(path).notes[0]}"
        return "opened"

    with keyd_thread(open_directory):
        said = as_nobody(open_and_probe)
    # keyd is there (so it stays the default backend, rather than Linux), and says no when opened
    assert said == (
        f"{errno.EPERM} keyd at {path} refused a REGISTER: Operation not permitted: user nobody (uid 65534) is in "
        "neither keyd's admin group nor its read group (its --admin-group and --read-group), and is not root or "
        f"keyd's own user; a member of either may REGISTER | socket {path}"
    )


def test_two_clients_share_one_state_and_a_listener_hears_the_migrate(keyd: Path) -> None:
    mn, ike, operator = open_keyd(keyd), open_keyd(keyd), open_keyd(keyd)
    ike.subscribe()
    mn.add_sa(tunnel_sa(0x1000, OLD, HA))
    mn.add_policy(out_policy(OLD))
    mn.migrate(MOVE)
    assert operator.dump_sas() == [tunnel_sa(0x1000, NEW, HA)]
    heard = [e for _ in range(8) for e in ike.next_events(1.0) if isinstance(e, MigrateEvent)]
    assert [e.request for e in heard] == [MOVE]
    with pytest.raises(KeyEngineError) as again:
        mn.add_sa(tunnel_sa(0x1000, NEW, HA))
    assert again.value.errno == errno.EEXIST
    for engine in (mn, ike, operator):
        engine.close()


def test_a_malformed_message_is_answered_in_band(keyd: Path) -> None:
    with connect(keyd) as sock:
        sock.send(b"\x03" + bytes(15))  # version 3: AF_KEY's send() would fail with EINVAL
        answer = sock.recv(65536)
    assert answer[2] == errno.EINVAL


def test_what_was_acknowledged_survives_a_restart(directory: Path) -> None:
    with keyd_thread(directory):
        engine = open_keyd(directory / "keyd.sock")
        engine.add_sa(tunnel_sa(0x1000, OLD, HA))
        engine.add_policy(out_policy(OLD))
        engine.migrate(MOVE)
        before = (engine.dump_sas(), engine.dump_policies())
        engine.close()
    with keyd_thread(directory):
        engine = open_keyd(directory / "keyd.sock")
        assert (engine.dump_sas(), engine.dump_policies()) == before
        other = Policy(Selector.host(HOME_ADDRESS, HOME_AGENT, 6), Dir.OUT)
        added = engine.add_policy(other)  # no index is given twice across a restart
        assert added.index not in {p.index for p in before[1]}
        engine.close()


def test_lifetimes_continue_across_a_restart(directory: Path) -> None:
    now = [1_800_000_000.0]
    with keyd_thread(directory, clock=lambda: now[0]):
        engine = open_keyd(directory / "keyd.sock")
        engine.add_sa(tunnel_sa(0x1000, OLD, HA, lifetime=Lifetime(hard_add=100)))
        engine.close()
    now[0] += 150  # keyd was down when the SA's hard lifetime ran out
    with keyd_thread(directory, clock=lambda: now[0]):
        engine = open_keyd(directory / "keyd.sock")
        time.sleep(0.1)
        assert engine.dump_sas() == []
        engine.close()


def test_a_client_that_does_not_read_loses_messages_and_is_told(directory: Path) -> None:
    with keyd_thread(directory, outbox=8):
        path = directory / "keyd.sock"
        slow = connect(path)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and the kernel buffers little
        engine = open_keyd(path)
        for spi in range(0x1000, 0x1100):  # every ADD is broadcast to the slow client too
            engine.add_sa(tunnel_sa(spi, OLD, HA))
        assert len(engine.dump_sas()) == 0x100  # the others were never held up
        read_until(slow, lambda received: LOST_NOTICE in received)
        engine.close()
        slow.close()


def test_the_events_of_a_key_engine_say_when_messages_were_lost(directory: Path) -> None:
    with keyd_thread(directory, outbox=4):
        path = directory / "keyd.sock"
        engine, listener = open_keyd(path), open_keyd(path, event_buffer=4096)
        listener.subscribe()
        for spi in range(0x1000, 0x1600):  # more than keyd's socket buffer to it and its outbox hold
            engine.add_sa(tunnel_sa(spi, OLD, HA))
        lost = False
        for _ in range(0x800):
            events = listener.next_events(0.5)
            if any(isinstance(e, EventsLost) for e in events):
                lost = True
                break
        assert lost
        engine.close()
        listener.close()


# --- privileges ---------------------------------------------------------------------------------


RULES = AccessRules(own_uid=1000, admin_gid=500, read_gid=600)


@pytest.mark.parametrize(
    ("peer", "privilege"),
    [
        (Peer(1, 0, 0), Privilege.ADMIN),  # root
        (Peer(1, 1000, 1000), Privilege.ADMIN),  # keyd's own user
        (Peer(1, 1001, 1001, frozenset({500})), Privilege.ADMIN),
        (Peer(1, 1002, 600), Privilege.READ),
        (Peer(1, 1003, 1003), Privilege.NONE),
    ],
)
def test_privilege_comes_from_uid_and_groups(peer: Peer, privilege: Privilege) -> None:
    assert RULES.privilege(peer) == privilege


def _answers(service: Service, peer: Peer, *messages: Message) -> list[Message]:
    session = service.open(peer)
    for message in messages:
        service.request(session, message.encode(), 1_800_000_000.0)
    service.commit()
    return [decode(data) for data in session.outbox]


def test_a_reader_reads_without_keys_and_may_not_write() -> None:
    service = Service(Engine(), None, RULES)
    admin = service.open(Peer(1, 0, 0))
    service.request(admin, esp_sa(0x1000).encode(), 1_800_000_000.0)
    reader_answers = _answers(service, Peer(2, 1002, 600), Message(MsgType.DUMP, SAType.UNSPEC, 1, 2))
    [dumped] = reader_answers
    assert dumped.errno == 0
    assert not any(isinstance(e, (KeyAuth, KeyEncrypt)) for e in dumped.extensions)
    [refused] = _answers(service, Peer(3, 1002, 600), esp_sa(0x1001))
    assert refused.errno == errno.EPERM
    [nothing] = _answers(service, Peer(4, 1003, 1003), Message(MsgType.DUMP, SAType.UNSPEC, 1, 2))
    assert nothing.errno == errno.EPERM


def test_a_large_dump_is_made_as_the_client_reads_it() -> None:
    """Never more than an outbox of it is made ahead of the reader; the others are
    answered meanwhile; the dump read is the engine's whole dump, in order."""
    count, limit = 2000, 16
    engine, service = _service_with_sas(count, limit)
    admin, other = service.open(Peer(1, 0, 0)), service.open(Peer(2, 0, 0))
    dump = Message(MsgType.DUMP, SAType.ESP, 5, 77).encode()
    expected = [d.data for d in engine.handle(admin.client or 0, dump, 1_800_000_000.0).deliveries]
    service.request(admin, dump, 1_800_000_000.0)
    service.commit()
    read: list[bytes] = []
    while admin.outbox:
        assert sum(data[2] != errno.EBUSY for data in admin.outbox) <= limit  # (an answer is always queued)
        read.append(admin.outbox.popleft())
        service.room(admin)
        if len(read) == 10:
            service.request(admin, dump, 1_800_000_000.0)  # the first is not all read yet
            service.request(other, sa_key(0x1000).encode(), 1_800_000_000.0)
            service.commit()
            [answer] = [decode(data) for data in other.outbox]
            assert (answer.type, answer.errno) == (MsgType.GET, 0)
    busy = [data for data in read if data[2] == errno.EBUSY]
    assert len(busy) == 1
    assert [data for data in read if data[2] != errno.EBUSY] == expected
    assert [decode(data).seq for data in expected[-2:]] == [count - 1, 0]
    service.request(admin, dump, 1_800_000_000.0)  # all read: the next one may begin
    service.commit()
    assert admin.outbox[0] == expected[0]


def _service_with_sas(count: int, limit: int = 16) -> tuple[Engine, Service]:
    engine = Engine()
    filler = engine.connect()
    for spi in range(0x1000, 0x1000 + count):
        engine.handle(filler, esp_sa(spi).encode(), 1_800_000_000.0)
    return engine, Service(engine, None, RULES, outbox_limit=limit)


def test_a_dump_comes_in_the_place_of_its_answer() -> None:
    _, service = _service_with_sas(3)
    admin = service.open(Peer(1, 0, 0))
    service.request(admin, Message(MsgType.DUMP, SAType.ESP, 1, 77).encode(), 1_800_000_000.0)
    service.request(admin, sa_key(0x1000).encode(), 1_800_000_000.0)
    service.commit()
    assert [(decode(data).type, decode(data).seq) for data in admin.outbox] == [
        (MsgType.DUMP, 1), (MsgType.DUMP, 2), (MsgType.DUMP, 0), (MsgType.GET, 0),
    ]  # fmt: skip


def test_the_dump_of_a_client_gone_is_made_no_further() -> None:
    _, service = _service_with_sas(1000)
    watcher, admin = service.open(Peer(1, 0, 0)), service.open(Peer(2, 0, 0))
    service.request(watcher, Message(MsgType.X_PROMISC, SAType.of(1)).encode(), 1_800_000_000.0)
    service.commit()
    watcher.outbox.clear()
    service.request(admin, Message(MsgType.DUMP, SAType.ESP, 1, 77).encode(), 1_800_000_000.0)
    service.close(admin)
    service.commit()
    copies = [data for data in watcher.outbox if data[1] == MsgType.DUMP and data[2] == 0]
    assert 0 < len(copies) <= 16  # what was made before it left; not the thousand
    assert admin.dump is None


def test_a_failure_while_making_a_dump_ends_it_with_einval_and_keyd_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    engine, service = _service_with_sas(100)
    admin = service.open(Peer(1, 0, 0))
    handle = engine.handle

    def failing_later(client: int, data: bytes, now: float, *, stream: bool = False) -> Outcome:
        outcome = handle(client, data, now, stream=stream)
        if outcome.more is None:
            return outcome
        made = outcome.more

        def batches() -> Iterator[list[Delivery]]:
            for i, batch in enumerate(made):
                if i == 20:
                    raise RuntimeError("a bug")
                yield batch

        return replace(outcome, more=batches())

    engine.handle = failing_later  # type: ignore[method-assign]
    dump = Message(MsgType.DUMP, SAType.ESP, 1, 77).encode()
    service.request(admin, dump, 1_800_000_000.0)
    service.commit()
    read: list[bytes] = []
    while admin.outbox:
        read.append(admin.outbox.popleft())
        service.room(admin)
    assert [data[2] for data in read] == [0] * 20 + [errno.EINVAL]
    assert "internal error" in caplog.text
    service.request(admin, sa_key(0x1000).encode(), 1_800_000_000.0)  # keyd goes on; no dump is open
    service.request(admin, Message(MsgType.X_SPDDUMP, SAType.UNSPEC, 2, 77).encode(), 1_800_000_000.0)
    service.commit()
    assert [(data[1], data[2]) for data in admin.outbox] == [(MsgType.GET, 0), (MsgType.X_SPDDUMP, errno.ENOENT)]


def test_without_keys_cuts_only_the_key_extensions() -> None:
    full = esp_sa(0x1000).encode()
    cut = without_keys(full)
    kept = [type(e) for e in decode(cut).extensions]
    assert KeyAuth not in kept
    assert KeyEncrypt not in kept
    assert len(kept) == len(decode(full).extensions) - 2


@pytest.mark.skipif(os.getuid() != 0, reason="changing to another uid needs root (CI runs as root)")
def test_an_unprivileged_process_is_refused(open_directory: Path) -> None:
    with keyd_thread(open_directory):
        answer = _as_nobody(open_directory / "keyd.sock", Message(MsgType.FLUSH, SAType.UNSPEC, 1, 99).encode())
    assert answer[1] == MsgType.FLUSH
    assert answer[2] == errno.EPERM


def _as_nobody(path: Path, request: bytes) -> bytes:
    """What keyd answers ``request`` from a process running as nobody."""

    def ask() -> str:
        with connect(path) as sock:
            sock.send(request)
            return sock.recv(65536).hex()

    return bytes.fromhex(as_nobody(ask))


def test_the_systemd_unit_starts_keyd_with_options_it_has() -> None:
    unit = (Path(__file__).resolve().parent.parent / "packaging" / "pfmigrate-keyd.service").read_text()
    command = " ".join(line.strip().rstrip("\\") for line in unit.split("ExecStart=", 1)[1].splitlines()[:2])
    words = command.split()
    assert words[:2] == ["/usr/local/bin/pfmigrate", "keyd"]  # the installed binary, as docs/deploy.md puts it
    args = build_parser().parse_args(words[1:])
    assert args.socket == Path("/run/pfmigrate/keyd.sock")
    assert args.admin_group == "ipsec"
