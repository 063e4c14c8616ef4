"""How Linux ``af_key`` takes a request apart before any handler runs.

``check_base`` is ``pfkey_get_base_msg``: its failures make ``send()`` itself fail.
``split`` is ``parse_exthdrs``: it checks each extension's length, minimum size, type and
the few contents Linux checks there (addresses, keys, security contexts), and keeps the
extensions as raw bytes by type. A handler then decodes only the extensions it uses,
with the codec, and a failure there is the handler's EINVAL, as in Linux, where an
extension the handler ignores may hold anything.
"""

from __future__ import annotations

import errno
import struct
from typing import TypeVar

from pfmigrate._wire import DecodeError, Reader
from pfmigrate.pfkey.constants import AF_INET, AF_INET6, PF_KEY_V2, SADB_EXT_MAX, ExtType
from pfmigrate.pfkey.extensions import EXTENSION_CLASSES, Extension

E = TypeVar("E", bound=Extension)

_MSG = struct.Struct("=BBBBHHII")
_EXT = struct.Struct("=HH")
_U16 = struct.Struct("=H")
_ADDRESS_TYPES = frozenset({ExtType.ADDRESS_SRC, ExtType.ADDRESS_DST, ExtType.ADDRESS_PROXY, ExtType.X_NAT_T_OA})
_KEY_TYPES = frozenset({ExtType.KEY_AUTH, ExtType.KEY_ENCRYPT})
_PAGE_SIZE = 4096


class Refused(Exception):
    """Linux would refuse the request with ``errno``; ``in_band`` says whether as an
    error message to the sender (else ``send()`` itself fails)."""

    def __init__(self, errno_: int, reason: str, *, in_band: bool = True) -> None:
        super().__init__(reason)
        self.errno = errno_
        self.in_band = in_band


def check_base(data: bytes) -> tuple[int, ...]:
    """``pfkey_get_base_msg``: the header's fields, or ``Refused`` (not in band)."""
    if len(data) < _MSG.size:
        raise Refused(errno.EMSGSIZE, "shorter than sadb_msg", in_band=False)
    fields: tuple[int, ...] = _MSG.unpack_from(data)
    version, mtype, _, _, length, reserved, _, _ = fields
    if version != PF_KEY_V2 or reserved != 0 or not 1 <= mtype <= 24:
        raise Refused(errno.EINVAL, "bad version, reserved field or type", in_band=False)
    if length != len(data) // 8 or length < 2:
        raise Refused(errno.EMSGSIZE, "sadb_msg_len does not match", in_band=False)
    return fields


def _address_ok(raw: bytes) -> bool:
    length: int = _U16.unpack_from(raw, 0)[0]
    if length < 2:  # room for the sockaddr's family
        return False
    family: int = _U16.unpack_from(raw, 8)[0]
    prefixlen = raw[5]
    if family == AF_INET:
        return length == 3 and prefixlen <= 32
    if family == AF_INET6:
        return length == 5 and prefixlen <= 128
    return False


def _key_ok(raw: bytes) -> bool:
    length: int = _U16.unpack_from(raw, 0)[0]
    bits: int = _U16.unpack_from(raw, 4)[0]
    return (8 + (bits + 7) // 8 + 7) // 8 <= length


def _sec_ctx_ok(raw: bytes) -> bool:
    length: int = _U16.unpack_from(raw, 0)[0]
    ctx_len: int = _U16.unpack_from(raw, 6)[0]
    return ctx_len <= _PAGE_SIZE and length == (8 + ctx_len + 7) // 8


def split(data: bytes) -> dict[int, bytes]:
    """``parse_exthdrs``: the extensions (types 1..26) by type, as raw bytes."""
    exts: dict[int, bytes] = {}
    pos, end = _MSG.size, len(data)
    while pos < end:
        if end - pos < _EXT.size:
            raise Refused(errno.EINVAL, "a partial extension header")
        length, ext_type = _EXT.unpack_from(data, pos)
        size = length * 8
        if size < 8 or size > end - pos or ext_type == 0:
            raise Refused(errno.EINVAL, f"extension at {pos}: bad length or type 0")
        if ext_type <= SADB_EXT_MAX:
            raw = data[pos : pos + size]
            if size < EXTENSION_CLASSES[ext_type].min_len or ext_type in exts:
                raise Refused(errno.EINVAL, f"extension {ext_type} too short or repeated")
            if (
                (ext_type in _ADDRESS_TYPES and not _address_ok(raw))
                or (ext_type == ExtType.X_SEC_CTX and not _sec_ctx_ok(raw))
                or (ext_type in _KEY_TYPES and not _key_ok(raw))
            ):
                raise Refused(errno.EINVAL, f"extension {ext_type}: bad contents")
            exts[ext_type] = raw
        pos += size
    return exts


def extension(exts: dict[int, bytes], cls: type[E]) -> E | None:
    """The extension of class ``cls`` decoded, ``None`` if absent; ``Refused(EINVAL)`` if
    it cannot be decoded (the handler's own parse failing)."""
    raw = exts.get(cls.exttype)
    if raw is None:
        return None
    try:
        ext = cls.unpack(Reader(raw))
    except (DecodeError, ValueError) as exc:
        raise Refused(errno.EINVAL, f"{cls.__name__}: {exc}") from exc
    assert isinstance(ext, cls)
    return ext


_V4_PAD = bytes(12)


def address_raw(raw: bytes) -> tuple[int, bytes, int, int, int]:
    """(family, 16-byte address, port, prefix length, protocol) of an address extension
    that ``split`` has checked (``pfkey_sadb_addr2xfrm_addr``, without the codec)."""
    family = raw[8] | raw[9] << 8
    port = raw[10] << 8 | raw[11]
    address = raw[12:16] + _V4_PAD if family == AF_INET else raw[16:32]
    return family, address, port, raw[5], raw[4]
