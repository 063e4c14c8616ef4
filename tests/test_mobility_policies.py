"""The policy sets of a mobile node and its home agent, and movement, on pfmigrate's engine.

Sets are installed on an in-process engine and dumped back; movement is applied and the
tables compared with the set computed directly for the new place. MIGRATEs named by old
endpoints run on both of the engine's semantics (Linux's and pfmigrate's), those named by
reqid on pfmigrate's, which Linux's refuses (ENODATA), as the module says.
"""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Iterator
from ipaddress import IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfmigrate.backends.inprocess import Hub, open_inprocess
from pfmigrate.engine import KeyEngine, KeyEngineError
from pfmigrate.mobility.agent import Configure
from pfmigrate.mobility.config import (
    MAX_REQID,
    BackendChoice,
    HAConfig,
    IPsec,
    Keying,
    ManualKeys,
    MNConfig,
    Protection,
    ServedNode,
    Toward,
)
from pfmigrate.mobility.ipsec import carry_out
from pfmigrate.mobility.policies import (
    PRIORITY,
    AddPolicy,
    AddSA,
    Change,
    DeletePolicy,
    DeleteSA,
    PolicySet,
    apply,
    ha_goal,
    ha_leave_home,
    ha_migrations,
    ha_migrations_by_reqid,
    ha_move,
    ha_policy_set,
    ha_return_home,
    ha_return_home_by_reqid,
    mn_leave_home,
    mn_migrations,
    mn_migrations_by_reqid,
    mn_move,
    mn_policy_set,
    mn_return_home,
    mn_return_home_by_reqid,
)
from pfmigrate.model import (
    ESP,
    MH,
    Algorithm,
    Dir,
    IPAddress,
    KMAddress,
    MigrateBundle,
    MigrateEvent,
    MigrateRequest,
    Mode,
    Policy,
    SecurityAssociation,
    Selector,
    Template,
)
from pfmigrate.sadb import Engine

HOA = IPv6Address("3ffe:501:ffff:100:1:2:3:4")
HOA2 = IPv6Address("3ffe:501:ffff:100::beef")
HA = IPv6Address("3ffe:501:ffff:100::1")
COA1 = IPv6Address("3ffe:501:ffff:500:1:2:3:4")
COA2 = IPv6Address("3ffe:501:ffff:400:1:2:3:4")
COA3 = IPv6Address("3ffe:501:ffff:600::3")
MNP = IPv6Network("3ffe:501:ffff:200::/64")
MNP2 = IPv6Network("3ffe:501:ffff:300::/56")
ANYWHERE = IPv6Network("::/0")
UNSPECIFIED = IPv6Address("::")
ICMPV6 = 58
SEMANTICS = ("pfmigrate", "linux")
SPIS2 = tuple(range(0x3000, 0x3008))  # a second node's SPIs: those toward the home agent must differ


def ipsec(
    protect: tuple[Protection, ...] = tuple(Protection),
    *,
    keying: Keying = Keying.MANUAL,
    reqid_base: int = 100,
    shared: bool = False,
    spis: tuple[int, ...] = tuple(range(0x2000, 0x2008)),
    encryption: tuple[str, int] = ("cbc(aes)", 16),
    authentication: tuple[str, int] = ("hmac(sha256)", 32),
) -> IPsec:
    keys = {}
    if keying is Keying.MANUAL:
        for i, (protection, toward) in enumerate((p, t) for p in protect for t in Toward):
            spi = spis[2 * list(Protection).index(protection) + (toward is Toward.MN)]
            keys[protection, toward] = ManualKeys(
                spi, bytes([i + 1]) * encryption[1], bytes([i + 101]) * authentication[1]
            )
    return IPsec(keying, protect, encryption[0], authentication[0], reqid_base, shared, keys)


def mobile_node(ipsec_config: IPsec | None = None, prefixes: tuple[IPv6Network, ...] = ()) -> MNConfig:
    k_bit = ipsec_config is not None and ipsec_config.keying is Keying.IKE
    return MNConfig("mn.toml", BackendChoice(), HOA, HA, 64, "wlan0", 600, k_bit, prefixes, ipsec_config or ipsec())


def home_agent(*nodes: ServedNode) -> HAConfig:
    return HAConfig("ha.toml", BackendChoice(), HA, 64, 3600, True, nodes or (ServedNode(HOA, (), ipsec()),))


def engine(semantics: str = "pfmigrate") -> tuple[Hub, KeyEngine]:
    hub = Hub(Engine(semantics=semantics))
    return hub, open_inprocess(hub)


def tables(key_engine: KeyEngine) -> tuple[set[Policy], set[SecurityAssociation]]:
    return {dataclasses.replace(p, index=0) for p in key_engine.dump_policies()}, set(key_engine.dump_sas())


def as_tables(*sets: PolicySet) -> tuple[set[Policy], set[SecurityAssociation]]:
    return {p for s in sets for p in s.policies}, {sa for s in sets for sa in s.sas}


Row = tuple[str, str, str, int, int, Dir, Mode, IPAddress | None, IPAddress | None, int, int]


def summary(policy_set: PolicySet) -> list[Row]:
    """Each policy as (src, dst, proto, sport, dport, dir, mode, tunnel src, tunnel dst, reqid, priority)."""
    rows: list[Row] = []
    for p in policy_set.policies:
        (t,) = p.templates
        s = p.selector
        rows.append(
            (str(s.src), str(s.dst), str(s.proto), s.sport, s.dport, p.dir, t.mode, t.src, t.dst, t.reqid, p.priority)
        )
    return rows


def heard(listener: KeyEngine) -> Iterator[MigrateEvent]:
    while events := listener.next_events(0.0):
        for event in events:
            assert isinstance(event, MigrateEvent)
            yield event


# --- the sets ----------------------------------------------------------------------------------

H, A = f"{HOA}/128", f"{HA}/128"
T, U = Mode.TRANSPORT, Mode.TUNNEL


def test_the_mobile_node_away_has_rfc_4877s_entries() -> None:
    assert summary(mn_policy_set(mobile_node(), COA1)) == [
        (A, H, "135", 6, 0, Dir.IN, T, None, None, 101, 1000),  # Binding Acknowledgement
        (H, A, "135", 5, 0, Dir.OUT, T, None, None, 100, 1000),  # Binding Update
        (A, H, "58", 147, 0, Dir.IN, T, None, None, 103, 1000),  # Mobile Prefix Advertisement
        (H, A, "58", 146, 0, Dir.OUT, T, None, None, 102, 1000),  # Mobile Prefix Solicitation
        ("::/0", H, "135", 3, 0, Dir.IN, U, HA, COA1, 105, 2000),  # Home Test
        (H, "::/0", "135", 1, 0, Dir.OUT, U, COA1, HA, 104, 2000),  # Home Test Init
        ("::/0", H, "0", 0, 0, Dir.IN, U, HA, COA1, 107, 3000),  # payload to the home address
        (H, "::/0", "0", 0, 0, Dir.OUT, U, COA1, HA, 106, 3000),  # payload from it
    ]


def test_the_home_agent_has_a_fwd_policy_beside_each_inbound_tunnel_policy() -> None:
    config = home_agent()
    assert summary(ha_policy_set(config, HOA, COA1)) == [
        (H, A, "135", 5, 0, Dir.IN, T, None, None, 100, 1000),
        (A, H, "135", 6, 0, Dir.OUT, T, None, None, 101, 1000),
        (H, A, "58", 146, 0, Dir.IN, T, None, None, 102, 1000),
        (A, H, "58", 147, 0, Dir.OUT, T, None, None, 103, 1000),
        (H, "::/0", "135", 1, 0, Dir.IN, U, COA1, HA, 104, 2000),
        (H, "::/0", "135", 1, 0, Dir.FWD, U, COA1, HA, 104, 2000),  # a HoTI passes on to the correspondent
        ("::/0", H, "135", 3, 0, Dir.OUT, U, HA, COA1, 105, 2000),
        (H, "::/0", "0", 0, 0, Dir.IN, U, COA1, HA, 106, 3000),
        (H, "::/0", "0", 0, 0, Dir.FWD, U, COA1, HA, 106, 3000),
        ("::/0", H, "0", 0, 0, Dir.OUT, U, HA, COA1, 107, 3000),
    ]


def test_both_ends_install_the_same_sas() -> None:
    config = mobile_node()
    mn_sas, ha_sas = mn_policy_set(config, COA1).sas, ha_policy_set(home_agent(), HOA, COA1).sas
    assert mn_sas == ha_sas
    by_spi = {sa.spi: sa for sa in mn_sas}
    enc, auth = Algorithm("cbc(aes)", b"\x01" * 16), Algorithm("hmac(sha256)", b"\x65" * 32, 96)
    assert by_spi[0x2000] == SecurityAssociation(HOA, HA, 0x2000, ESP, T, 100, auth, enc)
    assert (by_spi[0x2001].src, by_spi[0x2001].dst, by_spi[0x2001].mode) == (HA, HOA, T)
    assert (by_spi[0x2006].src, by_spi[0x2006].dst, by_spi[0x2006].mode, by_spi[0x2006].reqid) == (COA1, HA, U, 106)
    assert (by_spi[0x2007].src, by_spi[0x2007].dst, by_spi[0x2007].reqid) == (HA, COA1, 107)


def test_at_home_only_the_transport_entries_remain() -> None:
    config = mobile_node()
    home = mn_policy_set(config, None)
    assert home == mn_policy_set(config, HOA)
    assert {t.mode for p in home.policies for t in p.templates} == {Mode.TRANSPORT}
    assert {sa.spi for sa in home.sas} == {0x2000, 0x2001, 0x2002, 0x2003}
    assert ha_policy_set(home_agent(), HOA, None) == home_set_of_ha()


def home_set_of_ha() -> PolicySet:
    away = ha_policy_set(home_agent(), HOA, COA1)
    return PolicySet(
        tuple(p for p in away.policies if p.templates[0].mode is Mode.TRANSPORT),
        tuple(sa for sa in away.sas if sa.mode is Mode.TRANSPORT),
    )


def test_nemo_prefixes_add_payload_policies_on_both_sides() -> None:
    router = mobile_node(prefixes=(MNP,))
    extra = set(summary(mn_policy_set(router, COA1))) - set(summary(mn_policy_set(mobile_node(), COA1)))
    m = str(MNP)
    assert extra == {
        (m, "::/0", "0", 0, 0, Dir.OUT, U, COA1, HA, 106, 3000),
        ("::/0", m, "0", 0, 0, Dir.IN, U, HA, COA1, 107, 3000),
        ("::/0", m, "0", 0, 0, Dir.FWD, U, HA, COA1, 107, 3000),  # forwarded into the mobile network
    }
    served = home_agent(ServedNode(HOA, (MNP,), ipsec()))
    extra = set(summary(ha_policy_set(served, HOA, COA1))) - set(summary(ha_policy_set(home_agent(), HOA, COA1)))
    assert extra == {
        (m, "::/0", "0", 0, 0, Dir.IN, U, COA1, HA, 106, 3000),
        (m, "::/0", "0", 0, 0, Dir.FWD, U, COA1, HA, 106, 3000),
        ("::/0", m, "0", 0, 0, Dir.OUT, U, HA, COA1, 107, 3000),
    }
    no_payload = ipsec((Protection.BU_BA, Protection.HOTI_HOT))
    assert mn_policy_set(mobile_node(no_payload, (MNP,)), COA1) == mn_policy_set(mobile_node(no_payload), COA1)


def test_signalling_is_preferred_to_the_payload_tunnel_that_covers_it() -> None:
    assert PRIORITY[Protection.BU_BA] < PRIORITY[Protection.HOTI_HOT] < PRIORITY[Protection.PAYLOAD]
    assert PRIORITY[Protection.MPS_MPA] < PRIORITY[Protection.HOTI_HOT]


def test_ike_keying_gives_policies_and_no_sas() -> None:
    config = mobile_node(ipsec(keying=Keying.IKE))
    assert mn_policy_set(config, COA1).sas == ()
    assert len(mn_policy_set(config, COA1).policies) == 8


@pytest.mark.parametrize("semantics", SEMANTICS)
@pytest.mark.parametrize("coa", [None, COA1])
def test_the_sets_dump_back_from_the_engine(semantics: str, coa: IPv6Address | None) -> None:
    router = mobile_node(prefixes=(MNP, MNP2))
    _, mn_engine = engine(semantics)
    apply(mn_engine, mn_policy_set(router, coa).changes())
    assert tables(mn_engine) == as_tables(mn_policy_set(router, coa))
    agent = home_agent(
        ServedNode(HOA, (MNP, MNP2), ipsec()), ServedNode(HOA2, (), ipsec(keying=Keying.IKE, reqid_base=108))
    )
    _, ha_engine = engine(semantics)
    for node in agent.mobile_nodes:
        apply(ha_engine, ha_policy_set(agent, node, coa).changes())
    assert tables(ha_engine) == as_tables(*(ha_policy_set(agent, node, coa) for node in agent.mobile_nodes))


def test_a_policy_set_installs_sas_before_policies() -> None:
    changes = mn_policy_set(mobile_node(), COA1).changes()
    kinds = [type(change) for change in changes]
    assert kinds == [AddSA] * 8 + [AddPolicy] * 8


# --- moving ------------------------------------------------------------------------------------


def test_mobile_node_migrations_announce_then_move_the_tunnels() -> None:
    requests = mn_migrations(mobile_node(), COA1, COA2)
    kma = KMAddress(COA2, HA)
    assert all(r.kmaddress == kma for r in requests)
    assert [(r.dir, r.bundles) for r in requests] == [
        (Dir.IN, (MigrateBundle(HA, HOA, HA, HOA, ESP, T, 101),)),  # BA: endpoints kept, KMADDRESS told
        (Dir.OUT, (MigrateBundle(HOA, HA, HOA, HA, ESP, T, 100),)),
        (Dir.IN, (MigrateBundle(HA, HOA, HA, HOA, ESP, T, 103),)),
        (Dir.OUT, (MigrateBundle(HOA, HA, HOA, HA, ESP, T, 102),)),
        (Dir.IN, (MigrateBundle(HA, COA1, HA, COA2, ESP, U, 105),)),
        (Dir.OUT, (MigrateBundle(COA1, HA, COA2, HA, ESP, U, 104),)),
        (Dir.IN, (MigrateBundle(HA, COA1, HA, COA2, ESP, U, 107),)),
        (Dir.OUT, (MigrateBundle(COA1, HA, COA2, HA, ESP, U, 106),)),
    ]
    assert requests[1].selector == Selector(IPv6Network(HOA), IPv6Network(HA), MH, 5)
    by_reqid = mn_migrations_by_reqid(mobile_node(), COA2)
    assert by_reqid[:4] == requests[:4]
    assert [b.old_src for r in by_reqid[4:] for b in r.bundles] == [UNSPECIFIED] * 4
    assert [
        dataclasses.replace(b, old_src=UNSPECIFIED, old_dst=UNSPECIFIED) for r in requests[4:] for b in r.bundles
    ] == [b for r in by_reqid[4:] for b in r.bundles]


def test_home_agent_migrations_move_in_and_fwd_before_out() -> None:
    requests = ha_migrations(home_agent(), HOA, COA1, COA2)
    assert all(r.kmaddress == KMAddress(HA, COA2) for r in requests)
    tunnel = [(r.dir, r.bundles[0].reqid, r.bundles[0].old_src, r.bundles[0].new_dst) for r in requests[4:]]
    assert tunnel == [
        (Dir.IN, 104, COA1, HA),
        (Dir.FWD, 104, COA1, HA),
        (Dir.OUT, 105, HA, COA2),
        (Dir.IN, 106, COA1, HA),
        (Dir.FWD, 106, COA1, HA),
        (Dir.OUT, 107, HA, COA2),
    ]


def _check_moved(
    listener: KeyEngine, key_engine: KeyEngine, requests: list[MigrateRequest], before: PolicySet, after: PolicySet
) -> None:
    assert tables(key_engine) == as_tables(after)
    # The SAs moved kept their SPIs and keys; only tunnel endpoints changed.
    assert sorted(sa.spi for sa in before.sas) == sorted(sa.spi for sa in after.sas)
    assert {sa for sa in before.sas if sa.mode is Mode.TRANSPORT} == {
        sa for sa in after.sas if sa.mode is Mode.TRANSPORT
    }
    events = list(heard(listener))
    assert [(e.request.dir, e.request.bundles, e.request.kmaddress) for e in events] == [
        (r.dir, r.bundles, r.kmaddress) for r in requests
    ]
    assert [(e.request.selector.src, e.request.selector.dst) for e in events] == [
        (r.selector.src, r.selector.dst) for r in requests
    ]


@pytest.mark.parametrize(("semantics", "by_reqid"), [("pfmigrate", False), ("linux", False), ("pfmigrate", True)])
def test_a_mobile_node_move_on_the_engine(semantics: str, by_reqid: bool) -> None:
    router = mobile_node(prefixes=(MNP,))
    hub, key_engine = engine(semantics)
    apply(key_engine, mn_policy_set(router, COA1).changes())
    listener = open_inprocess(hub)
    listener.subscribe()
    requests = mn_migrations_by_reqid(router, COA2) if by_reqid else mn_migrations(router, COA1, COA2)
    apply(key_engine, requests)
    _check_moved(listener, key_engine, requests, mn_policy_set(router, COA1), mn_policy_set(router, COA2))


@pytest.mark.parametrize(("semantics", "by_reqid"), [("pfmigrate", False), ("linux", False), ("pfmigrate", True)])
def test_a_home_agent_move_on_the_engine(semantics: str, by_reqid: bool) -> None:
    agent = home_agent(ServedNode(HOA, (MNP,), ipsec()), ServedNode(HOA2, (), ipsec(reqid_base=200, spis=SPIS2)))
    hub, key_engine = engine(semantics)
    apply(key_engine, ha_policy_set(agent, HOA, COA1).changes())
    apply(key_engine, ha_policy_set(agent, HOA2, COA3).changes())
    listener = open_inprocess(hub)
    listener.subscribe()
    requests = ha_migrations_by_reqid(agent, HOA, COA2) if by_reqid else ha_migrations(agent, HOA, COA1, COA2)
    apply(key_engine, requests)
    # The node that moved is at its new address; the other one is untouched.
    assert tables(key_engine) == as_tables(ha_policy_set(agent, HOA, COA2), ha_policy_set(agent, HOA2, COA3))
    assert [e.request.kmaddress for e in heard(listener)] == [KMAddress(HA, COA2)] * len(requests)


def test_linux_cannot_name_a_bundle_by_reqid() -> None:
    _, key_engine = engine("linux")
    apply(key_engine, mn_policy_set(mobile_node(), COA1).changes())
    with pytest.raises(KeyEngineError) as caught:
        apply(key_engine, mn_migrations_by_reqid(mobile_node(), COA2))
    assert caught.value.errno == errno.ENODATA


@pytest.mark.parametrize(("semantics", "by_reqid"), [("pfmigrate", False), ("linux", False), ("pfmigrate", True)])
def test_returning_home_leaves_only_the_transport_set(semantics: str, by_reqid: bool) -> None:
    router = mobile_node(prefixes=(MNP,))
    _, key_engine = engine(semantics)
    apply(key_engine, mn_policy_set(router, COA1).changes())
    changes = mn_return_home_by_reqid(router) if by_reqid else mn_return_home(router, COA1)
    apply(key_engine, changes)
    assert tables(key_engine) == as_tables(mn_policy_set(router, None))
    moved = [c for c in changes if isinstance(c, MigrateRequest) and c.bundles[0].mode is Mode.TUNNEL]
    assert {c.kmaddress for c in changes if isinstance(c, MigrateRequest)} == {KMAddress(HOA, HA)}
    assert {b.new_src for c in moved for b in c.bundles} == {HOA, HA}  # moved back to the home address first
    deleted_sas = {(c.dst, c.spi) for c in changes if isinstance(c, DeleteSA)}
    assert deleted_sas == {(HA, 0x2004), (HOA, 0x2005), (HA, 0x2006), (HOA, 0x2007)}
    assert sum(isinstance(c, DeletePolicy) for c in changes) == 7  # HoTI 2, payload 2, the prefix 3

    agent = home_agent()
    _, ha_engine = engine(semantics)
    apply(ha_engine, ha_policy_set(agent, HOA, COA1).changes())
    apply(ha_engine, ha_return_home_by_reqid(agent, HOA) if by_reqid else ha_return_home(agent, HOA, COA1))
    assert tables(ha_engine) == as_tables(ha_policy_set(agent, HOA, None))


def test_with_ike_returning_home_deletes_policies_and_leaves_sas_to_the_key_manager() -> None:
    changes = mn_return_home(mobile_node(ipsec(keying=Keying.IKE)), COA1)
    assert not any(isinstance(c, DeleteSA | AddSA) for c in changes)
    assert sum(isinstance(c, DeletePolicy) for c in changes) == 4


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_leaving_home_adds_the_tunnels_at_the_care_of_address(semantics: str) -> None:
    router = mobile_node(prefixes=(MNP,))
    hub, key_engine = engine(semantics)
    apply(key_engine, mn_policy_set(router, None).changes())
    listener = open_inprocess(hub)
    listener.subscribe()
    changes = mn_leave_home(router, COA1)
    apply(key_engine, changes)
    assert tables(key_engine) == as_tables(mn_policy_set(router, COA1))
    assert [e.request.kmaddress for e in heard(listener)] == [KMAddress(COA1, HA)] * 4  # the transport announcements
    first_policy = next(i for i, c in enumerate(changes) if isinstance(c, AddPolicy))
    assert all(not isinstance(c, AddSA) for c in changes[first_policy:])

    agent = home_agent()
    _, ha_engine = engine(semantics)
    apply(ha_engine, ha_policy_set(agent, HOA, None).changes())
    apply(ha_engine, ha_leave_home(agent, HOA, COA1))
    assert tables(ha_engine) == as_tables(ha_policy_set(agent, HOA, COA1))


def test_shared_reqids_work_by_old_endpoints_only() -> None:
    config = mobile_node(ipsec(shared=True))
    assert {t.reqid for p in mn_policy_set(config, COA1).policies for t in p.templates} == {100, 102, 104, 106}
    with pytest.raises(ValueError, match="shared_reqids"):
        mn_migrations_by_reqid(config, COA2)
    with pytest.raises(ValueError, match="shared_reqids"):
        mn_move(config, COA1, None, by_reqid=True)
    _, key_engine = engine("linux")
    apply(key_engine, mn_policy_set(config, COA1).changes())
    apply(key_engine, mn_migrations(config, COA1, COA2))
    assert tables(key_engine) == as_tables(mn_policy_set(config, COA2))


def test_moves_that_are_not_moves() -> None:
    config = mobile_node()
    assert mn_migrations(config, COA1, COA1) == []
    assert mn_move(config, None, HOA) == []
    assert mn_move(config, HOA, None, by_reqid=True) == []
    for wrong in ("192.0.2.1", str(HA), "::", "ff02::1"):
        with pytest.raises(ValueError, match="care-of address"):
            mn_policy_set(config, wrong)
    with pytest.raises(ValueError, match="home address"):
        mn_migrations(config, HOA, COA1)
    with pytest.raises(ValueError, match="home address"):
        ha_migrations(home_agent(), HOA, COA1, HOA)
    with pytest.raises(KeyError):
        ha_policy_set(home_agent(), HOA2, COA1)


def test_apply_stops_at_the_change_the_engine_refuses() -> None:
    _, key_engine = engine()
    policy_set = mn_policy_set(mobile_node(), COA1)
    changes: list[Change] = [AddSA(policy_set.sas[0]), AddSA(policy_set.sas[0]), AddSA(policy_set.sas[1])]
    with pytest.raises(KeyEngineError) as caught:
        apply(key_engine, changes)
    assert caught.value.errno == errno.EEXIST
    assert [sa.spi for sa in key_engine.dump_sas()] == [policy_set.sas[0].spi]


# --- any configuration, any journey --------------------------------------------------------------

ENCRYPTIONS = [
    ("cbc(aes)", 16),
    ("cbc(aes)", 32),
    ("cbc(des3_ede)", 24),
    ("ecb(cipher_null)", 0),
    ("rfc3686(ctr(aes))", 20),
]
AUTHENTICATIONS = [("hmac(sha256)", 32), ("hmac(sha1)", 20), ("hmac(sha512)", 64), ("xcbc(aes)", 16)]


@st.composite
def pair_ipsec(draw: st.DrawFn, spis: tuple[int, ...], reqid_base: int | None = None) -> IPsec:
    extra = draw(st.sets(st.sampled_from([Protection.MPS_MPA, Protection.HOTI_HOT, Protection.PAYLOAD])))
    return ipsec(
        tuple(p for p in Protection if p is Protection.BU_BA or p in extra),
        keying=draw(st.sampled_from(Keying)),
        reqid_base=draw(st.integers(1, MAX_REQID - 7)) if reqid_base is None else reqid_base,
        shared=draw(st.booleans()),
        spis=spis,
        encryption=draw(st.sampled_from(ENCRYPTIONS)),
        authentication=draw(st.sampled_from(AUTHENTICATIONS)),
    )


SPI_LISTS = st.lists(st.integers(256, 0xFFFFFFFF), min_size=16, max_size=16, unique=True)
PREFIXES = st.sampled_from([(), (MNP,), (MNP, MNP2)])


@st.composite
def mobile_nodes(draw: st.DrawFn) -> MNConfig:
    spis = draw(SPI_LISTS)
    return mobile_node(draw(pair_ipsec(tuple(spis[:8]))), draw(PREFIXES))


def _journey(moves: list[IPv6Address | None]) -> st.SearchStrategy[list[IPv6Address | None]]:
    return st.lists(st.sampled_from(moves), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(
    mobile_nodes(),
    st.sampled_from([None, COA1]),
    _journey([None, HOA, COA1, COA2, COA3]),
    st.booleans(),
    st.sampled_from(SEMANTICS),
)
def test_any_journey_keeps_the_mobile_nodes_tables_those_of_where_it_is(
    config: MNConfig, start: IPv6Address | None, journey: list[IPv6Address | None], by_reqid: bool, semantics: str
) -> None:
    by_reqid = by_reqid and semantics == "pfmigrate" and not config.ipsec.shared_reqids
    _, key_engine = engine(semantics)
    apply(key_engine, mn_policy_set(config, start).changes())
    where = start
    for place in journey:
        apply(key_engine, mn_move(config, where, place, by_reqid=by_reqid))
        where = place
        assert tables(key_engine) == as_tables(mn_policy_set(config, where))


@st.composite
def home_agents(draw: st.DrawFn) -> HAConfig:
    spis = draw(SPI_LISTS)
    first = ServedNode(HOA, draw(st.sampled_from([(), (MNP,)])), draw(pair_ipsec(tuple(spis[:8]), 100)))
    second = ServedNode(HOA2, draw(st.sampled_from([(), (MNP2,)])), draw(pair_ipsec(tuple(spis[8:]), 108)))
    return home_agent(first, second)


# Each node has care-of addresses of its own: two nodes never share one.
CARE_OF = ([None, HOA, COA1, COA2], [None, HOA2, COA3, IPv6Address("3ffe:501:ffff:700::7")])


@settings(max_examples=100, deadline=None)
@given(
    home_agents(),
    st.lists(st.tuples(st.sampled_from([0, 1]), st.sampled_from([0, 1, 2, 3])), min_size=1, max_size=10),
    st.booleans(),
    st.sampled_from(SEMANTICS),
)
def test_any_journeys_keep_the_home_agents_tables_those_of_its_bindings(
    config: HAConfig, moves: list[tuple[int, int]], by_reqid: bool, semantics: str
) -> None:
    _, key_engine = engine(semantics)
    where: list[IPv6Address | None] = [None, None]
    for node in config.mobile_nodes:
        apply(key_engine, ha_policy_set(config, node, None).changes())
    for index, choice in moves:
        node = config.mobile_nodes[index]
        place = CARE_OF[index][choice]
        reqid_form = by_reqid and semantics == "pfmigrate" and not node.ipsec.shared_reqids
        apply(key_engine, ha_move(config, node, where[index], place, by_reqid=reqid_form))
        where[index] = place
        assert tables(key_engine) == as_tables(
            *(ha_policy_set(config, n, w) for n, w in zip(config.mobile_nodes, where, strict=True))
        )


def test_the_template_of_a_tunnel_policy_is_at_the_care_of_address() -> None:
    for policy in mn_policy_set(mobile_node(), COA3).policies:
        (template,) = policy.templates
        if template.mode is Mode.TUNNEL:
            assert COA3 in (template.src, template.dst)
            assert HA in (template.src, template.dst)
        else:
            assert template == Template(ESP, Mode.TRANSPORT, reqid=template.reqid)


def test_a_repair_of_one_node_leaves_another_nodes_sa_of_the_same_spi() -> None:
    """Two nodes may use one SPI toward their own addresses (the destinations differ); the
    reqid, one block per node, says whose an SA is."""
    shared_toward_mn = tuple(0x3000 + i if i % 2 == 0 else 0x2000 + i for i in range(8))
    agent = home_agent(ServedNode(HOA, (), ipsec()), ServedNode(HOA2, (), ipsec(reqid_base=200, spis=shared_toward_mn)))
    _, key_engine = engine()
    apply(key_engine, ha_policy_set(agent, HOA, COA1).changes())
    apply(key_engine, ha_policy_set(agent, HOA2, None).changes())
    repair = Configure(HOA2, (), "move", ha_goal(agent, HOA2, COA3), read_back=True)
    assert carry_out(key_engine, repair)[:2] == (0, "")
    assert tables(key_engine) == as_tables(ha_policy_set(agent, HOA, COA1), ha_policy_set(agent, HOA2, COA3))
