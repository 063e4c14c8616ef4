"""Everything a Mobile IPv6 handover needs from Linux, done by hand in Linux 6.1 (in UML).

The topology of ``testbed/handover.py`` (MN, AR1, AR2, R, HA with its home link, CN),
manual-keyed IPsec between the MN and the HA (an ESP tunnel for the home address's
traffic, ESP transport for Binding Updates and Acknowledgements), installed through
pfmigrate's linux-xfrm backend in each namespace, and UMIP's route-optimisation states
and policies through ``pfmigrate.mobility.routeopt``. Then, with Binding Updates and
Acknowledgements built by hand and sent through ``pfmigrate.mobility.mhsocket``:

(a) a BU from the home address reaches the HA's MH socket with its Home Address
    option, and the BA comes back to the care-of address with a type 2 routing header;
(b) traffic from the home address to the CN goes through the ESP tunnel;
(c) a handover: the MN's link moves to AR2, both ends MIGRATE the tunnel (and replace
    the ro states' care-of address, which MIGRATE cannot do), BU and BA go again, and
    the traffic comes back through the new path, with the same SPIs;
(d) the gap without answers, with probes every 10 ms, is measured and printed (and
    written as JSON to ``$PFMIGRATE_HANDOVER_REPORT`` if set; the UML plugin passes
    ``PFMIGRATE_*`` variables into the guest).

Further tests pin down what Linux does that an agent must know: MIGRATE refuses ro
states, the MH checksum and filter, and where MIGRATE notifications go.
"""

from __future__ import annotations

import errno
import json
import os
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address

import pytest
from testbed.handover import (
    BA_SPI,
    BU_SELECTOR,
    BU_SPI,
    CN_ADDRESS,
    COA1,
    COA2,
    HOME_ADDRESS,
    HOME_AGENT,
    TUNNEL_DOWN_SPI,
    TUNNEL_UP_SPI,
    Capture,
    Node,
    Packet,
    Prober,
    Topology,
    UdpEcho,
    build,
    ipsec_policies,
    ipsec_sas,
    migrations,
    reachable,
)

from pfmigrate.backends.linux import RECV_SIZE, open_xfrm, xfrm_socket
from pfmigrate.backends.xfrm_ops import selector_to
from pfmigrate.engine import KeyEngine
from pfmigrate.mobility import routeopt
from pfmigrate.mobility.mhsocket import MHSocket, Received
from pfmigrate.mobility.routeopt import Header, RoSet, RoState, RouteOptimization
from pfmigrate.model import ESP, MigrateEvent
from pfmigrate.xfrm import (
    Migrate,
    Mode,
    MsgType,
    NetlinkError,
    NlFlags,
    PolicyDir,
    PolicyType,
    PolicyTypeAttr,
    UserMigrate,
    UserpolicyId,
    XfrmMessage,
    decode,
)

pytestmark = pytest.mark.kernel

ANY = IPv6Address(0)
ESP_ONLY = (50,)  # the next-header chain of a tunnelled packet: ESP right after IPv6
BU_ON_THE_WIRE = (60, 50)  # IPv6, destination options (Home Address option), ESP
BA_ON_THE_WIRE = (43, 50)  # IPv6, routing header (type 2), ESP
A_FLAG, H_FLAG = 0x8000, 0x4000
LIFETIME = 100  # units of 4 seconds


# --- Mobility Header messages by hand (the mip6 codec will replace this) ------------------------


def binding_update(seq: int, flags: int = A_FLAG | H_FLAG, *, payload_proto: int = 59) -> bytes:
    """RFC 6275 §6.1.7: header (6), sequence, flags, lifetime, PadN to 16 octets."""
    return struct.pack("!BBBBHHHH", payload_proto, 1, 5, 0, 0, seq, flags, LIFETIME) + bytes([1, 2, 0, 0])


def binding_ack(seq: int, status: int = 0) -> bytes:
    """RFC 6275 §6.1.8: header (6), status, flags, sequence, lifetime, PadN to 16 octets."""
    return struct.pack("!BBBBHBBHH", 59, 1, 6, 0, 0, status, 0, seq, LIFETIME) + bytes([1, 2, 0, 0])


def ones_complement_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def mh_checksum(src: IPv6Address, dst: IPv6Address, message: bytes) -> int:
    """The MH checksum of ``message`` (its checksum field taken as zero) over the
    pseudo-header of ``src`` and ``dst`` (RFC 6275 §6.1.1)."""
    zeroed = message[:4] + b"\0\0" + message[6:]
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(message), 135)
    return ~ones_complement_sum(pseudo + zeroed) & 0xFFFF


def with_checksum(message: bytes, value: int) -> bytes:
    return message[:4] + struct.pack("!H", value) + message[6:]


# --- the two ends ------------------------------------------------------------------------------------


@dataclass
class End:
    """One end's plumbing, opened inside its namespace: the key engine (with its event
    socket), the route-optimisation client, an MH socket, and its ro binding set."""

    node: Node
    engine: KeyEngine
    ro: RouteOptimization
    mh: MHSocket
    binding: RoSet

    def close(self) -> None:
        self.mh.close()
        self.engine.close()


def open_end(node: Node, binding: RoSet, base: RoSet) -> End:
    with node.entered():
        engine = open_xfrm()
        engine.subscribe()  # the event socket is opened now, in this namespace
        mh = MHSocket()
    ro = RouteOptimization(engine)
    ro.install(base + binding)
    return End(node, engine, ro, mh, binding)


@dataclass
class Plumbing:
    topo: Topology
    mn: End
    ha: End


@pytest.fixture
def net() -> Iterator[Plumbing]:
    """The topology with the MN on AR1, IPsec and ro sets installed on both ends."""
    topo = build("hop")
    ends: list[End] = []
    try:
        mn = open_end(
            topo.mn, routeopt.mobile_node_binding(HOME_ADDRESS, HOME_AGENT, COA1), routeopt.mobile_node_base()
        )
        ends.append(mn)
        ha = open_end(topo.ha, routeopt.home_agent_binding(HOME_AGENT, HOME_ADDRESS, COA1), routeopt.home_agent_base())
        ends.append(ha)
        for end, role in ((mn, "mn"), (ha, "ha")):
            for sa in ipsec_sas(COA1):
                end.engine.add_sa(sa)
            for policy in ipsec_policies(role, COA1):
                end.engine.add_policy(policy)
        yield Plumbing(topo, mn, ha)
    finally:
        for end in ends:
            end.close()
        topo.teardown()


def exchange_bu_ba(net: Plumbing, seq: int) -> tuple[Received, Received]:
    """The MN sends a BU from its home address, the HA answers with a BA to it."""
    net.mn.mh.send(binding_update(seq), HOME_AGENT, src=HOME_ADDRESS)
    bu = net.ha.mh.receive(5.0)
    assert bu is not None, f"BU {seq} from the home address did not reach the HA's MH socket"
    net.ha.mh.send(binding_ack(seq), HOME_ADDRESS, src=HOME_AGENT)
    ba = net.mn.mh.receive(5.0)
    assert ba is not None, f"BA {seq} did not reach the MN's MH socket"
    return bu, ba


def packets_between(packets: list[Packet], a: IPv6Address, b: IPv6Address) -> list[Packet]:
    return [p for p in packets if {p.src, p.dst} == {a, b}]


def esp_packets(end: End, dst: IPv6Address, spi: int) -> int:
    return end.engine.get_sa(dst, spi, ESP).current.packets


# --- (a) ---------------------------------------------------------------------------------------------


def test_a_binding_update_carries_the_home_address_option_and_the_ack_a_type_2_routing_header(
    net: Plumbing,
) -> None:
    with Capture(net.topo.router, "r-ar1") as wire:
        bu, ba = exchange_bu_ba(net, 1)

    # The HA's MH socket sees the home address as the source, and the care-of address
    # in the Home Address option (Linux swapped the two before delivering).
    assert (bu.source, bu.destination, bu.home_address_option) == (HOME_ADDRESS, HOME_AGENT, COA1)
    sent = binding_update(1)
    assert bu.data[:4] + bu.data[6:] == sent[:4] + sent[6:], "the BU arrived changed"
    # Linux filled in the checksum, over the home address (not the care-of address).
    assert struct.unpack_from("!H", bu.data, 4)[0] == mh_checksum(HOME_ADDRESS, HOME_AGENT, sent)
    # The MN's MH socket gets the BA for its home address, with the care-of address in
    # the type 2 routing header Linux processed.
    assert (ba.source, ba.destination) == (HOME_AGENT, HOME_ADDRESS)
    assert (ba.routing_type, ba.routing_header, ba.care_of_address) == (2, (COA1,), COA1)
    assert (ba.data[2], ba.data[6]) == (6, 0)  # a BA, status 0 (accepted)

    # On the visited network: CoA -> HA with a Home Address option, then ESP; HA ->
    # CoA with a type 2 routing header, then ESP. Nothing carries the home address
    # as an outer address.
    seen = packets_between(wire.packets, COA1, HOME_AGENT)
    bu_packets = [p for p in seen if p.src == COA1 and p.chain == BU_ON_THE_WIRE]
    ba_packets = [p for p in seen if p.src == HOME_AGENT and p.chain == BA_ON_THE_WIRE]
    assert [p.hao for p in bu_packets] == [HOME_ADDRESS], seen
    assert [p.rh2 for p in ba_packets] == [HOME_ADDRESS], seen
    assert not [p for p in wire.packets if HOME_ADDRESS in (p.src, p.dst)]
    # Both went through their ESP transport SAs.
    assert esp_packets(net.mn, HOME_AGENT, BU_SPI) == 1
    assert esp_packets(net.ha, HOME_ADDRESS, BA_SPI) == 1


# --- (b) ---------------------------------------------------------------------------------------------


def inet6_addresses() -> str:
    """The IPv6 addresses of the calling namespace, as text (for ``Node.call``)."""
    with open("/proc/net/if_inet6") as f:
        return " ".join(str(IPv6Address(bytes.fromhex(line.split()[0]))) for line in f)


def test_b_home_address_traffic_goes_through_the_esp_tunnel(net: Plumbing) -> None:
    topo = net.topo
    assert reachable(topo.mn, CN_ADDRESS, source=HOME_ADDRESS, count=2), "ping -I <home address> CN: no answer"
    echo = UdpEcho(topo.cn, CN_ADDRESS)
    try:
        with Capture(topo.router, "r-ar1") as visited, Capture(topo.router, "r-cn") as at_cn:
            probe = Prober(topo.mn, HOME_ADDRESS, echo, interval=0.02)
            try:
                assert probe.wait_for_answers(10, 0.0, 10.0), "UDP from the home address to the CN: no echo"
            finally:
                probe.stop()
    finally:
        echo.close()

    assert set(echo.peers) == {HOME_ADDRESS}, "the CN saw another source than the home address"
    assert str(HOME_ADDRESS) in topo.mn.call(inet6_addresses), "Node.call runs in the node's namespace"
    assert str(HOME_ADDRESS) not in topo.cn.call(inet6_addresses)
    tunnel = packets_between(visited.packets, COA1, HOME_AGENT)
    assert {p.src for p in tunnel} == {COA1, HOME_AGENT}, "no traffic both ways between the CoA and the HA"
    assert {p.chain for p in tunnel} == {ESP_ONLY}, [p for p in tunnel if p.chain != ESP_ONLY]
    hidden = [p for p in visited.packets if {HOME_ADDRESS, CN_ADDRESS} & {p.src, p.dst}]
    assert not hidden, f"the home address or the CN appeared in the clear on the visited link: {hidden[:3]}"
    plain = [p for p in at_cn.packets if (p.src, p.dst, p.upper) == (HOME_ADDRESS, CN_ADDRESS, 17)]
    assert plain, "beyond the HA the traffic is plain UDP from the home address"
    assert esp_packets(net.ha, HOME_AGENT, TUNNEL_UP_SPI) >= 10
    assert esp_packets(net.mn, COA1, TUNNEL_DOWN_SPI) >= 10


# --- (c) and (d) -------------------------------------------------------------------------------------

_STATE_HEAD = re.compile(r"^src (\S+) dst (\S+)\n\s+proto (\S+) (?:spi (0x[0-9a-f]+) )?reqid \d+ mode (\S+)", re.M)
_COA = re.compile(r"^\s+coa (\S+)", re.M)


def xfrm_states(node: Node) -> set[tuple[str, ...]]:
    """``ip xfrm state``, each state as (src, dst, proto, spi, mode, coa)."""
    text = node.run("ip", "xfrm", "state").stdout
    blocks = re.split(r"(?m)^(?=src )", text)
    found = set()
    for block in filter(None, blocks):
        head = _STATE_HEAD.search(block)
        assert head is not None, f"unexpected ip xfrm state output:\n{block}"
        coa = _COA.search(block)
        found.add((*head.groups(default="-"), coa.group(1) if coa else "-"))
    return found


def expected_states(coa: IPv6Address, ro: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
    ha, hoa, c = str(HOME_AGENT), str(HOME_ADDRESS), str(coa)
    return {
        (c, ha, "esp", f"0x{TUNNEL_UP_SPI:08x}", "tunnel", "-"),
        (ha, c, "esp", f"0x{TUNNEL_DOWN_SPI:08x}", "tunnel", "-"),
        (hoa, ha, "esp", f"0x{BU_SPI:08x}", "transport", "-"),
        (ha, hoa, "esp", f"0x{BA_SPI:08x}", "transport", "-"),
    } | ro


def mn_ro_states(coa: IPv6Address) -> set[tuple[str, ...]]:
    return {(str(HOME_ADDRESS), str(HOME_AGENT), "hao", "-", "ro", str(coa)), ("::", "::", "route2", "-", "ro", "::")}


def ha_ro_states(coa: IPv6Address) -> set[tuple[str, ...]]:
    return {(str(HOME_AGENT), str(HOME_ADDRESS), "route2", "-", "ro", str(coa)), ("::", "::", "hao", "-", "ro", "::")}


def tunnel_templates(node: Node) -> set[tuple[str, str]]:
    text = node.run("ip", "xfrm", "policy").stdout
    return set(re.findall(r"tmpl src (\S+) dst (\S+)\n\s+proto esp reqid \d+ mode tunnel", text))


def migrate_notifications(engine: KeyEngine, count: int, timeout: float = 3.0) -> list[MigrateEvent]:
    """The MIGRATE notifications the engine's event socket has heard: ``count`` of them
    if they come within ``timeout``, and any more that follow at once."""
    heard: list[MigrateEvent] = []
    deadline = time.monotonic() + timeout
    while len(heard) < count and time.monotonic() < deadline:
        heard += [e for e in engine.next_events(0.1) if isinstance(e, MigrateEvent)]
    heard += [e for e in engine.next_events(0.1) if isinstance(e, MigrateEvent)]
    return heard


def report(result: dict[str, float | int | str]) -> None:
    print("handover:", ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
    path = os.environ.get("PFMIGRATE_HANDOVER_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=1)


def test_c_handover_by_hand_then_d_the_gap(net: Plumbing) -> None:
    topo, mn, ha = net.topo, net.mn, net.ha
    exchange_bu_ba(net, 1)  # registered at CoA1
    assert xfrm_states(topo.mn) == expected_states(COA1, mn_ro_states(COA1))
    assert xfrm_states(topo.ha) == expected_states(COA1, ha_ro_states(COA1))
    init_listener = open_xfrm()  # in the guest's initial namespace
    init_listener.subscribe()
    echo = UdpEcho(topo.cn, CN_ADDRESS)
    probe = Prober(topo.mn, HOME_ADDRESS, echo, interval=0.01)
    try:
        assert probe.wait_for_answers(20, 0.0, 10.0), "no echo from the CN before the move"
        with Capture(topo.router, "r-ar2") as new_path:
            started = time.monotonic()
            new_coa = topo.move()  # the MN's link goes from AR1 to AR2; CoA2, default via AR2
            moved = time.monotonic()
            assert new_coa == COA2
            # The MN, as UMIP does it: MIGRATE, the Home Address option's care-of
            # address (MIGRATE cannot change it), then the Binding Update.
            for request in migrations("mn", COA1, new_coa):
                mn.engine.migrate(request)
            mn.binding = mn.ro.move(mn.binding, new_coa)
            mn.mh.send(binding_update(2), HOME_AGENT, src=HOME_ADDRESS)
            # The HA learns the new care-of address from the Home Address option.
            bu = ha.mh.receive(5.0)
            assert bu is not None, "the BU from the new care-of address did not reach the HA"
            assert (bu.source, bu.home_address_option) == (HOME_ADDRESS, COA2)
            assert bu.care_of_address is not None
            for request in migrations("ha", COA1, bu.care_of_address):
                ha.engine.migrate(request)
            ha.binding = ha.ro.move(ha.binding, bu.care_of_address)
            ha.mh.send(binding_ack(2), HOME_ADDRESS, src=HOME_AGENT)
            ba = mn.mh.receive(5.0)
            signalled = time.monotonic()
            assert ba is not None, "the BA did not reach the MN at its new care-of address"
            assert (ba.source, ba.destination, ba.routing_header) == (HOME_AGENT, HOME_ADDRESS, (COA2,))
            assert probe.wait_for_answers(20, signalled, 10.0), "no echo from the CN through the new path"
    finally:
        probe.stop()
        echo.close()

    # The tunnel and the signalling now run between CoA2 and the HA, all ESP.
    path = packets_between(new_path.packets, COA2, HOME_AGENT)
    assert {p.chain for p in path if p.chain not in (BU_ON_THE_WIRE, BA_ON_THE_WIRE)} == {ESP_ONLY}
    assert [p.hao for p in path if p.chain == BU_ON_THE_WIRE] == [HOME_ADDRESS]
    assert [p.rh2 for p in path if p.chain == BA_ON_THE_WIRE] == [HOME_ADDRESS]
    # Same SPIs, new care-of address everywhere, ro states included; CoA1 is gone.
    assert xfrm_states(topo.mn) == expected_states(COA2, mn_ro_states(COA2))
    assert xfrm_states(topo.ha) == expected_states(COA2, ha_ro_states(COA2))
    assert tunnel_templates(topo.mn) == {(str(COA2), str(HOME_AGENT)), (str(HOME_AGENT), str(COA2))}
    assert tunnel_templates(topo.ha) == {(str(COA2), str(HOME_AGENT)), (str(HOME_AGENT), str(COA2))}
    for node in (topo.mn, topo.ha):
        dump = node.run("ip", "xfrm", "state").stdout + node.run("ip", "xfrm", "policy").stdout
        assert str(COA1) not in dump, f"{node.name} still mentions the old care-of address:\n{dump}"

    # Each end's MIGRATE notifications (with KMADDRESS) reach listeners in its own
    # namespace, not the initial one (Linux before "xfrm: route MIGRATE notifications
    # to caller's netns" sent them all to the initial namespace).
    for end, count, local, remote in ((mn, 4, COA2, HOME_AGENT), (ha, 5, HOME_AGENT, COA2)):
        heard = migrate_notifications(end.engine, count)
        assert len(heard) == count, f"{end.node.name}: heard {len(heard)} MIGRATE notifications, not {count}"
        assert {(e.request.kmaddress.local, e.request.kmaddress.remote) for e in heard if e.request.kmaddress} == {
            (local, remote)
        }
    stray = migrate_notifications(init_listener, 0)
    init_listener.close()
    assert not stray, f"MIGRATE notifications reached the initial namespace: {stray}"

    outage = probe.outage(after=started)
    assert outage.gap > 0, "no outage"
    assert outage.first_after > moved, "the longest outage is not the handover's"
    result: dict[str, float | int | str] = {
        "gap_s": outage.gap,
        "lost_probes": outage.lost,
        "probe_interval_s": probe.interval,
        "link_move_s": moved - started,
        "move_to_ba_s": signalled - started,
        "move_to_first_answer_s": outage.first_after - started,
    }
    report(result)
    assert outage.gap < 5.0, f"the handover took too long: {result}"


# --- what Linux does that an agent must know ------------------------------------------------------


def raw_migrate(node: Node, msg: XfrmMessage) -> int:
    """Send one XFRM MIGRATE from ``node``; the errno of the answer (0: done)."""
    with node.entered():
        sock = xfrm_socket()
    with sock:
        sock.send(msg.encode())
        answers = [m for m in decode(sock.recv(RECV_SIZE)) if isinstance(m, NetlinkError)]
    assert len(answers) == 1, answers
    return answers[0].errno


def test_migrate_cannot_move_ro_states_so_their_care_of_address_is_replaced(net: Plumbing) -> None:
    mn = net.mn
    hao = RoState(Header.HOME_ADDRESS_OPTION, HOME_ADDRESS, HOME_AGENT, COA1)
    assert hao in mn.ro.states()
    # A MIGRATE naming the Home Address option's state (its addresses do not change on
    # a move; its care-of address, which MIGRATE has no field for, does) is refused,
    # whether it names the sub policy or the main one of the same selector: Linux
    # matches tunnel and transport templates only (ENODATA) and puts the state back.
    bundle = Migrate((UserMigrate(HOME_AGENT, HOME_ADDRESS, HOME_AGENT, HOME_ADDRESS, 60, Mode.ROUTEOPTIMIZATION, 0),))
    policy_id = UserpolicyId(selector_to(BU_SELECTOR), 0, PolicyDir.OUT)
    ack = NlFlags.REQUEST | NlFlags.ACK
    sub = XfrmMessage(MsgType.MIGRATE, ack, 1, 0, policy_id, (bundle, PolicyTypeAttr(PolicyType.SUB)))
    main = XfrmMessage(MsgType.MIGRATE, ack, 2, 0, policy_id, (bundle,))
    assert raw_migrate(net.topo.mn, sub) == errno.ENODATA
    assert raw_migrate(net.topo.mn, main) == errno.ENODATA
    # The tunnel's MIGRATE moves the ESP states and leaves the ro state as it was.
    net.topo.move()
    for request in migrations("mn", COA1, COA2):
        mn.engine.migrate(request)
    assert hao in mn.ro.states()
    assert mn.engine.get_sa(HOME_AGENT, TUNNEL_UP_SPI, ESP).src == COA2
    # UPDSA replaces the care-of address of the same state.
    mn.binding = mn.ro.move(mn.binding, COA2)
    states = mn.ro.states()
    assert [s for s in states if s.header == Header.HOME_ADDRESS_OPTION] == [
        RoState(Header.HOME_ADDRESS_OPTION, HOME_ADDRESS, HOME_AGENT, COA2)
    ]
    assert RoState(Header.ROUTING_TYPE_2, ANY, ANY, ANY, wildrecv=True) in states
    # And the policies are the ones installed (read back through the codec).
    assert set(mn.ro.policies()) == set(routeopt.mobile_node_binding(HOME_ADDRESS, HOME_AGENT, COA2).policies)


def raw6_drops(node: Node) -> int:
    """Drops counted on the node's raw sockets of protocol 135 (/proc/net/raw6)."""
    lines = node.run("cat", "/proc/net/raw6").stdout.splitlines()[1:]
    return sum(int(line.split()[-1]) for line in lines if line.split()[1].endswith(":0087"))


def test_linux_computes_and_checks_the_mh_checksum_over_the_home_address_and_filters_bad_headers(
    net: Plumbing,
) -> None:
    """What the kernel refuses never reaches the socket: the next message delivered
    after the refused ones (same path, in order) is the good one sent after them."""
    topo, mn, ha = net.topo, net.mn, net.ha
    assert mn.mh.kernel_checksum_offset == 4  # Linux's default for IPPROTO_MH raw sockets
    with topo.mn.entered():
        raw = MHSocket(checksum=False)  # the kernel leaves the checksum alone
    try:
        assert raw.kernel_checksum_offset == -1
        drops = raw6_drops(topo.ha)
        wrong, over_coa, right = binding_update(7), binding_update(8), binding_update(9)
        raw.send(with_checksum(wrong, 0x1234), HOME_AGENT, src=HOME_ADDRESS)
        raw.send(with_checksum(over_coa, mh_checksum(COA1, HOME_AGENT, over_coa)), HOME_AGENT, src=HOME_ADDRESS)
        raw.send(with_checksum(right, mh_checksum(HOME_ADDRESS, HOME_AGENT, right)), HOME_AGENT, src=HOME_ADDRESS)
        got = ha.mh.receive(5.0)
        assert got is not None, "a BU with the right checksum over the home address was refused"
        assert got.data[6:8] == struct.pack("!H", 9), "a wrong checksum, or one over the care-of address, passed"
        assert raw6_drops(topo.ha) == drops + 2, "Linux drops bad checksums silently, but counts them"
    finally:
        raw.close()
    # mip6_mh_filter: a Payload Proto other than 59, or a Header Len below the type's
    # minimum, never reaches a socket.
    mn.mh.send(binding_update(10, payload_proto=6), HOME_AGENT, src=HOME_ADDRESS)
    mn.mh.send(bytes([59, 0, 5, 0, 0, 0, 0, 0]), HOME_AGENT, src=HOME_ADDRESS)
    bu, _ = exchange_bu_ba(net, 11)
    assert bu.data[6:8] == struct.pack("!H", 11), "a BU with a bad Payload Proto or Header Len was delivered"


def test_a_type_2_routing_header_from_the_socket_works_too(net: Plumbing) -> None:
    """UMIP's home agent does not use an ro state for its BA: it gives the socket the
    routing header (``IPV6_RTHDR``). With the HA's ro binding set removed, that BA
    still reaches the MN at its care-of address, inside the BA's ESP transport SA."""
    ha = net.ha
    ha.ro.remove(ha.binding)
    net.mn.mh.send(binding_update(1), HOME_AGENT, src=HOME_ADDRESS)
    assert ha.mh.receive(5.0) is not None
    ha.mh.send(binding_ack(1), HOME_ADDRESS, src=HOME_AGENT, rh2=COA1)
    ba = net.mn.mh.receive(5.0)
    assert ba is not None, "a BA with a socket-given type 2 routing header did not arrive"
    assert (ba.destination, ba.routing_header) == (HOME_ADDRESS, (COA1,))
    assert esp_packets(ha, HOME_ADDRESS, BA_SPI) == 1
    assert [s for s in ha.ro.states() if s.header == Header.ROUTING_TYPE_2] == []


def in_address_errors() -> int:
    """``Ip6InAddrErrors`` of the calling namespace (run through ``Node.call``)."""
    with open("/proc/net/snmp6") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Ip6InAddrErrors "))


def test_the_home_address_needs_the_home_flag_for_a_type_2_routing_header(net: Plumbing) -> None:
    """Linux accepts a type 2 routing header only for an address it holds with
    ``IFA_F_HOMEADDRESS`` (``ip addr add ... home``); otherwise it drops the packet and
    counts an address error. The MN's agent has to set the flag."""
    topo, mn, ha = net.topo, net.mn, net.ha
    hoa = f"{HOME_ADDRESS}/128"
    topo.mn.ip(f"addr del {hoa} dev lo", f"addr add {hoa} dev lo nodad")
    errors = topo.mn.call(in_address_errors)
    ha.mh.send(binding_ack(1), HOME_ADDRESS, src=HOME_AGENT)
    deadline = time.monotonic() + 5.0  # the BA crosses three routers: wait until the MN dropped it
    while topo.mn.call(in_address_errors) == errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert topo.mn.call(in_address_errors) == errors + 1, "the BA without the home flag was not counted"
    topo.mn.ip(f"addr del {hoa} dev lo", f"addr add {hoa} dev lo home nodad")
    ha.mh.send(binding_ack(2), HOME_ADDRESS, src=HOME_AGENT)
    ba = mn.mh.receive(5.0)
    assert ba is not None, "the BA did not arrive once the home address had its flag"
    assert ba.data[8:10] == struct.pack("!H", 2), "a BA arrived for an address without the home flag"
    assert topo.mn.call(in_address_errors) == errors + 1
