"""The SPD entries and SAs one mobile node and its home agent need, and what movement does to them.

RFC 4877 §4.2 (updating RFC 3776) asks for ESP between the two, per protection the
configuration lists (``Protection``); Linux puts a Mobility Header or ICMPv6 type in the
selector's source port. For home address HoA, home agent HA, care-of address CoA and
each mobile network prefix MNP (RFC 3963), with ``*`` for any address:

============  ===============================  =========  ===========  =============  ========
protection    traffic (selector)               ESP mode   MN           HA             reqid
============  ===============================  =========  ===========  =============  ========
bu-ba         HoA -> HA, MH type 5 (BU)        transport  out          in             to-ha
              HA -> HoA, MH type 6 (BA)        transport  in           out            to-mn
mps-mpa       HoA -> HA, ICMPv6 146 (MPS)      transport  out          in             to-ha
              HA -> HoA, ICMPv6 147 (MPA)      transport  in           out            to-mn
hoti-hot      HoA -> *, MH type 1 (HoTI)       CoA -> HA  out          in, fwd        to-ha
              * -> HoA, MH type 3 (HoT)        HA -> CoA  in           out            to-mn
payload       HoA -> *, and MNP -> *           CoA -> HA  out          in, fwd        to-ha
              * -> HoA, and * -> MNP           HA -> CoA  in (+ fwd    out            to-mn
                                                          for MNPs)
============  ===============================  =========  ===========  =============  ========

Tunnelled traffic the home agent decapsulates and passes on (a HoTI on its way to the
correspondent, a packet from the home address) meets Linux's ``fwd`` policies, so the
home agent has one beside each inbound tunnel policy; a mobile router likewise forwards
what arrives for its mobile networks. Signalling policies are preferred to the payload
policies that would otherwise cover them (``PRIORITY``: Linux takes the lowest number).
Transport SAs are bound to the home address and never move; the tunnel SAs' endpoints are
the care-of address, so they exist only while the mobile node is away.

Movement, as lists of changes for ``apply``:

* away to away (``mn_migrations``, ``ha_migrations``): first a MIGRATE of each transport
  policy whose bundle keeps its endpoints (HoA <-> HA) but which carries KMADDRESS with
  the new care-of address, so that the IKE daemon moves its IKE SA (what UMIP does; the
  kernel moves no SA for it); then a MIGRATE of each tunnel policy, old CoA -> new CoA,
  ``in`` and ``fwd`` before ``out``: each end accepts from the new address before it
  sends there. Every MIGRATE carries KMADDRESS: IKE daemons ignore one without it.
* home to away (``mn_leave_home``, ``ha_leave_home``): the transport MIGRATEs, then the
  tunnel SAs and policies added at the care-of address (SAs first, so traffic never meets
  a policy without its SA).
* away to home (``mn_return_home``, ``ha_return_home``): the transport MIGRATEs with the
  home address as KMADDRESS (RFC 6275 §10.3.2, §11.7.1), the tunnels moved back to the
  home address, then the tunnel policies and manual SAs deleted; the transport set stays.

Each comes in two forms. The plain one names each bundle by its old endpoints, which is
what Linux (``linux-pfkey``, ``linux-xfrm``) needs. The ``_by_reqid`` one names each
bundle by reqid with unspecified old endpoints (``::``), which pfmigrate's own engine
(``inprocess``, and ``keyd`` with pfmigrate semantics) takes: an agent need not remember
the old care-of address. It needs a reqid per direction (``shared_reqids = false``):
otherwise one reqid names both directions' SAs and both would be moved to one endpoint
pair, so the ``_by_reqid`` functions refuse such a configuration.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network, ip_address
from typing import Final

from pfmigrate.engine import KeyEngine, KeyEngineError
from pfmigrate.mobility.config import HAConfig, MNConfig, Protection, Role, ServedNode, Toward
from pfmigrate.mobility.config import IPsec as IPsecConfig
from pfmigrate.model import (
    ANY_PROTO,
    ESP,
    MH,
    Dir,
    IPAddress,
    KMAddress,
    MigrateBundle,
    MigrateRequest,
    Mode,
    Policy,
    SecurityAssociation,
    Selector,
    Template,
)

ICMPV6: Final = 58
#: Per protection: the upper-layer protocol, and the message type toward the home agent and
#: toward the mobile node (RFC 6275 §6.1.3, §6.1.5, §6.1.7, §6.1.8, §6.7, §6.8).
TRAFFIC: Final = {
    Protection.BU_BA: (MH, 5, 6),
    Protection.MPS_MPA: (ICMPV6, 146, 147),
    Protection.HOTI_HOT: (MH, 1, 3),
    Protection.PAYLOAD: (ANY_PROTO, 0, 0),
}
#: Policy priorities (Linux prefers the lower): signalling, then the Home Test tunnel, then
#: the payload tunnel whose selectors would also cover the others.
PRIORITY: Final = {
    Protection.BU_BA: 1000,
    Protection.MPS_MPA: 1000,
    Protection.HOTI_HOT: 2000,
    Protection.PAYLOAD: 3000,
}
ANYWHERE: Final = IPv6Network("::/0")
UNSPECIFIED: Final = IPv6Address("::")
_DIR_ORDER: Final = {Dir.IN: 0, Dir.FWD: 1, Dir.OUT: 2}

Address = IPv6Address | str


# --- what is applied -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddSA:
    sa: SecurityAssociation


@dataclass(frozen=True, slots=True)
class AddPolicy:
    policy: Policy


@dataclass(frozen=True, slots=True)
class UpdatePolicy:
    """Replace the policy of the same selector and direction (or add it)."""

    policy: Policy


@dataclass(frozen=True, slots=True)
class DeletePolicy:
    selector: Selector
    dir: Dir


@dataclass(frozen=True, slots=True)
class DeleteSA:
    dst: IPAddress
    spi: int
    proto: int = ESP


@dataclass(frozen=True, slots=True)
class CheckSA:
    """After a move named by old endpoints: ``sa`` must be there, between its new
    endpoints. Such a MIGRATE that found no SA to move still succeeds (with IKE the SAs
    may not be made yet), so with manual keys a missing SA is only noticed this way.
    (Checks cost a round trip each: on Linux a few microseconds, through the in-process
    engine about 0.1 ms, which would take the handover over its 2 ms; moves named by
    reqid go without them.)"""

    sa: SecurityAssociation


Change = MigrateRequest | AddSA | AddPolicy | UpdatePolicy | DeletePolicy | DeleteSA | CheckSA


def apply(engine: KeyEngine, changes: Iterable[Change]) -> None:
    """Carry out ``changes`` in order (a ``KeyEngineError`` stops at the change it names)."""
    for change in changes:
        match change:
            case MigrateRequest():
                engine.migrate(change)
            case AddSA(sa):
                engine.add_sa(sa)
            case AddPolicy(policy):
                engine.add_policy(policy)
            case UpdatePolicy(policy):
                engine.update_policy(policy)
            case DeletePolicy(selector, direction):
                _gone_already(lambda: engine.delete_policy(selector, direction), errno.ENOENT)
            case DeleteSA(dst, spi, proto):
                _gone_already(lambda: engine.delete_sa(dst, spi, proto), errno.ESRCH)
            case CheckSA(sa):
                _check_sa(engine, sa)


def _gone_already(delete: Callable[[], None], missing: int) -> None:
    """A deletion whose target is not there has what it wanted (on the way home, an SA
    someone else removed must not keep the others)."""
    try:
        delete()
    except KeyEngineError as exc:
        if exc.errno != missing:
            raise


def _check_sa(engine: KeyEngine, sa: SecurityAssociation) -> None:
    """``KeyEngineError`` ENODATA ("no matching SA", as a MIGRATE that finds none says)
    unless ``sa`` is there with its endpoints."""
    what = f"after the move, SA 0x{sa.spi:08x} to {sa.dst}"
    try:
        found = engine.get_sa(sa.dst, sa.spi, sa.proto)
    except KeyEngineError as exc:
        if exc.errno not in (errno.ESRCH, errno.ENOENT):
            raise
        raise KeyEngineError(errno.ENODATA, "check", f"{what} is missing") from None
    if found.src != sa.src:
        raise KeyEngineError(errno.ENODATA, "check", f"{what} comes from {found.src}, not {sa.src}")


@dataclass(frozen=True, slots=True)
class PolicySet:
    """SPD entries and SAs (the SAs only with manual keys: with IKE the key manager makes them)."""

    policies: tuple[Policy, ...]
    sas: tuple[SecurityAssociation, ...]

    def changes(self) -> list[Change]:
        """Install it: the SAs first, so no traffic meets a policy without its SA."""
        return [*(AddSA(sa) for sa in self.sas), *(AddPolicy(policy) for policy in self.policies)]


@dataclass(frozen=True, slots=True)
class Owned:
    """What is one mobile node's in a host's tables, wherever the node is: its policies
    by selector and direction, its manual SAs by SPI and reqid (a repair removes the rest
    of them). The reqid tells nodes apart: two may use one SPI toward their own
    addresses, never one reqid."""

    policies: frozenset[tuple[Selector, Dir]]
    sas: frozenset[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Goal:
    """What one node's entries must be once a change is done: ``target``, of which the
    node's ``owned`` entries keep only what it has; tunnels moved with ``kmaddress``;
    ``announcements``: the MIGRATEs that tell the IKE daemon and move nothing;
    ``parting``: the tunnel policies as they are once moved home, before they go
    (at home; their SAs, made by IKE, stay at the home address as without a read-back)."""

    target: PolicySet
    owned: Owned
    kmaddress: KMAddress
    announcements: tuple[MigrateRequest, ...] = ()
    parting: tuple[Policy, ...] = ()


def _owned(pair: _Pair) -> Owned:
    everything = _policy_set(pair, pair.home_address)  # the away set: any address will do, only keys count
    return Owned(
        frozenset((p.selector, p.dir) for p in everything.policies),
        frozenset((sa.spi, sa.reqid) for sa in everything.sas),
    )


# --- one pair, seen from one side ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pair:
    side: Role
    home_address: IPv6Address
    home_agent: IPv6Address
    prefixes: tuple[IPv6Network, ...]
    ipsec: IPsecConfig

    def where(self, address: Address | None, what: str) -> IPv6Address | None:
        """The care-of address, ``None`` at home (no address, or the home address)."""
        if address is None:
            return None
        found = ip_address(address)
        if not isinstance(found, IPv6Address) or found.is_unspecified or found.is_multicast:
            raise ValueError(f"the {what} care-of address must be an IPv6 unicast address, not {address}")
        if found == self.home_agent:
            raise ValueError(f"the {what} care-of address {found} is the home agent's")
        return None if found == self.home_address else found

    def away(self, address: Address | None, what: str) -> IPv6Address:
        coa = self.where(address, what)
        if coa is None:
            raise ValueError(f"the {what} care-of address is the home address: that is leaving or returning home")
        return coa

    def kmaddress(self, where: IPv6Address) -> KMAddress:
        """The key managers' addresses once the mobile node is at ``where``."""
        if self.side is Role.MN:
            return KMAddress(where, self.home_agent)
        return KMAddress(self.home_agent, where)

    def endpoints(self, protection: Protection, toward: Toward, coa: IPv6Address) -> tuple[IPv6Address, IPv6Address]:
        """An SA's (source, destination): tunnels end at the care-of address, transport at the home address."""
        mobile = coa if protection.tunnel else self.home_address
        return (mobile, self.home_agent) if toward is Toward.HA else (self.home_agent, mobile)


def _mn_pair(config: MNConfig) -> _Pair:
    return _Pair(Role.MN, config.home_address, config.home_agent, config.mobile_network_prefixes, config.ipsec)


def _ha_pair(config: HAConfig, node: ServedNode | Address) -> _Pair:
    served = node if isinstance(node, ServedNode) else config.mobile_node(node)
    return _Pair(Role.HA, served.home_address, config.address, served.mobile_network_prefixes, served.ipsec)


@dataclass(frozen=True, slots=True)
class _Rule:
    """One SPD entry without its template: what it selects, its direction, and which
    protection and direction of SA it asks for."""

    protection: Protection
    toward: Toward
    dir: Dir
    selector: Selector


def _directions(side: Role, protection: Protection, toward: Toward, prefix: bool) -> tuple[Dir, ...]:
    if (side is Role.MN) == (toward is Toward.HA):
        return (Dir.OUT,)
    forwards = prefix if side is Role.MN else protection.tunnel
    return (Dir.IN, Dir.FWD) if forwards else (Dir.IN,)


def _rules(pair: _Pair) -> list[_Rule]:
    home = IPv6Network(pair.home_address)
    rules: list[_Rule] = []
    for protection in pair.ipsec.protect:
        proto, up, down = TRAFFIC[protection]
        peer = ANYWHERE if protection.tunnel else IPv6Network(pair.home_agent)
        subjects = (home, *pair.prefixes) if protection is Protection.PAYLOAD else (home,)
        for subject in subjects:
            prefix = subject != home
            group = [
                _Rule(protection, toward, direction, selector)
                for toward, selector in (
                    (Toward.HA, Selector(subject, peer, proto, up)),
                    (Toward.MN, Selector(peer, subject, proto, down)),
                )
                for direction in _directions(pair.side, protection, toward, prefix)
            ]
            rules.extend(sorted(group, key=lambda rule: _DIR_ORDER[rule.dir]))
    return rules


def _template(pair: _Pair, protection: Protection, toward: Toward, coa: IPv6Address) -> Template:
    reqid = pair.ipsec.reqid(protection, toward)
    if not protection.tunnel:
        return Template(ESP, Mode.TRANSPORT, reqid=reqid)
    src, dst = pair.endpoints(protection, toward, coa)
    return Template(ESP, Mode.TUNNEL, src, dst, reqid)


def _policy_set(pair: _Pair, coa: IPv6Address | None, *, tunnels_only: bool = False) -> PolicySet:
    """The set for the mobile node at ``coa`` (``None``: at home, the transport set)."""
    away = coa is not None
    wanted = [p for p in pair.ipsec.protect if (away if p.tunnel else not tunnels_only)]
    where = pair.home_address if coa is None else coa
    policies = tuple(
        Policy(
            rule.selector,
            rule.dir,
            (_template(pair, rule.protection, rule.toward, where),),
            priority=PRIORITY[rule.protection],
        )
        for rule in _rules(pair)
        if rule.protection in wanted
    )
    sas: list[SecurityAssociation] = []
    for protection in wanted:
        for toward in Toward:
            keys = pair.ipsec.keys.get((protection, toward))
            if keys is None:
                continue
            src, dst = pair.endpoints(protection, toward, where)
            encryption, authentication = pair.ipsec.algorithms(keys)
            mode = Mode.TUNNEL if protection.tunnel else Mode.TRANSPORT
            reqid = pair.ipsec.reqid(protection, toward)
            sas.append(SecurityAssociation(src, dst, keys.spi, ESP, mode, reqid, authentication, encryption))
    return PolicySet(policies, tuple(sas))


def _announcements(pair: _Pair, kmaddress: KMAddress) -> list[MigrateRequest]:
    """A MIGRATE of each transport policy that keeps its endpoints and carries KMADDRESS."""
    requests = []
    for rule in _rules(pair):
        if rule.protection.tunnel:
            continue
        src, dst = pair.endpoints(rule.protection, rule.toward, pair.home_address)
        reqid = pair.ipsec.reqid(rule.protection, rule.toward)
        bundle = MigrateBundle(src, dst, src, dst, ESP, Mode.TRANSPORT, reqid)
        requests.append(MigrateRequest(rule.selector, rule.dir, (bundle,), kmaddress))
    return requests


def is_announcement(request: MigrateRequest) -> bool:
    """Whether ``request`` moves nothing (every bundle keeps its endpoints): it only tells
    the IKE daemon the new KMADDRESS."""
    return all((b.old_src, b.old_dst) == (b.new_src, b.new_dst) for b in request.bundles)


def _tunnel_moves(pair: _Pair, old: IPv6Address | None, new: IPv6Address, kmaddress: KMAddress) -> list[MigrateRequest]:
    """A MIGRATE of each tunnel policy to ``new`` (``old`` ``None``: named by reqid)."""
    if old is None and pair.ipsec.shared_reqids:
        raise ValueError(
            "with shared_reqids one reqid names the SAs of both directions, so bundles cannot be named by "
            "reqid alone: give the old care-of address"
        )
    requests = []
    for rule in _rules(pair):
        if not rule.protection.tunnel:
            continue
        if old is None:
            old_src = old_dst = UNSPECIFIED
        else:
            old_src, old_dst = pair.endpoints(rule.protection, rule.toward, old)
        new_src, new_dst = pair.endpoints(rule.protection, rule.toward, new)
        reqid = pair.ipsec.reqid(rule.protection, rule.toward)
        bundle = MigrateBundle(old_src, old_dst, new_src, new_dst, ESP, Mode.TUNNEL, reqid)
        requests.append(MigrateRequest(rule.selector, rule.dir, (bundle,), kmaddress))
    return requests


def _migrations(pair: _Pair, old: Address | None, new: Address, *, by_reqid: bool) -> list[MigrateRequest]:
    old_coa = None if by_reqid else pair.away(old, "old")
    new_coa = pair.away(new, "new")
    if old_coa == new_coa:
        return []
    kmaddress = pair.kmaddress(new_coa)
    return _announcements(pair, kmaddress) + _tunnel_moves(pair, old_coa, new_coa, kmaddress)


def _leave_home(pair: _Pair, coa: Address) -> list[Change]:
    where = pair.away(coa, "new")
    return [*_announcements(pair, pair.kmaddress(where)), *_policy_set(pair, where, tunnels_only=True).changes()]


def _return_home(pair: _Pair, old: Address | None, *, by_reqid: bool) -> list[Change]:
    old_coa = None if by_reqid else pair.away(old, "old")
    home = pair.home_address
    kmaddress = pair.kmaddress(home)
    tunnels = _policy_set(pair, home, tunnels_only=True)  # as they are once moved home
    return [
        *_announcements(pair, kmaddress),
        *_tunnel_moves(pair, old_coa, home, kmaddress),
        *(DeletePolicy(policy.selector, policy.dir) for policy in tunnels.policies),
        *(DeleteSA(sa.dst, sa.spi, sa.proto) for sa in tunnels.sas),
    ]


def _move(pair: _Pair, old: Address | None, new: Address | None, by_reqid: bool) -> list[Change]:
    old_coa, new_coa = pair.where(old, "old"), pair.where(new, "new")
    if new_coa is None:
        return [] if old_coa is None else _return_home(pair, old_coa, by_reqid=by_reqid)
    if old_coa is None:
        return _leave_home(pair, new_coa)
    moves: list[Change] = [*_migrations(pair, old_coa, new_coa, by_reqid=by_reqid)]
    if not by_reqid:  # Linux's MIGRATE moves what it finds: a missing SA is no error to it
        moves += (CheckSA(sa) for sa in _policy_set(pair, new_coa, tunnels_only=True).sas)
    return moves


def _goal(pair: _Pair, coa: Address | None) -> Goal:
    where = pair.where(coa, "target")
    kmaddress = pair.kmaddress(pair.home_address if where is None else where)
    parting = _policy_set(pair, pair.home_address, tunnels_only=True).policies if where is None else ()
    return Goal(_policy_set(pair, where), _owned(pair), kmaddress, tuple(_announcements(pair, kmaddress)), parting)


# --- the mobile node ---------------------------------------------------------------------------


def mn_policy_set(config: MNConfig, coa: Address | None) -> PolicySet:
    """The mobile node's SPD entries and manual SAs at ``coa`` (``None`` or the home address: at home)."""
    pair = _mn_pair(config)
    return _policy_set(pair, pair.where(coa, "current"))


def mn_owned(config: MNConfig) -> Owned:
    return _owned(_mn_pair(config))


def mn_goal(config: MNConfig, coa: Address | None) -> Goal:
    """The mobile node's entries once it is at ``coa`` (``None``: home), for a read-back."""
    return _goal(_mn_pair(config), coa)


def mn_migrations(config: MNConfig, old_coa: Address, new_coa: Address) -> list[MigrateRequest]:
    """Away to away, naming each tunnel bundle by its old endpoints (for Linux)."""
    return _migrations(_mn_pair(config), old_coa, new_coa, by_reqid=False)


def mn_migrations_by_reqid(config: MNConfig, new_coa: Address) -> list[MigrateRequest]:
    """Away to away, naming each tunnel bundle by reqid (for pfmigrate's engine)."""
    return _migrations(_mn_pair(config), None, new_coa, by_reqid=True)


def mn_leave_home(config: MNConfig, coa: Address) -> list[Change]:
    """Home to away: the KMADDRESS announcements, then the tunnel SAs and policies at ``coa``."""
    return _leave_home(_mn_pair(config), coa)


def mn_return_home(config: MNConfig, old_coa: Address) -> list[Change]:
    """Away to home: tunnels moved back to the home address (by old endpoints), then removed."""
    return _return_home(_mn_pair(config), old_coa, by_reqid=False)


def mn_return_home_by_reqid(config: MNConfig) -> list[Change]:
    """Away to home with the tunnel bundles named by reqid."""
    return _return_home(_mn_pair(config), None, by_reqid=True)


def mn_move(
    config: MNConfig, old_coa: Address | None, new_coa: Address | None, *, by_reqid: bool = False
) -> list[Change]:
    """Whichever of the above a move from ``old_coa`` to ``new_coa`` is (``None`` or the
    home address: at home). With ``by_reqid``, ``old_coa`` only says whether the mobile
    node was at home."""
    return _move(_mn_pair(config), old_coa, new_coa, by_reqid)


# --- the home agent, for one of its mobile nodes ---------------------------------------------------


def ha_owned(config: HAConfig, node: ServedNode | Address) -> Owned:
    return _owned(_ha_pair(config, node))


def ha_goal(config: HAConfig, node: ServedNode | Address, coa: Address | None) -> Goal:
    """The home agent's entries for ``node`` bound at ``coa`` (``None``: no binding), for a read-back."""
    return _goal(_ha_pair(config, node), coa)


def ha_policy_set(config: HAConfig, node: ServedNode | Address, coa: Address | None) -> PolicySet:
    """The home agent's SPD entries and manual SAs for ``node`` (one of ``config.mobile_nodes``
    or its home address) registered at ``coa`` (``None`` or the home address: no binding)."""
    pair = _ha_pair(config, node)
    return _policy_set(pair, pair.where(coa, "current"))


def ha_migrations(
    config: HAConfig, node: ServedNode | Address, old_coa: Address, new_coa: Address
) -> list[MigrateRequest]:
    return _migrations(_ha_pair(config, node), old_coa, new_coa, by_reqid=False)


def ha_migrations_by_reqid(config: HAConfig, node: ServedNode | Address, new_coa: Address) -> list[MigrateRequest]:
    return _migrations(_ha_pair(config, node), None, new_coa, by_reqid=True)


def ha_leave_home(config: HAConfig, node: ServedNode | Address, coa: Address) -> list[Change]:
    """A first registration from ``coa``."""
    return _leave_home(_ha_pair(config, node), coa)


def ha_return_home(config: HAConfig, node: ServedNode | Address, old_coa: Address) -> list[Change]:
    """A de-registration: the mobile node is home again."""
    return _return_home(_ha_pair(config, node), old_coa, by_reqid=False)


def ha_return_home_by_reqid(config: HAConfig, node: ServedNode | Address) -> list[Change]:
    return _return_home(_ha_pair(config, node), None, by_reqid=True)


def ha_move(
    config: HAConfig,
    node: ServedNode | Address,
    old_coa: Address | None,
    new_coa: Address | None,
    *,
    by_reqid: bool = False,
) -> list[Change]:
    return _move(_ha_pair(config, node), old_coa, new_coa, by_reqid)


__all__ = [
    "AddSA",
    "AddPolicy",
    "UpdatePolicy",
    "DeletePolicy",
    "DeleteSA",
    "Change",
    "PolicySet",
    "Owned",
    "Goal",
    "apply",
    "is_announcement",
    "mn_goal",
    "ha_goal",
    "mn_owned",
    "ha_owned",
    "mn_policy_set",
    "mn_migrations",
    "mn_migrations_by_reqid",
    "mn_leave_home",
    "mn_return_home",
    "mn_return_home_by_reqid",
    "mn_move",
    "ha_policy_set",
    "ha_migrations",
    "ha_migrations_by_reqid",
    "ha_leave_home",
    "ha_return_home",
    "ha_return_home_by_reqid",
    "ha_move",
    "TRAFFIC",
    "PRIORITY",
    "ICMPV6",
]
