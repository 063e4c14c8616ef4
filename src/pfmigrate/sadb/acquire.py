"""An outgoing packet meets the SPD: the SAs it takes, or an ACQUIRE for the missing one.

``Engine.outgoing`` stands for a packet the host sends. As in Linux's output path
(``xfrm_lookup`` → ``xfrm_tmpl_resolve`` → ``xfrm_state_find``) the best outbound policy
for the flow is found; each of its templates needs a valid SA. When one is missing and
no ACQUIRE is already pending for it, a larval SA is made and the registered key
managers get an ACQUIRE (``pfkey_send_acquire``); its ``seq`` is what their GETSPI and
ADD quote to fill that larval.

Policy lookup costs the same at any size for host-to-host selectors (/32 and /128 on
both sides, the usual Mobile IPv6 case): they are found by a dict lookup. Policies with
shorter prefixes are tried one by one, like Linux's inexact list.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pfmigrate.pfkey.constants import Direction, IPProto, MsgType, PolicyType, SAType
from pfmigrate.pfkey.extensions import AddressDst, AddressSrc, Policy, Proposal, SecCtx
from pfmigrate.pfkey.message import Message
from pfmigrate.sadb import lifetimes
from pfmigrate.sadb.core import ACQ_EXPIRES, REGISTERED, Delivery
from pfmigrate.sadb.records import (
    ACQ,
    ERROR,
    EXPIRED,
    INF,
    PROTO_TO_SATYPE,
    TRANSPORT,
    VALID,
    ZERO,
    PolicyRecord,
    SARecord,
    Selector,
    Template,
    host_bits,
    prefix_match,
    sa_selector,
    sockaddr,
)

if TYPE_CHECKING:
    from pfmigrate.sadb.engine import Engine

OUT = 1
REPLAY = 32  # what Linux proposes for the replay window


def flow_policy(
    engine: Engine, family: int, saddr: bytes, daddr: bytes, proto: int, sport: int, dport: int
) -> PolicyRecord | None:
    """The outbound policy for a flow: lowest priority value, then the oldest."""
    candidates = engine.spd.find("exact", (OUT, family, daddr, saddr)) + engine.spd.find("inexact", OUT)
    best: PolicyRecord | None = None
    for policy in candidates:
        if not _selector_match(policy.selector, family, saddr, daddr, proto, sport, dport):
            continue
        if best is None or policy.rank < best.rank:
            best = policy
    return best


def _selector_match(sel: Selector, family: int, saddr: bytes, daddr: bytes, proto: int, sport: int, dport: int) -> bool:
    return (
        sel.family == family
        and prefix_match(daddr, sel.daddr, sel.prefixlen_d)
        and prefix_match(saddr, sel.saddr, sel.prefixlen_s)
        and (not sel.proto or sel.proto == proto)
        and (not sel.sport or sel.sport == sport)
        and (not sel.dport or sel.dport == dport)
    )


def outgoing(
    engine: Engine, flow: tuple[int, bytes, bytes, int, int, int], nbytes: int, now: float, out: list[Delivery]
) -> int:
    """One packet of ``flow`` (family, saddr, daddr, proto, sport, dport): the errno the
    sender would see (0 if it leaves, EPERM if a policy blocks it, EAGAIN while its SAs
    are being negotiated)."""
    family, saddr, daddr, proto, sport, dport = flow
    policy = flow_policy(engine, family, saddr, daddr, proto, sport, dport)
    if policy is None or (not policy.templates and policy.action == 0):
        return 0
    if policy.action == 1:
        return errno.EPERM
    chosen: list[SARecord] = []
    local, remote = saddr, daddr
    for template in policy.templates:
        if template.mode != TRANSPORT:
            remote = template.daddr
            local = template.saddr if template.saddr != ZERO else local
            t_family = template.family
        else:
            t_family = family
        sa = _resolve(engine, policy, template, flow, t_family, local, remote, now, out)
        if sa is not None:
            chosen.append(sa)
        elif not template.optional:
            return errno.EAGAIN
    for sa in chosen:
        lifetimes.account(engine, sa, nbytes, now, out)
    return 0


def _resolve(
    engine: Engine,
    policy: PolicyRecord,
    template: Template,
    flow: tuple[int, bytes, bytes, int, int, int],
    family: int,
    local: bytes,
    remote: bytes,
    now: float,
    out: list[Delivery],
) -> SARecord | None:
    """``xfrm_state_find``: the best valid SA for the template, else maybe an ACQUIRE."""
    best: SARecord | None = None
    pending = failed = False
    candidates = engine.sas_between(remote, local, family, template.reqid)
    if local != ZERO:  # then those bound to any source
        candidates += engine.sas_between(remote, ZERO, family, template.reqid)
    for sa in candidates:
        if sa.mode != template.mode or sa.proto != template.proto:
            continue
        if sa.state == VALID:
            if not _sa_selector_match(sa, flow):
                continue
            # ``xfrm_state_look_at``: not dying beats dying, then the newest; a tie keeps the first
            if best is None or (best.dying, sa.add_time) > (sa.dying, best.add_time):
                best = sa
        elif sa.state == ACQ:
            pending = True
        elif sa.state in (ERROR, EXPIRED) and _sa_selector_match(sa, flow):
            failed = True
    if best is not None or pending or failed:
        return best
    if any(c.registered for c in engine.clients.values()):
        _acquire(engine, policy, template, flow, family, local, remote, now, out)
    return None


def _sa_selector_match(sa: SARecord, flow: tuple[int, bytes, bytes, int, int, int]) -> bool:
    """An SA made through PF_KEY selects on its source (the PROXY address) only."""
    family, saddr, _, proto, sport, _ = flow
    return (
        sa.sel[0] == family
        and prefix_match(saddr, sa.sel[1], sa.sel[2])
        and (not sa.sel[3] or sa.sel[3] == proto)
        and (not sa.sel[4] or sa.sel[4] == sport)
    )


def _acquire(
    engine: Engine,
    policy: PolicyRecord,
    template: Template,
    flow: tuple[int, bytes, bytes, int, int, int],
    family: int,
    local: bytes,
    remote: bytes,
    now: float,
    out: list[Delivery],
) -> None:
    """A larval SA for the template and an ACQUIRE to every registered key manager."""
    engine.acqseq = (engine.acqseq + 1) & 0xFFFFFFFF or 1
    flow_family, flow_saddr, _, flow_proto, flow_sport, _ = flow
    larval = SARecord(
        engine.next_serial(), family, remote, local, 0, template.proto, template.mode, template.reqid,
        sel=sa_selector(flow_family, flow_saddr, host_bits(flow_family), flow_proto, flow_sport),
        state=ACQ, add_time=int(now), lft=(INF, INF, INF, INF, 0, ACQ_EXPIRES, 0, 0),
        seq=engine.acqseq,
    )  # fmt: skip
    with engine.db.transaction():
        engine.insert_sa(larval)
    bits = host_bits(family)
    extensions: list[AddressSrc | AddressDst | Policy | Proposal | SecCtx] = [
        AddressSrc(sockaddr(family, local), bits, IPProto.of(0)),
        AddressDst(sockaddr(family, remote), bits, IPProto.of(0)),
        Policy(PolicyType.IPSEC, Direction.OUTBOUND, policy.index, policy.priority),
    ]
    if template.proto in (50, 51):
        extensions.append(Proposal(REPLAY))  # PF_KEY's templates allow no algorithm: no combinations
    if policy.sec_ctx is not None:
        extensions.append(SecCtx(*policy.sec_ctx))
    satype = PROTO_TO_SATYPE.get(template.proto, 0)
    message = Message(MsgType.ACQUIRE, SAType.of(satype), engine.acqseq, 0, extensions=tuple(extensions))
    engine.broadcast(out, message.encode(), REGISTERED)
