"""Linux's SA hash chains, kept to know in which order Linux meets SAs that share a key.

When several SAs match a lookup (two SAs between the same endpoints during a re-key, a
larval and a mature SA, two SAs with the same SPI after a MIGRATE), Linux takes the
first one in its hash chain. New SAs go to the head of their chain, and each time the
table doubles (``xfrm_hash_resize``, which runs after the request that made the table
too full) the chains are rebuilt walking the old ones, which reverses the order of SAs
that stay together. The order is therefore not simply "newest first".

``Chains`` replays that for the engine's Linux semantics: the three tables (by
destination and reqid, by source and destination, by SPI), their hash functions
(``net/xfrm/xfrm_hash.h``), the growth rule and the rebuild. It only orders; the engine's
own indexes still find the candidates.
"""

from __future__ import annotations

from pfmigrate.pfkey.constants import AF_INET, AF_INET6
from pfmigrate.sadb.records import SARecord
from pfmigrate.sadb.tables import Change

MASK32 = 0xFFFFFFFF
JHASH_INITVAL = 0xDEADBEEF
INITIAL_HMASK = 7  # 8 buckets per table in a new namespace
HASH_MAX = 1 << 20  # xfrm_state_hashmax


def _rol(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (32 - shift))) & MASK32


def jhash2(words: tuple[int, ...], initval: int = 0) -> int:
    """Linux's ``jhash2`` (Bob Jenkins' lookup3) over 32-bit words."""
    a = b = c = (JHASH_INITVAL + (len(words) << 2) + initval) & MASK32
    rest = list(words)
    while len(rest) > 3:
        a, b, c = (a + rest[0]) & MASK32, (b + rest[1]) & MASK32, (c + rest[2]) & MASK32
        a = (a - c) & MASK32 ^ _rol(c, 4)
        c = (c + b) & MASK32
        b = (b - a) & MASK32 ^ _rol(a, 6)
        a = (a + c) & MASK32
        c = (c - b) & MASK32 ^ _rol(b, 8)
        b = (b + a) & MASK32
        a = (a - c) & MASK32 ^ _rol(c, 16)
        c = (c + b) & MASK32
        b = (b - a) & MASK32 ^ _rol(a, 19)
        a = (a + c) & MASK32
        c = (c - b) & MASK32 ^ _rol(b, 4)
        b = (b + a) & MASK32
        rest = rest[3:]
    if not rest:
        return c
    if len(rest) == 3:
        c = (c + rest[2]) & MASK32
    if len(rest) >= 2:
        b = (b + rest[1]) & MASK32
    a = (a + rest[0]) & MASK32
    c = (c ^ b) - _rol(b, 14) & MASK32
    a = (a ^ c) - _rol(c, 11) & MASK32
    b = (b ^ a) - _rol(a, 25) & MASK32
    c = (c ^ b) - _rol(b, 16) & MASK32
    a = (a ^ c) - _rol(c, 4) & MASK32
    b = (b ^ a) - _rol(a, 14) & MASK32
    return (c ^ b) - _rol(b, 24) & MASK32


def _words(address: bytes) -> tuple[int, ...]:
    """The address as the four u32 a little-endian CPU loads from it."""
    return tuple(int.from_bytes(address[i : i + 4], "little") for i in range(0, 16, 4))


def _addr_hash(address: bytes, family: int) -> int:
    if family == AF_INET:
        return int.from_bytes(address[:4], "big")
    return jhash2(_words(address))


def _pair_hash(daddr: bytes, saddr: bytes, family: int) -> int:
    if family == AF_INET:
        total = (int.from_bytes(daddr[:4], "little") + int.from_bytes(saddr[:4], "little")) & MASK32
        return int.from_bytes(total.to_bytes(4, "little"), "big")
    if family == AF_INET6:
        return _addr_hash(daddr, family) ^ _addr_hash(saddr, family)
    return 0


def dst_hash(sa: SARecord, hmask: int) -> int:
    h = (sa.family ^ sa.reqid ^ _pair_hash(sa.daddr, sa.saddr, sa.family)) & MASK32
    return (h ^ (h >> 16)) & hmask


def src_hash(sa: SARecord, hmask: int) -> int:
    h = (sa.family ^ _pair_hash(sa.daddr, sa.saddr, sa.family)) & MASK32
    return (h ^ (h >> 16)) & hmask


def spi_hash(sa: SARecord, hmask: int) -> int:
    spi_as_loaded = int.from_bytes(sa.spi.to_bytes(4, "big"), "little")  # a __be32, read raw
    h = spi_as_loaded ^ sa.proto
    if sa.family in (AF_INET, AF_INET6):
        h ^= _addr_hash(sa.daddr, sa.family)
    return (h ^ (h >> 10) ^ (h >> 20)) & hmask


class Chains:
    """The bydst, bysrc and byspi tables of one namespace, as lists of SA serials."""

    def __init__(self) -> None:
        self.hmask = INITIAL_HMASK
        self.tables: dict[str, list[list[int]]] = {name: self._empty() for name in ("dst", "src", "spi")}
        self.rows: dict[int, SARecord] = {}
        self.grow = False  # a resize is due once the current request is done

    def _empty(self) -> list[list[int]]:
        return [[] for _ in range(self.hmask + 1)]

    # --- keeping up with the SAD ---

    def apply(self, changes: list[Change]) -> None:
        """Follow a committed transaction's changes to the SAD, in order."""
        for change in changes:
            if change.table != "sad":
                continue
            old = self.rows.get(change.key)
            if change.row is None:
                if old is not None:
                    self._remove(old)
            elif old is None:
                self._insert(change.row)
            else:
                self.rows[change.key] = change.row
                if not old.spi and change.row.spi:  # GETSPI gave a larval its SPI
                    self.tables["spi"][spi_hash(change.row, self.hmask)].insert(0, change.key)

    def _insert(self, sa: SARecord) -> None:
        dst = self.tables["dst"][dst_hash(sa, self.hmask)]
        collision = bool(dst)
        dst.insert(0, sa.serial)
        self.tables["src"][src_hash(sa, self.hmask)].insert(0, sa.serial)
        if sa.spi:
            self.tables["spi"][spi_hash(sa, self.hmask)].insert(0, sa.serial)
        self.rows[sa.serial] = sa
        if collision and self.hmask + 1 < HASH_MAX and len(self.rows) > self.hmask:
            self.grow = True

    def _remove(self, sa: SARecord) -> None:
        self.tables["dst"][dst_hash(sa, self.hmask)].remove(sa.serial)
        self.tables["src"][src_hash(sa, self.hmask)].remove(sa.serial)
        if sa.spi:
            self.tables["spi"][spi_hash(sa, self.hmask)].remove(sa.serial)
        del self.rows[sa.serial]

    def resize_if_due(self) -> None:
        """``xfrm_hash_resize``: double, rebuilding from the old dst chains, last bucket first."""
        if not self.grow:
            return
        self.grow = False
        old = self.tables["dst"]
        self.hmask = (self.hmask + 1) * 2 - 1
        self.tables = {name: self._empty() for name in ("dst", "src", "spi")}
        for bucket in reversed(old):
            for serial in bucket:
                sa = self.rows[serial]
                self.tables["dst"][dst_hash(sa, self.hmask)].insert(0, serial)
                self.tables["src"][src_hash(sa, self.hmask)].insert(0, serial)
                if sa.spi:
                    self.tables["spi"][spi_hash(sa, self.hmask)].insert(0, serial)

    # --- order ---

    def order(self, rows: list[SARecord], table: str) -> list[SARecord]:
        """``rows`` (which share a chain of ``table``) in the order Linux walks them.

        An SA the current request inserted is not in the chains yet (they follow
        committed changes): it is at the head, the newest first, as Linux put it.
        """
        if len(rows) < 2:
            return rows
        chain = self.tables[table][_HASHES[table](rows[0], self.hmask)]
        place = {serial: i for i, serial in enumerate(chain)}
        return sorted(rows, key=lambda sa: (0, place[sa.serial]) if sa.serial in place else (-1, -sa.serial))

    def walk_order(self, rows: list[SARecord]) -> list[SARecord]:
        """``rows`` in the order of a walk over every dst chain (``__xfrm_find_acq_byseq``)."""
        if len(rows) < 2:
            return rows

        def key(sa: SARecord) -> tuple[int, int, int]:
            bucket = dst_hash(sa, self.hmask)
            chain = self.tables["dst"][bucket]
            return (bucket, 0, chain.index(sa.serial)) if sa.serial in chain else (bucket, -1, -sa.serial)

        return sorted(rows, key=key)


_HASHES = {"dst": dst_hash, "src": src_hash, "spi": spi_hash}


__all__ = ["Chains", "jhash2"]
