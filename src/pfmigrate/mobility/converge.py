"""What one node's entries in a key engine still need, from what the engine holds.

A request whose answer never came (ETIMEDOUT, a broadcast dropped from a full socket
buffer) may or may not have been carried out, and a batch that stopped there is
half-applied. Guessing either way leaves Mobile IPv6 and the SAD/SPD apart, which is the
seed's second limitation. So the agent settles it by looking: the shell reads the
tables back, and the functions here say what is still missing for the ``Goal`` (the
node's policy set where it is going), so that only that is applied. They are pure:
the dumps in, the changes out.

* ``check_free``: an SA the goal wants that is another node's (one SPI toward one
  address) is a refusal that stands: nothing is changed.
* ``doubles``: an SA of the node found at two places (a read-back cut half-way) is
  kept once, so that no MIGRATE meets the other copy.
* ``moves``: a tunnel policy of the node whose template ends somewhere else is moved
  by MIGRATE from where it is now, as read back, so that the SAs under it keep their
  SPIs, keys and replay state (and the IKE daemon hears KMADDRESS). Tunnels the goal
  parts with (the node is home) go home first, as on the way home without a read-back.
* ``remainder``, read after the moves: the node's SAs that are missing or misplaced,
  its policies that are missing or differ, and what it owns that the goal does not
  want. A manual SA found at the wrong endpoints is deleted and added again, since no
  MIGRATE can name it apart from its policy.

A MIGRATE that changes no table (the KMADDRESS announcements of transport policies)
cannot be seen in a dump, so the goal's announcements are sent again with every
read-back: a second one moves nothing, and an IKE daemon that missed the first is not
left at the old address.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

from pfmigrate.engine import KeyEngineError
from pfmigrate.mobility.policies import (
    AddPolicy,
    AddSA,
    Change,
    DeletePolicy,
    DeleteSA,
    Goal,
    UpdatePolicy,
)
from pfmigrate.model import (
    Dir,
    MigrateBundle,
    MigrateRequest,
    Mode,
    Policy,
    SecurityAssociation,
    Selector,
    Template,
)


def _as_configured(policy: Policy) -> Policy:
    """A policy as the goal states it (the engine adds an index of its own)."""
    return Policy(policy.selector, policy.dir, policy.templates, policy.action, policy.priority)


def _sa_place(sa: SecurityAssociation) -> tuple[object, ...]:
    """What makes an SA the one the goal wants: where it is and what it is bound to."""
    return (sa.src, sa.dst, sa.spi, sa.proto, sa.mode, sa.reqid)


def _moved_tunnel(now: Template, wanted: Template) -> bool:
    """Whether ``now`` is ``wanted`` at other tunnel endpoints (a MIGRATE can take it there)."""
    return (
        wanted.mode is Mode.TUNNEL
        and (now.proto, now.mode, now.reqid, now.optional) == (wanted.proto, wanted.mode, wanted.reqid, wanted.optional)
        and (now.src, now.dst) != (wanted.src, wanted.dst)
        and None not in (now.src, now.dst, wanted.src, wanted.dst)
    )


def check_free(goal: Goal, sas_now: Iterable[SecurityAssociation]) -> None:
    """``KeyEngineError`` EADDRINUSE if an SA the goal wants (destination, SPI) is
    another node's: a home agent's nodes may share an SPI toward their own care-of
    addresses, and one registering at another's address would take it. No read-back
    settles that, so it is a refusal that stands, found before anything changes."""
    mine = {(sa.spi, sa.reqid) for sa in goal.target.sas} | goal.owned.sas
    wanted = {(sa.dst, sa.spi, sa.proto) for sa in goal.target.sas}
    for sa in sas_now:
        if (sa.dst, sa.spi, sa.proto) in wanted and (sa.spi, sa.reqid) not in mine:
            raise _taken(sa)


def _taken(sa: SecurityAssociation) -> KeyEngineError:
    return KeyEngineError(
        errno.EADDRINUSE, "add SA", f"SA 0x{sa.spi:08x} to {sa.dst} is another node's (reqid {sa.reqid})"
    )


def doubles(goal: Goal, sas_now: Iterable[SecurityAssociation], policies_now: Iterable[Policy]) -> list[DeleteSA]:
    """The node's SAs found twice, one SPI and reqid at two places (a read-back cut
    between adding the new copy and deleting the old): all but one go first, since a
    MIGRATE of one copy would meet the other where it moves it. The one kept is the
    goal's, else one at a present template's endpoints (a MIGRATE moves it on)."""
    mine = {(sa.spi, sa.reqid) for sa in goal.target.sas} | goal.owned.sas
    wanted = {_sa_place(sa) for sa in goal.target.sas}
    ends = {(t.src, t.dst, t.reqid) for p in policies_now for t in p.templates if t.mode is Mode.TUNNEL}
    copies: dict[tuple[int, int, int], list[SecurityAssociation]] = {}
    for sa in sas_now:
        if (sa.spi, sa.reqid) in mine:
            copies.setdefault((sa.spi, sa.reqid, sa.proto), []).append(sa)
    deletes = []
    for group in copies.values():
        if len(group) < 2:
            continue
        keep = next((sa for sa in group if _sa_place(sa) in wanted), None)
        keep = keep or next((sa for sa in group if (sa.src, sa.dst, sa.reqid) in ends), group[0])
        deletes += [DeleteSA(sa.dst, sa.spi, sa.proto) for sa in group if sa is not keep]
    return deletes


def moves(goal: Goal, policies_now: Iterable[Policy]) -> list[MigrateRequest]:
    """A MIGRATE of each of the goal's tunnel policies (and of those it parts with,
    which go home before they go) that is there with its templates ending elsewhere,
    named by the endpoints read back, so that it moves the SAs that are there and no
    others; in the goal's order (``in`` and ``fwd`` before ``out``: each end accepts at
    the new address before it sends there)."""
    found = {(p.selector, p.dir): p for p in policies_now}
    requests = []
    for wanted in (*goal.target.policies, *goal.parting):
        now = found.get((wanted.selector, wanted.dir))
        if now is None or len(now.templates) != len(wanted.templates) or now.templates == wanted.templates:
            continue
        pairs = list(zip(now.templates, wanted.templates, strict=True))
        if not all(_moved_tunnel(have, want) for have, want in pairs):
            continue  # not a move: ``remainder`` replaces it
        bundles = tuple(_bundle(have, want) for have, want in pairs)
        requests.append(MigrateRequest(wanted.selector, wanted.dir, bundles, goal.kmaddress))
    return requests


def _bundle(have: Template, want: Template) -> MigrateBundle:
    if have.src is None or have.dst is None or want.src is None or want.dst is None:
        raise ValueError("a tunnel template names both of its endpoints")  # (``_moved_tunnel`` checked)
    return MigrateBundle(have.src, have.dst, want.src, want.dst, want.proto, want.mode, want.reqid)


def remainder(goal: Goal, sas_now: Iterable[SecurityAssociation], policies_now: Iterable[Policy]) -> list[Change]:
    """The rest of the way to the goal once ``moves`` are done, from fresh dumps: SAs
    first (no traffic meets a policy without its SA), then policies, then what the
    node owns that the goal does not want. ``KeyEngineError`` EADDRINUSE as
    ``check_free`` says."""
    target, owned = goal.target, goal.owned
    mine = {(sa.spi, sa.reqid) for sa in target.sas} | owned.sas
    wanted_sas = {(sa.dst, sa.spi, sa.proto): sa for sa in target.sas}
    present = {(sa.dst, sa.spi, sa.proto): sa for sa in sas_now}
    changes: list[Change] = []
    for key, sa in wanted_sas.items():
        have = present.get(key)
        if have is not None and _sa_place(have) == _sa_place(sa):
            continue
        if have is not None and (have.spi, have.reqid) not in mine:  # another node's: not ours to replace
            raise _taken(have)
        if have is not None:  # ours, bound otherwise: replace it
            changes.append(DeleteSA(*key))
        changes.append(AddSA(sa))
    found = {(p.selector, p.dir): _as_configured(p) for p in policies_now}
    for policy in target.policies:
        have_policy = found.get((policy.selector, policy.dir))
        if have_policy is None:
            changes.append(AddPolicy(policy))
        elif have_policy != policy:
            changes.append(UpdatePolicy(policy))
    kept: set[tuple[Selector, Dir]] = {(p.selector, p.dir) for p in target.policies}
    changes += [DeletePolicy(*key) for key in found if key in owned.policies and key not in kept]
    changes += [
        DeleteSA(*key)
        for key, sa in present.items()
        if (sa.spi, sa.reqid) in mine and key not in wanted_sas  # left at an old address, or not wanted here
    ]
    return changes


__all__ = ["check_free", "doubles", "moves", "remainder"]
