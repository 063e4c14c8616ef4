"""Carrying out an agent's ``Configure`` on a key engine (the one piece of an agent's
shell that talks to the engine)."""

from __future__ import annotations

import errno

from pfmigrate.engine import KeyEngine, KeyEngineError
from pfmigrate.mobility.agent import Configure
from pfmigrate.mobility.policies import Owned, PolicySet, apply


def targets_by_reqid(engine: KeyEngine) -> bool:
    """Whether MIGRATE can name its target by reqid on this engine (pfmigrate's own, in
    process or in keyd, with its own semantics); Linux needs the old endpoints."""
    return engine.capabilities.migrate_by_reqid


def carry_out(engine: KeyEngine, step: Configure) -> tuple[int, str]:
    """Apply the step; ``(0, "")`` or the errno and reason it failed with."""
    try:
        if step.repair is not None:
            reconcile(engine, step.repair, step.owned)
        else:
            apply(engine, step.changes)
    except KeyEngineError as exc:
        return exc.errno or errno.EIO, str(exc)
    return 0, ""


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
