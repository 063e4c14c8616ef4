"""Lifetimes: the soft and hard EXPIRE that Linux's SA timer and packet path send.

Linux gives every SA a timer (``xfrm_timer_handler``) that wakes when an add or use
lifetime runs out; the packet path (``xfrm_state_check_expire``) checks the byte and
packet limits. Here the timer is a deadline in a heap that ``Engine.tick(now)`` works
through, and a packet is ``Engine.account(...)``. What they send is what Linux sends:

* soft: the SA becomes DYING, once, and the registered key managers get a soft EXPIRE;
* hard: the SA is deleted (no DELETE message) and they get a hard EXPIRE.

A larval SA (GETSPI, or an ACQUIRE waiting for its key manager) lives 30 seconds.
Policies with lifetimes are not timed: PF_KEY tells nobody when one expires (Linux
deletes it without a message), and the engine keeps it, as the docs say.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfmigrate.pfkey.constants import MsgType
from pfmigrate.sadb.core import REGISTERED, Delivery
from pfmigrate.sadb.records import DEAD, EXPIRED, VALID, SARecord, sa_message

if TYPE_CHECKING:
    from pfmigrate.sadb.engine import Engine

SOFT, HARD = 1, 2  # the hsc argument of the SA encoder: which lifetime to report


def deadline(sa: SARecord) -> int | None:
    """When the SA's timer next has work (seconds since the epoch), or ``None``.

    An SA that was never used never use-expires (Linux's timer finds nothing to do),
    and soft deadlines stop counting once the SA is DYING.
    """
    if sa.state == EXPIRED:
        return 0
    if sa.state == DEAD:
        return None
    soft_add, hard_add, soft_use, hard_use = sa.lft[4:]
    due: list[int] = []
    if hard_add:
        due.append(sa.add_time + hard_add)
    if hard_use and sa.use_time:
        due.append(sa.use_time + hard_use)
    if not sa.dying:
        if soft_add:
            due.append(sa.add_time + soft_add)
        if soft_use and sa.use_time:
            due.append(sa.use_time + soft_use)
    return min(due, default=None)


def run_timer(engine: Engine, sa: SARecord, now: float, out: list[Delivery]) -> None:
    """``xfrm_timer_handler`` for one SA at ``now``."""
    lft = sa.lft
    if (
        sa.state == EXPIRED
        or (lft[5] and sa.add_time + lft[5] <= now)
        or (lft[7] and sa.use_time and sa.use_time + lft[7] <= now)
    ):
        expire_hard(engine, sa, out)
    elif not sa.dying and (
        (lft[4] and sa.add_time + lft[4] <= now) or (lft[6] and sa.use_time and sa.use_time + lft[6] <= now)
    ):
        expire_soft(engine, sa, out)


def expire_soft(engine: Engine, sa: SARecord, out: list[Delivery]) -> None:
    dying = sa.but(dying=True)
    with engine.db.transaction():
        engine.sad.put(sa.serial, dying)
    engine.broadcast(out, sa_message(dying, MsgType.EXPIRE, 0, 0, keys=False, hsc=SOFT), REGISTERED)


def expire_hard(engine: Engine, sa: SARecord, out: list[Delivery]) -> None:
    """Delete the SA without a DELETE message and announce a hard EXPIRE."""
    with engine.db.transaction():
        engine.sad.delete(sa.serial)
    gone = sa.but(state=DEAD)
    engine.broadcast(out, sa_message(gone, MsgType.EXPIRE, 0, 0, keys=False, hsc=HARD), REGISTERED)


def account(engine: Engine, sa: SARecord, nbytes: int, now: float, out: list[Delivery]) -> bool:
    """One packet of ``nbytes`` through ``sa`` (``xfrm_state_check_expire`` and the
    counter update after it). False if the SA may no longer carry packets.

    The limits are checked before the packet is counted, as in Linux: the packet that
    reaches a hard limit still goes, the next one expires the SA.
    """
    if sa.state != VALID:
        return False
    soft_bytes, hard_bytes, soft_packets, hard_packets = sa.lft[:4]
    if sa.cur_bytes >= hard_bytes or sa.cur_packets >= hard_packets:
        expire_hard(engine, sa, out)
        return False
    counted = sa.but(use_time=sa.use_time or int(now), cur_bytes=sa.cur_bytes + nbytes, cur_packets=sa.cur_packets + 1)
    soft = not sa.dying and (sa.cur_bytes >= soft_bytes or sa.cur_packets >= soft_packets)
    if soft:
        counted.dying = True
    with engine.db.transaction():
        engine.sad.put(sa.serial, counted)
    if soft:
        # Linux sends it before the packet is counted: the counters it shows are the old ones.
        shown = sa.but(use_time=counted.use_time, dying=True)
        engine.broadcast(out, sa_message(shown, MsgType.EXPIRE, 0, 0, keys=False, hsc=SOFT), REGISTERED)
    return True


__all__ = ["account", "deadline", "expire_hard", "expire_soft", "run_timer"]
