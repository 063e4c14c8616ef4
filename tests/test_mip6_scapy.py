"""Cross-checks with scapy, an independent Mobility Header implementation.

* Our messages on the wire: scapy reads the same fields and options, agrees with the
  checksum, and names the same flag bits.
* The same fields built with scapy give exactly our bytes: its automatic padding is the
  least padding RFC 6275's alignments ask for, as ours is.
* Messages built with scapy decode to the same fields with ours.

Scapy's quirks are stepped around, not copied: its Nonce Indices and Binding
Authorization Data options default to an Option Length of 16 (RFC 6275: 4, and the
authenticator's length), and it reads any authenticator as 96 bits, so lengths are given
and authenticators are 12 octets here; it knows option types 7 to 16 from other RFCs, so
unknown options here are of higher types; its generic message reads too little, so
unknown MH types are left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet6 import (
    MIP6MH_BA,
    MIP6MH_BE,
    MIP6MH_BRR,
    MIP6MH_BU,
    IPv6,
    MIP6MH_CoT,
    MIP6MH_CoTI,
    MIP6MH_HoT,
    MIP6MH_HoTI,
    MIP6OptAltCoA,
    MIP6OptBindingAuthData,
    MIP6OptBRAdvice,
    MIP6OptMobNetPrefix,
    MIP6OptNonceIndices,
    MIP6OptUnknown,
    Pad1,
    PadN,
)
from scapy.packet import Packet, Raw

from pfmigrate.mip6 import (
    AlternateCareOfAddress,
    BAFlags,
    BindingAck,
    BindingAuthorizationData,
    BindingError,
    BindingRefreshAdvice,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlags,
    CareOfTest,
    CareOfTestInit,
    HomeTest,
    HomeTestInit,
    KnownMessage,
    MobileNetworkPrefix,
    NonceIndices,
    Option,
    OptType,
    UnknownOption,
    decode,
    encode,
)
from pfmigrate.mip6.messages import MESSAGE_CLASSES
from tests.mip6_strategies import addresses, values

SOME = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_SCAPY_OPTION_TYPES = 16  # the highest option type scapy decodes as something of its own

#: A message's fields, and its options as (type, fields), in a shape both sides can fill.
Shape = tuple[int, tuple[Any, ...], tuple[tuple[int, tuple[Any, ...]], ...]]


# --- ours -> scapy's fields --------------------------------------------------------------------------


def scapy_option(opt: Option) -> Packet:
    if isinstance(opt, BindingRefreshAdvice):
        return MIP6OptBRAdvice(rinter=opt.interval)
    if isinstance(opt, AlternateCareOfAddress):
        return MIP6OptAltCoA(acoa=str(opt.address))
    if isinstance(opt, NonceIndices):
        return MIP6OptNonceIndices(olen=4, hni=opt.home_nonce_index, coni=opt.care_of_nonce_index)
    if isinstance(opt, BindingAuthorizationData):
        return MIP6OptBindingAuthData(olen=12, authenticator=int.from_bytes(opt.authenticator, "big"))
    if isinstance(opt, MobileNetworkPrefix):
        return MIP6OptMobNetPrefix(plen=opt.prefixlen, prefix=str(opt.prefix))
    assert isinstance(opt, UnknownOption)
    return MIP6OptUnknown(otype=opt.opt_type, odata=opt.data)


_SCAPY_MESSAGES: dict[type[KnownMessage], Callable[[Any], Packet]] = {
    BindingRefreshRequest: lambda m: MIP6MH_BRR(res=0, res2=0),
    HomeTestInit: lambda m: MIP6MH_HoTI(res=0, cookie=m.cookie),
    CareOfTestInit: lambda m: MIP6MH_CoTI(res=0, cookie=m.cookie),
    HomeTest: lambda m: MIP6MH_HoT(res=0, index=m.nonce_index, cookie=m.cookie, token=m.keygen_token),
    CareOfTest: lambda m: MIP6MH_CoT(res=0, index=m.nonce_index, cookie=m.cookie, token=m.keygen_token),
    BindingUpdate: lambda m: MIP6MH_BU(
        res=0, seq=m.sequence, flags=m.flags >> 9, reserved=m.flags & 0x1FF, mhtime=m.lifetime
    ),
    BindingAck: lambda m: MIP6MH_BA(
        res=0, status=m.status, flags=m.flags >> 5, res2=m.flags & 0x1F, seq=m.sequence, mhtime=m.lifetime
    ),
    BindingError: lambda m: MIP6MH_BE(status=m.status, ha=str(m.home_address)),
}


def scapy_message(msg: KnownMessage) -> Packet:
    packet = _SCAPY_MESSAGES[type(msg)](msg)
    packet.options = [scapy_option(opt) for opt in msg.options]
    return packet


# --- the shape of each side --------------------------------------------------------------------------


def our_shape(msg: KnownMessage) -> Shape:
    values = tuple(getattr(msg, f.name) for f in dataclasses.fields(msg) if f.name != "options")
    options = tuple(
        (opt.opt_type, tuple(getattr(opt, f.name) for f in dataclasses.fields(opt) if f.name != "opt_type"))
        for opt in msg.options
    )
    return msg.mh_type, tuple(int(v) if isinstance(v, int) else v for v in values), options


def scapy_option_shape(opt: Packet) -> tuple[int, tuple[Any, ...]]:
    if isinstance(opt, MIP6OptBRAdvice):
        return OptType.BINDING_REFRESH_ADVICE, (opt.rinter,)
    if isinstance(opt, MIP6OptAltCoA):
        return OptType.ALTERNATE_CARE_OF_ADDRESS, (IPv6Address(opt.acoa),)
    if isinstance(opt, MIP6OptNonceIndices):
        return OptType.NONCE_INDICES, (opt.hni, opt.coni)
    if isinstance(opt, MIP6OptBindingAuthData):
        return OptType.BINDING_AUTHORIZATION_DATA, (opt.authenticator.to_bytes(12, "big"),)
    if isinstance(opt, MIP6OptMobNetPrefix):
        return OptType.MOBILE_NETWORK_PREFIX, (IPv6Address(opt.prefix), opt.plen)
    assert isinstance(opt, MIP6OptUnknown), opt
    return opt.otype, (opt.odata,)


def scapy_shape(mh: Packet) -> Shape:
    fields: tuple[Any, ...]
    if isinstance(mh, MIP6MH_BRR):
        fields = ()
    elif isinstance(mh, MIP6MH_HoTI):  # and CoTI, a subclass
        fields = (mh.cookie,)
    elif isinstance(mh, MIP6MH_HoT):  # and CoT
        fields = (mh.index, mh.cookie, mh.token)
    elif isinstance(mh, MIP6MH_BU):
        fields = (mh.seq, int(mh.flags) << 9 | mh.reserved, mh.mhtime)
    elif isinstance(mh, MIP6MH_BA):
        fields = (mh.status, int(mh.flags) << 5 | mh.res2, mh.seq, mh.mhtime)
    else:
        assert isinstance(mh, MIP6MH_BE), mh
        fields = (IPv6Address(mh.ha), mh.status)  # our field order: home address first
    options = tuple(scapy_option_shape(o) for o in mh.options if not isinstance(o, Pad1 | PadN))
    return mh.mhtype, fields, options


def scapy_read(wire: bytes, src: IPv6Address, dst: IPv6Address) -> Packet:
    """The Mobility Header as scapy dissects it inside an IPv6 packet from ``src`` to ``dst``."""
    packet = IPv6(bytes(IPv6(src=str(src), dst=str(dst), nh=135) / Raw(wire)))
    mh: Packet = packet.payload
    return mh


# --- messages scapy can express --------------------------------------------------------------------


def _scapy_friendly(opt: Option) -> Option:
    if isinstance(opt, BindingAuthorizationData):
        return BindingAuthorizationData(opt.authenticator.ljust(12, b"\0")[:12])
    if isinstance(opt, UnknownOption) and opt.opt_type <= _SCAPY_OPTION_TYPES:
        return UnknownOption(OptType.of(opt.opt_type + _SCAPY_OPTION_TYPES), opt.data)
    return opt


def scapy_messages() -> st.SearchStrategy[KnownMessage]:
    known = st.one_of([values(cls) for cls in MESSAGE_CLASSES.values()])
    return known.map(lambda m: dataclasses.replace(m, options=tuple(map(_scapy_friendly, m.options))))


# --- the checks -----------------------------------------------------------------------------------------


@SOME
@given(message=scapy_messages(), src=addresses(), dst=addresses())
def test_scapy_reads_our_messages(message: KnownMessage, src: IPv6Address, dst: IPv6Address) -> None:
    wire = encode(message, src, dst)
    packet = IPv6(bytes(IPv6(src=str(src), dst=str(dst), nh=135) / Raw(wire)))
    mh = packet.payload
    assert scapy_shape(mh) == our_shape(message)
    assert (mh.nh, mh.len) == (59, len(wire) // 8 - 1)
    claimed = mh.cksum
    del mh.cksum  # scapy computes it again when the packet is built
    assert IPv6(bytes(packet)).payload.cksum == claimed == int.from_bytes(wire[4:6], "big")


@SOME
@given(message=scapy_messages(), src=addresses(), dst=addresses())
def test_scapy_builds_our_bytes(message: KnownMessage, src: IPv6Address, dst: IPv6Address) -> None:
    packet = IPv6(src=str(src), dst=str(dst)) / scapy_message(message)
    assert bytes(packet)[40:] == encode(message, src, dst)


@SOME
@given(message=scapy_messages(), src=addresses(), dst=addresses())
def test_we_read_scapys_messages(message: KnownMessage, src: IPv6Address, dst: IPv6Address) -> None:
    wire = bytes(IPv6(src=str(src), dst=str(dst)) / scapy_message(message))[40:]
    decoded = decode(wire, src, dst)
    assert isinstance(decoded, KnownMessage)
    assert our_shape(decoded) == scapy_shape(scapy_read(wire, src, dst))
    assert decoded == message


@pytest.mark.parametrize("name", [f.name for f in BUFlags if f.name and f.name != "F"])
def test_binding_update_flags_are_scapys_bits(name: str) -> None:
    wire = BindingUpdate(flags=BUFlags[name]).encode(None, None)
    flags = scapy_read(wire, IPv6Address("::1"), IPv6Address("::2")).flags
    assert [letter for letter in "AHLKMRP" if getattr(flags, letter)] == [name]


@pytest.mark.parametrize("name", [f.name for f in BAFlags if f.name])
def test_binding_ack_flags_are_scapys_bits(name: str) -> None:
    wire = BindingAck(flags=BAFlags[name]).encode(None, None)
    flags = scapy_read(wire, IPv6Address("::1"), IPv6Address("::2")).flags
    assert [letter for letter in "KRP" if getattr(flags, letter)] == [name]
