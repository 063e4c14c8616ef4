"""XFRM netlink attributes (``XFRMA_*``): one class per type, registered by number.

An attribute is ``struct nlattr`` (len u16, including the 4-byte header; type u16)
followed by its data, padded to 4. ``unpack`` receives exactly the data. Like the
kernel's attribute policy, fixed-size data must be at least as long as its struct;
arrays (templates, migrate entries) hold as many whole entries as fit. Unknown types are
kept byte for byte.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from pfmigrate._value import Value, uint
from pfmigrate._wire import DecodeError, Reader
from pfmigrate.xfrm.constants import Attr, PolicyType
from pfmigrate.xfrm.structs import (
    EncapTmpl,
    LifetimeCur,
    UserKmaddress,
    UserMigrate,
    UserpolicyInfo,
    UsersaInfo,
    UserTmpl,
)

_NLA = struct.Struct("=HH")
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER


#: The most data an attribute can hold: nla_len is a u16 that counts its 4-byte header too.
NLA_MAX_DATA = 0xFFFF - 4


def nla_align(n: int) -> int:
    return (n + 3) & ~3


class Attribute(Value):
    """Base of every attribute; ``attr`` is its ``XFRMA_*`` number."""

    __slots__ = ()
    attr: int
    #: The fewest data bytes the kernel's attribute policy accepts.
    min_len: ClassVar[int] = 0

    def __post_init__(self) -> None:
        Value.__post_init__(self)
        size = len(self.data())
        if size > NLA_MAX_DATA:
            raise ValueError(f"{type(self).__name__} holds {size} bytes; an attribute holds at most {NLA_MAX_DATA}")
        if size < self.min_len:
            raise ValueError(f"{type(self).__name__} holds {size} bytes; Linux wants at least {self.min_len}")

    def data(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        raise NotImplementedError

    def pack(self) -> bytes:
        data = self.data()
        pad = nla_align(len(data)) - len(data)
        return _NLA.pack(4 + len(data), self.attr) + data + bytes(pad)


# --- algorithms ------------------------------------------------------------------------------

_ALGO = struct.Struct("=64sI")
_ALGO_AUTH = struct.Struct("=64sII")


def _name(raw: bytes, r: Reader, at: int) -> str:
    name, nul, _ = raw.partition(b"\0")
    if not nul:
        raise r.error("algorithm name is not NUL-terminated within its 64 bytes", at=at)
    try:
        return name.decode("ascii")
    except UnicodeDecodeError:
        raise r.error(f"algorithm name {name!r} is not ASCII", at=at) from None


def _check_name(name: str) -> None:
    if len(name.encode("ascii", "replace")) > 63 or "\0" in name or not name.isascii():
        raise ValueError(f"algorithm name {name!r} must be ASCII of at most 63 characters")


@dataclass(frozen=True, slots=True)
class Algo(Attribute):
    """``struct xfrm_algo`` (68) + key: a kernel algorithm name (``"cbc(aes)"``), the key
    length in bits, and ``ceil(bits / 8)`` key bytes."""

    min_len = 68
    name: str = ""
    key_len: int = uint(32)
    key: bytes = b""

    @classmethod
    def of(cls, name: str, key: bytes) -> Self:
        return cls(name, 8 * len(key), key)

    def _check(self) -> None:
        _check_name(self.name)
        if (self.key_len + 7) // 8 != len(self.key):
            raise ValueError(f"{self.key_len} key bits need {(self.key_len + 7) // 8} bytes, got {len(self.key)}")

    def data(self) -> bytes:
        return _ALGO.pack(self.name.encode("ascii"), self.key_len) + self.key

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        at = r.pos
        raw_name, key_len = r.unpack(_ALGO, "xfrm_algo")
        return cls(_name(raw_name, r, at), key_len, r.take((key_len + 7) // 8, "algorithm key"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, key_len={self.key_len}, key=<hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class AlgAuth(Algo):
    attr = Attr.ALG_AUTH


@dataclass(frozen=True, slots=True, repr=False)
class AlgCrypt(Algo):
    attr = Attr.ALG_CRYPT


@dataclass(frozen=True, slots=True, repr=False)
class AlgComp(Algo):
    attr = Attr.ALG_COMP


@dataclass(frozen=True, slots=True)
class AlgoWithLength(Attribute):
    """``struct xfrm_algo_auth`` / ``xfrm_algo_aead`` (72) + key: name, key bits, a
    second length in bits (truncation or ICV), key bytes."""

    min_len = 72
    name: str = ""
    key_len: int = uint(32)
    length: int = uint(32)
    key: bytes = b""

    @classmethod
    def of(cls, name: str, key: bytes, length: int) -> Self:
        return cls(name, 8 * len(key), length, key)

    def _check(self) -> None:
        _check_name(self.name)
        if (self.key_len + 7) // 8 != len(self.key):
            raise ValueError(f"{self.key_len} key bits need {(self.key_len + 7) // 8} bytes, got {len(self.key)}")

    def data(self) -> bytes:
        return _ALGO_AUTH.pack(self.name.encode("ascii"), self.key_len, self.length) + self.key

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        at = r.pos
        raw_name, key_len, length = r.unpack(_ALGO_AUTH, "xfrm_algo_auth")
        return cls(_name(raw_name, r, at), key_len, length, r.take((key_len + 7) // 8, "algorithm key"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, key_len={self.key_len}, length={self.length}, key=<hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class AlgAuthTrunc(AlgoWithLength):
    """``XFRMA_ALG_AUTH_TRUNC``: ``length`` is the truncated ICV length in bits."""

    attr = Attr.ALG_AUTH_TRUNC


@dataclass(frozen=True, slots=True, repr=False)
class AlgAead(AlgoWithLength):
    """``XFRMA_ALG_AEAD``: ``length`` is the ICV length in bits."""

    attr = Attr.ALG_AEAD


# --- structs and arrays of structs -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Encap(Attribute):
    """``XFRMA_ENCAP``: ``struct xfrm_encap_tmpl``, NAT traversal (ESP in UDP)."""

    attr = Attr.ENCAP
    min_len = EncapTmpl.SIZE
    encap: EncapTmpl = EncapTmpl()

    def data(self) -> bytes:
        return self.encap.pack()

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(EncapTmpl.unpack(r.take(EncapTmpl.SIZE, "xfrm_encap_tmpl")))


@dataclass(frozen=True, slots=True)
class Templates(Attribute):
    """``XFRMA_TMPL``: one or more ``struct xfrm_user_tmpl``."""

    attr = Attr.TMPL
    templates: tuple[UserTmpl, ...] = ()

    def data(self) -> bytes:
        return b"".join(t.pack() for t in self.templates)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(tuple(UserTmpl.unpack(r.take(64, "xfrm_user_tmpl")) for _ in range(r.remaining() // 64)))


@dataclass(frozen=True, slots=True)
class Migrate(Attribute):
    """``XFRMA_MIGRATE``: ``struct xfrm_user_migrate`` entries. A request carries all of
    them in one attribute; the kernel's notification sends one attribute per entry."""

    attr = Attr.MIGRATE
    min_len = UserMigrate.SIZE
    entries: tuple[UserMigrate, ...] = ()

    def data(self) -> bytes:
        return b"".join(m.pack() for m in self.entries)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        count = r.remaining() // UserMigrate.SIZE
        return cls(tuple(UserMigrate.unpack(r.take(UserMigrate.SIZE, "xfrm_user_migrate")) for _ in range(count)))


@dataclass(frozen=True, slots=True)
class KmAddress(Attribute):
    """``XFRMA_KMADDRESS``: ``struct xfrm_user_kmaddress``, the key managers' addresses."""

    attr = Attr.KMADDRESS
    min_len = UserKmaddress.SIZE
    kmaddress: UserKmaddress = UserKmaddress()

    def data(self) -> bytes:
        return self.kmaddress.pack()

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(UserKmaddress.unpack(r.take(UserKmaddress.SIZE, "xfrm_user_kmaddress")))


@dataclass(frozen=True, slots=True)
class SaInfo(Attribute):
    """``XFRMA_SA``: a whole ``struct xfrm_usersa_info`` (in DELSA notifications)."""

    attr = Attr.SA
    min_len = UsersaInfo.SIZE
    info: UsersaInfo = UsersaInfo()

    def data(self) -> bytes:
        return self.info.pack()

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(UsersaInfo.unpack(r.take(UsersaInfo.SIZE, "xfrm_usersa_info")))


@dataclass(frozen=True, slots=True)
class PolicyInfo(Attribute):
    """``XFRMA_POLICY``: a whole ``struct xfrm_userpolicy_info`` (in DELPOLICY notifications)."""

    attr = Attr.POLICY
    min_len = UserpolicyInfo.SIZE
    info: UserpolicyInfo = UserpolicyInfo()

    def data(self) -> bytes:
        return self.info.pack()

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(UserpolicyInfo.unpack(r.take(UserpolicyInfo.SIZE, "xfrm_userpolicy_info")))


@dataclass(frozen=True, slots=True)
class LifetimeValue(Attribute):
    """``XFRMA_LTIME_VAL``: ``struct xfrm_lifetime_cur``."""

    attr = Attr.LTIME_VAL
    min_len = LifetimeCur.SIZE
    current: LifetimeCur = LifetimeCur()

    def data(self) -> bytes:
        return self.current.pack()

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(LifetimeCur.unpack(r.take(LifetimeCur.SIZE, "xfrm_lifetime_cur")))


_REPLAY = struct.Struct("=III")


@dataclass(frozen=True, slots=True)
class ReplayValue(Attribute):
    """``XFRMA_REPLAY_VAL``: ``struct xfrm_replay_state`` (oseq, seq, bitmap)."""

    attr = Attr.REPLAY_VAL
    min_len = 12
    oseq: int = uint(32)
    seq: int = uint(32)
    bitmap: int = uint(32)

    def data(self) -> bytes:
        return _REPLAY.pack(self.oseq, self.seq, self.bitmap)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(*r.unpack(_REPLAY, "xfrm_replay_state"))


_ESN = struct.Struct("=6I")
_U8 = struct.Struct("=B")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")


@dataclass(frozen=True, slots=True)
class ReplayEsn(Attribute):
    """``XFRMA_REPLAY_ESN_VAL``: ``struct xfrm_replay_state_esn`` (24) + ``bmp_len`` words."""

    attr = Attr.REPLAY_ESN_VAL
    min_len = 24
    oseq: int = uint(32)
    seq: int = uint(32)
    oseq_hi: int = uint(32)
    seq_hi: int = uint(32)
    replay_window: int = uint(32)
    bitmap: tuple[int, ...] = ()

    def _check(self) -> None:
        if any(not 0 <= w < 1 << 32 for w in self.bitmap):
            raise ValueError("replay bitmap words are u32")

    def data(self) -> bytes:
        head = _ESN.pack(len(self.bitmap), self.oseq, self.seq, self.oseq_hi, self.seq_hi, self.replay_window)
        return head + b"".join(_U32.pack(w) for w in self.bitmap)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        bmp_len, oseq, seq, oseq_hi, seq_hi, window = r.unpack(_ESN, "xfrm_replay_state_esn")
        if 4 * bmp_len > r.remaining():
            raise r.error(f"a replay bitmap of {bmp_len} words overruns the attribute")
        words = tuple(r.unpack(_U32, "bitmap word")[0] for _ in range(bmp_len))
        return cls(oseq, seq, oseq_hi, seq_hi, window, words)


_MARK = struct.Struct("=II")


@dataclass(frozen=True, slots=True)
class Mark(Attribute):
    """``XFRMA_MARK``: ``struct xfrm_mark`` (value, mask)."""

    attr = Attr.MARK
    min_len = 8
    value: int = uint(32)
    mask: int = uint(32, 0xFFFFFFFF)

    def data(self) -> bytes:
        return _MARK.pack(self.value, self.mask)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(*r.unpack(_MARK, "xfrm_mark"))


_POLICY_TYPE = struct.Struct("=B1xHB1x")


@dataclass(frozen=True, slots=True)
class PolicyTypeAttr(Attribute):
    """``XFRMA_POLICY_TYPE``: ``struct xfrm_userpolicy_type`` (6): type, reserved."""

    attr = Attr.POLICY_TYPE
    min_len = 6
    type: PolicyType = uint(8, PolicyType.MAIN)

    def data(self) -> bytes:
        return _POLICY_TYPE.pack(self.type, 0, 0)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(PolicyType.of(r.unpack(_POLICY_TYPE, "xfrm_userpolicy_type")[0]))


_SEC_CTX = struct.Struct("=HHBBH")


@dataclass(frozen=True, slots=True)
class SecCtx(Attribute):
    """``XFRMA_SEC_CTX``: ``struct xfrm_user_sec_ctx`` (8) + the context string."""

    attr = Attr.SEC_CTX
    min_len = 8
    alg: int = uint(8)
    doi: int = uint(8)
    context: bytes = b""

    def data(self) -> bytes:
        return _SEC_CTX.pack(8 + len(self.context), 0, self.alg, self.doi, len(self.context)) + self.context

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        at = r.pos
        length, _, alg, doi, ctx_len = r.unpack(_SEC_CTX, "xfrm_user_sec_ctx")
        if length != 8 + ctx_len:  # verify_sec_ctx_len
            raise r.error(f"xfrm_user_sec_ctx.len is {length}, not 8 + ctx_len ({8 + ctx_len})", at=at)
        return cls(alg, doi, r.take(ctx_len, "security context"))


_FILTER = struct.Struct("=16s16sHBB")


@dataclass(frozen=True, slots=True)
class AddressFilter(Attribute):
    """``XFRMA_ADDRESS_FILTER``: ``struct xfrm_address_filter`` (36) for SA dumps."""

    attr = Attr.ADDRESS_FILTER
    min_len = 36
    saddr: bytes = bytes(16)
    daddr: bytes = bytes(16)
    family: int = uint(16)
    splen: int = uint(8)
    dplen: int = uint(8)

    def _check(self) -> None:
        if len(self.saddr) != 16 or len(self.daddr) != 16:
            raise ValueError("filter addresses are 16 bytes")

    def data(self) -> bytes:
        return _FILTER.pack(self.saddr, self.daddr, self.family, self.splen, self.dplen)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(*r.unpack(_FILTER, "xfrm_address_filter"))


_OFFLOAD = struct.Struct("=iB3x")


@dataclass(frozen=True, slots=True)
class OffloadDev(Attribute):
    """``XFRMA_OFFLOAD_DEV``: ``struct xfrm_user_offload`` (8): ifindex, flags."""

    attr = Attr.OFFLOAD_DEV
    min_len = 8
    ifindex: int = 0
    flags: int = uint(8)

    def _check(self) -> None:
        if not -(1 << 31) <= self.ifindex < 1 << 31:
            raise ValueError(f"ifindex {self.ifindex} is not an int32")

    def data(self) -> bytes:
        return _OFFLOAD.pack(self.ifindex, self.flags)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(*r.unpack(_OFFLOAD, "xfrm_user_offload"))


# --- scalars and raw addresses ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scalar(Attribute):
    """An attribute holding one unsigned integer of ``FORMAT``."""

    FORMAT: ClassVar[struct.Struct] = _U32
    min_len = 4
    value: int = uint(64)

    def _check(self) -> None:
        if not 0 <= self.value < 1 << (8 * self.FORMAT.size):
            raise ValueError(f"{type(self).__name__} value {self.value} does not fit in {self.FORMAT.size} bytes")

    def data(self) -> bytes:
        return self.FORMAT.pack(self.value)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(r.unpack(cls.FORMAT, cls.__name__)[0])


@dataclass(frozen=True, slots=True)
class ReplayThresh(Scalar):
    """``XFRMA_REPLAY_THRESH``: packets between replay notifications."""

    attr = Attr.REPLAY_THRESH


@dataclass(frozen=True, slots=True)
class EtimerThresh(Scalar):
    """``XFRMA_ETIMER_THRESH``: time between replay notifications (100 ms units)."""

    attr = Attr.ETIMER_THRESH


@dataclass(frozen=True, slots=True)
class LastUsed(Scalar):
    """``XFRMA_LASTUSED``: when the SA or policy was last used (seconds)."""

    attr = Attr.LASTUSED
    FORMAT = _U64
    min_len = 8


@dataclass(frozen=True, slots=True)
class TfcPad(Scalar):
    """``XFRMA_TFCPAD``: traffic flow confidentiality padding."""

    attr = Attr.TFCPAD


@dataclass(frozen=True, slots=True)
class SaExtraFlags(Scalar):
    """``XFRMA_SA_EXTRA_FLAGS``: ``XFRM_SA_XFLAG_*``."""

    attr = Attr.SA_EXTRA_FLAGS


@dataclass(frozen=True, slots=True)
class Proto(Scalar):
    """``XFRMA_PROTO``: the protocol a dump or flush is limited to."""

    attr = Attr.PROTO
    FORMAT = _U8
    min_len = 1


@dataclass(frozen=True, slots=True)
class SetMark(Scalar):
    """``XFRMA_SET_MARK``: the mark set on packets after transformation."""

    attr = Attr.SET_MARK


@dataclass(frozen=True, slots=True)
class SetMarkMask(Scalar):
    """``XFRMA_SET_MARK_MASK``: the mask for ``SetMark``."""

    attr = Attr.SET_MARK_MASK


@dataclass(frozen=True, slots=True)
class IfId(Scalar):
    """``XFRMA_IF_ID``: the XFRM interface id."""

    attr = Attr.IF_ID


@dataclass(frozen=True, slots=True)
class MtimerThresh(Scalar):
    """``XFRMA_MTIMER_THRESH``: NAT mapping change notification threshold (seconds)."""

    attr = Attr.MTIMER_THRESH


@dataclass(frozen=True, slots=True)
class SaDir(Scalar):
    """``XFRMA_SA_DIR``: the SA direction (1 in, 2 out)."""

    attr = Attr.SA_DIR
    FORMAT = _U8
    min_len = 1


@dataclass(frozen=True, slots=True)
class NatKeepaliveInterval(Scalar):
    """``XFRMA_NAT_KEEPALIVE_INTERVAL``: NAT keepalive interval (seconds)."""

    attr = Attr.NAT_KEEPALIVE_INTERVAL


@dataclass(frozen=True, slots=True)
class SaPcpu(Scalar):
    """``XFRMA_SA_PCPU``: the CPU a per-CPU SA belongs to."""

    attr = Attr.SA_PCPU


@dataclass(frozen=True, slots=True)
class RawAddress(Attribute):
    """An ``xfrm_address_t`` attribute (16 bytes; its family is the SA's)."""

    min_len = 16
    address: bytes = bytes(16)

    def _check(self) -> None:
        if len(self.address) != 16:
            raise ValueError("an xfrm_address_t is 16 bytes")

    def data(self) -> bytes:
        return self.address

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(r.take(16, "xfrm_address_t"))


@dataclass(frozen=True, slots=True)
class SrcAddr(RawAddress):
    attr = Attr.SRCADDR


@dataclass(frozen=True, slots=True)
class CoAddr(RawAddress):
    """``XFRMA_COADDR``: the care-of address of a Mobile IPv6 route-optimisation state."""

    attr = Attr.COADDR


@dataclass(frozen=True, slots=True)
class UnknownAttribute(Attribute):
    """An attribute type this code does not know (or one with flag bits); kept as is."""

    attr: int = uint(16, None)
    payload: bytes = b""

    def data(self) -> bytes:
        return self.payload

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        raise NotImplementedError  # built by read_attributes, which knows the type


#: Every known attribute class by its number.
ATTRIBUTE_CLASSES: dict[int, type[Attribute]] = {
    cls.attr: cls
    for cls in (
        AlgAuth, AlgCrypt, AlgComp, Encap, Templates, SaInfo, PolicyInfo, SecCtx, LifetimeValue, ReplayValue,
        ReplayThresh, EtimerThresh, SrcAddr, CoAddr, LastUsed, PolicyTypeAttr, Migrate, AlgAead, KmAddress,
        AlgAuthTrunc, Mark, TfcPad, ReplayEsn, SaExtraFlags, Proto, AddressFilter, OffloadDev, SetMark,
        SetMarkMask, IfId, MtimerThresh, SaDir, NatKeepaliveInterval, SaPcpu,
    )
}  # fmt: skip


def read_attributes(r: Reader) -> tuple[Attribute, ...]:
    """Every attribute up to the reader's end, in order (types may repeat)."""
    out: list[Attribute] = []
    while r.remaining():
        at = r.pos
        if r.remaining() < 4:
            raise r.error(f"{r.remaining()} bytes left are too few for an attribute header")
        length, number = r.unpack(_NLA, "nlattr")
        if length < 4 or at + length > r.end:
            raise r.error(f"attribute length {length} is shorter than its header or runs past the message", at=at)
        body = r.sub(length - 4, "attribute data")
        cls = ATTRIBUTE_CLASSES.get(number)
        if cls is None:
            out.append(UnknownAttribute(number, body.rest()))
        else:
            if length - 4 < cls.min_len:
                raise r.error(f"{cls.__name__} needs at least {cls.min_len} bytes of data, has {length - 4}", at=at)
            try:
                out.append(cls.unpack(body))
            except DecodeError:
                raise
            except ValueError as exc:  # a value's own rule, e.g. an over-long name
                raise r.error(f"{cls.__name__}: {exc}", at=at) from exc
        r.skip(min(nla_align(length) - length, r.remaining()), "attribute padding")
    return tuple(out)
