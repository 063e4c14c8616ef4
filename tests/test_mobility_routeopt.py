"""Route-optimisation states and policies as XFRM messages, and the MH socket's parsers,
without a kernel (the kernel tier, ``tests/kernel/test_handover_plumbing.py``, runs them
against Linux).

The messages are checked field by field at their ``xfrm.h`` offsets, read back through
pfmigrate's XFRM codec, and run through ``RouteOptimization`` on a key engine whose
transport answers as Linux's ``xfrm_user`` does (an ACK, an errno, a dump).
"""

from __future__ import annotations

import errno
import struct
from ipaddress import IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet6 import HAO, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting, PadN
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from testbed.handover import parse_ipv6

from pfmigrate.backends.inprocess import Hub, open_inprocess
from pfmigrate.backends.xfrm_ops import XfrmOperations
from pfmigrate.engine import KeyEngine, KeyEngineError, Unsupported
from pfmigrate.mobility import routeopt
from pfmigrate.mobility.mhsocket import (
    Received,
    home_address_option,
    routing_addresses,
    type2_routing_header,
)
from pfmigrate.mobility.routeopt import (
    ANY,
    Header,
    RoPolicy,
    RoSet,
    RoState,
    RouteOptimization,
    delete_policy,
    delete_state,
    new_policy,
    new_state,
    policy_from,
    state_from,
)
from pfmigrate.model import MH, Dir, Selector
from pfmigrate.xfrm import (
    DUMP,
    CoAddr,
    Mode,
    MsgType,
    NetlinkDone,
    NetlinkError,
    NlFlags,
    PolicyDir,
    PolicyType,
    PolicyTypeAttr,
    SrcAddr,
    Templates,
    UserpolicyId,
    UserpolicyInfo,
    UsersaId,
    UsersaInfo,
    XfrmMessage,
    decode_one,
)

HOA = IPv6Address("3ffe:501:ffff:100:1:2:3:4")
HA = IPv6Address("3ffe:501:ffff:100::1")
COA1 = IPv6Address("3ffe:501:ffff:500:1:2:3:4")
COA2 = IPv6Address("3ffe:501:ffff:400:1:2:3:4")
ACK = NlFlags.REQUEST | NlFlags.ACK
ANYWHERE = IPv6Network("::/0")

ALL_SETS = [
    routeopt.mobile_node_base(),
    routeopt.mobile_node_binding(HOA, HA, COA1),
    routeopt.home_agent_base(),
    routeopt.home_agent_binding(HA, HOA, COA1),
]
ALL_STATES = [s for ro in ALL_SETS for s in ro.states]
ALL_POLICIES = [p for ro in ALL_SETS for p in ro.policies]


# --- states -------------------------------------------------------------------------------------


def test_the_home_address_option_state_at_its_xfrm_h_offsets() -> None:
    state = RoState(Header.HOME_ADDRESS_OPTION, HOA, HA, COA1)
    wire = new_state(state, 7).encode()
    length, kind, flags, seq = struct.unpack_from("=IHHI", wire)
    assert (length, kind, flags, seq) == (16 + 224 + 4 + 16, MsgType.NEWSA, ACK, 7)
    info = wire[16 : 16 + 224]
    # xfrm_selector: daddr, saddr, ..., family 10, prefixlen_d 128, prefixlen_s 128, proto 0 (any)
    assert (info[0:16], info[16:32]) == (HA.packed, HOA.packed)
    assert struct.unpack_from("=HBBB", info, 40) == (10, 128, 128, 0)
    # xfrm_id: daddr, SPI 0, proto 60 (destination options); saddr; family, mode 2 (ro)
    assert (info[56:72], info[72:76], info[76]) == (HA.packed, bytes(4), 60)
    assert info[80:96] == HOA.packed
    assert struct.unpack_from("=HBBB", info, 212) == (10, 2, 0, 0)  # family, mode, replay window, flags
    # XFRMA_COADDR (14) with the care-of address
    assert wire[240:] == struct.pack("=HH", 20, 14) + COA1.packed


def test_a_wildcard_receive_state_has_wildrecv_and_no_addresses() -> None:
    msg = new_state(RoState(Header.ROUTING_TYPE_2, wildrecv=True))
    assert isinstance(msg.fixed, UsersaInfo)
    assert msg.fixed.flags == 8  # XFRM_STATE_WILDRECV
    assert (msg.fixed.sel.prefixlen_d, msg.fixed.sel.prefixlen_s) == (0, 0)
    assert (msg.fixed.id.proto, msg.fixed.id.daddr, msg.fixed.saddr) == (43, ANY, ANY)
    assert msg.attrs == (CoAddr(bytes(16)),)


@pytest.mark.parametrize("state", ALL_STATES, ids=str)
def test_states_read_back_through_the_codec(state: RoState) -> None:
    for update in (False, True):
        msg = decode_one(new_state(state, 3, update=update).encode())
        assert isinstance(msg, XfrmMessage)
        assert msg.type == (MsgType.UPDSA if update else MsgType.NEWSA)
        assert state_from(msg) == state


def test_deleting_a_state_names_it_by_destination_spi_0_protocol_and_source() -> None:
    msg = decode_one(delete_state(RoState(Header.ROUTING_TYPE_2, HA, HOA, COA1)).encode())
    assert isinstance(msg, XfrmMessage)
    assert msg.type == MsgType.DELSA
    assert msg.fixed == UsersaId(HOA, 0, 10, 43)
    assert msg.attrs == (SrcAddr(HA.packed),)


def test_other_sas_are_not_ro_states() -> None:
    esp = XfrmMessage(MsgType.NEWSA, 0, 0, 0, UsersaInfo(mode=Mode.TUNNEL))
    assert state_from(esp) is None


# --- policies -----------------------------------------------------------------------------------


def test_the_binding_update_policy_selects_mh_type_5_in_the_sub_table() -> None:
    [bu_policy, _] = routeopt.mobile_node_binding(HOA, HA, COA1).policies
    msg = new_policy(bu_policy, 9)
    info = msg.fixed
    assert isinstance(info, UserpolicyInfo)
    assert (info.sel.saddr, info.sel.daddr, info.sel.proto) == (HOA, HA, MH)
    assert (info.sel.sport, info.sel.sport_mask, info.sel.dport, info.sel.dport_mask) == (5, 0xFFFF, 0, 0)
    assert (info.dir, info.priority) == (PolicyDir.OUT, 2)
    assert msg.get(PolicyTypeAttr) == PolicyTypeAttr(PolicyType.SUB)
    templates = msg.get(Templates)
    assert templates is not None
    [t] = templates.templates
    assert (t.id.proto, t.id.spi, t.mode, t.optional, t.reqid) == (60, 0, Mode.ROUTEOPTIMIZATION, 1, 0)
    assert (t.saddr, t.id.daddr) == (HOA, HA)
    # the selector's source port is the MH type, in network order on the wire
    wire = msg.encode()
    assert wire[16 + 36 : 16 + 40] == struct.pack("!HH", 5, 0xFFFF)


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=str)
def test_policies_read_back_through_the_codec(policy: RoPolicy) -> None:
    for update in (False, True):
        msg = decode_one(new_policy(policy, 4, update=update).encode())
        assert isinstance(msg, XfrmMessage)
        assert msg.type == (MsgType.UPDPOLICY if update else MsgType.NEWPOLICY)
        assert policy_from(msg) == policy


def test_a_main_table_policy_is_said_so() -> None:
    policy = RoPolicy(routeopt.mh_selector(HA, HOA, 6), Dir.OUT, Header.ROUTING_TYPE_2, sub=False)
    msg = new_policy(policy)
    assert msg.get(PolicyTypeAttr) == PolicyTypeAttr(PolicyType.MAIN)
    back = decode_one(msg.encode())
    assert isinstance(back, XfrmMessage)
    assert policy_from(back) == policy


def test_deleting_a_policy_names_its_selector_direction_and_table() -> None:
    policy = routeopt.home_agent_base().policies[0]
    msg = delete_policy(policy)
    assert msg.type == MsgType.DELPOLICY
    assert isinstance(msg.fixed, UserpolicyId)
    assert (msg.fixed.dir, msg.fixed.sel.proto, msg.fixed.sel.sport) == (PolicyDir.IN, MH, 5)
    assert msg.attrs == (PolicyTypeAttr(PolicyType.SUB),)


def test_ipsec_policies_are_not_ro_policies() -> None:
    esp = XfrmMessage(MsgType.NEWPOLICY, 0, 0, 0, UserpolicyInfo(), (Templates(),))
    assert policy_from(esp) is None


def test_ro_policies_select_ipv6_only() -> None:
    with pytest.raises(ValueError, match="IPv6"):
        RoPolicy(Selector.any(4), Dir.OUT, Header.ROUTING_TYPE_2)


# --- sets ---------------------------------------------------------------------------------------


def test_the_sets_are_umips() -> None:
    mn = routeopt.mobile_node_binding(HOA, HA, COA1)
    assert [str(s) for s in mn.states] == [f"HAO {HOA} -> {HA} coa {COA1}"]
    assert [(p.dir, p.header, p.selector.sport) for p in mn.policies] == [
        (Dir.OUT, Header.HOME_ADDRESS_OPTION, 5),
        (Dir.IN, Header.ROUTING_TYPE_2, 6),
    ]
    ha = routeopt.home_agent_binding(HA, HOA, COA1)
    assert [str(s) for s in ha.states] == [f"RH2 {HA} -> {HOA} coa {COA1}"]
    assert [(p.dir, p.header, p.selector.sport) for p in ha.policies] == [(Dir.OUT, Header.ROUTING_TYPE_2, 6)]
    [wild] = routeopt.home_agent_base().states
    assert (wild.header, wild.wildrecv, wild.wildcard) == (Header.HOME_ADDRESS_OPTION, True, True)
    assert routeopt.home_agent_base().policies[0].selector == Selector(ANYWHERE, ANYWHERE, MH, 5)


@given(st.integers(0, (1 << 128) - 1))
def test_moving_changes_only_the_care_of_address_of_binding_states(bits: int) -> None:
    new = IPv6Address(bits)
    whole = routeopt.mobile_node_base() + routeopt.mobile_node_binding(HOA, HA, COA1)
    moved = whole.moved(new)
    assert moved.policies == whole.policies
    for before, after in zip(whole.states, moved.states, strict=True):
        expected = before if before.wildcard else RoState(before.header, before.src, before.dst, new, before.wildrecv)
        assert after == expected


def test_install_and_remove_order() -> None:
    ro = routeopt.home_agent_base() + routeopt.home_agent_binding(HA, HOA, COA1)
    install = [m.type for m in routeopt.install_messages(ro)]
    assert install == [MsgType.NEWSA, MsgType.NEWSA, MsgType.NEWPOLICY, MsgType.NEWPOLICY]
    assert [m.type for m in routeopt.install_messages(ro, update=True)] == [MsgType.UPDSA] * 2 + [MsgType.UPDPOLICY] * 2
    remove = [m.type for m in routeopt.remove_messages(ro)]
    assert remove == [MsgType.DELPOLICY, MsgType.DELPOLICY, MsgType.DELSA, MsgType.DELSA]


# --- RouteOptimization on a key engine that answers like xfrm_user -------------------------------


class XfrmUserLike:
    """A transport that answers each request as Linux would: an ACK, or ``refuse``'s
    errno for the request types in it, or a dump of ``table`` then NLMSG_DONE."""

    def __init__(self, refuse: dict[int, int] | None = None, table: list[XfrmMessage] | None = None) -> None:
        self.sent: list[XfrmMessage] = []
        self.refuse = refuse or {}
        self.table = table or []
        self.queue: list[bytes] = []

    def send(self, data: bytes) -> None:
        msg = decode_one(data)
        assert isinstance(msg, XfrmMessage)
        self.sent.append(msg)
        if msg.flags & DUMP:
            parts = [XfrmMessage(m.type, NlFlags.MULTI, msg.seq, 1, m.fixed, m.attrs).encode() for m in self.table]
            self.queue.append(b"".join(parts))
            self.queue.append(NetlinkDone(flags=NlFlags.MULTI, seq=msg.seq, pid=1).encode())
            return
        answer = NetlinkError(
            flags=0x100, seq=msg.seq, pid=1, error=-self.refuse.get(msg.type, 0), request_type=msg.type,
            request_flags=msg.flags, request_seq=msg.seq, request_length=len(data),
        )  # fmt: skip
        self.queue.append(answer.encode())

    def recv_ready(self) -> bytes | None:
        return self.queue.pop(0) if self.queue else None

    def recv(self, timeout: float) -> bytes | None:
        return self.recv_ready()

    def drain(self) -> None:
        pass

    def close(self) -> None:
        pass


def engine_on(transport: XfrmUserLike) -> KeyEngine:
    return KeyEngine(XfrmOperations(), transport, timeout=0.1)


def test_install_sends_states_then_policies_each_acknowledged() -> None:
    transport = XfrmUserLike()
    ro = routeopt.mobile_node_base() + routeopt.mobile_node_binding(HOA, HA, COA1)
    RouteOptimization(engine_on(transport)).install(ro)
    assert [m.type for m in transport.sent] == [MsgType.NEWSA, MsgType.NEWSA, MsgType.NEWPOLICY, MsgType.NEWPOLICY]
    assert len({m.seq for m in transport.sent}) == 4
    assert [state_from(m) for m in transport.sent[:2]] == list(ro.states)
    assert all(m.flags == ACK for m in transport.sent)


def test_move_updates_the_binding_states_then_rewrites_the_policies() -> None:
    transport = XfrmUserLike()
    ro = routeopt.mobile_node_base() + routeopt.mobile_node_binding(HOA, HA, COA1)
    moved = RouteOptimization(engine_on(transport)).move(ro, COA2)
    assert moved == ro.moved(COA2)
    assert [m.type for m in transport.sent] == [MsgType.UPDSA, MsgType.UPDPOLICY, MsgType.UPDPOLICY]
    assert [state_from(m) for m in transport.sent[:1]] == [RoState(Header.HOME_ADDRESS_OPTION, HOA, HA, COA2)]


def test_a_refusal_is_a_key_engine_error_with_the_errno() -> None:
    transport = XfrmUserLike(refuse={MsgType.NEWSA: errno.EEXIST})
    with pytest.raises(KeyEngineError) as caught:
        RouteOptimization(engine_on(transport)).install(routeopt.mobile_node_base())
    assert caught.value.errno == errno.EEXIST
    assert "add ro state RH2" in str(caught.value)


def test_remove_can_ignore_what_is_already_gone() -> None:
    transport = XfrmUserLike(refuse={MsgType.DELSA: errno.ENOENT, MsgType.DELPOLICY: errno.ENOENT})
    client = RouteOptimization(engine_on(transport))
    client.remove(routeopt.home_agent_base(), missing_ok=True)
    assert [m.type for m in transport.sent] == [MsgType.DELPOLICY, MsgType.DELSA]
    with pytest.raises(KeyEngineError):
        client.remove(routeopt.home_agent_base())


def test_dumps_keep_only_ro_entries() -> None:
    ro = routeopt.home_agent_base() + routeopt.home_agent_binding(HA, HOA, COA1)
    esp_sa = XfrmMessage(MsgType.NEWSA, 0, 0, 0, UsersaInfo(mode=Mode.TRANSPORT))
    esp_policy = XfrmMessage(MsgType.NEWPOLICY, 0, 0, 0, UserpolicyInfo(), (Templates(),))
    table = [esp_sa, *(new_state(s) for s in ro.states), esp_policy, *(new_policy(p) for p in ro.policies)]
    client = RouteOptimization(engine_on(XfrmUserLike(table=table)))
    assert client.states() == list(ro.states)
    assert client.policies() == list(ro.policies)


def test_only_the_linux_xfrm_backend_will_do() -> None:
    with pytest.raises(Unsupported, match="linux-xfrm"):
        RouteOptimization(open_inprocess(Hub()))


def test_sequence_numbers_do_not_meet_the_engines() -> None:
    transport = XfrmUserLike()
    engine = engine_on(transport)
    RouteOptimization(engine).install(routeopt.mobile_node_base())
    engine.flush()
    ro_seq, flush_seq = transport.sent[0].seq, transport.sent[1].seq
    assert ro_seq >= 0x40000000 > flush_seq


# --- the MH socket's parsers ------------------------------------------------------------------------

# The destination options header Linux reported with a Binding Update (tests/kernel):
# next header 135, length 2 (24 octets), PadN of 2, then the Home Address option (201,
# 16) with the care-of address Linux had swapped in.
LINUX_DSTOPTS = bytes.fromhex("870201020000c910") + COA1.packed
LINUX_RTHDR = bytes.fromhex("8702020000000000") + COA1.packed


def test_the_home_address_option_as_linux_reports_it() -> None:
    assert home_address_option(LINUX_DSTOPTS) == COA1
    assert home_address_option(LINUX_DSTOPTS[:-1]) is None  # cut short
    assert home_address_option(b"") is None


def test_the_home_address_option_after_other_options_and_headers() -> None:
    built = bytes(IPv6ExtHdrDestOpt(nh=135, options=[PadN(optdata=b"\0" * 4), HAO(hoa=str(HOA))]))
    assert home_address_option(built) == HOA
    without = bytes(IPv6ExtHdrDestOpt(nh=60, options=[PadN(optdata=b"\0" * 4)]))
    assert home_address_option(without) is None
    assert home_address_option(without + built) == HOA  # the second of two headers
    pad1 = bytes([135, 2, 0, 0, 1, 0, 201, 16]) + HOA.packed
    assert home_address_option(pad1) == HOA


def test_routing_headers() -> None:
    assert routing_addresses(LINUX_RTHDR) == (2, (COA1,))
    assert type2_routing_header(COA2) == bytes([0, 2, 2, 1, 0, 0, 0, 0]) + COA2.packed
    built = bytes(IPv6ExtHdrRouting(nh=135, type=2, segleft=1, addresses=[str(HOA)]))
    assert routing_addresses(built) == (2, (HOA,))
    assert routing_addresses(b"\0" * 7) is None


def test_received_care_of_address() -> None:
    from_mn = Received(b"", HOA, HA, home_address_option=COA1)
    to_mn = Received(b"", HA, HOA, routing_header=(COA2,), routing_type=2)
    plain = Received(b"", HA, HOA)
    assert (from_mn.care_of_address, to_mn.care_of_address, plain.care_of_address) == (COA1, COA2, None)


def test_ro_set_sum_keeps_order() -> None:
    a, b = routeopt.mobile_node_base(), routeopt.mobile_node_binding(HOA, HA, COA1)
    assert (a + b).states == a.states + b.states
    assert (a + b).policies == b.policies
    assert RoSet() + a == a


# --- the kernel tier's wire parser (testbed.handover), on frames scapy builds -------------------------


MAC = "02:00:00:00:00:01"
LINK = Ether(src=MAC, dst=MAC)  # given, so that scapy looks nothing up


def test_the_wire_parser_follows_extension_headers_up_to_esp() -> None:
    esp = Raw(struct.pack("!II", 0x1000, 1) + bytes(40))  # SPI, sequence number, ciphertext
    bu = LINK / IPv6(src=str(COA1), dst=str(HA)) / IPv6ExtHdrDestOpt(nh=50, options=[HAO(hoa=str(HOA))]) / esp
    ba = LINK / IPv6(src=str(HA), dst=str(COA1)) / IPv6ExtHdrRouting(nh=50, type=2, segleft=1, addresses=[str(HOA)])
    tunnel = LINK / IPv6(src=str(COA1), dst=str(HA), nh=50) / esp
    parsed = [parse_ipv6(bytes(f)) for f in (bu, ba / esp, tunnel)]
    assert [(p.chain, p.hao, p.rh2) for p in parsed if p is not None] == [
        ((60, 50), HOA, None),
        ((43, 50), None, HOA),
        ((50,), None, None),
    ]
    assert parse_ipv6(bytes(Ether(src=MAC, dst=MAC, type=0x0800) / Raw(bytes(60)))) is None
