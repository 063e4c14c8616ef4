"""Hypothesis strategies for every XFRM netlink value class, driven by the declared field widths.

``values(cls)`` builds any struct or attribute of ``pfmigrate.xfrm``. Integer, enum and flag
fields take their range from ``pfmigrate._value.field_specs`` (through ``tests.strategies``),
so a width is still written in one place; enum fields range over every number of their
width, known or not, because the enums are open. Only the rules that tie fields together
are written out here, class by class:

* an ``xfrm_address_t`` becomes an ``IPv4Address`` when the struct's family is AF_INET and
  an ``IPv6Address`` otherwise, so every struct with a family field draws AF_INET with IPv4
  addresses or AF_INET6 with IPv6 ones. ``XfrmId`` has no family: it takes its enclosing
  struct's (the SA's, the template's; in ``xfrm_user_acquire`` the selector's, or the
  policy's when the selector's is AF_UNSPEC). Selectors are also AF_UNSPEC now and then
  (SA selectors often are), with their 16 bytes kept in an ``IPv6Address``;
* ``int`` fields (ifindex) are int32, addresses inside attributes are 16 raw bytes;
* algorithm names are ASCII without NUL, at most 63 characters; key bits need exactly the
  key's bytes;
* ``XFRMA_MIGRATE`` holds 1 to ``XFRM_MAX_DEPTH`` entries (its policy minimum is one entry),
  ``XFRMA_TMPL`` 0 to ``XFRM_MAX_DEPTH`` templates, an ESN bitmap at most 128 words
  (``XFRMA_REPLAY_ESN_MAX``), a security context at most a page;
* scalars fit their ``FORMAT``; unknown attributes have a type below ``0x4000`` that is not
  in ``ATTRIBUTE_CLASSES``.

Messages: ``xfrm_messages()`` draws every type of ``FIXED`` (and FLUSHPOLICY) with its fixed
struct, or without one for GETSA/GETPOLICY dump requests (which then carry no attributes:
see the dump-request bug in ``tests/test_xfrm_properties.py``), plus attributes;
``netlink_errors()`` draws NLMSG_ERROR as Linux's ``netlink_ack`` builds it (the whole
request echoed, or nothing and NLM_F_CAPPED); ``netlink_dones()`` and ``raw_messages()``
the rest. ``datagrams()`` is the bytes of one or more of them back to back.

Sizes stay small by default and reach their limits now and then (``_rarely``), so that
truncating a datagram at every length stays cheap.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from hypothesis import strategies as st

from pfmigrate._value import FieldSpec, field_specs
from pfmigrate.xfrm import (
    AF_INET,
    AF_INET6,
    ATTRIBUTE_CLASSES,
    DUMP,
    FIXED,
    AddressFilter,
    AeventId,
    Algo,
    AlgoWithLength,
    Attribute,
    EncapTmpl,
    LifetimeCfg,
    LifetimeCur,
    Migrate,
    MsgType,
    NetlinkDone,
    NetlinkError,
    NetlinkMessage,
    NlFlags,
    NlMsgType,
    OffloadDev,
    RawAddress,
    RawMessage,
    ReplayEsn,
    Scalar,
    SecCtx,
    Selector,
    Stats,
    Templates,
    UnknownAttribute,
    UserAcquire,
    UserExpire,
    UserKmaddress,
    UserMigrate,
    UserPolexpire,
    UserpolicyId,
    UserpolicyInfo,
    UsersaFlush,
    UsersaId,
    UsersaInfo,
    UserspiInfo,
    UserTmpl,
    XfrmId,
    XfrmMessage,
)
from pfmigrate.xfrm.constants import CAPPED, XFRM_MAX_DEPTH
from pfmigrate.xfrm.message import ATTRIBUTES_ONLY, is_dump_request
from pfmigrate.xfrm.structs import CStruct, IPAddress
from tests.strategies import MAX_BYTES, MAX_ITEMS, enum_numbers, uints

__all__ = [
    "ATTRIBUTE_TYPES", "DUMP_TYPES", "MESSAGE_TYPES", "RAW_TYPES", "STRUCT_CLASSES", "addresses", "attributes",
    "datagrams", "errors", "families", "field_strategy", "from_fields", "int32s", "message_lists",
    "netlink_dones", "netlink_errors", "netlink_messages", "raw_messages", "values", "xfrm_ids", "xfrm_messages",
]  # fmt: skip

T = TypeVar("T")

#: Every fixed struct of ``pfmigrate.xfrm.structs``, in the module's order.
STRUCT_CLASSES: tuple[type[CStruct], ...] = (
    Selector, XfrmId, LifetimeCfg, LifetimeCur, Stats, UsersaInfo, UsersaId, AeventId, UserspiInfo,
    UserpolicyInfo, UserpolicyId, UserAcquire, UserExpire, UserPolexpire, UsersaFlush, UserTmpl, UserMigrate,
    UserKmaddress, EncapTmpl,
)  # fmt: skip
#: Every attribute class: the known ones in wire-number order, then ``UnknownAttribute``.
ATTRIBUTE_TYPES: tuple[type[Attribute], ...] = (
    *(ATTRIBUTE_CLASSES[n] for n in sorted(ATTRIBUTE_CLASSES)),
    UnknownAttribute,
)
#: The XFRM message types decoded as ``XfrmMessage``: a fixed struct and/or attributes.
MESSAGE_TYPES: tuple[MsgType, ...] = tuple(MsgType(t) for t in sorted({*FIXED, *ATTRIBUTES_ONLY}))
#: The GET types whose dump requests carry no fixed struct.
DUMP_TYPES: frozenset[MsgType] = frozenset({MsgType.GETSA, MsgType.GETPOLICY})
#: Every other message type is kept as a ``RawMessage``.
RAW_TYPES = frozenset(range(1 << 16)) - set(MESSAGE_TYPES) - {NlMsgType.ERROR, NlMsgType.DONE}

_ESN_MAX_WORDS = 4096 // 4 // 8  # XFRMA_REPLAY_ESN_MAX bytes of bitmap bits, in u32 words
_PAGE_SIZE = 4096
_MAX_KEY_BYTES = 1024  # an 8192-bit key: far beyond any real algorithm, still a small message
_ALGORITHM_NAMES = ("cbc(aes)", "hmac(sha256)", "rfc4106(gcm(aes))", "rfc7539esp(chacha20,poly1305)", "deflate")


def _rarely(rare: st.SearchStrategy[T], usual: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``rare`` about one time in eight, else ``usual`` (0, where Hypothesis shrinks to, is usual)."""
    return st.integers(0, 7).flatmap(lambda n: rare if n == 7 else usual)


def int32s() -> st.SearchStrategy[int]:
    return st.integers(-(1 << 31), (1 << 31) - 1)


def errors() -> st.SearchStrategy[int]:
    """0 or a negative errno: known ones, and any negative int32."""
    known = [-e for e in (errno.EPERM, errno.ENOENT, errno.ESRCH, errno.EEXIST, errno.EINVAL, errno.EMSGSIZE)]
    return st.one_of(st.just(0), st.sampled_from(known), st.integers(-(1 << 31), -1))


def families() -> st.SearchStrategy[int]:
    return st.sampled_from([AF_INET, AF_INET6])


def addresses(family: int) -> st.SearchStrategy[IPAddress]:
    """The address of a struct whose family is ``family`` (anything but AF_INET decodes as IPv6)."""
    if family == AF_INET:
        return st.ip_addresses(v=4)
    return st.ip_addresses(v=6)


def _raw_addresses() -> st.SearchStrategy[bytes]:
    return st.binary(min_size=16, max_size=16)


def field_strategy(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """The strategy for one declared field, from its kind and width."""
    if spec.kind == "uint":
        return uints(spec.bits)
    if spec.kind in ("enum", "flag"):
        return enum_numbers(spec.cls, spec.bits)
    if spec.kind == "bytes":
        return st.binary(max_size=MAX_BYTES)
    if spec.kind == "tuple" and isinstance(spec.cls, type) and issubclass(spec.cls, CStruct):
        return st.lists(values(spec.cls), max_size=MAX_ITEMS).map(tuple)
    if spec.kind == "value":
        return values(spec.cls)
    raise TypeError(f"field {spec.name!r} ({spec.kind}, {spec.cls!r}) needs a strategy of its own")


def from_fields(cls: type[T], **overrides: st.SearchStrategy[Any]) -> st.SearchStrategy[T]:
    """``cls`` built through its public constructor; each field from ``overrides`` or its declaration."""
    specs = field_specs(cls)
    unknown = set(overrides) - {spec.name for spec in specs}
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {sorted(unknown)}")
    kwargs = {spec.name: overrides[spec.name] if spec.name in overrides else field_strategy(spec) for spec in specs}
    return st.builds(cls, **kwargs)


# --- structs: addresses follow the family -----------------------------------------------------------


def xfrm_ids(family: int) -> st.SearchStrategy[XfrmId]:
    """An ``xfrm_id`` inside a struct whose family is ``family``."""
    return from_fields(XfrmId, daddr=addresses(family))


@st.composite
def _xfrm_ids(draw: st.DrawFn, cls: type[XfrmId]) -> XfrmId:
    return draw(xfrm_ids(draw(families())))


@st.composite
def _selectors(draw: st.DrawFn, cls: type[Selector]) -> Selector:
    family = draw(_rarely(st.just(0), families()))  # AF_UNSPEC: an SA's wildcard selector
    addrs = addresses(family)
    return draw(from_fields(cls, family=st.just(family), daddr=addrs, saddr=addrs, ifindex=int32s()))


@st.composite
def _sa_infos(draw: st.DrawFn, cls: type[UsersaInfo]) -> UsersaInfo:
    family = draw(families())
    return draw(from_fields(cls, family=st.just(family), id=xfrm_ids(family), saddr=addresses(family)))


@st.composite
def _sa_ids(draw: st.DrawFn, cls: type[UsersaId]) -> UsersaId:
    family = draw(families())
    return draw(from_fields(cls, family=st.just(family), daddr=addresses(family)))


@st.composite
def _aevent_ids(draw: st.DrawFn, cls: type[AeventId]) -> AeventId:
    sa_id = draw(values(UsersaId))
    return draw(from_fields(cls, sa_id=st.just(sa_id), saddr=addresses(sa_id.family)))


@st.composite
def _acquires(draw: st.DrawFn, cls: type[UserAcquire]) -> UserAcquire:
    sel, policy = draw(values(Selector)), draw(values(UserpolicyInfo))
    family = sel.family or policy.sel.family  # the struct has no family of its own
    return draw(
        from_fields(cls, sel=st.just(sel), policy=st.just(policy), id=xfrm_ids(family), saddr=addresses(family))
    )


@st.composite
def _templates(draw: st.DrawFn, cls: type[UserTmpl]) -> UserTmpl:
    family = draw(families())
    return draw(from_fields(cls, family=st.just(family), id=xfrm_ids(family), saddr=addresses(family)))


@st.composite
def _migrates(draw: st.DrawFn, cls: type[UserMigrate]) -> UserMigrate:
    old, new = draw(families()), draw(families())
    return draw(
        from_fields(
            cls,
            old_family=st.just(old),
            new_family=st.just(new),
            old_daddr=addresses(old),
            old_saddr=addresses(old),
            new_daddr=addresses(new),
            new_saddr=addresses(new),
        )
    )


@st.composite
def _kmaddresses(draw: st.DrawFn, cls: type[UserKmaddress]) -> UserKmaddress:
    family = draw(families())
    return draw(from_fields(cls, family=st.just(family), local=addresses(family), remote=addresses(family)))


def _encaps(cls: type[EncapTmpl]) -> st.SearchStrategy[EncapTmpl]:
    return from_fields(cls, oa=_raw_addresses())


# --- attributes ---------------------------------------------------------------------------------------


def _algorithm_names() -> st.SearchStrategy[str]:
    ascii_ = st.characters(min_codepoint=1, max_codepoint=127)
    return st.one_of(
        st.sampled_from(_ALGORITHM_NAMES),
        _rarely(st.text(ascii_, min_size=63, max_size=63), st.text(ascii_, max_size=16)),
    )


@st.composite
def _key_material(draw: st.DrawFn) -> tuple[int, bytes]:
    """Key bits and key bytes: any bit count that needs exactly the key's bytes."""
    nbytes = draw(_rarely(st.integers(_MAX_KEY_BYTES - 8, _MAX_KEY_BYTES), st.integers(0, MAX_BYTES)))
    bits = 0 if nbytes == 0 else draw(st.integers(8 * nbytes - 7, 8 * nbytes))
    return bits, draw(st.binary(min_size=nbytes, max_size=nbytes))


@st.composite
def _algos(draw: st.DrawFn, cls: type[Algo | AlgoWithLength]) -> Algo | AlgoWithLength:
    bits, key = draw(_key_material())
    return draw(from_fields(cls, name=_algorithm_names(), key_len=st.just(bits), key=st.just(key)))


def _template_lists(cls: type[Templates]) -> st.SearchStrategy[Templates]:
    return from_fields(cls, templates=st.lists(values(UserTmpl), max_size=XFRM_MAX_DEPTH).map(tuple))


def _migrate_lists(cls: type[Migrate]) -> st.SearchStrategy[Migrate]:
    return from_fields(cls, entries=st.lists(values(UserMigrate), min_size=1, max_size=XFRM_MAX_DEPTH).map(tuple))


def _replay_esns(cls: type[ReplayEsn]) -> st.SearchStrategy[ReplayEsn]:
    words = uints(32)
    bitmaps = _rarely(
        st.lists(words, min_size=_ESN_MAX_WORDS - 4, max_size=_ESN_MAX_WORDS), st.lists(words, max_size=MAX_ITEMS)
    )
    return from_fields(cls, bitmap=bitmaps.map(tuple))


def _sec_ctxs(cls: type[SecCtx]) -> st.SearchStrategy[SecCtx]:
    contexts = _rarely(st.binary(min_size=_PAGE_SIZE - 8, max_size=_PAGE_SIZE), st.binary(max_size=MAX_BYTES))
    return from_fields(cls, context=contexts)


def _address_filters(cls: type[AddressFilter]) -> st.SearchStrategy[AddressFilter]:
    return from_fields(cls, saddr=_raw_addresses(), daddr=_raw_addresses())


def _offloads(cls: type[OffloadDev]) -> st.SearchStrategy[OffloadDev]:
    return from_fields(cls, ifindex=int32s())


def _scalars(cls: type[Scalar]) -> st.SearchStrategy[Scalar]:
    return from_fields(cls, value=uints(8 * cls.FORMAT.size))


def _raw_address_attrs(cls: type[RawAddress]) -> st.SearchStrategy[RawAddress]:
    return from_fields(cls, address=_raw_addresses())


def _unknown_attributes(cls: type[UnknownAttribute]) -> st.SearchStrategy[UnknownAttribute]:
    numbers = st.integers(0, 0x3FFF).filter(lambda n: n not in ATTRIBUTE_CLASSES)
    return from_fields(cls, attr=numbers)


_SPECIAL: dict[type, Callable[[Any], st.SearchStrategy[Any]]] = {
    XfrmId: _xfrm_ids,
    Selector: _selectors,
    UsersaInfo: _sa_infos,
    UsersaId: _sa_ids,
    AeventId: _aevent_ids,
    UserAcquire: _acquires,
    UserTmpl: _templates,
    UserMigrate: _migrates,
    UserKmaddress: _kmaddresses,
    EncapTmpl: _encaps,
    Algo: _algos,
    AlgoWithLength: _algos,
    Templates: _template_lists,
    Migrate: _migrate_lists,
    ReplayEsn: _replay_esns,
    SecCtx: _sec_ctxs,
    AddressFilter: _address_filters,
    OffloadDev: _offloads,
    Scalar: _scalars,
    RawAddress: _raw_address_attrs,
    UnknownAttribute: _unknown_attributes,
}
_CACHE: dict[type, st.SearchStrategy[Any]] = {}


def values(cls: type[T]) -> st.SearchStrategy[T]:
    """Any valid instance of the struct or attribute class ``cls``, built through its public constructor."""
    strategy = _CACHE.get(cls)
    if strategy is None:
        special = next((_SPECIAL[base] for base in cls.__mro__ if base in _SPECIAL), None)
        strategy = special(cls) if special is not None else from_fields(cls)
        _CACHE[cls] = strategy
    return cast("st.SearchStrategy[T]", strategy)


def attributes(classes: Sequence[type[Attribute]] = ATTRIBUTE_TYPES) -> st.SearchStrategy[Attribute]:
    """Any attribute of ``classes`` (by default every known class and ``UnknownAttribute``)."""
    return st.one_of([values(cls) for cls in classes])


# --- messages and datagrams -------------------------------------------------------------------------------


@st.composite
def xfrm_messages(draw: st.DrawFn, max_attrs: int = 4, types: Sequence[MsgType] = MESSAGE_TYPES) -> XfrmMessage:
    """An XFRM message of one of ``types``: its fixed struct (none for FLUSHPOLICY, none for
    GETSA/GETPOLICY dump requests), then attributes in any order, types possibly repeated."""
    mtype = draw(st.sampled_from(types))
    cls = FIXED.get(mtype)
    overrides: dict[str, st.SearchStrategy[Any]] = {"type": st.just(mtype)}
    overrides["attrs"] = st.lists(attributes(), max_size=max_attrs).map(tuple)
    if cls is not None and mtype in DUMP_TYPES and draw(st.integers(0, 3)) == 3:
        # A dump request: no fixed struct, NLM_F_REQUEST and NLM_F_DUMP, filter attributes.
        overrides.update(fixed=st.none(), flags=uints(16).map(lambda f: f | DUMP | NlFlags.REQUEST))
    else:
        overrides["fixed"] = st.none() if cls is None else values(cls)
        overrides["flags"] = uints(16).filter(lambda f: not is_dump_request(mtype, f))
    return draw(from_fields(XfrmMessage, **overrides))


@st.composite
def netlink_errors(draw: st.DrawFn) -> NetlinkError:
    """NLMSG_ERROR as ``netlink_ack`` builds it: the request's header, then unless NLM_F_CAPPED
    the rest of the request (``request_length - 16`` bytes of it), then extended-ACK TLVs.
    The request is a real XFRM message or arbitrary bytes."""
    flags = draw(uints(16))
    error = draw(errors())
    extack = tuple(draw(st.lists(st.tuples(uints(16), st.binary(max_size=MAX_BYTES)), max_size=3)))
    request: dict[str, st.SearchStrategy[Any]] = {}
    if flags & CAPPED:
        payload = b""
        length = draw(st.integers(16, (1 << 32) - 1))
    elif draw(st.booleans()):
        echoed = draw(xfrm_messages(max_attrs=2))
        length = 16 + len(echoed.payload())
        payload = echoed.encode()[16:length]
        request = {"request_type": st.just(echoed.type), "request_flags": st.just(echoed.flags)}
    else:
        payload = draw(st.binary(max_size=MAX_BYTES))
        old_style_ack = error == 0 and not payload and not extack  # an ACK from before NLM_F_CAPPED
        length = draw(st.integers(16, (1 << 32) - 1)) if old_style_ack else 16 + len(payload)
    return draw(
        from_fields(
            NetlinkError,
            type=st.just(NlMsgType.ERROR),
            flags=st.just(flags),
            error=st.just(error),
            request_length=st.just(length),
            request_payload=st.just(payload),
            extack=st.just(extack),
            **request,
        )
    )


def netlink_dones() -> st.SearchStrategy[NetlinkDone]:
    return from_fields(NetlinkDone, type=st.just(NlMsgType.DONE), error=errors())


def raw_messages() -> st.SearchStrategy[RawMessage]:
    """Any message type that is neither XFRM with a known layout nor NLMSG_ERROR/DONE."""
    types = st.one_of(
        st.sampled_from([NlMsgType.NOOP, NlMsgType.OVERRUN, *(t for t in MsgType if t in RAW_TYPES)]),
        st.integers(0, 0xFFFF).filter(lambda t: t in RAW_TYPES),
    )
    return from_fields(RawMessage, type=types)


def netlink_messages(max_attrs: int = 4) -> st.SearchStrategy[NetlinkMessage]:
    """Any message of a datagram, mostly XFRM ones."""
    return st.one_of(xfrm_messages(max_attrs), netlink_errors(), netlink_dones(), raw_messages(), xfrm_messages())


def message_lists(max_messages: int = 4, max_attrs: int = 4) -> st.SearchStrategy[list[NetlinkMessage]]:
    """The messages of one datagram (at least one)."""
    return st.lists(netlink_messages(max_attrs), min_size=1, max_size=max_messages)


def datagrams(max_messages: int = 4, max_attrs: int = 4) -> st.SearchStrategy[bytes]:
    """The bytes of one netlink datagram: one or more encoded messages back to back."""
    return message_lists(max_messages, max_attrs).map(lambda ms: b"".join(m.encode() for m in ms))
