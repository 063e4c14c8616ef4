"""keyd's journal: the SAD and SPD in SQLite, durable before anything is acknowledged.

The engine hands every committed transaction's changes to ``Journal.stage``; keyd
calls ``flush`` once per batch of requests, before it sends a single reply or
broadcast. A flush is one SQLite transaction (WAL, ``synchronous=FULL``), so after
``kill -9`` at any moment the journal holds either all of a batch or none of it: every
acknowledged change, and no half of a MIGRATE.

Rows are keyed by (table, serial) and stored as JSON (``pfmigrate.sadb.rows``) with
the CRC-32 of that text, which ``load`` checks along with the serial, so that a damaged
journal is refused with the row named rather than loaded with a changed key. The
engine's counters (next serial, policy index, reqid, ACQUIRE seq, broadcast generation)
go in the same transaction, with a CRC-32 of their own.

A journal behind what was acknowledged is refused at start. After ``kill -9`` the last
changes live only in the write-ahead log (``keyd.db-wal``); one bit flipped there, or
its tail cut, and SQLite's checksum chain stops at the damage and drops that frame and
every later one without a word. So each flush also counts itself: the number of
commits goes in the same transaction (beside the counters, under their CRC-32, on a
page each flush writes anyway), and once SQLite's COMMIT has returned, the same number
is written to the commit mark beside the journal (``keyd.db-acked``: one 20-byte
record with its CRC-32, rewritten in place by one ``pwrite``), before any answer goes
out. At start the journal must hold at least the
mark's count; if not, keyd names the missing commits and stops rather than serve less.
The mark is never ahead of what is durable: it is written after the commit it counts
is fsynced. It costs no fsync of its own: after ``kill -9`` the page cache, which
outlives the process, holds it. After a power loss it may be behind (its last
write-back), never ahead, so it never refuses a whole journal; it only misses a log
cut in the seconds before the power went, as SQLite alone always did. (Created once,
it is fsynced with its directory, so it is never found empty; it is rewritten within
one sector, so a power loss leaves the old record or the new one.)

What the mark says when it is not what keyd wrote:
* no mark and a journal with no count (the first start, or a journal of format 2, from
  a keyd before the count): counting starts (and the journal is format 3 from then on,
  which such a keyd refuses by its format rather than misread);
* no mark beside a counted journal (deleted by hand: the way to accept a journal keyd
  refused, see below): a warning, and counting goes on from the journal's count;
* a damaged mark: refused, since keyd cannot tell whether the journal is whole. The
  message says what the operator can do: restore the journal with its ``-wal`` file
  from a copy that holds the missing commits, or accept what it holds by deleting the
  mark (and have the IKE daemon and the mobility agents install again what is gone).

A journal deleted while keyd runs (by hand, or by a cleaner of old files), or emptied
in place (``: > keyd.db``, logrotate's ``copytruncate``), would take every change
with it on a restart: each flush, and one a second when there is nothing to write,
checks that the file at the path is still the one keyd holds, as long as it was, and
still starts with SQLite's header (the file never shrinks: keyd turns no auto-vacuum
on and never vacuums). If it is gone or emptied, ``flush`` raises ``JournalGone`` and
keyd writes all it holds to a new journal there (``recreate``): the engine holds every
acknowledged change, so rewriting keeps them, where stopping would lose them all with
the process. If another file has taken its place, that is ``JournalError``, and keyd
stops rather than overwrite it. (A kill before the new journal is written leaves one
behind its mark, or damaged: refused at start, never loaded short.) A deleted mark is
written anew within a second.

The journal holds keys: it is made 0600 when opened, with its ``-wal`` and ``-shm``
(SQLite gives those the journal's mode), and a warning says it was not. A disk that
is full is said to be full, with the journal's path, rather than SQLite's "disk I/O
error".

One keyd at a time: the journal file is locked (``flock``, which SQLite's own locks
leave alone) for as long as it is open, since two engines writing one journal would
hand out the same serials and overwrite each other's rows. A journal that cannot be
written is found out when it is opened, not at the first change after clients came.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import sqlite3
import stat
import time
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pfmigrate.sadb.records import PolicyRecord, SARecord
from pfmigrate.sadb.rows import policy_from_data, policy_to_data, sa_from_data, sa_to_data
from pfmigrate.sadb.tables import Change

FORMAT = 3  # 2: each row with its CRC-32; 3: and the count of commits (a keyd reading 2 would refuse it)
READS = (2, 3)  # (a journal of format 2 is counted from the first start on 3)
SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    tbl TEXT NOT NULL, key INTEGER NOT NULL, data TEXT NOT NULL, crc INTEGER NOT NULL, PRIMARY KEY (tbl, key)
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
MARK_SUFFIX = "-acked"  # the commit mark, beside the journal
_MARK_MAGIC = b"pfmkeyd\x01"
_MARK_SIZE = len(_MARK_MAGIC) + 8 + 4  # magic, commits, CRC-32 of both
_SQLITE_HEADER = b"SQLite format 3\x00"
FULL_BELOW = 1 << 20  # bytes left under which an I/O error is taken for a full disk

log = logging.getLogger("pfmigrate.keyd")

_COUNTERS_CRC = "counters_crc"
_COMMITS = "commits"  # (in ``meta``, under the counters' CRC-32)


def _crc_of(counters: dict[str, int]) -> int:
    return zlib.crc32(json.dumps(sorted(counters.items())).encode())


def _mark_record(commits: int) -> bytes:
    head = _MARK_MAGIC + commits.to_bytes(8, "little")
    return head + zlib.crc32(head).to_bytes(4, "little")


def _mark_commits(record: bytes) -> int:
    """The count a mark holds; ValueError saying what is wrong with it."""
    if len(record) != _MARK_SIZE:
        raise ValueError(f"{len(record)} bytes, not {_MARK_SIZE}")
    head = record[:-4]
    if not head.startswith(_MARK_MAGIC):
        raise ValueError("not a commit mark")
    if zlib.crc32(head) != int.from_bytes(record[-4:], "little"):
        raise ValueError("its CRC-32 does not match its contents")
    return int.from_bytes(head[len(_MARK_MAGIC) :], "little")


def _free_bytes(directory: Path) -> int | None:
    """Bytes this process may still write in ``directory``'s file system (root may use the reserve)."""
    try:
        found = os.statvfs(directory)
    except OSError:
        return None
    return (found.f_bfree if os.geteuid() == 0 else found.f_bavail) * found.f_frsize


class JournalError(Exception):
    """The journal cannot be read or written; the message says which file and why."""


class JournalGone(JournalError):
    """The journal's contents were taken from keyd while it held it (its file deleted, or
    emptied in place): nothing written there survives a restart (``Journal.recreate``
    writes a new one)."""


CHECK_EVERY = 1.0  # seconds between checks that the file is still there, when idle


def _lock(path: Path) -> int:
    """An open descriptor of ``path`` holding its exclusive ``flock``."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise JournalError(f"{path}: cannot open the journal: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise JournalError(f"{path}: the journal is in use by another keyd") from exc
        raise JournalError(f"{path}: cannot lock the journal: {exc.strerror}") from exc
    return fd


def _make_private(path: Path, fd: int | None = None) -> None:
    """Mode 0600 for a journal file readable or writable by others (it holds keys), said in
    the log; nothing if ``path`` does not exist."""
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode if fd is not None else os.stat(path).st_mode)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise JournalError(f"{path}: cannot read its mode: {exc.strerror}") from exc
    if not mode & 0o077:
        return
    try:
        if fd is not None:
            os.fchmod(fd, 0o600)
        else:
            os.chmod(path, 0o600)
    except OSError as exc:
        raise JournalError(
            f"{path}: mode {mode:04o} lets others read keys, and keyd cannot make it 0600 ({exc.strerror}): "
            f"chmod 600 it, or run keyd as its owner"
        ) from exc
    log.warning(
        "journal file was open to others: made 0600",
        extra={"event": "journal-mode", "path": str(path), "mode": f"{mode:04o}"},
    )


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.mark_path = Path(f"{self.path}{MARK_SUFFIX}")
        self.staged: dict[tuple[str, int], Any] = {}  # the latest row of each key, None: deleted
        self.written: dict[str, int] = {}  # the counters as the journal holds them
        self.commits = 0  # commits made since this keyd opened it
        self.count = 0  # commits the journal holds, since it was first counted (its mark says as many)
        self._lock = self._mark = -1
        self._mark_checked = time.monotonic()
        self._mark_failed = False  # (a failed write of the mark is logged once, not at every flush)
        self._open(fresh=False)

    def _open(self, *, fresh: bool) -> None:
        """Open the journal at the path; unless ``fresh`` (a new file written from what keyd
        holds, and counted on from ``count``), check it against its commit mark."""
        self._size = 0  # the size keyd last saw it have (0: not known yet)
        self._lock = _lock(self.path)
        self._checked = time.monotonic()
        try:
            _make_private(self.path, self._lock)
            for suffix in ("-wal", "-shm"):  # (new ones take the journal's mode; old ones keep theirs)
                _make_private(Path(f"{self.path}{suffix}"))
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (JournalError, sqlite3.Error) as exc:
            os.close(self._lock)
            self._lock = -1
            if isinstance(exc, sqlite3.Error):
                raise self._failure(exc, "open the journal") from exc
            raise
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            found = self.db.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
            if found is not None and found[0] not in READS:
                raise JournalError(f"{self.path}: journal format {found[0]}, this keyd reads format 2 or 3")
            if not fresh:
                self._vouch()
            # Written even when it is there: a journal that cannot be written fails now.
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (FORMAT,))
            self._size = os.fstat(self._lock).st_size
        except JournalError:
            self.close()
            raise
        except sqlite3.Error as exc:
            self.close()
            raise self._failure(exc, "open the journal") from exc

    def _vouch(self) -> None:
        """That the journal holds every commit its mark counts (``JournalError`` naming
        what is missing if not); ``count`` from the journal, and the mark open."""
        counted = self._meta().get(_COMMITS)
        held = counted or 0
        try:
            fd = os.open(self.mark_path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1
        except OSError as exc:
            raise JournalError(f"{self.mark_path}: cannot open the journal's commit mark: {exc.strerror}") from exc
        if fd < 0:
            if counted is not None:
                log.warning(
                    "the journal's commit mark is missing: its write-ahead log cannot be checked this once",
                    extra={"event": "journal-mark-missing", "path": str(self.mark_path), "commits": held},
                )  # fmt: skip
            elif self.db.execute("SELECT EXISTS (SELECT 1 FROM rows)").fetchone()[0]:
                log.info("a journal without a commit count: counting from now", extra={"event": "journal-counted"})
            self.count = held
            self._mark = self._new_mark()
            return
        try:
            acked = _mark_commits(os.pread(fd, _MARK_SIZE + 1, 0))
        except (ValueError, OSError) as exc:
            os.close(fd)
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise JournalError(
                f"{self.mark_path}: the journal's commit mark is damaged ({why}), so keyd cannot tell whether "
                f"{self.path} holds every acknowledged change. If it does, or to start from what it holds, "
                f"delete {self.mark_path} and start keyd again"
            ) from exc
        if held < acked:
            os.close(fd)
            raise JournalError(
                f"{self.path}: the journal is behind what keyd acknowledged: it holds {held} commits, "
                f"{self.mark_path} counts {acked}, so the last {acked - held} are missing (a write-ahead log "
                f"({self.path}-wal) damaged or cut short after a crash, a journal put back from an older copy, "
                f"or one removed while keyd was stopped). keyd does not serve less than it acknowledged: put back "
                f"the journal with its -wal file from a copy that holds them, or, to start from what it holds "
                f"(and have the IKE daemon and the mobility agents install again what is missing), delete "
                f"{self.mark_path} and start keyd again"
            )
        self.count, self._mark = held, fd
        if held > acked:  # (a kill between a commit and its mark: nothing of it was acknowledged)
            self._write_mark()

    def _new_mark(self) -> int:
        """A new commit mark holding ``count``, durable with its directory entry before any
        commit counts on it (so that a power loss never leaves it empty)."""
        try:
            fd = os.open(self.mark_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise self._os_failure(exc, self.mark_path, "make the journal's commit mark") from exc
        try:
            os.pwrite(fd, _mark_record(self.count), 0)
            os.fsync(fd)
            parent = os.open(self.mark_path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(parent)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # (a file system that cannot sync a directory, as SQLite allows)
                    raise
            finally:
                os.close(parent)
        except OSError as exc:
            os.close(fd)
            raise self._os_failure(exc, self.mark_path, "write the journal's commit mark") from exc
        return fd

    def _write_mark(self) -> None:
        try:
            os.pwrite(self._mark, _mark_record(self.count), 0)
        except OSError as exc:  # behind, it only checks less: no reason to stop serving
            if not self._mark_failed:
                log.warning(
                    "cannot write the journal's commit mark",
                    extra={"event": "journal-mark-error", "path": str(self.mark_path), "error": exc.strerror},
                )  # fmt: skip
            self._mark_failed = True
        else:
            self._mark_failed = False

    def _failure(self, exc: sqlite3.Error, doing: str) -> JournalError:
        """``exc`` in words that say which file, and that the disk is full if it is:
        SQLite says "disk I/O error" for some writes on a full disk (the ``-shm`` file)."""
        code = getattr(exc, "sqlite_errorcode", None)
        free = _free_bytes(self.path.parent)
        full = code == sqlite3.SQLITE_FULL or (
            code is not None and code & 0xFF == sqlite3.SQLITE_IOERR and free is not None and free < FULL_BELOW
        )
        if full:
            return JournalError(
                f"{self.path}: cannot {doing}: the disk is full ({free:,} bytes left on its file system; "
                f"SQLite: {exc}); free some space there and start keyd again"
            )
        if code is not None and code & 0xFF == sqlite3.SQLITE_CORRUPT:
            return JournalError(
                f"{self.path}: cannot {doing}: the journal is damaged ({exc}); put it back, with its -wal file, "
                f"from a copy, or delete it and {self.mark_path} to start with an empty SAD and SPD"
            )
        return JournalError(f"{self.path}: cannot {doing}: {exc}")

    def _os_failure(self, exc: OSError, path: Path, doing: str) -> JournalError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return JournalError(f"{path}: cannot {doing}: the disk is full; free some space there and start keyd again")
        return JournalError(f"{path}: cannot {doing}: {exc.strerror}")

    def load(self) -> tuple[list[SARecord], list[PolicyRecord], dict[str, int]]:
        """Everything the journal holds: SAs, policies, counters."""
        try:  # (as bytes: a row whose text a bit flip made invalid is named below, with the others)
            rows = self.db.execute("SELECT tbl, key, CAST(data AS BLOB), crc FROM rows ORDER BY key").fetchall()
            meta = self._meta()
        except sqlite3.Error as exc:
            raise self._failure(exc, "read the journal") from exc
        sas, policies = [], []
        for table, key, data, crc in rows:
            try:
                if not isinstance(data, bytes) or zlib.crc32(data) != crc:
                    raise ValueError("its CRC-32 does not match its contents")
                loaded = json.loads(data)
                row: SARecord | PolicyRecord
                if table == "sad":
                    row = sa_from_data(loaded)
                    sas.append(row)
                elif table == "spd":
                    row = policy_from_data(loaded)
                    policies.append(row)
                else:
                    raise ValueError(f"no table {table!r}")
                if row.serial != key:
                    raise ValueError(f"it holds serial {row.serial}")
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                raise JournalError(f"{self.path}: row {table}/{key} is damaged: {exc}") from exc
        meta.pop(_COMMITS, None)  # (``_vouch`` has read it)
        self.written = dict(meta)
        return sas, policies, meta

    def _meta(self) -> dict[str, int]:
        """The engine's counters and the count of commits, checked against their CRC-32."""
        meta = dict(self.db.execute("SELECT name, value FROM meta").fetchall())
        meta.pop("format", None)
        crc = meta.pop(_COUNTERS_CRC, None)
        if crc != _crc_of(meta) and (meta or self.db.execute("SELECT EXISTS (SELECT 1 FROM rows)").fetchone()[0]):
            # (rows without counters: the counters were lost)
            raise JournalError(f"{self.path}: the engine's counters are missing or damaged (bad CRC-32)")
        return meta

    def stage(self, changes: list[Change]) -> None:
        """Remember a committed engine transaction until the next ``flush``."""
        for change in changes:
            self.staged[(change.table, change.key)] = change.row

    def flush(self, counters: dict[str, int]) -> int:
        """Write what was staged, and the counters if they changed, in one durable
        transaction, and count it in the mark; the number of rows written. ``JournalGone``
        if the file was deleted or emptied (what was staged is kept for ``recreate``)."""
        if not self.staged and counters == self.written:
            if time.monotonic() - self._checked >= CHECK_EVERY:
                self.check()
            return 0
        self.check()
        staged, self.staged = self.staged, {}
        try:
            self.db.execute("BEGIN IMMEDIATE")
            for (table, key), row in staged.items():
                if row is None:
                    self.db.execute("DELETE FROM rows WHERE tbl = ? AND key = ?", (table, key))
                    continue
                text = json.dumps(sa_to_data(row) if table == "sad" else policy_to_data(row))
                self.db.execute(
                    "INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?)", (table, key, text, zlib.crc32(text.encode()))
                )
            meta = {**counters, _COMMITS: self.count + 1}
            self.db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", [*meta.items(), (_COUNTERS_CRC, _crc_of(meta))]
            )
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            self.staged = staged  # (still to be written: nothing of it is in the journal)
            raise self._failure(exc, "write") from exc
        self.count += 1
        self._write_mark()  # (after the commit is durable, before any answer: never ahead of the journal)
        self._size = max(self._size, os.fstat(self._lock).st_size)  # (a checkpoint may have grown it)
        self.written = dict(counters)
        self.commits += 1
        return len(staged)

    def check(self) -> None:
        """That the file at the path is the journal keyd holds: ``JournalGone`` if it was
        deleted or emptied, ``JournalError`` if another file took its place. A commit mark
        that was deleted is written anew."""
        self._checked = time.monotonic()
        where = self._where()
        if where == "gone":
            raise JournalGone(f"{self.path}: the journal was deleted while keyd ran")
        if where == "truncated":
            raise JournalGone(f"{self.path}: the journal was emptied or cut short while keyd ran")
        if where == "replaced":
            raise JournalError(f"{self.path}: another file took the journal's place while keyd ran")
        # The mark at most once a second: a stat of it makes Linux (6.13 on) give its next
        # write a fine-grained time, an inode update that cost each flush's fsync ~70 µs.
        if self._checked - self._mark_checked >= CHECK_EVERY:
            self._check_mark()

    def _check_mark(self) -> None:
        self._mark_checked = time.monotonic()
        try:
            there = os.stat(self.mark_path)
            held = os.fstat(self._mark)
            if (there.st_dev, there.st_ino) == (held.st_dev, held.st_ino):
                return
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise JournalError(f"{self.mark_path}: cannot check the journal's commit mark: {exc.strerror}") from exc
        log.warning(
            "the journal's commit mark was deleted or replaced: written anew",
            extra={"event": "journal-mark-recreated", "path": str(self.mark_path), "commits": self.count},
        )  # fmt: skip
        fd = self._new_mark()
        os.close(self._mark)
        self._mark = fd

    def _where(self) -> str:
        """What is at the path now: "here" (the journal keyd holds, whole as far as its
        size and header tell), "gone", "replaced" or "truncated"."""
        held = os.fstat(self._lock)
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            return "gone"
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot check the journal: {exc.strerror}") from exc
        if (there.st_dev, there.st_ino) != (held.st_dev, held.st_ino):
            return "replaced"
        if self._size:  # (known once it was opened whole)
            if held.st_size < self._size or os.pread(self._lock, len(_SQLITE_HEADER), 0) != _SQLITE_HEADER:
                return "truncated"
            self._size = held.st_size
        return "here"

    def recreate(self, sas: Iterable[SARecord], policies: Iterable[PolicyRecord], counters: dict[str, int]) -> int:
        """A new journal at the path holding ``sas``, ``policies`` and ``counters`` (all
        the engine holds), after ``JournalGone``; the number of rows written. Its count
        goes on from the old one's, so its mark stays true."""
        self._shut()
        self._open(fresh=True)
        self.staged = {("sad", sa.serial): sa for sa in sas}
        self.staged.update((("spd", policy.serial), policy) for policy in policies)
        self.written = {}
        return self.flush(counters)

    def _shut(self) -> None:
        """Close the database and free its lock. SQLite leaves its log beside a file that
        moved, or that was emptied: a new file at the path would read it as its own."""
        try:
            where = self._where() if self._lock >= 0 else "here"
        except JournalError:  # (the path cannot be looked at: leave what is there alone)
            where = "here"
        self.db.close()
        if where == "truncated":  # (what the close checkpointed into it is no journal either)
            os.ftruncate(self._lock, 0)
        if where != "here":
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def close(self) -> None:
        self._shut()
        if self._mark >= 0:
            os.close(self._mark)
            self._mark = -1
