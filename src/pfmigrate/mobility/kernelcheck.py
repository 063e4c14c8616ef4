"""What ``pfmigrate mn`` and ``pfmigrate ha`` need of this host, checked before they start.

An agent that starts on a kernel that cannot carry its work out does harm quietly: a
home agent whose Binding Acknowledgements cannot take a type 2 routing header (no
``mip6``) would keep bindings it never acknowledged, and a mobile node would retransmit
its Binding Updates for ever. So each agent names, at start, the first thing missing
and refuses to run, unless told to go without route optimisation where only that is
missing (``--no-route-optimisation``, ``route_optimisation = false``).

Linux says little about why it refuses a state, and this host may have neither
``/proc/config.gz`` nor a modules directory; so the checks are probes, each one the
smallest request that needs the feature, and an errno is mapped to the feature it
means (``explain``, no I/O). The probes add a state or a policy of documentation
addresses (2001:db8::/32) and remove it at once.
"""

from __future__ import annotations

import errno as _errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Final

from pfmigrate.backends import linux
from pfmigrate.engine import Capabilities, KeyEngine, KeyEngineError
from pfmigrate.mobility import routeopt
from pfmigrate.mobility.routeopt import Header, RoPolicy, RoSet, RoState, RouteOptimization
from pfmigrate.model import Algorithm, Dir, SecurityAssociation


@dataclass(frozen=True, slots=True)
class Feature:
    """One thing a kernel may lack: what it is for, its build option and its module."""

    what: str
    option: str
    module: str | None = None

    def __str__(self) -> str:
        module = f"module {self.module}, " if self.module else ""
        return f"{self.what} ({module}{self.option})"


XFRM_USER: Final = Feature("XFRM netlink", "CONFIG_XFRM_USER", "xfrm_user")
XFRM_MIGRATE: Final = Feature("MIGRATE over XFRM netlink", "CONFIG_XFRM_MIGRATE")
AF_KEY: Final = Feature("PF_KEY sockets", "CONFIG_NET_KEY", "af_key")
NET_KEY_MIGRATE: Final = Feature("MIGRATE over PF_KEY", "CONFIG_NET_KEY_MIGRATE")
ESP6: Final = Feature("ESP for IPv6", "CONFIG_INET6_ESP", "esp6")
MIP6: Final = Feature(
    "Mobile IPv6 route-optimisation states for the Home Address option and type 2 routing header",
    "CONFIG_IPV6_MIP6",
    "mip6",
)
SUB_POLICY: Final = Feature("XFRM sub policies, which route optimisation uses", "CONFIG_XFRM_SUB_POLICY")
#: Features route optimisation needs: going without it is a choice the operator may make.
ROUTE_OPTIMISATION: Final = frozenset({XFRM_USER, MIP6, SUB_POLICY})


class Unfit(Exception):
    """This host cannot run the agent as configured; the message says what is missing
    and what to do."""


class MissingFeature(Unfit):
    def __init__(self, feature: Feature, detail: str) -> None:
        self.feature = feature
        self.detail = detail
        hint = f"load module {feature.module} or " if feature.module else ""
        hint += f"use a kernel built with {feature.option}"
        if feature in ROUTE_OPTIMISATION:
            hint += ", or run without route optimisation (--no-route-optimisation, route_optimisation = false)"
        super().__init__(f"this kernel lacks {feature}: {detail}; {hint}")


class NoSuchInterface(Unfit):
    def __init__(self, interface: str, source: str) -> None:
        self.interface = interface
        super().__init__(f"{source}: mobile_node.interface: there is no interface {interface!r} on this host")


def explain(probe: str, error: OSError) -> Feature | None:
    """The feature whose absence ``error`` (the answer to ``probe``: "ro state",
    "ro policy" or "esp state") means, or ``None`` if it means something else (no
    privilege, say). Linux answers EPROTONOSUPPORT when a state's type has no module
    loaded (``xfrm_get_type``), EINVAL "Unsupported protocol" when the protocol is not
    built in at all, and EINVAL "Sub policy not supported" without sub policies."""
    detail = getattr(error, "detail", "") or ""
    if probe == "ro policy" and error.errno == _errno.EINVAL:
        return SUB_POLICY
    if probe == "ro state" and error.errno in (_errno.EPROTONOSUPPORT, _errno.EINVAL, _errno.ENOPROTOOPT):
        return MIP6
    if probe == "esp state" and (
        error.errno == _errno.EPROTONOSUPPORT or (error.errno == _errno.EINVAL and "protocol" in detail.lower())
    ):
        return ESP6
    return None


def check_interface(interface: str, source: str, index: Callable[[str], int] = socket.if_nametoindex) -> None:
    """``NoSuchInterface`` unless ``interface`` exists in this network namespace."""
    try:
        index(interface)
    except OSError:
        raise NoSuchInterface(interface, source) from None


# Documentation addresses (RFC 3849): probes never touch anyone's traffic.
_PROBE_HOA, _PROBE_PEER, _PROBE_COA = (IPv6Address(f"2001:db8:ffff::{n}") for n in (1, 2, 3))
_PROBE_SPI = 0xFFFF_FF00
MH_PROBE_TYPE = 255  # an MH type no one sends, for the probe policy's selector


def ro_probe() -> tuple[RoSet, RoSet]:
    """The probe's state and its sub policy, as two sets (each is refused on its own)."""
    state = RoState(Header.ROUTING_TYPE_2, _PROBE_PEER, _PROBE_HOA, _PROBE_COA)
    policy = RoPolicy(routeopt.mh_selector(_PROBE_PEER, _PROBE_HOA, MH_PROBE_TYPE), Dir.OUT, state.header)
    return RoSet((state,)), RoSet((), (policy,))


def esp_probe() -> SecurityAssociation:
    zero = bytes(16)
    return SecurityAssociation(
        _PROBE_PEER,
        _PROBE_HOA,
        _PROBE_SPI,
        enc=Algorithm("cbc(aes)", zero),
        auth=Algorithm("hmac(sha256)", zero * 2, 128),
    )


@dataclass(frozen=True, slots=True)
class Probes:
    """How to look (the I/O), replaceable for tests."""

    xfrm: Callable[[], Capabilities] = linux.probe_xfrm
    pfkey: Callable[[], Capabilities] = linux.probe_pfkey
    open_xfrm: Callable[[], KeyEngine] = linux.open_xfrm


def check(engine: KeyEngine, *, route_optimisation: bool, probes: Probes = Probes()) -> None:
    """``MissingFeature`` for the first thing this kernel lacks that the agent needs:
    MIGRATE and ESP where the IPsec is the kernel's (the linux backends; keyd and the
    in-process engine keep their own), and the route-optimisation states wherever the
    agent adds Mobility Headers' extension headers (always the kernel's XFRM)."""
    if engine.name == "linux-xfrm":
        _capable(probes.xfrm(), XFRM_USER, XFRM_MIGRATE)
    elif engine.name == "linux-pfkey":
        _capable(probes.pfkey(), AF_KEY, NET_KEY_MIGRATE)
    if engine.name in ("linux-xfrm", "linux-pfkey"):
        _probe_esp(engine)
    if route_optimisation:
        _probe_ro(engine, probes.open_xfrm)


def _capable(found: Capabilities, sockets: Feature, migrate: Feature) -> None:
    said = "; ".join(found.notes) or "the probe found none"
    if not found.available:
        raise MissingFeature(sockets, said)
    if not found.migrate:
        raise MissingFeature(migrate, said)


def _probe_esp(engine: KeyEngine) -> None:
    probe = esp_probe()
    try:
        engine.add_sa(probe)
    except KeyEngineError as exc:
        if exc.errno != _errno.EEXIST:  # (one a killed probe left behind: ESP is there)
            feature = explain("esp state", exc)
            if feature is not None:
                raise MissingFeature(feature, str(exc)) from None
            raise
    engine.delete_sa(probe.dst, probe.spi, probe.proto)


def _probe_ro(engine: KeyEngine, open_xfrm: Callable[[], KeyEngine]) -> None:
    try:
        kernel = engine if engine.name == "linux-xfrm" else open_xfrm()
    except OSError as exc:
        raise MissingFeature(XFRM_USER, exc.strerror or str(exc)) from None
    try:
        ro = RouteOptimization(kernel)
        for kind, probe in zip(("ro state", "ro policy"), ro_probe(), strict=True):
            ro.remove(probe, missing_ok=True)
            try:
                ro.install(probe)
            except KeyEngineError as exc:
                feature = explain(kind, exc)
                if feature is not None:
                    raise MissingFeature(feature, str(exc)) from None
                raise
            ro.remove(probe)
    finally:
        if kernel is not engine:
            kernel.close()
