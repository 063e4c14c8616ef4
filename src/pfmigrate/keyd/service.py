"""keyd's core, without sockets: who may do what, the journal, and what goes to whom.

A ``Session`` is one connected client with its privilege, found from its credentials:

* ``ADMIN`` (root, keyd's own user, or the admin group) may do everything;
* ``READ`` (the read group) may look (GET, DUMP, X_SPDGET, X_SPDDUMP) and REGISTER to
  hear ACQUIRE and EXPIRE, a bounded number of times a second (every REGISTER is
  announced to the key managers); it never sees a key: they are cut out of what it
  receives;
* ``NONE``: every request is refused with EPERM, as Linux refuses an AF_KEY socket to
  a process without CAP_NET_ADMIN, and nothing is broadcast to it.

Requests change the engine at once, but their answers wait in ``pending`` until
``commit`` has made the batch durable; only then do they go to the sessions' outboxes.
An outbox is bounded for broadcasts: when it is full a broadcast is dropped and, as soon
as there is room, the session gets the lost-messages notice instead (``LOST_NOTICE``).
The answers to a session's own requests are always queued; the server stops reading
from a session whose outbox is full. A DUMP or X_SPDDUMP is made as it is read, as
Linux's ``pfkey_do_dump`` makes one: the engine streams it from a snapshot of the
table; the session's outbox is filled from it to two thirds (the last third is for
broadcasts, as ``pfkey_can_dump`` keeps it) in the place of the answer, and topped up
as the client takes messages out. So a dump of a million SAs never sits in memory
whole and does not hold up the other clients. As in Linux, a dump asked for while the
session's previous one is not all queued yet is refused with EBUSY.
"""

from __future__ import annotations

import collections
import errno
import logging
import struct
from collections.abc import Container
from dataclasses import dataclass, field
from enum import IntEnum

from pfmigrate.backends.keyd import LOST_NOTICE
from pfmigrate.keyd.journal import Journal, JournalGone
from pfmigrate.keyd.metrics import Metrics
from pfmigrate.pfkey.constants import MsgType
from pfmigrate.sadb import Delivery, Engine
from pfmigrate.sadb.core import Batches

READ_TYPES = frozenset({MsgType.GET, MsgType.DUMP, MsgType.X_SPDGET, MsgType.X_SPDDUMP, MsgType.REGISTER})
DUMP_TYPES = frozenset({MsgType.DUMP, MsgType.X_SPDDUMP})
KEY_EXTENSIONS = (8, 9)  # KEY_AUTH, KEY_ENCRYPT
DEFAULT_OUTBOX = 4096  # messages
# The longest request keyd takes. Linux's AF_KEY refuses (EMSGSIZE) what does not fit a
# socket's send buffer (by default 212,992 bytes, less 32); keyd may have to pass a
# request on whole, with its broadcast number added, through a Unix socket that has the
# same limit, so it keeps 64 bytes more in hand.
MAX_REQUEST = 212_992 - 32 - 64
# REGISTERs a user of the read group may send per second. Each is announced to every
# registered client: without a bound, a reader could fill the key managers' queues.
READER_REGISTERS_PER_SECOND = 50
log = logging.getLogger("pfmigrate.keyd")
_EXT = struct.Struct("=HH")
# The SA messages, and X_PROMISC, which passes on whatever extensions it was given.
_KEYED_TYPES = frozenset({1, 2, 3, 4, 5, 8, 10, MsgType.X_PROMISC})


class Privilege(IntEnum):
    NONE = 0
    READ = 1
    ADMIN = 2


@dataclass(frozen=True, slots=True)
class Peer:
    """A client's credentials (``SO_PEERCRED``), and the groups its user is in."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class AccessRules:
    """Who is who: keyd's own uid, the admin group and the read-only group (gids)."""

    own_uid: int
    admin_gid: int | None = None
    read_gid: int | None = None

    def privilege(self, peer: Peer) -> Privilege:
        groups = {peer.gid, *peer.groups}
        if peer.uid in (0, self.own_uid) or (self.admin_gid is not None and self.admin_gid in groups):
            return Privilege.ADMIN
        if self.read_gid is not None and self.read_gid in groups:
            return Privilege.READ
        return Privilege.NONE


@dataclass(slots=True)
class Session:
    id: int
    peer: Peer
    privilege: Privilege
    client: int | None  # the engine's client, None for a session that may do nothing
    outbox: collections.deque[bytes] = field(default_factory=collections.deque)
    lost: bool = False  # messages were dropped; the notice has not gone yet
    dump: Batches | None = None  # the rest of its DUMP or X_SPDDUMP, not made yet
    dump_request: bytes = b""  # (for an error answer, should making the dump fail)


def error_reply(data: bytes, code: int) -> bytes:
    """A refusal as PF_KEY writes one: the request's header with ``sadb_msg_errno`` set."""
    header = bytearray((data + bytes(16))[:16])
    header[0] = 2
    header[2] = code
    header[4:6] = (2).to_bytes(2, "little")
    return bytes(header)


def without_keys(data: bytes) -> bytes:
    """``data`` with its KEY_AUTH and KEY_ENCRYPT extensions cut out."""
    if len(data) < 16 or data[1] not in _KEYED_TYPES:
        return data
    parts, pos = [data[:16]], 16
    while pos + 4 <= len(data):
        length, exttype = _EXT.unpack_from(data, pos)
        if length == 0:
            break
        if exttype not in KEY_EXTENSIONS:
            parts.append(data[pos : pos + length * 8])
        pos += length * 8
    parts.append(data[pos:])
    out = bytearray(b"".join(parts))
    out[4:6] = (len(out) // 8).to_bytes(2, "little")
    return bytes(out)


class Service:
    def __init__(
        self,
        engine: Engine,
        journal: Journal | None,
        rules: AccessRules,
        *,
        outbox_limit: int = DEFAULT_OUTBOX,
        metrics: Metrics | None = None,
    ) -> None:
        self.engine = engine
        self.journal = journal
        self.rules = rules
        self.outbox_limit = outbox_limit
        self.metrics = metrics or Metrics()
        self.sessions: dict[int, Session] = {}
        self.by_client: dict[int, Session] = {}
        self.pending: list[Delivery] = []
        self.touched: dict[int, Session] = {}  # sessions whose outbox grew since the last commit
        self.answers: dict[int, Session] = {}  # sessions that asked something in this batch
        self._next = 0
        self._registers: dict[int, tuple[int, int]] = {}  # reader uid -> (second, REGISTERs in it)
        if journal is not None:
            engine.journal = journal.stage

    # --- sessions ---

    def open(self, peer: Peer) -> Session:
        self._next += 1
        privilege = self.rules.privilege(peer)
        client = self.engine.connect() if privilege != Privilege.NONE else None
        session = Session(self._next, peer, privilege, client)
        self.sessions[session.id] = session
        if client is not None:
            self.by_client[client] = session
        self.metrics.clients = len(self.sessions)
        return session

    def close(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        self.touched.pop(session.id, None)
        self.answers.pop(session.id, None)
        session.dump = None  # nobody will read the rest
        if session.client is not None:
            self.engine.disconnect(session.client)
            self.by_client.pop(session.client, None)
        self.metrics.clients = len(self.sessions)

    # --- requests and time ---

    def request(self, session: Session, data: bytes, now: float) -> str:
        """Handle one message from ``session``; its answers wait for ``commit``. The
        reason of a refusal, for the log ("" if it was not refused)."""
        mtype = data[1] if len(data) > 1 else 0
        self.metrics.count_message(mtype)
        allowed = session.privilege == Privilege.ADMIN or (session.privilege == Privilege.READ and mtype in READ_TYPES)
        if not allowed or session.client is None:
            self.metrics.refused += 1
            self._hold(session, error_reply(data, errno.EPERM))
            return f"not permitted: uid {session.peer.uid} may not send type {mtype}"
        if len(data) > MAX_REQUEST:
            self.refuse(session, data, errno.EMSGSIZE)
            return f"{len(data)} bytes: more than the {MAX_REQUEST} a PF_KEY socket takes"
        if mtype == MsgType.REGISTER and session.privilege == Privilege.READ and not self._may_register(session, now):
            self.refuse(session, data, errno.EAGAIN)
            return f"uid {session.peer.uid} sent more than {READER_REGISTERS_PER_SECOND} REGISTERs in a second"
        if mtype in DUMP_TYPES and session.dump is not None:  # pfkey_dump: one dump at a time per socket
            self.refuse(session, data, errno.EBUSY)
            return "a dump of this client's is not all queued yet"
        outcome = self.engine.handle(session.client, data, now, stream=True)
        if outcome.send_errno:  # AF_KEY would fail send(); a packet socket answers in band
            self.metrics.count_error(outcome.send_errno)
            self._hold(session, error_reply(data, outcome.send_errno))
            return outcome.reason
        self.pending += outcome.deliveries
        self.answers[session.id] = session
        if outcome.more is not None:
            session.dump, session.dump_request = outcome.more, data
            self._make_dump(session, self.pending, len(session.outbox) + self._pending_for(session))
        if outcome.reason:
            self.metrics.count_error(outcome.deliveries[-1].data[2] if outcome.deliveries else errno.EINVAL)
        elif mtype == MsgType.X_MIGRATE:
            self.metrics.migrates += 1
        return outcome.reason

    def _may_register(self, session: Session, now: float) -> bool:
        """Count a reader's REGISTER against its user's bound for this second."""
        second, count = self._registers.get(session.peer.uid, (-1, 0))
        if second != int(now):
            second, count = int(now), 0
        if count >= READER_REGISTERS_PER_SECOND:
            return False
        self._registers[session.peer.uid] = (second, count + 1)
        return True

    def tick(self, now: float) -> None:
        self.pending += self.engine.tick(now)

    def next_deadline(self) -> int | None:
        return self.engine.next_deadline()

    def commit(self) -> list[Session]:
        """Make the batch durable, then hand its messages out; the sessions that got some."""
        self.save()
        for delivery in self.pending:
            self._deliver(delivery, self.answers)
        self.pending = []
        self.answers = {}
        self.metrics.sas, self.metrics.policies = len(self.engine.sad), len(self.engine.spd)
        touched, self.touched = list(self.touched.values()), {}
        return touched

    def save(self, *, check: bool = False) -> None:
        """Make what the engine changed durable (and with ``check``, see that the journal
        is still there even if nothing changed). A journal deleted or emptied under keyd
        is written anew from the engine, which holds everything acknowledged so far."""
        journal = self.journal
        if journal is None:
            return
        before = journal.commits
        try:
            if check:
                journal.check()
            journal.flush(self.engine.counters())
        except JournalGone as gone:  # (deleted or emptied: the engine holds everything, stopping would lose it)
            rows = journal.recreate(self.engine.sad.values(), self.engine.spd.values(), self.engine.counters())
            log.warning(
                "journal deleted or emptied: written anew",
                extra={"event": "journal-recreated", "error": str(gone), "rows": rows},
            )  # fmt: skip
        self.metrics.journal_commits += journal.commits - before

    def refuse(self, session: Session, data: bytes, code: int) -> None:
        """Answer ``data`` with errno ``code`` (after the commit, as every answer)."""
        self.metrics.count_error(code)
        self._hold(session, error_reply(data, code))

    def _hold(self, session: Session, data: bytes) -> None:
        """An answer of keyd's own (a refusal): it too waits for the commit."""
        if session.client is not None:
            self.pending.append(Delivery(session.client, data))
            self.answers[session.id] = session
        else:
            self._enqueue(session, data)

    def room(self, session: Session) -> None:
        """The session's outbox has lost its head: more of its dump is made, and if
        messages were dropped, the notice now fits at the tail, right after the messages
        that went before the loss."""
        if session.dump is not None:
            made: list[Delivery] = []
            self._make_dump(session, made, len(session.outbox))
            for delivery in made:  # (no commit to wait for: a dump changes nothing)
                self._deliver(delivery, (session.id,))
        self._notice(session)

    def _pending_for(self, session: Session) -> int:
        return sum(1 for delivery in self.pending if delivery.client == session.client)

    def _make_dump(self, session: Session, out: list[Delivery], queued: int) -> None:
        """Make more of the session's dump into ``out`` while fewer than two thirds of
        its outbox are taken (``queued``), and end it once it is all made. A failure
        to make a message ends the dump with EINVAL, as a failed request would."""
        fill = max(1, self.outbox_limit * 2 // 3)
        while session.dump is not None and queued < fill:
            try:
                batch = next(session.dump, None)
            except Exception:  # a bug: keep it to this dump
                log.exception("internal error", extra={"event": "internal-error", "session": session.id})
                out.append(Delivery(session.client or 0, error_reply(session.dump_request, errno.EINVAL)))
                batch = None
            if batch is None:  # all made: the dump is over (pfkey_terminate_dump)
                session.dump = None
                break
            out += batch
            queued += sum(1 for delivery in batch if delivery.client == session.client)

    def _deliver(self, delivery: Delivery, asking: Container[int]) -> None:
        """Queue ``delivery`` for its session, without keys for a reader; for the
        sessions ``asking`` (by id) it is an answer, never dropped."""
        session = self.by_client.get(delivery.client)
        if session is not None:
            data = delivery.data if session.privilege == Privilege.ADMIN else without_keys(delivery.data)
            self._enqueue(session, data, answer=session.id in asking)

    def lose(self, session: Session) -> None:
        """A message for ``session`` could not be delivered: it hears that it lost one."""
        session.lost = True
        self.metrics.lost += 1
        self._notice(session)

    def _notice(self, session: Session) -> None:
        if session.lost and len(session.outbox) < self.outbox_limit:
            session.outbox.append(LOST_NOTICE)
            session.lost = False

    def _enqueue(self, session: Session, data: bytes, *, answer: bool = False) -> None:
        """Queue ``data`` for ``session``. Broadcasts are dropped when its outbox is full;
        the answers to what it asked in this batch never are (a DUMP it will read)."""
        box = session.outbox
        self._notice(session)
        if len(box) >= self.outbox_limit and not answer:
            session.lost = True
            self.metrics.lost += 1
            return
        box.append(data)
        self.touched[session.id] = session
