"""keyd's sockets: a Unix ``SOCK_SEQPACKET`` listener and its clients, around ``Service``.

One thread, non-blocking sockets, one ``selectors`` loop. Each turn reads what the
clients sent (a bounded number of packets each), lets lifetimes run, commits the batch
(the journal first, then the answers go to the outboxes) and writes as much of each
outbox as the client's socket takes. A client that does not read only fills its own
outbox; nobody waits for it, and once its outbox is full keyd reads nothing more from
it until it has read (its sends block, as on a full socket). A client that shuts down
its sending side (``shutdown(SHUT_WR)``, as ``socat`` does at the end of its input)
gets every answer, a whole dump included, and then keyd closes the connection.

What a client can make keyd hold is bounded: a user other than an administrator may
have ``per_user`` connections at once, and when the process runs out of descriptors
keyd stops accepting for a moment instead of failing. A request that raises anything
but a refusal is a bug in keyd: it is logged, the client gets EINVAL, and the engine's
transaction has been rolled back; keyd goes on serving the others.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import logging
import os
import pwd
import select
import selectors
import socket
import stat
import struct
import termios
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pfmigrate.backends.keyd import path_too_long
from pfmigrate.keyd.service import Peer, Privilege, Service, Session

log = logging.getLogger("pfmigrate.keyd")

RECV_SIZE = 0xFFFF * 8 + 16  # room for the largest PF_KEY message
SO_PEERGROUPS = 59  # (Linux 4.13; Python has no name for it)
PER_CLIENT = 64  # packets read from one client per turn, so that none starves the others
LEFT_BEHIND = 4096  # packets read from a client that has gone (more than its socket can hold)
METRICS_EVERY = 1.0  # seconds between metrics file updates
DEFAULT_PER_USER = 64  # connections a user other than an administrator may hold at once
ACCEPT_PAUSE = 0.1  # seconds without accepting once the process is out of descriptors
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class ServerError(Exception):
    """keyd cannot start: the message says why (a socket in use, a bad path...)."""


def peer_of(sock: socket.socket) -> Peer:
    """The client's credentials as the kernel saw them when it connected: ``SO_PEERCRED``
    and ``SO_PEERGROUPS`` (the groups the process held, not those ``/etc/group`` gives
    its user: a process may have dropped some, or been given others)."""
    pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return Peer(pid, uid, gid, _peer_groups(sock, uid, gid))


def _peer_groups(sock: socket.socket, uid: int, gid: int) -> frozenset[int]:
    try:  # (Python reads at most 1024 bytes of an option: 256 groups)
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 1024)
        return frozenset(struct.unpack(f"{len(raw) // 4}I", raw))
    except OSError as exc:
        if exc.errno not in (errno.ERANGE, errno.ENOPROTOOPT):
            raise
    # More groups than that, or a kernel older than SO_PEERGROUPS: the groups its user is in.
    try:
        return frozenset(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    except KeyError:  # a uid without a passwd entry: its primary group only
        return frozenset()


def group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ServerError(f"no group named {name!r}") from None


def listen(path: Path, mode: int) -> socket.socket:
    """A listening socket at ``path``. A socket file nobody listens on (left by a keyd
    that died) is replaced; anything else there is left alone and named."""
    too_long = path_too_long(path)
    if too_long is not None:  # (bind and connect would fail with no errno: "cannot listen: None")
        raise ServerError(f"{path}: {too_long}")
    _clear(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServerError(f"{path.parent}: cannot make the socket's directory: {exc.strerror}") from exc
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.bind(str(path))
        os.chmod(path, mode)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ServerError(f"{path}: cannot listen: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock


def _clear(path: Path) -> None:
    """Remove a stale keyd socket at ``path``, or say why keyd cannot have the path."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ServerError(f"{path}: {exc.strerror}") from exc
    if not stat.S_ISSOCK(mode):
        raise ServerError(f"{path}: there is a file there that is not a socket; keyd leaves it alone")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink()  # nobody listens: left behind by a keyd that died
        return
    except OSError as exc:
        if exc.errno == errno.EPROTOTYPE:
            raise ServerError(f"{path}: another program listens there (not a packet socket)") from exc
        raise ServerError(f"{path}: cannot tell whether the socket there is in use: {exc.strerror}") from exc
    finally:
        probe.close()
    raise ServerError(f"{path}: another keyd is listening there")


def unlisten(listener: socket.socket, path: Path) -> None:
    """Close ``listener`` and remove its socket file at ``path`` (a start given up)."""
    listener.close()
    path.unlink(missing_ok=True)


def _who(session: Session) -> dict[str, object]:
    """A session's client for the log: its credentials (``SO_PEERCRED``) and the rights
    they gave it."""
    peer = session.peer
    rights = {Privilege.ADMIN: "change and read", Privilege.READ: "read without keys", Privilege.NONE: "none"}
    return {
        "session": session.id, "pid": peer.pid, "uid": peer.uid, "gid": peer.gid,
        "privilege": session.privilege.name.lower(), "rights": rights[session.privilege],
    }  # fmt: skip


OPEN, SHUT, CLOSED = 0, 1, 2  # how a client stands once ``recv`` read nothing (``_end_of``)


def _end_of(sock: socket.socket) -> int:
    """After ``recv`` read nothing: OPEN if that was an empty packet, else whether the
    client has CLOSED or SHUT its sending side only (it still reads), with nothing it
    sent left to read."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLRDHUP)
    events = 0
    for _, found in poller.poll(0):
        events |= found
    if not events & (select.POLLHUP | select.POLLRDHUP):
        return OPEN
    queued: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, bytes(4)))[0]
    if queued:  # (the size of the next packet: one it sent before it stopped)
        return OPEN
    return CLOSED if events & select.POLLHUP else SHUT


class Server:
    def __init__(
        self,
        service: Service,
        path: Path,
        *,
        mode: int = 0o666,
        metrics_path: Path | None = None,
        clock: Callable[[], float] = time.time,
        per_user: int = DEFAULT_PER_USER,
        listener: socket.socket | None = None,
    ) -> None:
        """``listener``: the socket ``listen(path, mode)`` made already (keyd takes its
        socket before it opens its journal, so that a refused start creates no journal)."""
        self.service = service
        self.path = path
        self.metrics_path = metrics_path
        self.clock = clock
        self.per_user = per_user
        self.listener = listener if listener is not None else listen(path, mode)
        self._inode = path.stat().st_ino  # (so that close removes this socket, not a successor's)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.sockets: dict[int, socket.socket] = {}  # by session id
        self.shut: set[int] = set()  # sessions that send no more: closed once answered
        self.connections: Counter[int] = Counter()  # by uid, of users other than administrators
        self.stopping = False
        self._metrics_due = 0.0
        self._accept_again: float | None = None  # (monotonic) while accepting is paused
        log.info("listening", extra={"event": "listening", "socket": str(path)})

    def stop(self) -> None:
        """Ask the loop to end after its current turn (safe from a signal handler)."""
        self.stopping = True

    def serve(self) -> None:
        try:
            while not self.stopping:
                self.turn()
        finally:
            self.close()

    def turn(self, timeout: float | None = None) -> None:
        """One pass of the loop: read, run timers, commit, write."""
        service = self.service
        if self._accept_again is not None and time.monotonic() >= self._accept_again:
            self._accept_again = None
            self.selector.register(self.listener, selectors.EVENT_READ, None)
        wait = timeout if timeout is not None else self._wait()
        for key, events in self.selector.select(wait):
            if key.data is None:
                self._accept()
                continue
            session: Session = key.data
            if events & selectors.EVENT_READ:
                self._read(session)
            if events & selectors.EVENT_WRITE and session.id in self.sockets:
                self._write(session)
        now = self.clock()
        due = service.next_deadline()
        if due is not None and due <= now:
            service.tick(now)
        for session in service.commit():
            if session.id in self.sockets:
                self._write(session)
        if self.metrics_path is not None and now >= self._metrics_due:
            self._metrics_due = now + METRICS_EVERY
            try:
                service.metrics.write(self.metrics_path)
            except OSError as exc:  # the metrics wait for a better moment; the keys do not
                log.warning("cannot write metrics", extra={"event": "metrics-error", "error": str(exc)})

    def _wait(self) -> float | None:
        due = self.service.next_deadline()
        waits = [0.5]  # so that stop() is noticed
        if due is not None:
            waits.append(max(due - self.clock(), 0.0))
        if self.metrics_path is not None:
            waits.append(max(self._metrics_due - self.clock(), 0.0))
        if self._accept_again is not None:
            waits.append(max(self._accept_again - time.monotonic(), 0.0))
        return min(waits)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_DESCRIPTORS:  # the waiting clients stay queued meanwhile
                    log.warning(
                        "not accepting for a moment",
                        extra={"event": "accept-paused", "errno": exc.errno, "seconds": ACCEPT_PAUSE},
                    )  # fmt: skip
                    self.selector.unregister(self.listener)
                    self._accept_again = time.monotonic() + ACCEPT_PAUSE
                    return
                continue  # (ECONNABORTED and the like: that client is gone already)
            try:
                sock.setblocking(False)
                peer = peer_of(sock)
            except OSError:
                sock.close()
                continue
            admin = self.service.rules.privilege(peer) == Privilege.ADMIN
            if not admin and self.connections[peer.uid] >= self.per_user:
                log.warning(
                    "client refused: too many connections",
                    extra={"event": "refused-connection", "uid": peer.uid, "pid": peer.pid, "limit": self.per_user},
                )  # fmt: skip
                sock.close()
                continue
            session = self.service.open(peer)
            if not admin:
                self.connections[peer.uid] += 1
            self.sockets[session.id] = sock
            self.selector.register(sock, selectors.EVENT_READ, session)
            log.debug("client connected", extra={"event": "connect", **_who(session)})

    def _read(self, session: Session) -> None:
        sock = self.sockets[session.id]
        for _ in range(PER_CLIENT):
            if len(session.outbox) >= self.service.outbox_limit:
                return  # it reads its answers first (``_write`` stops listening to it)
            data = self._receive(session, sock)
            if data is None:
                return
            self._request(session, data)

    def _receive(self, session: Session, sock: socket.socket) -> bytes | None:
        """The client's next packet, or ``None``: nothing yet, or it is gone (dropped)."""
        try:
            data = sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:  # (ECONNRESET: it closed leaving answers unread; what it sent is still queued)
            self._gone(session)
            return None
        if data:
            return data
        end = _end_of(sock)
        if end == OPEN:
            return data
        if end == CLOSED:
            self._gone(session)
        else:  # its answers still go; ``_write`` closes the connection once they have
            self.shut.add(session.id)
            self.selector.modify(sock, selectors.EVENT_WRITE, session)
        return None

    def _request(self, session: Session, data: bytes) -> None:
        try:
            reason = self.service.request(session, data, self.clock())
        except Exception:  # a bug: keep it to this request
            mtype = data[1] if len(data) > 1 else None
            log.exception("internal error", extra={"event": "internal-error", "session": session.id, "type": mtype})
            self.service.refuse(session, data, errno.EINVAL)
            return
        if reason:
            log.info(
                "request refused",
                extra={"event": "refused", "session": session.id, "type": data[1] if len(data) > 1 else None,
                       "reason": reason},
            )  # fmt: skip

    def _gone(self, session: Session) -> None:
        """The client has closed. What it sent before is still carried out, as Linux
        carries out each ``send()`` before it returns; the answers go nowhere."""
        sock = self.sockets.get(session.id)
        if sock is not None:
            self._carry_out_what_is_left(session, sock)
        self._drop(session)

    def _carry_out_what_is_left(self, session: Session, sock: socket.socket) -> None:
        resets = 0
        for _ in range(LEFT_BEHIND):
            try:
                data = sock.recv(RECV_SIZE)
            except ConnectionResetError:  # (reported once, ahead of the packets still queued)
                resets += 1
                if resets > 1:
                    return
                continue
            except OSError:
                return
            if not data and _end_of(sock) != OPEN:
                return
            session.outbox.clear()  # (nobody will read it: no back-pressure to keep)
            self._request(session, data)

    def _write(self, session: Session) -> None:
        sock, box = self.sockets[session.id], session.outbox
        while box:
            try:
                sock.send(box[0])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:  # more than its socket takes: lost, as a broadcast to a full queue
                    log.warning("message too large", extra={"event": "send-error", "session": session.id,
                                                           "errno": exc.errno, "size": len(box[0])})  # fmt: skip
                    box.popleft()
                    self.service.lose(session)
                    continue
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                    log.warning("send failed", extra={"event": "send-error", "session": session.id, "errno": exc.errno})
                self._gone(session)
                return
            box.popleft()
            self.service.room(session)
        if session.id in self.shut:
            if not box and session.dump is not None:
                self.service.room(session)  # (more of its dump, written next turn)
            if not box and session.dump is None:  # answered, its dump included
                self._drop(session)
            else:
                self.selector.modify(sock, selectors.EVENT_WRITE, session)
            return
        reading = selectors.EVENT_READ if len(box) < self.service.outbox_limit else 0  # back-pressure
        self.selector.modify(sock, reading | (selectors.EVENT_WRITE if box else 0), session)

    def _drop(self, session: Session) -> None:
        sock = self.sockets.pop(session.id, None)
        self.shut.discard(session.id)
        if sock is not None:
            self.selector.unregister(sock)
            sock.close()
            if session.privilege != Privilege.ADMIN:
                self.connections[session.peer.uid] -= 1
        self.service.close(session)
        log.debug("client gone", extra={"event": "disconnect", **_who(session)})

    def close(self) -> None:
        for session in list(self.service.sessions.values()):
            self._drop(session)
        self.selector.close()
        self.listener.close()
        try:
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
        except OSError:  # (gone already)
            pass
        if self.service.journal is not None:
            try:
                self.service.save(check=True)  # (a journal deleted while keyd was idle is written anew)
            finally:
                self.service.journal.close()
        log.info("stopped", extra={"event": "stopped"})
