"""The home agent's binding cache, one rule at a time, each with its source."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest

from pfmigrate.mobility.binding import (
    UNKNOWN_PLACE,
    BindingAck,
    BindingUpdate,
    Ignored,
    MigrateDone,
    MigrateFailed,
    MigrateIPsec,
    RestoreHome,
    TimerFired,
)
from pfmigrate.mobility.cache import (
    Binding,
    BindingAccepted,
    BindingCache,
    BindingRemoved,
    BindingUpdateReceived,
    CacheState,
    HaAction,
    HomeAgentConfig,
    SendBindingAck,
)
from pfmigrate.mobility.rfc6275 import BAStatus

PREFIX = IPv6Network("2001:db8:1::/64")
HOA = IPv6Address("2001:db8:1::100")
HOA2 = IPv6Address("2001:db8:1::200")
COA1 = IPv6Address("2001:db8:5::1")
COA2 = IPv6Address("2001:db8:6::1")


def cache(**config: object) -> BindingCache:
    return BindingCache(HomeAgentConfig((PREFIX,), **config))  # type: ignore[arg-type]


def bu(
    seq: int, lifetime: int = 600, *, coa: IPv6Address = COA1, hoa: IPv6Address = HOA, **flags: bool
) -> BindingUpdateReceived:
    return BindingUpdateReceived(hoa, coa, BindingUpdate(seq, lifetime, **flags))


def acks(actions: tuple[HaAction, ...]) -> list[BindingAck]:
    return [a.ack for a in actions if isinstance(a, SendBindingAck)]


def the_ack(actions: tuple[HaAction, ...]) -> BindingAck:
    (ack,) = acks(actions)
    return ack


def bound(c: BindingCache, seq: int = 10, now: float = 0.0, *, key_management: bool = False) -> BindingCache:
    c.handle(bu(seq, key_management=key_management), now)
    c.handle(MigrateDone(HOA), now)
    assert c.state(HOA) is CacheState.BOUND
    return c


def test_a_first_registration_moves_the_sas_then_answers() -> None:
    """RFC 6275 §10.3.1, with the migrate first: no acknowledgement until the SAs, taken
    to sit at the home address before, use the care-of address."""
    c = cache()
    assert c.handle(bu(10, key_management=True), 0.0) == (MigrateIPsec(HOA, HOA, COA1, move_ike=True),)
    assert c.state(HOA) is CacheState.MIGRATING
    actions = c.handle(MigrateDone(HOA), 0.2)
    assert actions == (
        SendBindingAck(HOA, COA1, BindingAck(BAStatus.ACCEPTED, 10, 600, key_management=True)),
        BindingAccepted(HOA, COA1, 600, 600.2, key_management=True, mobile_router=False),
    )
    assert c.binding(HOA) == Binding(HOA, COA1, 600.2, 10, True, False)


def test_a_failed_migrate_is_answered_130() -> None:
    """RFC 6275 §6.1.8: 130, insufficient resources, and no binding is made; the move
    may have been carried out in part, so the SAs are restored home from a place not known."""
    c = cache()
    c.handle(bu(10), 0.0)
    actions = c.handle(MigrateFailed(HOA, "ENOMEM"), 0.1)
    assert actions == (
        SendBindingAck(HOA, COA1, BindingAck(BAStatus.INSUFFICIENT_RESOURCES, 10)),
        RestoreHome(HOA, UNKNOWN_PLACE, False, "IPsec migrate failed: ENOMEM"),
    )
    assert c.state(HOA) is CacheState.ABSENT
    assert len(c) == 0


def test_a_failed_migrate_ends_the_earlier_binding_and_the_node_may_register_again() -> None:
    """Where the SAs are is not known after a failed move, so the earlier binding cannot
    be said to stand: it goes, the SAs are restored home (read back), and the mobile
    node's retransmission (130 is worth another try) registers afresh."""
    c = bound(cache())
    assert c.handle(bu(11, coa=COA2), 5.0) == (MigrateIPsec(HOA, COA1, COA2, move_ike=False),)
    actions = c.handle(MigrateFailed(HOA, "EBUSY"), 5.1)
    assert the_ack(actions).status == BAStatus.INSUFFICIENT_RESOURCES
    assert [type(a) for a in actions] == [SendBindingAck, BindingRemoved, RestoreHome]
    assert c.state(HOA) is CacheState.ABSENT
    assert c.handle(bu(12, coa=COA2), 6.0) == (MigrateIPsec(HOA, HOA, COA2, move_ike=False),)


def test_the_granted_lifetime_is_capped() -> None:
    """RFC 6275 §10.3.1: the home agent may grant less than asked."""
    c = bound(cache(max_lifetime=120))
    binding = c.binding(HOA)
    assert binding is not None
    assert binding.expires_at == 120.0
    assert the_ack(c.handle(bu(11, 60), 1.0)).lifetime == 60


@pytest.mark.parametrize(("allowed", "asked"), [(True, True), (True, False), (False, True), (False, False)])
def test_k_is_echoed_only_when_asked_and_allowed(allowed: bool, asked: bool) -> None:
    """RFC 6275 §10.3.1: K in the acknowledgement when the Binding Update had it and the
    home agent can move its key management endpoint; that move is the migrate's."""
    c = cache(key_management=allowed)
    (migrate,) = c.handle(bu(10, key_management=asked), 0.0)
    assert isinstance(migrate, MigrateIPsec)
    assert migrate.move_ike is (allowed and asked)
    assert the_ack(c.handle(MigrateDone(HOA), 0.1)).key_management is (allowed and asked)


@pytest.mark.parametrize("seq", [10, 9, 10 - 32767])
def test_a_sequence_number_not_newer_is_answered_135(seq: int) -> None:
    """RFC 6275 §9.5.1: not greater modulo 2**16 than the last accepted (10): status 135
    carrying that last accepted number; the binding is unchanged."""
    c = bound(cache())
    actions = c.handle(bu(seq % 65536, coa=COA2), 1.0)
    assert actions == (SendBindingAck(HOA, COA2, BindingAck(BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, 10)),)
    binding = c.binding(HOA)
    assert binding is not None
    assert (binding.coa, binding.sequence) == (COA1, 10)


def test_a_sequence_number_half_the_space_ahead_is_newer() -> None:
    """§9.5.1's example: after 15, 32783 is greater (TAHI's BU_SEQ_MAX test)."""
    c = bound(cache(), seq=15)
    assert the_ack(c.handle(bu(32783), 1.0)).status == BAStatus.ACCEPTED


def test_sequence_numbers_wrap() -> None:
    """RFC 6275 §9.5.1: 0 comes after 65535."""
    c = bound(cache(), seq=65535)
    assert the_ack(c.handle(bu(0), 1.0)).status == BAStatus.ACCEPTED


def test_a_refresh_from_the_same_care_of_address_is_answered_at_once() -> None:
    """Nothing moves, so nothing waits: the expiry is renewed from now."""
    c = bound(cache())
    actions = c.handle(bu(11), 300.0)
    assert [type(a) for a in actions] == [SendBindingAck, BindingAccepted]
    assert c.timer() == 900.0


def test_deregistration_removes_the_binding() -> None:
    """RFC 6275 §10.3.2: delete the entry, answer status 0 with lifetime 0, and the SAs
    go back to the home address."""
    c = bound(cache(), key_management=True)
    actions = c.handle(bu(11, 0, coa=HOA, key_management=True), 50.0)
    assert actions == (
        SendBindingAck(HOA, HOA, BindingAck(BAStatus.ACCEPTED, 11, 0, key_management=True)),
        BindingRemoved(HOA, COA1, "deregistered"),
        RestoreHome(HOA, COA1, True, "deregistered"),
    )
    assert (c.state(HOA), len(c), c.timer()) == (CacheState.ABSENT, 0, None)


def test_a_care_of_address_equal_to_the_home_address_deregisters() -> None:
    """RFC 6275 §9.5.1: even with a lifetime, that is a request to delete."""
    c = bound(cache())
    assert the_ack(c.handle(bu(11, 600, coa=HOA), 1.0)).lifetime == 0
    assert c.state(HOA) is CacheState.ABSENT


def test_deregistration_without_a_binding_is_answered_133() -> None:
    """RFC 6275 §10.3.2: no home registration entry for this mobile node."""
    assert the_ack(cache().handle(bu(3, 0, coa=HOA), 0.0)).status == BAStatus.NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE


def test_a_binding_expires() -> None:
    """RFC 6275 §10.3.1: the binding lasts its granted lifetime."""
    c = bound(cache())
    assert c.timer() == 600.0
    assert c.handle(TimerFired(), 599.0) == ()
    assert c.handle(TimerFired(), 600.0) == (
        BindingRemoved(HOA, COA1, "lifetime ran out"),
        RestoreHome(HOA, COA1, False, "lifetime ran out"),
    )
    assert (c.state(HOA), c.timer()) == (CacheState.ABSENT, None)


def test_expiry_comes_before_any_later_input() -> None:
    """A binding past its expiry is gone whatever input comes next: a Binding Update
    then is a first registration again, any sequence number welcome."""
    c = bound(cache())
    actions = c.handle(bu(3), 700.0)
    assert [type(a) for a in actions] == [BindingRemoved, RestoreHome, MigrateIPsec]
    assert actions[-1] == MigrateIPsec(HOA, HOA, COA1, move_ike=False)


def test_a_home_address_outside_the_home_prefixes_is_answered_132() -> None:
    """RFC 6275 §10.3.1: not home subnet."""
    outside = IPv6Address("2001:db8:2::1")
    assert the_ack(cache().handle(bu(1, hoa=outside), 0.0)).status == BAStatus.NOT_HOME_SUBNET


def test_h_cleared_for_a_home_registration_is_answered_139() -> None:
    """RFC 6275 §9.5.1: registration type change disallowed; the entry is unchanged."""
    c = bound(cache())
    assert the_ack(c.handle(bu(11, home=False), 1.0)) == BindingAck(BAStatus.REGISTRATION_TYPE_CHANGE_DISALLOWED, 11)
    assert c.state(HOA) is CacheState.BOUND


def test_a_correspondent_registration_is_ignored() -> None:
    """Without H and without a binding, a Binding Update is for a correspondent node,
    which needs return routability this home agent does not do (§9.5.1)."""
    c = cache()
    assert [type(a) for a in c.handle(bu(1, home=False), 0.0)] == [Ignored]
    assert len(c) == 0


def test_r_needs_mobile_router_support() -> None:
    """RFC 3963: R from a node not served as a mobile router is answered 140 (even when
    another node is one); from one that is, R is echoed."""
    assert (
        the_ack(cache().handle(bu(1, mobile_router=True), 0.0)).status == BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED
    )
    c = cache(mobile_routers=frozenset({HOA}))
    c.handle(bu(1, mobile_router=True), 0.0)
    assert the_ack(c.handle(MigrateDone(HOA), 0.1)).mobile_router
    refused = the_ack(c.handle(bu(1, mobile_router=True, hoa=HOA2), 0.2))
    assert refused.status == BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED


def test_a_newer_update_during_a_migrate_is_the_one_answered() -> None:
    """Only the latest Binding Update is outstanding at the mobile node (§11.7.3)."""
    c = cache()
    c.handle(bu(10), 0.0)
    assert c.handle(bu(11), 1.0) == ()
    assert the_ack(c.handle(MigrateDone(HOA), 1.1)).sequence == 11


def test_a_move_during_a_migrate_moves_on_after_it() -> None:
    """One migrate at a time; the next starts where the first ended."""
    c = cache()
    c.handle(bu(10), 0.0)
    c.handle(bu(11, coa=COA2), 0.1)
    assert c.handle(MigrateDone(HOA), 0.2) == (MigrateIPsec(HOA, COA1, COA2, move_ike=False),)
    ack = the_ack(c.handle(MigrateDone(HOA), 0.3))
    assert (ack.status, ack.sequence) == (BAStatus.ACCEPTED, 11)
    binding = c.binding(HOA)
    assert binding is not None
    assert binding.coa == COA2


def test_a_deregistration_during_a_migrate_waits_for_it() -> None:
    """RFC 6275 §10.3.2 once the SAs have landed; then they go home from there."""
    c = bound(cache())
    c.handle(bu(11, coa=COA2), 1.0)
    assert c.handle(bu(12, 0, coa=HOA), 1.1) == ()
    actions = c.handle(MigrateDone(HOA), 1.2)
    assert the_ack(actions) == BindingAck(BAStatus.ACCEPTED, 12, 0)
    assert BindingRemoved(HOA, COA1, "deregistered") in actions
    assert RestoreHome(HOA, COA2, False, "deregistered") in actions


def test_the_old_binding_may_expire_during_a_migrate() -> None:
    """The binding being replaced keeps its own expiry."""
    c = bound(cache(max_lifetime=8))
    c.handle(bu(11, coa=COA2), 1.0)
    assert c.handle(TimerFired(), 8.0) == (BindingRemoved(HOA, COA1, "lifetime ran out"),)
    assert c.state(HOA) is CacheState.MIGRATING
    assert [type(a) for a in c.handle(MigrateDone(HOA), 9.0)] == [SendBindingAck, BindingAccepted]


@pytest.mark.parametrize("result", [MigrateDone(HOA), MigrateFailed(HOA, "x")])
def test_a_migrate_result_nobody_waits_for_is_ignored(result: MigrateDone | MigrateFailed) -> None:
    """The result of a migrate the cache did not ask for changes nothing."""
    c = bound(cache())
    assert [type(a) for a in c.handle(result, 1.0)] == [Ignored]
    assert [type(a) for a in cache().handle(result, 1.0)] == [Ignored]


def test_the_timer_is_the_earliest_expiry_of_all_entries() -> None:
    """One timer for the whole cache; replaced expiries do not fire."""
    c = bound(cache(max_lifetime=100))
    c.handle(bu(1, hoa=HOA2, coa=COA2), 10.0)
    c.handle(MigrateDone(HOA2), 10.0)
    assert c.timer() == 100.0
    c.handle(bu(11), 50.0)  # refresh: HOA now expires at 150
    assert c.timer() == 110.0
    assert [a for a in c.handle(TimerFired(), 110.0) if isinstance(a, BindingRemoved)] == [
        BindingRemoved(HOA2, COA2, "lifetime ran out")
    ]
    assert c.timer() == 150.0


# --- paths an audit found no test for ----------------------------------------------------------------

COA3 = IPv6Address("2001:db8:7::1")


def test_a_failed_move_on_after_a_move_drops_a_binding_whose_sas_are_elsewhere() -> None:
    """Bound at COA1; a BU from COA2 moves the SAs there; one from COA3 arrives meanwhile,
    and its move fails: the binding (COA1) no longer matches where the SAs are (COA2), so
    it is dropped and the SAs go home from wherever the failed move left them."""
    c = bound(cache())  # at COA1, sequence 10
    c.handle(bu(11, coa=COA2), 1.0)
    assert c.state(HOA) is CacheState.MIGRATING
    c.handle(bu(12, coa=COA3), 1.1)
    (move_on,) = c.handle(MigrateDone(HOA), 1.2)
    assert move_on == MigrateIPsec(HOA, COA2, COA3, False)
    actions = c.handle(MigrateFailed(HOA, "refused"), 1.3)
    assert the_ack(actions) == BindingAck(BAStatus.INSUFFICIENT_RESOURCES, 12)
    assert RestoreHome(HOA, UNKNOWN_PLACE, False, "IPsec migrate failed: refused") in actions
    assert c.state(HOA) is CacheState.ABSENT


def test_a_refusal_during_a_migrate_is_answered_at_once_and_changes_nothing() -> None:
    """R from a node not served as a mobile router, while its move runs: 140 now, and
    the move goes on for the Binding Update it was for."""
    c = cache()
    c.handle(bu(1), 0.0)
    assert the_ack(c.handle(bu(2, mobile_router=True), 0.1)) == BindingAck(
        BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED, 2
    )
    accepted = the_ack(c.handle(MigrateDone(HOA), 0.2))
    assert (accepted.status, accepted.sequence, accepted.mobile_router) == (BAStatus.ACCEPTED, 1, False)


def test_a_mobile_routers_deregistration_is_acknowledged_with_r() -> None:
    """RFC 3963: the acknowledgement of a mobile router's deregistration keeps R."""
    c = cache(mobile_routers=frozenset({HOA}))
    c.handle(bu(1, mobile_router=True), 0.0)
    c.handle(MigrateDone(HOA), 0.1)
    ack = the_ack(c.handle(bu(2, 0, coa=HOA, mobile_router=True), 1.0))  # back home (the SAs follow)
    assert (ack.status, ack.lifetime, ack.mobile_router) == (BAStatus.ACCEPTED, 0, True)
