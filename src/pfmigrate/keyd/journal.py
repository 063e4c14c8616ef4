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

What SQLite itself cannot tell is a write-ahead log cut short after a crash (by a disk
that lost its cache, or by hand): it drops the torn tail, and with it the transactions
there, without a word. ``synchronous=FULL`` makes that a matter of failing hardware.

A journal deleted while keyd runs (by hand, or by a cleaner of old files) would take
every later change with it on a restart: each flush, and one a second when there is
nothing to write, checks that the file at the path is still the one keyd holds. If it
is gone, ``flush`` raises ``JournalGone`` and keyd writes all it holds to a new journal
there (``recreate``); if another file has taken its place, that is ``JournalError``, and
keyd stops rather than overwrite it.

One keyd at a time: the journal file is locked (``flock``, which SQLite's own locks
leave alone) for as long as it is open, since two engines writing one journal would
hand out the same serials and overwrite each other's rows. A journal that cannot be
written is found out when it is opened, not at the first change after clients came.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sqlite3
import time
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pfmigrate.sadb.records import PolicyRecord, SARecord
from pfmigrate.sadb.rows import policy_from_data, policy_to_data, sa_from_data, sa_to_data
from pfmigrate.sadb.tables import Change

FORMAT = 2  # 2: each row with its CRC-32
SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    tbl TEXT NOT NULL, key INTEGER NOT NULL, data TEXT NOT NULL, crc INTEGER NOT NULL, PRIMARY KEY (tbl, key)
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


_COUNTERS_CRC = "counters_crc"


def _crc_of(counters: dict[str, int]) -> int:
    return zlib.crc32(json.dumps(sorted(counters.items())).encode())


class JournalError(Exception):
    """The journal cannot be read or written; the message says which file and why."""


class JournalGone(JournalError):
    """The journal's file was deleted while keyd held it: nothing written there survives
    a restart (``Journal.recreate`` writes a new one)."""


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


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._open()
        self.staged: dict[tuple[str, int], Any] = {}  # the latest row of each key, None: deleted
        self.written: dict[str, int] = {}  # the counters as the journal holds them
        self.commits = 0

    def _open(self) -> None:
        self._lock = _lock(self.path)
        self._checked = time.monotonic()
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            os.close(self._lock)
            raise JournalError(f"{self.path}: {exc}") from exc
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            found = self.db.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
            if found is not None and found[0] != FORMAT:
                raise JournalError(f"{self.path}: journal format {found[0]}, this keyd reads format {FORMAT}")
            # Written even when it is there: a journal that cannot be written fails now.
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (FORMAT,))
        except JournalError:
            self.close()
            raise
        except sqlite3.Error as exc:
            self.close()
            raise JournalError(f"{self.path}: {exc}") from exc

    def load(self) -> tuple[list[SARecord], list[PolicyRecord], dict[str, int]]:
        """Everything the journal holds: SAs, policies, counters."""
        try:  # (as bytes: a row whose text a bit flip made invalid is named below, with the others)
            rows = self.db.execute("SELECT tbl, key, CAST(data AS BLOB), crc FROM rows ORDER BY key").fetchall()
            meta = dict(self.db.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: {exc}") from exc
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
        meta.pop("format", None)
        crc = meta.pop(_COUNTERS_CRC, None)
        if (rows or meta) and crc != _crc_of(meta):  # (rows without counters: the counters were lost)
            raise JournalError(f"{self.path}: the engine's counters are missing or damaged (bad CRC-32)")
        self.written = dict(meta)
        return sas, policies, meta

    def stage(self, changes: list[Change]) -> None:
        """Remember a committed engine transaction until the next ``flush``."""
        for change in changes:
            self.staged[(change.table, change.key)] = change.row

    def flush(self, counters: dict[str, int]) -> int:
        """Write what was staged, and the counters if they changed, in one durable
        transaction; the number of rows written. ``JournalGone`` if the file was deleted
        (what was staged is kept for ``recreate``)."""
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
            rows = [*counters.items(), (_COUNTERS_CRC, _crc_of(counters))]
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", rows)
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: cannot write: {exc}") from exc
        self.written = dict(counters)
        self.commits += 1
        return len(staged)

    def check(self) -> None:
        """That the file at the path is the journal keyd holds: ``JournalGone`` if it was
        deleted, ``JournalError`` if another file took its place."""
        self._checked = time.monotonic()
        where = self._where()
        if where == "gone":
            raise JournalGone(f"{self.path}: the journal was deleted while keyd ran")
        if where == "replaced":
            raise JournalError(f"{self.path}: another file took the journal's place while keyd ran")

    def _where(self) -> str:
        """What is at the path now: "here" (the journal keyd holds), "gone" or "replaced"."""
        held = os.fstat(self._lock)
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            return "gone"
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot check the journal: {exc.strerror}") from exc
        return "here" if (there.st_dev, there.st_ino) == (held.st_dev, held.st_ino) else "replaced"

    def recreate(self, sas: Iterable[SARecord], policies: Iterable[PolicyRecord], counters: dict[str, int]) -> int:
        """A new journal at the path holding ``sas``, ``policies`` and ``counters`` (all
        the engine holds), after ``JournalGone``; the number of rows written."""
        self.close()
        self._open()
        self.staged = {("sad", sa.serial): sa for sa in sas}
        self.staged.update((("spd", policy.serial), policy) for policy in policies)
        self.written = {}
        return self.flush(counters)

    def close(self) -> None:
        try:
            moved = self._lock >= 0 and self._where() != "here"
        except JournalError:  # (the path cannot be looked at: leave what is there alone)
            moved = False
        self.db.close()
        if moved:  # SQLite leaves its log beside a file that moved: a new file at the path would read it as its own
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1
