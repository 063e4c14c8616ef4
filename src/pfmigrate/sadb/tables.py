"""Tables with secondary indexes and all-or-nothing changes.

A ``Table`` maps a primary key to a row and keeps any number of secondary indexes,
each a function of the row giving an index key (or ``None`` to stay out of it). Every
lookup is a dict lookup, so it costs the same at a thousand rows and at a million.

Changes happen inside a ``Transaction``: each ``put`` or ``delete`` records how to undo
itself, and a transaction that ends with an exception puts every table back as it was
(a MIGRATE that fails half-way leaves no trace). A committed transaction hands its list
of changes to whoever listens (the keyd journal writes them down).

Order (Linux dumps newest first) is the rows' own business: a row carries its serial
number, kept when it is replaced, so a rolled-back deletion brings it back in place.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)  # (never a dict: a bucket of several keys is one)
V = TypeVar("V")


_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change: ``row`` is the new row, or ``None`` for a deletion;
    ``before`` the row it replaced, or ``None`` for an insertion."""

    table: str
    key: Any
    row: Any
    before: Any = None


class Transaction:
    """A unit of change across tables: ``commit`` keeps it, ``rollback`` undoes it."""

    def __init__(self, on_commit: Callable[[list[Change]], None] | None) -> None:
        self.undo: list[Callable[[], None]] = []
        self.changes: list[Change] = []
        self.on_commit = on_commit

    def commit(self) -> None:
        if self.on_commit is not None and self.changes:
            self.on_commit(self.changes)
        self.undo.clear()

    def rollback(self) -> None:
        while self.undo:
            self.undo.pop()()
        self.changes.clear()


class Database:
    """The tables of one engine and their current transaction."""

    def __init__(self) -> None:
        self.current: Transaction | None = None
        self.on_commit: Callable[[list[Change]], None] | None = None

    def transaction(self) -> _Scope:
        return _Scope(self)


class _Scope:
    def __init__(self, db: Database) -> None:
        self.db = db

    def __enter__(self) -> Transaction:
        if self.db.current is not None:
            raise RuntimeError("transactions do not nest")
        self.db.current = Transaction(self.db.on_commit)
        return self.db.current

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        txn, self.db.current = self.db.current, None
        assert txn is not None
        if exc_type is None:
            txn.commit()
        else:
            txn.rollback()


class Table(Generic[K, V]):
    """Rows by primary key, plus secondary indexes (index key -> keys, oldest first).

    An index key that names one row maps to that row's key itself; only a key shared by
    several rows gets a dict of them. Most index keys name one row (an SPI, a pair of
    endpoints), and a dict per row would cost more than the row.
    """

    def __init__(self, name: str, db: Database, indexes: dict[str, Callable[[V], Hashable | None]]) -> None:
        self.name = name
        self.db = db
        self.rows: dict[K, V] = {}
        self._key_of = indexes
        self._indexes: dict[str, dict[Hashable, Any]] = {name: {} for name in indexes}

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, key: object) -> bool:
        return key in self.rows

    def get(self, key: K) -> V | None:
        return self.rows.get(key)

    def find(self, index: str, index_key: Hashable) -> list[V]:
        """The rows whose ``index`` key is ``index_key``, oldest first."""
        keys = self._indexes[index].get(index_key, _MISSING)
        if keys is _MISSING:
            return []
        rows = self.rows
        if type(keys) is dict:
            return [rows[k] for k in keys]
        return [rows[keys]]

    def values(self) -> Iterator[V]:
        return iter(self.rows.values())

    def _txn(self) -> Transaction:
        txn = self.db.current
        if txn is None:
            raise RuntimeError(f"change to {self.name} outside a transaction")
        return txn

    def _index(self, key: K, row: V) -> None:
        for name, key_of in self._key_of.items():
            ikey = key_of(row)
            if ikey is not None:
                self._add(self._indexes[name], ikey, key)

    def _unindex(self, key: K, row: V) -> None:
        for name, key_of in self._key_of.items():
            ikey = key_of(row)
            if ikey is not None:
                self._drop(self._indexes[name], ikey, key)

    @staticmethod
    def _add(index: dict[Hashable, Any], ikey: Hashable, key: K) -> None:
        held = index.get(ikey, _MISSING)
        if held is _MISSING:
            index[ikey] = key
        elif type(held) is dict:
            held[key] = None
        else:
            index[ikey] = {held: None, key: None}

    @staticmethod
    def _drop(index: dict[Hashable, Any], ikey: Hashable, key: K) -> None:
        held = index[ikey]
        if type(held) is not dict:
            del index[ikey]
            return
        del held[key]
        if len(held) == 1:
            index[ikey] = next(iter(held))

    def put(self, key: K, row: V) -> None:
        """Insert, or replace in place (the row keeps its position)."""
        txn = self._txn()
        old = self.rows.get(key)
        if old is None:
            self.rows[key] = row
            self._index(key, row)
            txn.undo.append(lambda: self._remove(key, row))
        else:
            self._reindex(key, old, row)
            self.rows[key] = row
            txn.undo.append(lambda: self._restore(key, row, old))
        txn.changes.append(Change(self.name, key, row, old))

    def delete(self, key: K) -> V:
        txn = self._txn()
        row = self.rows[key]
        self._remove(key, row)
        txn.undo.append(lambda: self._reinsert(key, row))
        txn.changes.append(Change(self.name, key, None, row))
        return row

    def clear(self) -> None:
        for key in list(self.rows):
            self.delete(key)

    def verify(self) -> None:
        """Check that every index holds exactly what its function gives for the rows."""
        for name, key_of in self._key_of.items():
            expected: dict[Hashable, dict[K, None]] = {}
            for key, row in self.rows.items():
                ikey = key_of(row)
                if ikey is not None:
                    expected.setdefault(ikey, {})[key] = None
            actual = {
                ikey: dict.fromkeys(sorted(keys if type(keys) is dict else [keys], key=repr))
                for ikey, keys in self._indexes[name].items()
            }
            wanted = {ikey: dict.fromkeys(sorted(keys, key=repr)) for ikey, keys in expected.items()}
            if actual != wanted:
                raise AssertionError(f"index {name!r} of table {self.name!r} does not match its rows")

    # --- undo steps (no journal, no undo of their own) ---

    def _remove(self, key: K, row: V) -> None:
        self._unindex(key, row)
        del self.rows[key]

    def _restore(self, key: K, new: V, old: V) -> None:
        self._reindex(key, new, old)
        self.rows[key] = old

    def _reindex(self, key: K, old: V, new: V) -> None:
        """Move ``key`` in the indexes whose key differs between two versions of its row."""
        for name, key_of in self._key_of.items():
            before, after = key_of(old), key_of(new)
            if before == after:
                continue
            index = self._indexes[name]
            if before is not None:
                self._drop(index, before, key)
            if after is not None:
                self._add(index, after, key)

    def _reinsert(self, key: K, row: V) -> None:
        self.rows[key] = row
        self._index(key, row)
