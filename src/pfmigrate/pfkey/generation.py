"""pfmigrate's broadcast numbering, carried in PF_KEY itself.

A pfmigrate engine appends to each broadcast an X_KMPRIVATE extension holding one
host-order u64: the engine's generation, one more for every numbered broadcast. A
listener that sees a number skip knows it missed messages (Linux drops a broadcast for
a full socket without a sign). X_KMPRIVATE is the extension PF_KEY leaves to private
use and Linux ignores, so other PF_KEY readers are not disturbed.
"""

from __future__ import annotations

import struct

from pfmigrate.pfkey.extensions import KMPrivate
from pfmigrate.pfkey.message import Message

_KMPRIVATE_U64 = struct.Struct("=HHIQ")
_U64 = struct.Struct("=Q")


def with_generation(data: bytes, generation: int) -> bytes:
    """An encoded message with the X_KMPRIVATE extension for ``generation`` appended."""
    extra = _KMPRIVATE_U64.pack(2, 17, 0, generation)
    length = len(data) // 8 + 2
    return data[:4] + length.to_bytes(2, "little") + data[6:] + extra


def generation_of(msg: Message) -> int | None:
    """The generation number a pfmigrate engine put in a broadcast, if any."""
    ext = msg.get(KMPrivate)
    if ext is None or len(ext.data) != _U64.size:
        return None
    number: int = _U64.unpack(ext.data)[0]
    return number
