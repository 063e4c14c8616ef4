"""Carrying out an agent's ``Configure`` on a key engine (the one piece of an agent's
shell that talks to the engine)."""

from __future__ import annotations

import errno
from collections.abc import Iterable
from typing import NamedTuple

from pfmigrate.engine import KeyEngine, KeyEngineError
from pfmigrate.mobility.agent import Configure
from pfmigrate.mobility.converge import check_free, doubles, moves, remainder
from pfmigrate.mobility.policies import Change, Goal, Owned, PolicySet, apply, is_announcement
from pfmigrate.model import MigrateRequest


def targets_by_reqid(engine: KeyEngine) -> bool:
    """Whether MIGRATE can name its target by reqid on this engine (pfmigrate's own, in
    process or in keyd, with its own semantics); Linux needs the old endpoints."""
    return engine.capabilities.migrate_by_reqid


class Outcome(NamedTuple):
    """How a ``Configure`` ended: ``errno`` 0 or what stopped it, and ``announced``,
    how many of its KMADDRESS announcements went (in order): no dump can show them."""

    errno: int
    reason: str = ""
    announced: int = 0


def carry_out(engine: KeyEngine, step: Configure) -> Outcome:
    """Apply the step; its outcome."""
    progress: list[Change] = []
    try:
        if step.read_back:
            assert step.goal is not None, "a read-back needs the goal it settles"
            converge(engine, step.goal, progress)
        else:
            _apply(engine, step.changes, progress)
    except KeyEngineError as exc:
        return Outcome(exc.errno or errno.EIO, str(exc), _announced(progress))
    return Outcome(0, "", _announced(progress))


def converge(engine: KeyEngine, goal: Goal, progress: list[Change] | None = None) -> list[Change]:
    """Read the tables back and apply what ``goal`` still lacks (``pfmigrate.mobility.converge``),
    then send its announcements (last: the policies they name may have been missing);
    the changes that took, also kept in ``progress`` as they do, since a
    ``KeyEngineError`` stops it where it came."""
    applied = [] if progress is None else progress
    policies_now, sas_now = engine.dump_policies(), engine.dump_sas()
    check_free(goal, sas_now)
    _apply(engine, doubles(goal, sas_now, policies_now), applied)
    migrations = moves(goal, policies_now)
    if migrations:
        _apply(engine, migrations, applied)
        policies_now = engine.dump_policies()
    _apply(engine, remainder(goal, engine.dump_sas(), policies_now), applied)
    _apply(engine, goal.announcements, applied)
    return applied


def _apply(engine: KeyEngine, changes: Iterable[Change], applied: list[Change]) -> None:
    for change in changes:
        apply(engine, (change,))
        applied.append(change)


def _announced(changes: list[Change]) -> int:
    return sum(1 for change in changes if isinstance(change, MigrateRequest) and is_announcement(change))


def reconcile(engine: KeyEngine, target: PolicySet, owned: Owned | None = None) -> None:
    """Make the engine hold ``target``: each policy set (added or replaced), each SA
    put back with its keys, the node's SAs found elsewhere removed, and (given what the
    node ``owned``) its policies and SAs that ``target`` does not have."""
    wanted = {(sa.dst, sa.spi, sa.proto) for sa in target.sas}
    mine = {(sa.spi, sa.reqid) for sa in target.sas} | (owned.sas if owned else frozenset())
    for sa in engine.dump_sas():
        if (sa.spi, sa.reqid) in mine and (sa.dst, sa.spi, sa.proto) not in wanted:
            engine.delete_sa(sa.dst, sa.spi, sa.proto)  # left at an old address, or not wanted here
    if owned is not None:
        kept = {(p.selector, p.dir) for p in target.policies}
        for policy in engine.dump_policies():
            if (policy.selector, policy.dir) in owned.policies - kept:
                engine.delete_policy(policy.selector, policy.dir)  # a tunnel left when the node is home
    for sa in target.sas:
        try:
            engine.delete_sa(sa.dst, sa.spi, sa.proto)
        except KeyEngineError as exc:
            if exc.errno != errno.ESRCH:
                raise
        engine.add_sa(sa)
    for policy in target.policies:
        engine.update_policy(policy)
