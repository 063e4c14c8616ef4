"""The least Python that can do the benchmarks' MIGRATE: a yardstick, not an engine.

``FloorEngine`` holds one tunnel SA per pair of endpoints and one policy per selector and
direction, in plain dicts. ``migrate`` takes the seed's one-direction X_MIGRATE apart
with ``struct`` and slicing, rewrites the policy's template, moves the SA to its new
endpoints (a new row under its new keys, the old one dropped) and broadcasts the
announcement with its generation number: the visible work of ``Engine.handle`` for that
message, byte for byte (``bench/engine.py`` checks the bytes against the engine's).

It trusts its input entirely: no length or family checks, no errno, no undo, no journal
hook, one SA per bundle, no retry detection. Any real engine does all of what it does
and more, so its time is a floor under any Python implementation of the same request.
"""

from __future__ import annotations

import struct

_EXT = struct.Struct("=HH")
_HEADER = struct.Struct("=BBBBHHII")
_KMPRIVATE_U64 = struct.Struct("=HHIQ")
_REQUEST_SIZE = 16
_X_MIGRATE, _SATYPE_ESP = 24, 3
_SRC, _DST, _X_POLICY = 5, 6, 18
_ADDR, _PEER = slice(8, 24), slice(36, 52)  # in a pair of padded sockaddr_in6

Row = tuple[bytes, bytes, int, bytes]  # src, dst, SPI, keys


class FloorEngine:
    def __init__(self) -> None:
        self.sas: dict[tuple[bytes, bytes], Row] = {}  # by (src, dst)
        self.by_spi: dict[tuple[bytes, int], Row] = {}  # the same rows by (dst, spi)
        self.policies: dict[tuple[bytes, bytes, int], list[bytes]] = {}  # selector, dir -> [tsrc, tdst]
        self.clients: list[int] = []
        self.generation = 0

    def add_sa(self, src: bytes, dst: bytes, spi: int, keys: bytes) -> None:
        row = (src, dst, spi, keys)
        self.sas[src, dst] = row
        self.by_spi[dst, spi] = row

    def add_policy(self, selector: tuple[bytes, bytes, int], tunnel: tuple[bytes, bytes]) -> None:
        self.policies[selector] = list(tunnel)

    def migrate(self, data: bytes) -> list[tuple[int, bytes]]:
        exts: dict[int, bytes] = {}
        offset, end = 16, len(data)
        while offset < end:
            length, kind = _EXT.unpack_from(data, offset)
            exts[kind] = data[offset : offset + 8 * length]
            offset += 8 * length
        policy_ext = exts[_X_POLICY]
        template = self.policies[exts[_SRC], exts[_DST], policy_ext[6]]
        requests = policy_ext[16:]
        old_length = _EXT.unpack_from(requests)[0]
        old = requests[_REQUEST_SIZE:old_length]
        new = requests[old_length + _REQUEST_SIZE :]
        old_ends, new_ends = (old[_ADDR], old[_PEER]), (new[_ADDR], new[_PEER])
        template[:] = new_ends
        _, _, spi, keys = self.sas.pop(old_ends)
        moved = (*new_ends, spi, keys)
        self.sas[new_ends] = moved
        del self.by_spi[old_ends[1], spi]
        self.by_spi[new_ends[1], spi] = moved
        self.generation += 1
        body = data[16:] + _KMPRIVATE_U64.pack(2, 17, 0, self.generation)
        out = _HEADER.pack(2, _X_MIGRATE, 0, _SATYPE_ESP, 2 + len(body) // 8, 0, 0, 0) + body
        return [(client, out) for client in self.clients]
