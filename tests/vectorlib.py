"""Messages captured from Linux, kept as hex with their meaning, and Linux's one quirk.

Linux's ``set_sadb_address`` (used for the X_MIGRATE broadcast) reserves the 32-byte
area for a 28-byte ``sockaddr_in6`` with ``skb_put`` and never zeroes the last 4 bytes,
so they carry whatever the kernel heap held. They are padding; the codec ignores them on
decode and writes zeros on encode, so such a message round-trips only once they are
zeroed.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

VECTOR_FILE = Path(__file__).parent / "vectors" / "pfkey_linux.json"
_EXT = struct.Struct("=HH")
_ADDRESS_TYPES = {5, 6, 7, 23}
_AF_INET6 = 10


def zero_address_padding(raw: bytes) -> bytes:
    """``raw`` with the padding after each IPv6 address extension's sockaddr zeroed."""
    out = bytearray(raw)
    pos, end = 16, min(len(raw), struct.unpack_from("=H", raw, 4)[0] * 8)
    while pos + 4 <= end:
        length, exttype = _EXT.unpack_from(raw, pos)
        if length == 0 or pos + length * 8 > end:
            break  # a malformed message (a promiscuous copy of a bad request): leave the rest
        if exttype in _ADDRESS_TYPES and length == 5 and struct.unpack_from("=H", raw, pos + 8)[0] == _AF_INET6:
            out[pos + 36 : pos + 40] = bytes(4)
        pos += length * 8
    return bytes(out)


def load_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(VECTOR_FILE.read_text())
    return vectors
