"""The mobile node's home registration, one rule at a time, each with its source."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfmigrate.mobility.binding import (
    UNKNOWN_PLACE,
    BindingAck,
    Ignored,
    MigrateDone,
    MigrateFailed,
    MigrateIPsec,
    RestoreHome,
    TimerFired,
    seq_newer,
)
from pfmigrate.mobility.bul import (
    BindingAckReceived,
    BindingEstablished,
    BindingLost,
    BindingRejected,
    ErrorReceived,
    GaveUp,
    HomeRegistration,
    MnAction,
    MnState,
    MobileNodeConfig,
    Moved,
    ReturnedHome,
    SendBindingUpdate,
)
from pfmigrate.mobility.rfc6275 import BAStatus

HOA = IPv6Address("2001:db8:1::100")
COA1 = IPv6Address("2001:db8:5::1")
COA2 = IPv6Address("2001:db8:6::1")


def node(**config: object) -> HomeRegistration:
    return HomeRegistration(MobileNodeConfig(HOA, **config))  # type: ignore[arg-type]


def state(m: HomeRegistration) -> MnState:
    """The state, read through a call so that type narrowing does not outlive a step."""
    return m.state


def sends(actions: tuple[MnAction, ...]) -> list[SendBindingUpdate]:
    return [a for a in actions if isinstance(a, SendBindingUpdate)]


def the_send(actions: tuple[MnAction, ...]) -> SendBindingUpdate:
    (send,) = sends(actions)
    return send


def ack(
    m: HomeRegistration, status: int = 0, lifetime: int = 600, *, k: bool = True, seq: int | None = None
) -> BindingAckReceived:
    return BindingAckReceived(BindingAck(BAStatus(status), m.sequence if seq is None else seq, lifetime, k))


def registering(m: HomeRegistration, now: float = 0.0) -> HomeRegistration:
    m.handle(Moved(COA1), now)
    m.handle(MigrateDone(HOA), now)
    return m


def registered(m: HomeRegistration, now: float = 0.0, lifetime: int = 600, *, k: bool = True) -> HomeRegistration:
    registering(m, now)
    m.handle(ack(m, lifetime=lifetime, k=k), now)
    assert state(m) is MnState.REGISTERED
    return m


def test_ipsec_moves_before_the_binding_update() -> None:
    """RFC 4877/3776: the tunnel-mode SAs use the care-of address, so they move first;
    RFC 6275 §11.7.1: the Binding Update to the home agent has A and H set."""
    m = node()
    actions = m.handle(Moved(COA1), 0.0)
    assert actions == (MigrateIPsec(HOA, HOA, COA1, move_ike=True),)
    assert state(m) is MnState.MIGRATING
    assert m.timer() is None
    send = the_send(m.handle(MigrateDone(HOA), 0.5))
    assert send.coa == COA1
    assert (send.bu.ack, send.bu.home, send.bu.key_management, send.bu.lifetime) == (True, True, True, 600)
    assert send.bu.sequence == 1
    assert state(m) is MnState.REGISTERING


def test_a_failed_migrate_sends_no_binding_update() -> None:
    """No Binding Update may go out for a care-of address the SAs could not move to."""
    m = node()
    m.handle(Moved(COA1), 0.0)
    actions = m.handle(MigrateFailed(HOA, "ENOENT"), 0.1)
    assert not sends(actions)
    assert [type(a) for a in actions] == [GaveUp]
    assert state(m) is MnState.FAILED
    assert m.sa_coa == UNKNOWN_PLACE, "a move that failed may have been carried out in part"


def test_a_failed_migrate_is_retried_on_the_machines_own_schedule() -> None:
    """FAILED after a migrate that failed does not wait for the next movement: it tries
    again after 1 s, 2 s, 4 s ... up to 32 s, and a success registers as usual."""
    m = node()
    m.handle(Moved(COA1), 0.0)
    now, waits = 0.0, []
    for _ in range(8):
        m.handle(MigrateFailed(HOA, "refused"), now)
        assert state(m) is MnState.FAILED
        due = m.timer()
        assert due is not None
        waits.append(due - now)
        assert m.handle(TimerFired(), due - 0.01) == ()  # not before its time
        now = due
        assert m.handle(TimerFired(), now) == (MigrateIPsec(HOA, UNKNOWN_PLACE, COA1, move_ike=True),)
        assert state(m) is MnState.MIGRATING
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 32.0, 32.0]
    assert the_send(m.handle(MigrateDone(HOA), now + 0.1)).coa == COA1


def test_after_a_failed_move_the_way_home_and_the_same_place_again_start_from_a_place_not_known() -> None:
    """A failed move may have been carried out in part: coming home restores the SAs
    home from where they may be, and a move back to where the machine thought they were
    moves them too, instead of registering as if they were there."""
    m = node()
    m.handle(Moved(COA1), 0.0)
    m.handle(MigrateDone(HOA), 0.1)
    m.handle(Moved(COA2), 1.0)
    m.handle(MigrateFailed(HOA, "answers lost"), 1.1)
    assert m.handle(Moved(COA1), 2.0) == (MigrateIPsec(HOA, UNKNOWN_PLACE, COA1, move_ike=True),)
    m.handle(MigrateFailed(HOA, "answers lost"), 2.1)
    home = m.handle(ReturnedHome(), 3.0)
    assert not [a for a in home if isinstance(a, RestoreHome)]  # a deregistration first
    the_send(home)
    restored = m.handle(ack(m, 0, 0), 3.1)
    assert [a for a in restored if isinstance(a, RestoreHome)] == [
        RestoreHome(HOA, UNKNOWN_PLACE, True, "deregistered")
    ]


def test_a_refusal_that_says_this_home_agent_will_not_serve_waits_for_a_movement() -> None:
    m = registering(node())
    m.handle(ack(m, 129, 0), 0.5)
    assert state(m) is MnState.FAILED
    assert m.timer() is None


def test_moving_on_during_a_migrate_migrates_again_before_registering() -> None:
    """A second movement waits for the first migrate, then moves the SAs on."""
    m = node()
    m.handle(Moved(COA1), 0.0)
    assert m.handle(Moved(COA2), 0.1) == ()
    assert m.handle(MigrateDone(HOA), 0.2) == (MigrateIPsec(HOA, COA1, COA2, move_ike=True),)
    assert the_send(m.handle(MigrateDone(HOA), 0.3)).coa == COA2


def test_first_registration_backs_off_from_1_5_s_to_32_s_then_gives_up() -> None:
    """RFC 6275 §11.8 and §13: InitialBindackTimeoutFirstReg (1.5 s) when the home agent
    holds no binding, doubling to MAX_BINDACK_TIMEOUT (32 s); each retransmission is a new
    Binding Update with the next sequence number (§11.7.1)."""
    m = registering(node())
    waits, seqs, now = [], [m.sequence], 0.0
    while state(m) is MnState.REGISTERING:
        due = m.timer()
        assert due is not None
        waits.append(due - now)
        now = due
        actions = m.handle(TimerFired(), now)
        seqs += [s.bu.sequence for s in sends(actions)]
    assert waits == [1.5, 3.0, 6.0, 12.0, 24.0, 32.0]
    assert seqs == [1, 2, 3, 4, 5, 6]
    assert state(m) is MnState.FAILED
    assert isinstance(actions[-1], GaveUp)


def test_reregistration_starts_from_1_s_while_the_home_agent_holds_a_binding() -> None:
    """RFC 6275 §11.8: INITIAL_BINDACK_TIMEOUT (1 s) when a binding exists there."""
    m = registered(node())
    m.handle(Moved(COA2), 10.0)
    m.handle(MigrateDone(HOA), 10.0)
    assert m.timer() == 11.0


def test_retry_forever_goes_on_every_32_s() -> None:
    """RFC 6275 §11.8: the mobile node MAY go on sending at the slower rate."""
    m = registering(node(retry_forever=True))
    now = 0.0
    for _ in range(12):
        due = m.timer()
        assert due is not None
        assert due - now <= 32.0
        now = due
        assert not any(isinstance(a, GaveUp) for a in m.handle(TimerFired(), now))
    assert m.interval == 32.0
    assert state(m) is MnState.REGISTERING


def test_early_or_repeated_timer_does_nothing() -> None:
    """A timer that fires before its time sends nothing."""
    m = registering(node())
    assert m.handle(TimerFired(), 1.0) == ()
    assert m.handle(TimerFired(), 1.0) == ()


def test_sequence_numbers_wrap_modulo_2_16() -> None:
    """RFC 6275 §9.5.1: a free-running 16-bit counter."""
    m = HomeRegistration(MobileNodeConfig(HOA), sequence=65535)
    registering(m)
    assert m.sequence == 0


def test_status_135_resends_at_once_with_the_next_number() -> None:
    """RFC 6275 §11.7.1: 135 carries the last accepted sequence number; the next Binding
    Update uses the number after it."""
    m = registering(node())
    actions = m.handle(ack(m, 135, 0, seq=1000), 0.2)
    assert actions[0] == BindingRejected(BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, will_retry=True)
    assert the_send(actions).bu.sequence == 1001
    assert m.timer() == 0.2 + 1.5


def test_a_stale_135_is_ignored() -> None:
    """RFC 6275 §11.7.3: a 135 that would not move the number forward is old news."""
    m = registering(node())
    m.handle(ack(m, 135, 0, seq=1000), 0.2)
    actions = m.handle(ack(m, 135, 0, seq=999), 0.3)
    assert [type(a) for a in actions] == [Ignored]
    assert m.sequence == 1001


def test_an_acknowledgement_for_another_sequence_number_is_ignored() -> None:
    """RFC 6275 §11.7.3: the Sequence Number must match the outstanding Binding Update."""
    m = registering(node())
    m.handle(TimerFired(), 1.5)  # now 2 is outstanding
    actions = m.handle(ack(m, seq=1), 1.6)
    assert [type(a) for a in actions] == [Ignored]
    assert state(m) is MnState.REGISTERING


def test_granted_lifetime_counts_from_the_send_and_may_be_shorter() -> None:
    """RFC 6275 §11.7.3: remaining = L_remain - (L_update - L_ack), i.e. the granted
    lifetime counted from when the Binding Update was sent."""
    m = node()
    m.handle(Moved(COA1), 0.0)
    m.handle(MigrateDone(HOA), 10.0)
    actions = m.handle(ack(m, lifetime=300), 12.0)
    assert actions == (BindingEstablished(COA1, 300, 310.0, key_management=True, prefix_discovery=False),)
    assert m.expiry == 310.0
    assert m.timer() == 10.0 + 300 * 0.8


def test_a_longer_lifetime_than_asked_is_capped() -> None:
    """RFC 6275 §10.3.1: the home agent may shorten the lifetime, not lengthen it."""
    m = registering(node(lifetime=100))
    (established,) = m.handle(ack(m, lifetime=4000), 0.5)
    assert isinstance(established, BindingEstablished)
    assert established.lifetime == 100


def test_status_1_asks_for_prefix_discovery() -> None:
    """RFC 6275 §6.1.8: status 1, accepted but prefix discovery necessary."""
    m = registering(node())
    (established,) = m.handle(ack(m, 1), 0.5)
    assert isinstance(established, BindingEstablished)
    assert established.prefix_discovery


def test_refresh_goes_out_before_expiry_and_renews_the_binding() -> None:
    """RFC 6275 §11.7.1: a new Binding Update extends the registration before it runs out."""
    m = registered(node(), lifetime=400)
    assert m.timer() == 320.0
    send = the_send(m.handle(TimerFired(), 320.0))
    assert (send.coa, send.bu.lifetime, send.retransmit) == (COA1, 600, False)
    assert state(m) is MnState.REFRESHING
    assert m.timer() == 321.0  # the home agent holds a binding: 1 s
    m.handle(ack(m, lifetime=400), 321.5)
    assert state(m) is MnState.REGISTERED
    assert m.expiry == 720.0


def test_an_unanswered_refresh_loses_the_binding_at_expiry() -> None:
    """RFC 6275 §11.7.3: when the lifetime is over the binding is gone; the Binding
    Update goes on as a new registration."""
    m = registered(node(), lifetime=12)
    lost: list[MnAction] = []
    while state(m) is not MnState.REGISTERING:
        due = m.timer()
        assert due is not None
        lost += [a for a in m.handle(TimerFired(), due) if isinstance(a, BindingLost)]
    assert lost == [BindingLost(COA1, "the lifetime ran out before a refresh was acknowledged")]
    assert m.expiry is None
    assert m.outstanding is not None


def test_a_late_timer_finds_the_binding_already_gone() -> None:
    """A REGISTERED binding always ends in the future: a late input sees it lapse first."""
    m = registered(node(), lifetime=100)
    actions = m.handle(TimerFired(), 500.0)
    assert isinstance(actions[0], BindingLost)
    assert the_send(actions).bu.lifetime == 600
    assert state(m) is MnState.REGISTERING
    assert m.timer() == 501.5


def test_k_counts_only_when_the_acknowledgement_echoes_it() -> None:
    """RFC 6275 §6.1.7 and §11.7.3: K set by the mobile node, agreed when echoed; without
    it the key management protocol does not survive movement (RFC 4877), so later
    migrates leave the IKE SA alone."""
    m = registered(node(), k=False)
    assert m.key_management is False
    assert m.handle(Moved(COA2), 10.0) == (MigrateIPsec(HOA, COA1, COA2, move_ike=False),)
    m.handle(MigrateDone(HOA), 10.0)
    (established,) = m.handle(ack(m, k=True), 10.5)
    assert isinstance(established, BindingEstablished)
    assert established.key_management


def test_k_is_not_asked_for_when_not_configured() -> None:
    """RFC 6275 §6.1.7: with manual keying K must be cleared."""
    m = node(key_management=False)
    assert m.handle(Moved(COA1), 0.0) == (MigrateIPsec(HOA, HOA, COA1, move_ike=False),)
    assert not the_send(m.handle(MigrateDone(HOA), 0.0)).bu.key_management
    (established,) = m.handle(ack(m, k=True), 0.5)
    assert isinstance(established, BindingEstablished)
    assert not established.key_management


@pytest.mark.parametrize("status", [128, 130, 143])
def test_a_passing_rejection_waits_for_the_next_retransmission(status: int) -> None:
    """RFC 6275 §11.7.3: the mobile node may try again with a new sequence number,
    within the rate limits of §11.8 (see rfc6275.RETRYABLE)."""
    m = registering(node())
    assert m.handle(ack(m, status, 0), 0.5) == (BindingRejected(BAStatus(status), will_retry=True),)
    assert state(m) is MnState.REGISTERING
    assert the_send(m.handle(TimerFired(), 1.5)).retransmit


@pytest.mark.parametrize("status", [129, 131, 132, 133, 134, 136, 139, 140, 141, 142, 200])
def test_a_lasting_rejection_gives_up(status: int) -> None:
    """RFC 6275 §11.7.3: if the cause cannot be corrected, no more Binding Updates go to
    this home agent."""
    m = registering(node())
    actions = m.handle(ack(m, status, 0), 0.5)
    assert actions[0] == BindingRejected(BAStatus(status), will_retry=False)
    assert isinstance(actions[1], GaveUp)
    assert state(m) is MnState.FAILED
    assert m.timer() is None


def test_accepted_with_lifetime_0_gives_up() -> None:
    """A granted lifetime of 0 leaves no binding (RFC 6275 §11.7.3)."""
    m = registering(node())
    assert isinstance(m.handle(ack(m, lifetime=0), 0.5)[-1], GaveUp)


def test_an_acknowledgement_arriving_after_its_lifetime_sends_again() -> None:
    """RFC 6275 §11.7.3: counted from the send, a granted lifetime may already be over."""
    m = registering(node())
    m.handle(TimerFired(), 1.5)
    send = the_send(m.handle(ack(m, lifetime=4), 6.0))
    assert send.retransmit
    assert state(m) is MnState.REGISTERING


def test_returning_home_deregisters_from_the_home_address() -> None:
    """RFC 6275 §11.5.4: A and H set, lifetime 0, sent from the home address; the
    binding is gone when the acknowledgement comes, and the SAs go home."""
    m = registered(node())
    send = the_send(m.handle(ReturnedHome(), 50.0))
    assert (send.coa, send.bu.lifetime, send.bu.ack, send.bu.home) == (HOA, 0, True, True)
    assert state(m) is MnState.DEREGISTERING
    assert m.handle(ack(m, lifetime=0), 50.5) == (RestoreHome(HOA, COA1, True, "deregistered"),)
    assert state(m) is MnState.HOME
    assert (m.sa_coa, m.expiry, m.timer()) == (HOA, None, None)


def test_status_133_to_a_deregistration_means_nothing_was_left() -> None:
    """RFC 6275 §10.3.2: a home agent without the binding answers 133."""
    m = registered(node())
    m.handle(ReturnedHome(), 50.0)
    m.handle(ack(m, 133, 0), 50.5)
    assert state(m) is MnState.HOME


def test_an_unanswered_deregistration_gives_up_at_home() -> None:
    """RFC 6275 §11.8 back-off, then the mobile node is home anyway."""
    m = registered(node())
    m.handle(ReturnedHome(), 50.0)
    actions: tuple[MnAction, ...] = ()
    while state(m) is MnState.DEREGISTERING:
        due = m.timer()
        assert due is not None
        actions = m.handle(TimerFired(), due)
    assert [type(a) for a in actions] == [GaveUp, RestoreHome]
    assert state(m) is MnState.HOME


def test_home_again_without_registering_sends_nothing() -> None:
    """Nothing was registered, so there is nothing to deregister (§11.5.4); the move
    that failed may have left SAs away, so they are restored home from where they are."""
    m = node()
    m.handle(Moved(COA1), 0.0)
    m.handle(MigrateFailed(HOA, "EINVAL"), 0.1)
    actions = m.handle(ReturnedHome(), 0.2)
    assert not sends(actions)
    assert [type(a) for a in actions] == [RestoreHome]
    assert state(m) is MnState.HOME


def test_home_again_during_a_migrate_waits_for_it_then_restores() -> None:
    """The migrate in flight ends before the SAs are sent home."""
    m = node()
    m.handle(Moved(COA1), 0.0)
    assert m.handle(ReturnedHome(), 0.1) == ()
    assert m.handle(MigrateDone(HOA), 0.2) == (RestoreHome(HOA, COA1, True, "never registered away"),)
    assert state(m) is MnState.HOME


def test_moved_to_the_home_address_is_returning_home() -> None:
    """RFC 6275 §11.5.4: the home address as care-of address means home."""
    m = registered(node())
    assert the_send(m.handle(Moved(HOA), 5.0)).bu.lifetime == 0


def test_leaving_home_again_before_the_deregistration_is_answered() -> None:
    """Back at the care-of address the SAs still use, the node registers at once."""
    m = registered(node())
    m.handle(ReturnedHome(), 50.0)
    send = the_send(m.handle(Moved(COA1), 51.0))
    assert (send.coa, send.bu.lifetime) == (COA1, 600)
    assert state(m) is MnState.REGISTERING


@pytest.mark.parametrize("start", ["registering", "refreshing", "deregistering"])
def test_an_error_report_ends_the_attempt(start: str) -> None:
    """An ICMP Parameter Problem or Binding Error: the home agent cannot take it."""
    m = registered(node())
    if start == "registering":
        m.handle(Moved(COA2), 1.0)
        m.handle(MigrateDone(HOA), 1.0)
    elif start == "refreshing":
        m.handle(TimerFired(), 480.0)
    else:
        m.handle(ReturnedHome(), 1.0)
    actions = m.handle(ErrorReceived("parameter problem"), 2.0 if start != "refreshing" else 480.5)
    assert isinstance(actions[0], GaveUp)
    assert state(m) is (MnState.HOME if start == "deregistering" else MnState.FAILED)


def test_failed_then_moved_tries_again() -> None:
    """A new movement is a new attempt."""
    m = registering(node())
    m.handle(ack(m, 129, 0), 0.5)
    assert the_send(m.handle(Moved(COA1), 5.0)).coa == COA1
    assert state(m) is MnState.REGISTERING


def test_a_clock_that_steps_back_is_held_still() -> None:
    """Time never runs backwards inside the machine."""
    m = registering(node(), 100.0)
    m.handle(TimerFired(), 50.0)
    assert m.timer() == 101.5


def test_a_migrate_result_for_another_home_address_is_ignored() -> None:
    """The shell echoes the action's home address; a different one is not ours."""
    m = node()
    m.handle(Moved(COA1), 0.0)
    actions = m.handle(MigrateDone(COA2), 0.1)
    assert [type(a) for a in actions] == [Ignored]
    assert state(m) is MnState.MIGRATING


# how far the home agent's last accepted number is ahead of ours: anywhere, and often at
# the edges of the window, where an off-by-one would hide
AHEAD = st.integers(0, 0xFFFF) | st.integers(0x7FFC, 0x8004) | st.integers(0xFFFC, 0xFFFF) | st.integers(0, 4)


@given(sent=st.integers(0, 0xFFFF), ahead=AHEAD)
def test_a_135_is_taken_exactly_when_the_home_agent_could_have_sent_it(sent: int, ahead: int) -> None:
    """The home agent answers 135 when the number is not newer than the last it accepted
    (§9.5.1); the mobile node resynchronises on exactly those, up to 32767 ahead."""
    last = (sent + ahead) % 0x10000
    m = HomeRegistration(MobileNodeConfig(HOA), sequence=(sent - 1) % 0x10000)
    registering(m)
    assert m.outstanding is not None
    assert m.outstanding.sequence == sent
    actions = m.handle(ack(m, 135, 0, seq=last), 0.2)
    took = actions[0] == BindingRejected(BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, will_retry=True)
    assert took == (not seq_newer(sent, last))
    if took:
        assert the_send(actions).bu.sequence == (last + 1) % 0x10000
    else:
        assert [type(a) for a in actions] == [Ignored]


def test_a_135_from_the_far_edge_of_the_window_is_taken() -> None:
    m = registering(node())  # 1 outstanding
    actions = m.handle(ack(m, 135, 0, seq=1 + 0x7FFF), 0.2)  # 32767 ahead: still "not newer"
    assert the_send(actions).bu.sequence == 2 + 0x7FFF
    m = registering(node())
    assert [type(a) for a in m.handle(ack(m, 135, 0, seq=1 + 0x8000), 0.2)] == [Ignored]  # 1 is newer than that
