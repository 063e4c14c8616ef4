"""Reading back and applying only what is missing (``mobility.converge`` through
``ipsec.converge``): from any point a move can stop at (a batch cut off after any
change, entries someone removed), the tables end exactly at the goal; what is already
there is left alone; a tunnel that is elsewhere moves by MIGRATE, keeping its SAs."""

from __future__ import annotations

import dataclasses
import errno
from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfmigrate.backends.inprocess import Hub, open_inprocess
from pfmigrate.engine import KeyEngine, KeyEngineError
from pfmigrate.mobility.agent import DIVERGENCE, LAST_WAIT, READ_BACKS, UNKNOWN, Configure, Settler, Verdict
from pfmigrate.mobility.converge import moves, remainder
from pfmigrate.mobility.ipsec import converge
from pfmigrate.mobility.policies import (
    AddSA,
    DeleteSA,
    UpdatePolicy,
    apply,
    is_announcement,
    mn_goal,
    mn_move,
    mn_policy_set,
)
from pfmigrate.mobility.seedconfig import seed_configs
from pfmigrate.model import MigrateRequest, Policy, SecurityAssociation
from pfmigrate.sadb import Engine
from pfmigrate.seed import NEW_COA, OLD_COA

MN_CONFIG, _ = seed_configs()
PLACES: tuple[IPv6Address | None, ...] = (None, IPv6Address(OLD_COA), IPv6Address(NEW_COA))


def _engine(semantics: str) -> KeyEngine:
    return open_inprocess(Hub(Engine(semantics=semantics)))


def _tables(engine: KeyEngine) -> tuple[set[Policy], set[SecurityAssociation]]:
    return {dataclasses.replace(p, index=0) for p in engine.dump_policies()}, set(engine.dump_sas())


def _wanted(where: IPv6Address | None) -> tuple[set[Policy], set[SecurityAssociation]]:
    target = mn_policy_set(MN_CONFIG, where)
    return set(target.policies), set(target.sas)


@settings(max_examples=150, deadline=None)
@given(
    semantics=st.sampled_from(["pfmigrate", "linux"]),
    start=st.sampled_from(PLACES),
    goal=st.sampled_from(PLACES),
    cut=st.integers(0, 40),
    removed=st.sets(st.integers(0, 30), max_size=3),
)
def test_from_any_cut_off_move_a_read_back_reaches_the_goal_and_a_second_changes_nothing(
    semantics: str, start: IPv6Address | None, goal: IPv6Address | None, cut: int, removed: set[int]
) -> None:
    by_reqid = semantics == "pfmigrate"
    engine = _engine(semantics)
    apply(engine, mn_policy_set(MN_CONFIG, start).changes())
    apply(engine, mn_move(MN_CONFIG, start, goal, by_reqid=by_reqid)[:cut])  # a batch that stopped there
    policies, sas = engine.dump_policies(), engine.dump_sas()
    for index in sorted(removed):  # and someone else's doing
        if index < len(policies):
            engine.delete_policy(policies[index].selector, policies[index].dir)
        elif index - len(policies) < len(sas):
            sa = sas[index - len(policies)]
            engine.delete_sa(sa.dst, sa.spi, sa.proto)
    target = mn_goal(MN_CONFIG, goal)
    converge(engine, target)
    assert _tables(engine) == _wanted(goal)
    again = converge(engine, target)
    assert again == list(target.announcements), "a second read-back finds nothing missing"
    engine.close()


@pytest.mark.parametrize("semantics", ["pfmigrate", "linux"])
def test_tunnels_that_never_moved_are_moved_by_migrate_keeping_their_sas(semantics: str) -> None:
    """The move's answers were all lost before its MIGRATEs went: the read-back MIGRATEs
    the tunnels from where they are (their old endpoints, as read back), so the
    SAs keep what only a move keeps (here: their counters)."""
    engine = _engine(semantics)
    apply(engine, mn_policy_set(MN_CONFIG, OLD_COA).changes())
    before = {sa.spi: sa.current.add_time for sa in engine.dump_sas()}
    goal = mn_goal(MN_CONFIG, NEW_COA)
    migrations = moves(goal, engine.dump_policies())
    assert migrations
    assert all(isinstance(m, MigrateRequest) and m.kmaddress == goal.kmaddress for m in migrations)
    applied = converge(engine, goal)
    assert not [c for c in applied if isinstance(c, AddSA | DeleteSA)], "no SA was replaced"
    assert _tables(engine) == _wanted(IPv6Address(NEW_COA))
    assert {sa.spi: sa.current.add_time for sa in engine.dump_sas()} == before
    engine.close()


def test_what_is_already_there_is_left_alone_and_what_differs_is_replaced() -> None:
    engine = _engine("pfmigrate")
    apply(engine, mn_policy_set(MN_CONFIG, OLD_COA).changes())
    goal = mn_goal(MN_CONFIG, OLD_COA)
    assert remainder(goal, engine.dump_sas(), engine.dump_policies()) == []
    changed = dataclasses.replace(goal.target.policies[0], priority=7)
    engine.update_policy(changed)
    assert remainder(goal, engine.dump_sas(), engine.dump_policies()) == [UpdatePolicy(goal.target.policies[0])]
    engine.close()


def test_another_nodes_entries_are_not_the_goals_business() -> None:
    """Only the node's own entries (its selectors, its SPI and reqid pairs) are removed."""
    engine = _engine("pfmigrate")
    apply(engine, mn_policy_set(MN_CONFIG, OLD_COA).changes())
    mine = mn_policy_set(MN_CONFIG, OLD_COA).sas[0]  # another node's SA of the same SPI, its own reqid
    stranger = dataclasses.replace(mine, src=IPv6Address("2001:db8::1"), dst=IPv6Address("2001:db8::2"), reqid=9)
    engine.add_sa(stranger)
    converge(engine, mn_goal(MN_CONFIG, None))
    policies, sas = _tables(engine)
    assert stranger in sas
    assert (policies, sas - {stranger}) == _wanted(None)
    engine.close()


OUTCOMES = st.sampled_from(
    [0, errno.ETIMEDOUT, errno.ENOBUFS, errno.ECONNRESET, errno.ENOENT, errno.EEXIST, errno.ENOMEM]
)


@settings(max_examples=300, deadline=None)
@given(why=st.sampled_from(["move", "home"]), errors=st.lists(OUTCOMES, min_size=1, max_size=40))
def test_a_settler_reads_back_until_done_and_a_move_fails_only_on_a_standing_refusal_or_after_its_bound(
    why: str, errors: list[int]
) -> None:
    """Over any sequence of outcomes: success ends it at once; the change's own failure
    and every lost or diverging read-back are followed by one more read-back (at once,
    then after a wait that doubles, never longer than ``LAST_WAIT``); a refusal after
    reading back fails it, and so does the ``READ_BACKS``-th lost read-back of a move;
    a return home is never given up for lost answers."""
    settler, hoa, now = Settler(), IPv6Address(OLD_COA), 0.0
    goal = mn_goal(MN_CONFIG, OLD_COA)
    verdicts, waits = [], []
    for error in errors:
        verdict, steps = settler.outcome(hoa, error, "why", now, why, lambda: goal)
        verdicts.append(verdict)
        if verdict is not Verdict.WAIT:
            assert hoa not in settler.pending
            break
        read_backs = [s for s in steps if isinstance(s, Configure)]
        if read_backs:  # at once: only after the change itself
            assert len(verdicts) == 1
        else:
            due = settler.timer()
            assert due is not None
            waits.append(due - now)
            assert settler.due(due - 0.001) == []
            now = due
            read_backs = [s for s in settler.due(now) if isinstance(s, Configure)]
        [read_back] = read_backs
        assert isinstance(read_back, Configure)
        assert read_back.read_back
        assert read_back.goal == goal
    tail = verdicts[-1]
    if 0 in errors[: len(verdicts)]:
        assert tail is Verdict.DONE
        assert errors.index(0) == len(verdicts) - 1
    elif tail is Verdict.FAILED:
        standing = errors[len(verdicts) - 1] not in UNKNOWN | DIVERGENCE
        assert len(verdicts) > 1, "the change's own failure is always read back first"
        assert standing or (why == "move" and len(verdicts) == READ_BACKS + 1)
    else:
        assert why == "home" or len(verdicts) <= READ_BACKS
    waits = [round(w, 6) for w in waits]  # (each is a difference of two times)
    assert all(w <= LAST_WAIT for w in waits)
    assert waits == sorted(waits), "the waits never shrink"


@pytest.mark.parametrize("semantics", ["pfmigrate", "linux"])
def test_an_sa_found_twice_is_kept_once_before_anything_moves(semantics: str) -> None:
    """A read-back cut after adding an SA's new copy and before deleting the old one
    leaves one SPI and reqid at two places; a MIGRATE of the old copy would meet the
    new one at its destination. The goal's copy is kept, the other goes first."""
    engine = _engine(semantics)
    apply(engine, mn_policy_set(MN_CONFIG, OLD_COA).changes())
    toward_mn = [sa for sa in mn_policy_set(MN_CONFIG, NEW_COA).sas if sa.dst == IPv6Address(NEW_COA)]
    assert toward_mn
    for sa in toward_mn:  # the new copies, beside the old ones
        engine.add_sa(sa)
    goal = mn_goal(MN_CONFIG, NEW_COA)
    applied = converge(engine, goal)
    deleted = [c for c in applied if isinstance(c, DeleteSA)]
    assert {(d.dst, d.spi) for d in deleted} == {(IPv6Address(OLD_COA), sa.spi) for sa in toward_mn}
    assert applied.index(deleted[0]) < min(applied.index(m) for m in applied if isinstance(m, MigrateRequest))
    assert _tables(engine) == _wanted(IPv6Address(NEW_COA))
    engine.close()


def test_an_sa_the_goal_wants_that_is_another_nodes_is_a_refusal_that_stands() -> None:
    """A home agent's two nodes may use one SPI toward their own care-of addresses; a node
    registering at another's address finds its SA taken. The read-back must not delete
    the other node's SA: it refuses (EADDRINUSE, not a divergence to read back again)."""
    engine = _engine("pfmigrate")
    apply(engine, mn_policy_set(MN_CONFIG, OLD_COA).changes())
    taken = next(sa for sa in mn_policy_set(MN_CONFIG, NEW_COA).sas if sa.dst == IPv6Address(NEW_COA))
    stranger = dataclasses.replace(taken, reqid=999)
    engine.add_sa(stranger)
    with pytest.raises(KeyEngineError) as refused:
        converge(engine, mn_goal(MN_CONFIG, NEW_COA))
    assert refused.value.errno == errno.EADDRINUSE
    assert refused.value.errno not in UNKNOWN | DIVERGENCE
    assert stranger in engine.dump_sas()
    engine.close()


def test_a_read_back_home_moves_the_tunnels_home_before_it_removes_them() -> None:
    """As the way home without a read-back does: SAs made by IKE (which the goal cannot
    name) end at the home address with their tunnels gone, not at the care-of address."""
    engine = _engine("pfmigrate")
    apply(engine, mn_policy_set(MN_CONFIG, OLD_COA).changes())
    goal = mn_goal(MN_CONFIG, None)
    assert goal.parting
    applied = converge(engine, goal)
    homeward = [c for c in applied if isinstance(c, MigrateRequest) and not is_announcement(c)]
    assert {(m.selector, m.dir) for m in homeward} == {(p.selector, p.dir) for p in goal.parting}
    assert _tables(engine) == _wanted(None)
    engine.close()
