"""The mobile node and home agent together on in-process engines: each move MIGRATEs
the IPsec before the Binding Update (on the MN) and before the Acknowledgement (on the
HA), the tables follow the care-of address with unchanged SPIs, the IKE daemons hear
KMADDRESS, and a table that is not what the agent believes is repaired, not ignored."""

from __future__ import annotations

import errno
from collections.abc import Iterable
from dataclasses import replace
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from pfmigrate import mip6
from pfmigrate.backends.inprocess import Hub, open_inprocess
from pfmigrate.cli import main
from pfmigrate.cli.errors import CommandError
from pfmigrate.cli.mobility import serve
from pfmigrate.engine import KeyEngine, KeyEngineError
from pfmigrate.mobility import policies
from pfmigrate.mobility.agent import Configure, HomeAgentAgent, MobileNodeAgent, Note, Send, Step
from pfmigrate.mobility.config import HAConfig, load_ha, parse
from pfmigrate.mobility.daemon import HOME, addresses, location
from pfmigrate.mobility.seedconfig import seed_configs
from pfmigrate.mobility.simulation import Simulation
from pfmigrate.model import SecurityAssociation
from pfmigrate.sadb import Engine
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA
from tests.seed_scenario import without_index

HOA, HA = IPv6Address(HOME_ADDRESS), IPv6Address(HOME_AGENT)


def _by_spi(sas: Iterable[SecurityAssociation]) -> list[SecurityAssociation]:
    return sorted(sas, key=lambda sa: sa.spi)


def tables(sim: Simulation) -> tuple[object, ...]:
    """Both engines' SAD and SPD."""
    return (_by_spi(sim.mn_engine.dump_sas()), without_index(sim.mn_engine.dump_policies()),
            _by_spi(sim.ha_engine.dump_sas()), without_index(sim.ha_engine.dump_policies()))  # fmt: skip


def expected(sim: Simulation, coa: str | None) -> tuple[object, ...]:
    """What RFC 4877 wants both ends to hold with the mobile node at ``coa`` (None: home)."""
    mn = policies.mn_policy_set(sim.mn_config, coa)
    ha = policies.ha_policy_set(sim.ha_config, sim.ha_config.mobile_nodes[0], coa)
    return (_by_spi(mn.sas), without_index(mn.policies), _by_spi(ha.sas), without_index(ha.policies))


@pytest.mark.parametrize("by_reqid", [True, False])
def test_the_seed_journey_keeps_both_ends_tables_with_the_care_of_address(by_reqid: bool) -> None:
    mn_config, ha_config = seed_configs()
    sim = Simulation(mn_config, ha_config, by_reqid=by_reqid)
    for coa in (OLD_COA, NEW_COA):
        leg = sim.move(coa)
        assert leg.acknowledged > leg.ipsec > 0
        assert tables(sim) == expected(sim, coa)
    sim.go_home()
    assert tables(sim) == expected(sim, None)
    events = [e.event for e in sim.timeline.entries]
    # the MN's IPsec moved before its BU, the HA's before its BA
    assert events.index("migrate-done") < events.index("bu-sent")
    ha_steps = [(e.who, e.event) for e in sim.timeline.entries if e.who.startswith("HA")]
    assert ha_steps.index(("HA", "migrate-done")) < ha_steps.index(("HA", "ba-sent"))
    heard = [e for e in sim.timeline.entries if e.event == "IKE heard MIGRATE" and e.who == "MN engine"]
    assert {e.fields["kmaddress"] for e in heard} >= {OLD_COA, NEW_COA}
    sim.close()


def test_a_table_changed_behind_the_agents_back_is_repaired_and_reported() -> None:
    mn_config, ha_config = seed_configs()
    sim = Simulation(mn_config, ha_config, by_reqid=False)
    sim.move(OLD_COA)
    tunnel = next(p for p in sim.mn_engine.dump_policies() if p.templates and p.templates[0].src is not None)
    sim.mn_engine.delete_policy(tunnel.selector, tunnel.dir)  # someone else's doing
    sim.move(NEW_COA)
    notes = [e for e in sim.timeline.entries if e.event == "divergence"]
    assert notes
    assert notes[0].fields["errno"] in (errno.ENOENT, errno.ENODATA)
    assert tables(sim) == expected(sim, NEW_COA)
    sim.close()


@pytest.mark.parametrize("by_reqid", [True, False])
def test_a_tunnel_removed_behind_the_agents_back_is_repaired_on_the_way_home(by_reqid: bool) -> None:
    sim = Simulation(*seed_configs(), by_reqid=by_reqid)
    sim.move(OLD_COA)
    tunnel = next(p for p in sim.mn_engine.dump_policies() if p.templates and p.templates[0].src is not None)
    sim.mn_engine.delete_policy(tunnel.selector, tunnel.dir)
    sim.go_home()
    assert [e for e in sim.timeline.entries if e.event == "divergence"]
    assert tables(sim) == expected(sim, None)  # the other tunnels went too
    sim.move(NEW_COA)
    assert tables(sim) == expected(sim, NEW_COA)
    sim.close()


@pytest.mark.parametrize("failing", range(1, 5))  # the four tunnel SAs
def test_a_refusal_that_passes_is_settled_by_reading_back(failing: int) -> None:
    """The engine refuses one SA of the tunnels once (out of memory): the agent reads the
    tables back and adds only what is missing, so the move completes."""
    sim = Simulation(*seed_configs())
    add_sa, calls, added = sim.mn_engine.add_sa, [0], []

    def flaky(sa: SecurityAssociation) -> None:
        calls[0] += 1
        if calls[0] == failing:
            raise KeyEngineError(errno.ENOMEM, "add SA")
        added.append(sa.spi)
        add_sa(sa)

    sim.mn_engine.add_sa = flaky  # type: ignore[method-assign]
    sim.move(OLD_COA)
    events = [e.event for e in sim.timeline.entries]
    assert "refused" in events
    assert "converged" in events
    assert "migrate-failed" not in events
    assert len(added) == len(set(added)) == 4, "each SA added once: the read-back adds only what was missing"
    assert tables(sim) == expected(sim, OLD_COA)
    sim.move(NEW_COA)
    assert tables(sim) == expected(sim, NEW_COA)
    sim.close()


@pytest.mark.parametrize("failing", range(1, 5))
def test_a_refusal_that_stands_fails_the_move_and_does_not_wedge_the_next(failing: int) -> None:
    """The engine refuses one SA every time: after reading back the refusal stands, the
    move has failed (no Binding Update); what went before stays, and the next move,
    with the engine well again, puts the tables right."""
    sim = Simulation(*seed_configs())
    add_sa, refused = sim.mn_engine.add_sa, [0x0]
    spis = sorted(sa.spi for sa in policies.mn_policy_set(sim.mn_config, OLD_COA).sas if sa.mode.value == "tunnel")
    refused[0] = spis[failing - 1]

    def broken(sa: SecurityAssociation) -> None:
        if sa.spi == refused[0]:
            raise KeyEngineError(errno.ENOMEM, "add SA")
        add_sa(sa)

    sim.mn_engine.add_sa = broken  # type: ignore[method-assign]
    sim.move(OLD_COA)
    events = [e.event for e in sim.timeline.entries]
    assert events.index("refused") < events.index("read-back-failed") < events.index("migrate-failed")
    assert "bu-sent" not in events
    refused[0] = -1
    sim.move(NEW_COA)
    assert tables(sim) == expected(sim, NEW_COA)
    sim.go_home()
    assert tables(sim) == expected(sim, None)
    sim.close()


def test_the_home_agent_answers_130_when_its_migrate_fails() -> None:
    _, ha_config = seed_configs()
    agent = HomeAgentAgent(ha_config)
    bu = mip6.BindingUpdate(
        1, mip6.BUFlags.A | mip6.BUFlags.H, 150, (mip6.AlternateCareOfAddress(IPv6Address(OLD_COA)),)
    )
    steps = agent.received(mip6.encode(bu, HOA, HA), HOA, HA, IPv6Address(OLD_COA), 1000.0)
    assert any(isinstance(s, Configure) for s in steps)
    assert not any(isinstance(s, Send) for s in steps)  # no answer before the IPsec has moved
    after = agent.configured(HOA, errno.ENOMEM, "the engine is out of memory", 1000.1, why="move")
    [read_back] = [s for s in after if isinstance(s, Configure)]  # first: is the refusal still so?
    assert read_back.read_back
    assert not any(isinstance(s, Send) for s in after)
    after = agent.configured(HOA, errno.ENOMEM, "the engine is out of memory", 1000.2, why="move")
    [send] = [s for s in after if isinstance(s, Send)]
    ack = mip6.decode(send.data, HA, HOA)
    assert isinstance(ack, mip6.BindingAck)
    assert ack.status == mip6.BAStatus.INSUFFICIENT_RESOURCES


def test_a_home_agent_refuses_a_home_address_it_does_not_serve() -> None:
    _, ha_config = seed_configs()
    agent = HomeAgentAgent(ha_config)
    stranger = IPv6Address("3ffe:501:ffff:100::99")
    bu = mip6.BindingUpdate(1, mip6.BUFlags.A | mip6.BUFlags.H, 150)
    steps = agent.received(mip6.encode(bu, stranger, HA), stranger, HA, IPv6Address(OLD_COA), 1000.0)
    [send] = [s for s in steps if isinstance(s, Send)]
    ack = mip6.decode(send.data, HA, stranger)
    assert isinstance(ack, mip6.BindingAck)
    assert ack.status == mip6.BAStatus.NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE


@pytest.mark.parametrize("care_of", ["::", "ff02::1", "::1", "fe80::1", "::ffff:192.0.2.1", HOME_AGENT])
def test_a_binding_update_from_an_unusable_care_of_address_is_discarded(care_of: str) -> None:
    _, ha_config = seed_configs()
    agent = HomeAgentAgent(ha_config)

    def bu(sequence: int, coa: str) -> list[object]:
        update = mip6.BindingUpdate(
            sequence, mip6.BUFlags.A | mip6.BUFlags.H, 150, (mip6.AlternateCareOfAddress(IPv6Address(coa)),)
        )
        return list(agent.received(mip6.encode(update, HOA, HA), HOA, HA, IPv6Address(OLD_COA), 1000.0))

    steps = bu(1, care_of)
    assert [s.event for s in steps if isinstance(s, Note)] == ["bu-received", "bu-discarded"]
    assert not any(isinstance(s, Configure | Send) for s in steps)
    assert any(isinstance(s, Configure) for s in bu(2, OLD_COA))  # the cache was left as it was


@pytest.mark.parametrize("keep_trying", [True, False])
def test_a_mobile_node_without_answers_keeps_trying_unless_told_not_to(keep_trying: bool) -> None:
    mn_config, _ = seed_configs()
    agent = MobileNodeAgent(replace(mn_config, keep_trying=keep_trying))
    agent.moved(IPv6Address(OLD_COA), 0.0)
    sent = [s for s in agent.configured(0, "", 0.0, why="move") if isinstance(s, Send)]
    events: list[str] = []
    while (due := agent.timer()) is not None and due < 600.0:
        steps = agent.tick(due)
        sent += [s for s in steps if isinstance(s, Send)]
        events += [s.event for s in steps if isinstance(s, Note)]
    if keep_trying:  # 1, 2, 4, 8, 16, 32 s, then every 32 s (RFC 6275 §11.8)
        assert agent.timer() is not None
        assert len(sent) > 15
    else:
        assert agent.timer() is None
        assert len(sent) == 6
        assert "gave-up" in events


def test_a_binding_ack_from_anyone_but_the_home_agent_is_ignored() -> None:
    mn_config, _ = seed_configs()
    agent = MobileNodeAgent(mn_config)
    agent.moved(IPv6Address(OLD_COA), 1000.0)
    [send] = [s for s in agent.configured(0, "", 1000.01, why="move") if isinstance(s, Send)]
    update = mip6.decode(send.data, HOA, HA)
    assert isinstance(update, mip6.BindingUpdate)
    ack = mip6.BindingAck(mip6.BAStatus.ACCEPTED, mip6.BAFlags(0), update.sequence, 150)
    stranger = IPv6Address("3ffe:501:ffff:200::66")
    forged = agent.received(mip6.encode(ack, stranger, HOA), stranger, HOA, 1000.02)
    assert [(s.event, s.fields.get("why")) for s in forged if isinstance(s, Note)] == [
        ("mh-ignored", "not from the home agent")
    ]
    genuine = agent.received(mip6.encode(ack, HA, HOA), HA, HOA, 1000.03)
    assert "registered" in [s.event for s in genuine if isinstance(s, Note)]


def test_the_mobile_node_sends_its_bu_only_after_its_ipsec_moved() -> None:
    mn_config, _ = seed_configs()
    agent = MobileNodeAgent(mn_config)
    steps = agent.moved(IPv6Address(OLD_COA), 1000.0)
    assert [type(s) for s in steps if not isinstance(s, Note)] == [Configure]
    after = agent.configured(0, "", 1000.01, why="move")
    [send] = [s for s in after if isinstance(s, Send)]
    bu = mip6.decode(send.data, HOA, HA)
    assert isinstance(bu, mip6.BindingUpdate)
    assert bu.flags & mip6.BUFlags.H
    assert mip6.AlternateCareOfAddress(IPv6Address(OLD_COA)) in bu.options
    assert (send.src, send.dst, send.coa) == (HOA, HA, IPv6Address(OLD_COA))


def test_garbage_on_the_mobility_socket_is_noted_not_fatal() -> None:
    mn_config, ha_config = seed_configs()
    assert [s.event for s in MobileNodeAgent(mn_config).received(b"\x00", HA, HOA, 1.0) if isinstance(s, Note)] == [
        "mh-refused"
    ]
    steps = HomeAgentAgent(ha_config).received(b"\x3b\x00\x05", HOA, HA, IPv6Address(OLD_COA), 1.0)
    assert [s.event for s in steps if isinstance(s, Note)] == ["mh-refused"]


def test_the_demo_plays_the_journey_and_draws_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    picture = tmp_path / "timeline.svg"
    assert main(["demo", "--svg", str(picture)]) == 0
    out = capsys.readouterr().out
    assert "every move registered, IPsec followed, and home again" in out
    assert out.count("-> HA: BU") == 3
    assert out.count("HA -> MN: BA") == 3
    for coa in (OLD_COA, NEW_COA):
        assert f"=== the mobile node moves to {coa} ===" in out
        assert f"IKE heard MIGRATE dir=out kmaddress={coa}" in out  # the MN's key manager heard the move
        after = out.split(f"--- After the move to {coa}: the SAD and SPD ---")[1].split("===")[0]
        tunnels = [line for line in after.splitlines() if " SA " in line and " tunnel " in line]
        assert len(tunnels) == 8  # four on each end, all at the care-of address
        assert all(coa in line for line in tunnels)
    assert "--- At home: the SAD and SPD ---" in out
    svg = picture.read_text()
    assert svg.startswith("<svg")
    assert svg.count("BU") >= 3


def test_the_care_of_address_is_the_interfaces_global_address_off_the_home_prefix() -> None:
    mn_config, _ = seed_configs()
    away = [IPv6Address(OLD_COA)]
    at_home = [IPv6Address("3ffe:501:ffff:100::77")]
    assert location(mn_config, lambda _: away) == IPv6Address(OLD_COA)
    assert location(mn_config, lambda _: at_home) == HOME  # on the home link
    assert location(mn_config, lambda _: [HOA]) == HOME
    assert location(mn_config, lambda _: []) is None  # between links: no move at all
    assert location(mn_config, lambda _: [HOA, *away]) == IPv6Address(OLD_COA)  # the HoA is not a CoA
    both = [IPv6Address(NEW_COA), IPv6Address(OLD_COA)]
    assert location(mn_config, lambda _: both, IPv6Address(OLD_COA)) == IPv6Address(OLD_COA)  # still there: no move
    assert location(mn_config, lambda _: both, HOME) == IPv6Address(NEW_COA)


def test_interface_addresses_are_read_as_linux_lists_them(tmp_path: Path) -> None:
    table = tmp_path / "if_inet6"
    table.write_text(
        "3ffe05010fff05000001000200030004 02 40 00 00     mn0\n"  # global, usable
        "fe800000000000000000000000000001 02 40 20 80     mn0\n"  # link-local
        "3ffe05010fff04000001000200030004 02 40 00 40     mn0\n"  # tentative
        "3ffe05010fff01000001000200030004 01 80 00 10      lo\n"  # another interface
        "3ffe05010fff01000001000200030005 02 80 00 10     mn0\n"  # flagged home: set up for use away
        "3ffe05010fff03000001000200030004 02 40 00 20     mn0\n"  # deprecated: the link the node left
    )
    assert addresses("mn0", table) == [IPv6Address("3ffe:501:fff:500:1:2:3:4")]
    table.write_text("3ffe05010fff03000001000200030004 02 40 00 a0     mn0\n")  # deprecated (and permanent) alone
    assert addresses("mn0", table) == [IPv6Address("3ffe:501:fff:300:1:2:3:4")]


def test_the_home_agent_echoes_k_only_to_a_node_keyed_by_ike() -> None:
    config = load_ha(Path(__file__).resolve().parent.parent / "examples" / "ha.toml")
    assert config.allow_key_management_mobility
    agent = HomeAgentAgent(config)

    def k_echoed(hoa: str) -> bool:
        update = mip6.BindingUpdate(1, mip6.BUFlags.A | mip6.BUFlags.H | mip6.BUFlags.K, 150)
        home = IPv6Address(hoa)
        steps = agent.received(mip6.encode(update, home, HA), home, HA, IPv6Address(OLD_COA), 1000.0)
        while (configure := next((s for s in steps if isinstance(s, Configure)), None)) is not None:
            steps = agent.configured(configure.hoa, 0, "", 1000.0, why=configure.why)
        [ack] = [mip6.decode(s.data, HA, home) for s in steps if isinstance(s, Send)]
        assert isinstance(ack, mip6.BindingAck)
        assert ack.status == mip6.BAStatus.ACCEPTED
        return bool(ack.flags & mip6.BAFlags.K)

    assert not k_echoed("3ffe:501:ffff:100:1:2:3:4")  # keyed by hand: no IKE SA to keep
    assert k_echoed("3ffe:501:ffff:100::beef")  # keyed by IKE


@pytest.mark.parametrize("side", ["mn", "ha"])
def test_a_tunnel_sa_deleted_behind_the_agents_back_is_noticed_at_the_move_and_put_back(side: str) -> None:
    """Moves named by old endpoints, as on Linux, are followed by a check of each SA."""
    mn_config, ha_config = seed_configs()
    sim = Simulation(mn_config, ha_config, by_reqid=False)
    sim.move(OLD_COA)
    engine = sim.mn_engine if side == "mn" else sim.ha_engine
    tunnel = next(sa for sa in engine.dump_sas() if str(sa.dst) == OLD_COA)
    engine.delete_sa(tunnel.dst, tunnel.spi, tunnel.proto)  # someone else's doing
    sim.move(NEW_COA)
    who = "MN" if side == "mn" else "HA"
    notes = [e for e in sim.timeline.entries if e.event == "divergence" and e.who == who]
    assert [n.fields["errno"] for n in notes] == [errno.ENODATA]
    assert f"0x{tunnel.spi:08x}" in str(notes[0].fields["reason"])
    assert tables(sim) == expected(sim, NEW_COA)
    sim.close()


def test_on_an_engine_with_linux_semantics_the_agents_name_old_endpoints_and_never_diverge() -> None:
    def linux_engines(host: str) -> tuple[KeyEngine, KeyEngine]:
        hub = Hub(Engine(semantics="linux"))
        engine, listener = open_inprocess(hub), open_inprocess(hub)
        listener.subscribe()
        return engine, listener

    mn_config, ha_config = seed_configs()
    sim = Simulation(mn_config, ha_config, engines=linux_engines)
    assert not sim.mn.by_reqid
    for coa in (OLD_COA, NEW_COA):
        sim.move(coa)
        assert tables(sim) == expected(sim, coa)
    sim.go_home()
    assert tables(sim) == expected(sim, None)
    assert not [e for e in sim.timeline.entries if e.event == "divergence"]
    heard = [e for e in sim.timeline.entries if e.event == "IKE heard MIGRATE" and e.who == "MN engine"]
    assert {e.fields["kmaddress"] for e in heard} >= {OLD_COA, NEW_COA}
    sim.close()


@pytest.mark.parametrize("by_reqid", [True, False])
def test_returning_home_without_one_of_the_tunnel_sas_still_removes_them_all(by_reqid: bool) -> None:
    mn_config, ha_config = seed_configs()
    sim = Simulation(mn_config, ha_config, by_reqid=by_reqid)
    sim.move(OLD_COA)
    tunnel = next(sa for sa in sim.mn_engine.dump_sas() if str(sa.dst) == OLD_COA)
    sim.mn_engine.delete_sa(tunnel.dst, tunnel.spi, tunnel.proto)  # someone else's doing
    sim.go_home()
    assert tables(sim) == expected(sim, None)
    assert not [e for e in sim.timeline.entries if e.event == "migrate-failed"]
    sim.close()


@pytest.mark.parametrize(
    ("move_error", "status", "carried"), [(0, 0, ["home", "move"]), (errno.ENOMEM, 130, ["home", "move", "move"])]
)
def test_a_bu_after_its_binding_expired_is_answered_after_its_own_migrate(
    move_error: int, status: int, carried: list[str]
) -> None:
    """A Binding Update that finds its binding expired (no timer ran in between) makes the
    cache restore the SAs home, then move them for the new registration. The end of the
    restore is not the end of that move: the acknowledgement waits for the move, and says
    130 if it failed (RFC 4877), which a refusal is once reading back did not help."""
    _, ha_config = seed_configs()
    agent = HomeAgentAgent(ha_config)

    def register(sequence: int, now: float) -> list[tuple[list[str], int]]:
        update = mip6.BindingUpdate(sequence, mip6.BUFlags.A | mip6.BUFlags.H, 15)  # 60 s
        pending = list(agent.received(mip6.encode(update, HOA, HA), HOA, HA, IPv6Address(OLD_COA), now))
        done: list[str] = []
        answers: list[tuple[list[str], int]] = []
        while pending:
            step = pending.pop(0)
            if isinstance(step, Configure):
                done.append(step.why)
                error = move_error if step.why == "move" and sequence > 1 else 0
                pending[:0] = agent.configured(step.hoa, error, "refused", now, why=step.why)
            elif isinstance(step, Send):
                ack = mip6.decode(step.data, HA, HOA)
                assert isinstance(ack, mip6.BindingAck)
                answers.append((list(done), int(ack.status)))
        return answers

    assert register(1, 0.0) == [(["move"], 0)]
    assert register(2, 1000.0) == [(carried, status)]


def test_only_a_node_served_as_a_mobile_router_may_register_as_one() -> None:
    """RFC 3963: R from a plain mobile node is answered 140, even when the home agent
    serves another node as a mobile router."""
    config = parse(
        """role = "ha"
[home_agent]
address = "2001:db8::1"
prefix_length = 64
[ipsec]
keying = "ike"
protect = ["bu-ba", "payload"]
[[mobile_nodes]]
home_address = "2001:db8::100"
[[mobile_nodes]]
home_address = "2001:db8::200"
mobile_network_prefixes = ["2001:db8:99::/48"]
""",
        "<ha>",
        role=None,
    )
    assert isinstance(config, HAConfig)
    agent = HomeAgentAgent(config)
    ha, coa = IPv6Address("2001:db8::1"), IPv6Address("2001:db8:5::7")

    def answer(hoa: str) -> list[Step]:
        home = IPv6Address(hoa)
        update = mip6.BindingUpdate(1, mip6.BUFlags.A | mip6.BUFlags.H | mip6.BUFlags.R, 100)
        return agent.received(mip6.encode(update, home, ha), home, ha, coa, 0.0)

    [refusal] = [s for s in answer("2001:db8::100") if isinstance(s, Send)]
    ack = mip6.decode(refusal.data, ha, IPv6Address("2001:db8::100"))
    assert isinstance(ack, mip6.BindingAck)
    assert ack.status == mip6.BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED
    assert [type(s) for s in answer("2001:db8::200") if not isinstance(s, Note)] == [Configure]  # (accepted: moving)


def test_the_home_agent_answers_an_unknown_mh_type_with_a_binding_error() -> None:
    """RFC 6275 §9.2: discarded, and a Binding Error (status 2) goes straight to the
    packet's source, naming the home address; at most one a second."""
    _, ha_config = seed_configs()
    agent = HomeAgentAgent(ha_config)
    coa = IPv6Address(OLD_COA)
    unknown = mip6.encode(mip6.UnknownMessage(mip6.MHType.of(42), bytes(10)), HOA, HA)
    [send] = [s for s in agent.received(unknown, HOA, HA, coa, 10.0) if isinstance(s, Send)]
    assert (send.src, send.dst) == (HA, coa)
    error = mip6.decode(send.data, HA, coa)
    assert error == mip6.BindingError(HOA, mip6.BEStatus.UNRECOGNIZED_MH_TYPE)
    assert not [s for s in agent.received(unknown, HOA, HA, coa, 10.5) if isinstance(s, Send)]
    assert [s for s in agent.received(unknown, HOA, HA, coa, 11.0) if isinstance(s, Send)]
    assert agent.cache.binding(HOA) is None


@pytest.mark.parametrize(
    ("status", "gives_up"),
    [(mip6.BEStatus.UNRECOGNIZED_MH_TYPE, True), (mip6.BEStatus.UNKNOWN_BINDING_FOR_HOME_ADDRESS, False)],
)
def test_a_binding_error_from_the_home_agent_ends_a_registration_it_cannot_take(
    status: mip6.BEStatus, gives_up: bool
) -> None:
    """RFC 6275 §11.3.6: status 2 says the home agent does not know Binding Updates, so
    retransmitting is pointless; status 1 is about a data packet and changes nothing."""
    mn_config, _ = seed_configs()
    agent = MobileNodeAgent(mn_config)
    agent.moved(IPv6Address(OLD_COA), 0.0)
    agent.configured(0, "", 0.0, why="move")  # the SAs moved; the Binding Update is out
    error = mip6.encode(mip6.BindingError(HOA, status), HA, HOA)
    stranger = IPv6Address("3ffe:501:ffff:200::66")
    agent.received(mip6.encode(mip6.BindingError(HOA, status), stranger, HOA), stranger, HOA, 0.4)
    assert agent.registration.state.value == "registering"  # (only the home agent's counts)
    steps = agent.received(error, HA, HOA, 0.5)
    assert ("gave-up" in [s.event for s in steps if isinstance(s, Note)]) is gives_up
    assert (agent.registration.state.value == "failed") is gives_up
    assert (agent.timer() is None) is gives_up


def test_a_daemon_whose_key_engine_goes_away_stops_with_the_reason() -> None:
    """keyd gone under a daemon: no traceback, the reason, and the promise a restart keeps
    (it reconciles its tables before anything else)."""

    class Abandoned:
        def turn(self) -> None:
            raise ConnectionResetError(errno.ECONNRESET, "keyd closed the connection")

    with pytest.raises(CommandError) as stopped:
        serve(Abandoned(), lambda: False)  # type: ignore[arg-type]
    assert str(stopped.value).startswith("stopping: keyd closed the connection; started again")


def test_a_move_that_supersedes_one_still_being_settled_starts_from_a_read_back() -> None:
    """The way home lost its answers and waits to read back when the node moves again:
    the tables are then where no plan starts from (half home, say), so the new move is a
    read-back toward its care-of address, not a batch that assumes the node was home
    (which left a tunnel SA at the home address behind, found by the lossy world)."""
    mn_config, _ = seed_configs()
    agent = MobileNodeAgent(mn_config)
    agent.moved(IPv6Address(OLD_COA), 0.0)
    [send] = [s for s in agent.configured(0, "", 0.0, why="move") if isinstance(s, Send)]
    update = mip6.decode(send.data, HOA, HA)
    assert isinstance(update, mip6.BindingUpdate)
    agent.received(
        mip6.encode(mip6.BindingAck(mip6.BAStatus.ACCEPTED, mip6.BAFlags(0), update.sequence, 150), HA, HOA),
        HA,
        HOA,
        0.1,
    )
    [send] = [s for s in agent.returned_home(1.0) if isinstance(s, Send)]
    update = mip6.decode(send.data, HOA, HA)
    assert isinstance(update, mip6.BindingUpdate)
    ack = mip6.BindingAck(mip6.BAStatus.ACCEPTED, mip6.BAFlags(0), update.sequence, 0)
    [restore] = [s for s in agent.received(mip6.encode(ack, HA, HOA), HA, HOA, 1.1) if isinstance(s, Configure)]
    assert (restore.why, restore.read_back) == ("home", False)
    [read_back] = [s for s in agent.configured(errno.ETIMEDOUT, "lost", 1.2, why="home") if isinstance(s, Configure)]
    assert read_back.read_back
    assert not [s for s in agent.configured(errno.ETIMEDOUT, "lost", 1.2, why="home") if isinstance(s, Configure)]
    [move] = [s for s in agent.moved(IPv6Address(NEW_COA), 1.25) if isinstance(s, Configure)]
    assert (move.why, move.read_back, move.changes) == ("move", True, ())
    assert move.goal == policies.mn_goal(mn_config, NEW_COA)
    assert agent.settler.timer() is None, "the read-back home was superseded"
