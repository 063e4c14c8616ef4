"""XFRM messages captured from Linux 6.1 ``xfrm_user`` (``tests/vectors/xfrm_linux.json``),
checked without a kernel: each decodes to its recorded meaning and encodes back to the
bytes Linux sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest

from pfmigrate.backends.xfrm_ops import XfrmOperations
from pfmigrate.model import AH, ESP, AcquireEvent, ExpireEvent, KMAddress, MigrateEvent, Mode
from pfmigrate.modeljson import to_data
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA
from pfmigrate.xfrm import (
    AeventId,
    AlgAead,
    AlgAuthTrunc,
    Encap,
    EncapTmpl,
    EtimerThresh,
    IfId,
    KmAddress,
    LifetimeValue,
    Mark,
    Migrate,
    MsgType,
    NetlinkDone,
    NetlinkError,
    NetlinkMessage,
    NlFlags,
    ReplayThresh,
    ReplayValue,
    SaExtraFlags,
    SaInfo,
    Templates,
    UserAcquire,
    UserExpire,
    UserPolexpire,
    UserpolicyInfo,
    UsersaId,
    UsersaInfo,
    UserTmpl,
    XfrmId,
    XfrmMessage,
    decode,
)
from pfmigrate.xfrm import Mode as XfrmMode
from pfmigrate.xfrm import Selector as XfrmSelector
from pfmigrate.xfrm.constants import AF_INET, AF_INET6

VECTORS: dict[str, dict[str, Any]] = {
    v["name"]: v for v in json.loads((Path(__file__).parent / "vectors" / "xfrm_linux.json").read_text())
}
HOA, HA, OLD, NEW = (IPv6Address(a) for a in (HOME_ADDRESS, HOME_AGENT, OLD_COA, NEW_COA))
LOOP = IPv6Address("::1")
V4A, V4B = IPv4Address("192.0.2.1"), IPv4Address("198.51.100.7")


def xfrm(m: NetlinkMessage) -> XfrmMessage:
    assert isinstance(m, XfrmMessage)
    return m


def _sa(m: NetlinkMessage) -> UsersaInfo:
    fixed = xfrm(m).fixed
    assert isinstance(fixed, UsersaInfo)
    return fixed


# What each vector stands for, written by hand, independently of the decoder.
FACTS: dict[str, Callable[[NetlinkMessage], bool]] = {
    "getsa_reply": lambda m: (
        m.type == MsgType.NEWSA
        and (_sa(m).id.spi, _sa(m).saddr, _sa(m).id.daddr) == (0x1000, OLD, HA)
        and xfrm(m).get(AlgAuthTrunc) is not None
    ),
    "policy_dump": lambda m: (
        isinstance(xfrm(m).fixed, UserpolicyInfo)
        and bool(m.flags & NlFlags.MULTI)
        and [t.saddr for a in xfrm(m).all(Templates) for t in a.templates] == [OLD]
    ),
    "dump_done": lambda m: isinstance(m, NetlinkDone) and m.error == 0,
    "migrate_error_enoent": lambda m: isinstance(m, NetlinkError) and m.errno == 2,
    "migrate_notification": lambda m: (
        m.type == MsgType.MIGRATE
        and (m.seq, m.pid) == (0, 0)
        and [e.proto for a in xfrm(m).all(Migrate) for e in a.entries] == [50, 51]
        and [(e.old_saddr, e.new_saddr) for a in xfrm(m).all(Migrate) for e in a.entries] == [(OLD, NEW)] * 2
        and xfrm(m).get(KmAddress) is not None
    ),
    "acquire": lambda m: isinstance(xfrm(m).fixed, UserAcquire) and m.type == MsgType.ACQUIRE,
    "expire_soft": lambda m: isinstance(f := xfrm(m).fixed, UserExpire) and f.hard == 0 and f.state.id.spi == 0x2000,
    "getsa_reply_aead_encap": lambda m: (
        m.type == MsgType.NEWSA
        and (_sa(m).id.spi, _sa(m).saddr, _sa(m).id.daddr) == (0x3000, V4A, V4B)
        and xfrm(m).get(AlgAead) == AlgAead("rfc4106(gcm(aes))", 160, 128, bytes(range(20)))
        and xfrm(m).get(Encap) == Encap(EncapTmpl(2, 4500, 4500, bytes(16)))
        and xfrm(m).get(Mark) == Mark(5, 0xFF)
        and xfrm(m).get(IfId) == IfId(9)
        and xfrm(m).get(SaExtraFlags) == SaExtraFlags(1)
    ),
    "delsa_notification": lambda m: (  # the SA's id, and the whole SA as it was in XFRMA_SA
        m.type == MsgType.DELSA
        and isinstance(f := xfrm(m).fixed, UsersaId)
        and (f.spi, f.daddr) == (0x3000, V4B)
        and (sa := xfrm(m).get(SaInfo)) is not None
        and sa.info.saddr == V4A
        and xfrm(m).get(AlgAead) is not None
    ),
    "flushpolicy_notification": lambda m: m.type == MsgType.FLUSHPOLICY,
    "updsa_notification": lambda m: (
        m.type == MsgType.UPDSA
        and (_sa(m).id.spi, _sa(m).saddr, _sa(m).id.daddr) == (0x4000, OLD, HA)
        and (_sa(m).lft.soft_add_expires_seconds, _sa(m).lft.hard_add_expires_seconds) == (100, 200)
    ),
    "updpolicy_notification": lambda m: (
        m.type == MsgType.UPDPOLICY
        and isinstance(f := xfrm(m).fixed, UserpolicyInfo)
        and (f.sel.saddr, f.sel.daddr, f.sel.proto) == (HOA, HA, 135)
        and (f.lft.soft_add_expires_seconds, f.lft.hard_add_expires_seconds) == (1, 4)
        and [(t.saddr, t.id.daddr) for a in xfrm(m).all(Templates) for t in a.templates] == [(NEW, HA)]
    ),
    "newae_reply": lambda m: (  # replay state, a XFRMA_PAD to align the 64-bit lifetime, then the thresholds
        m.type == MsgType.NEWAE
        and isinstance(f := xfrm(m).fixed, AeventId)
        and (f.sa_id.spi, f.sa_id.daddr, f.saddr, f.flags, f.reqid) == (0x5000, HA, OLD, 9, 7)
        and [a.attr for a in xfrm(m).attrs] == [10, 27, 9, 11, 12]
        and xfrm(m).get(ReplayValue) == ReplayValue(0, 0, 0)
        and (lt := xfrm(m).get(LifetimeValue)) is not None
        and lt.current.add_time > 0
        and (xfrm(m).get(ReplayThresh), xfrm(m).get(EtimerThresh)) == (ReplayThresh(2), EtimerThresh(10))
    ),
    "polexpire_hard": lambda m: (
        m.type == MsgType.POLEXPIRE
        and isinstance(f := xfrm(m).fixed, UserPolexpire)
        and f.hard == 1
        and (f.pol.sel.saddr, f.pol.sel.daddr, f.pol.dir) == (HOA, HA, 1)
    ),
}


def test_every_vector_has_facts() -> None:
    assert set(FACTS) == set(VECTORS)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_decodes_to_its_meaning(name: str) -> None:
    vector = VECTORS[name]
    [msg] = decode(bytes.fromhex(vector["hex"]))
    assert [to_data(msg)] == vector["expected"]
    assert FACTS[name](msg), vector["meaning"]


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_encodes_back_to_linux_bytes(name: str) -> None:
    raw = bytes.fromhex(VECTORS[name]["hex"])
    assert b"".join(m.encode() for m in decode(raw)) == raw


def test_linuxs_event_messages_become_the_models_events() -> None:
    """What the backend makes of the notifications Linux sent (``XfrmOperations.events``)."""
    ops = XfrmOperations()
    [acquire] = ops.events(bytes.fromhex(VECTORS["acquire"]["hex"]))
    assert isinstance(acquire, AcquireEvent)
    assert (acquire.src, acquire.dst, acquire.proto, acquire.mode) == (LOOP, LOOP, ESP, Mode.TRANSPORT)
    assert acquire.selector is not None
    assert (acquire.selector.proto, acquire.selector.dport) == (17, 5000)
    [expire] = ops.events(bytes.fromhex(VECTORS["expire_soft"]["hex"]))
    assert isinstance(expire, ExpireEvent)
    assert (expire.sa.spi, expire.sa.dst, expire.sa.src, expire.sa.reqid, expire.hard) == (0x2000, HA, OLD, 7, False)
    [migrate] = ops.events(bytes.fromhex(VECTORS["migrate_notification"]["hex"]))
    assert isinstance(migrate, MigrateEvent)
    assert [(b.proto, b.old_src, b.new_src, b.new_dst) for b in migrate.request.bundles] == [
        (ESP, OLD, NEW, HA), (AH, OLD, NEW, HA),
    ]  # fmt: skip
    assert migrate.request.kmaddress == KMAddress(NEW, HA)


def _acquire_with(daddr: IPv6Address, saddr: IPv6Address, template: UserTmpl) -> bytes:
    """Linux's ACQUIRE (an IPv6 flow) with the SA's addresses and its template replaced."""
    [msg] = decode(bytes.fromhex(VECTORS["acquire"]["hex"]))
    ua = xfrm(msg).fixed
    assert isinstance(ua, UserAcquire)
    ua = replace(ua, id=XfrmId(daddr, 0, template.id.proto), saddr=saddr)
    return XfrmMessage(MsgType.ACQUIRE, 0, 0, 0, ua, (Templates((template,)),)).encode()


def test_an_acquire_for_an_ipv4_tunnel_of_ipv6_traffic_has_ipv4_endpoints() -> None:
    """The SA's addresses are in its template's family, not the flow's: the codec reads
    them as IPv6 (losing nothing) and the backend as the template says."""
    tunnel = UserTmpl(XfrmId(V4B, 0, ESP), AF_INET, V4A, 9, XfrmMode.TUNNEL)
    raw = _acquire_with(IPv6Address(V4B.packed + bytes(12)), IPv6Address(V4A.packed + bytes(12)), tunnel)
    [event] = XfrmOperations().events(raw)
    assert isinstance(event, AcquireEvent)
    assert (event.src, event.dst, event.mode, event.reqid) == (V4A, V4B, Mode.TUNNEL, 9)
    assert event.selector is not None
    assert event.selector.dst == IPv6Network("::1/128")


def test_an_acquire_for_route_optimisation_is_not_a_key_managers() -> None:
    """Mobile IPv6's route-optimisation states (type 2 routing header, mode ro) are made
    by its own daemon: no event for an IKE daemon, not a transport-mode one."""
    ro = UserTmpl(XfrmId(LOOP, 0, 43), AF_INET6, LOOP, 0, XfrmMode.ROUTEOPTIMIZATION)
    assert XfrmOperations().events(_acquire_with(LOOP, LOOP, ro)) == []


def test_an_acquire_of_ipv4_traffic_over_ipv6_keeps_all_16_bytes() -> None:
    """The codec reads an ACQUIRE's SA addresses in the flow's family only where that
    loses nothing: an IPv6 tunnel for IPv4 traffic comes back byte for byte."""
    v4_flow = XfrmSelector(V4B, V4A, family=AF_INET, prefixlen_d=32, prefixlen_s=32)
    ua = UserAcquire(XfrmId(HA, 0, ESP), OLD, v4_flow, UserpolicyInfo(v4_flow))
    [back] = decode(XfrmMessage(MsgType.ACQUIRE, fixed=ua).encode())
    assert xfrm(back).fixed == ua
