"""Hypothesis strategies for the backend-neutral model."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from hypothesis import strategies as st

from pfmigrate import algorithms
from pfmigrate.model import (
    AH,
    ESP,
    IPCOMP,
    NO_FLAGS,
    Action,
    Algorithm,
    Dir,
    Encap,
    IPAddress,
    KMAddress,
    Lifetime,
    MigrateBundle,
    MigrateRequest,
    Mode,
    Policy,
    SAFlag,
    SecurityAssociation,
    Selector,
    Template,
)

v4 = st.integers(1, 2**32 - 1).map(IPv4Address)
v6 = st.integers(1, 2**128 - 1).map(IPv6Address)


def addresses(version: int) -> st.SearchStrategy[IPAddress]:
    return v4 if version == 4 else v6


@st.composite
def networks(draw: st.DrawFn, version: int) -> IPv4Network | IPv6Network:
    bits = 32 if version == 4 else 128
    address = draw(addresses(version))
    prefix = draw(st.integers(0, bits))
    return ip_network(f"{address}/{prefix}", strict=False)


@st.composite
def selectors(draw: st.DrawFn, version: int | None = None) -> Selector:
    version = version or draw(st.sampled_from([4, 6]))
    proto = draw(st.sampled_from([0, 6, 17, 58, 135]))
    ports = st.integers(0, 65535) if proto in (6, 17) else st.just(0)
    return Selector(draw(networks(version)), draw(networks(version)), proto, draw(ports), draw(ports))


@st.composite
def templates(draw: st.DrawFn, version: int, *, pfkey: bool = False) -> Template:
    """A template; with ``pfkey`` one PF_KEY keeps as it is (no reqid on an optional one,
    none above 0x3fff)."""
    mode = draw(st.sampled_from([Mode.TRANSPORT, Mode.TUNNEL]))
    src = dst = None
    if mode == Mode.TUNNEL:
        tunnel = draw(st.sampled_from([4, 6]))
        src, dst = draw(addresses(tunnel)), draw(addresses(tunnel))
    reqid = draw(st.sampled_from([0, 1, 7, 0x3FFF] if pfkey else [0, 1, 7, 0x3FFF, 0x4000, 0xFFFFFFFF]))
    optional = draw(st.booleans())
    return Template(draw(st.sampled_from([ESP, AH])), mode, src, dst, 0 if pfkey and optional else reqid, optional)


@st.composite
def policies(draw: st.DrawFn, *, pfkey: bool = False) -> Policy:
    selector = draw(selectors())
    action = draw(st.sampled_from(list(Action)))
    found = []
    if action == Action.IPSEC:
        found = draw(st.lists(templates(selector.version, pfkey=pfkey), min_size=1, max_size=3))
    return Policy(selector, draw(st.sampled_from(list(Dir))), tuple(found), action, draw(st.integers(0, 2**32 - 1)))


def pfkey_policies() -> st.SearchStrategy[Policy]:
    return policies(pfkey=True)


def keys(bits: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=bits // 8, max_size=bits // 8)


@st.composite
def pfkey_sas(draw: st.DrawFn) -> SecurityAssociation:
    """SAs PF_KEY can say: algorithms it numbers, Linux's truncation, a u8 replay window."""
    version = draw(st.sampled_from([4, 6]))
    proto = draw(st.sampled_from([ESP, AH]))
    auth_name, trunc = draw(st.sampled_from(sorted(a for a in algorithms.AUTH.values() if a[0] != "digest_null")))
    auth: Algorithm | None = Algorithm(auth_name, draw(keys(draw(st.sampled_from([128, 160, 256])))), trunc)
    enc: Algorithm | None = None
    aead: Algorithm | None = None
    if proto == ESP:
        if draw(st.booleans()):
            enc = Algorithm(draw(st.sampled_from(sorted(algorithms.ENCRYPT.values()))), draw(keys(128)))
        else:
            name, icv = draw(st.sampled_from(sorted(algorithms.AEAD.values())))
            aead, auth = Algorithm(name, draw(keys(160)), icv), None
    seconds = st.integers(0, 10**6)
    lifetime = Lifetime(
        draw(st.integers(0, 2**40)), draw(st.integers(0, 2**40)), draw(st.integers(0, 2**31)),
        draw(st.integers(0, 2**31)), draw(seconds), draw(seconds), draw(seconds), draw(seconds),
    )  # fmt: skip
    return SecurityAssociation(
        draw(addresses(version)), draw(addresses(version)), draw(st.integers(0x100, 2**32 - 1)), proto,
        draw(st.sampled_from(list(Mode))), draw(st.integers(0, 2**32 - 1)), auth, enc, aead, None,
        draw(st.integers(0, 255)), lifetime=lifetime,
    )  # fmt: skip


@st.composite
def xfrm_sas(draw: st.DrawFn) -> SecurityAssociation:
    """SAs XFRM can say: any truncation, a selector, flags, ESP in UDP and IPComp."""
    sa = draw(pfkey_sas())
    auth = sa.auth
    if auth is not None:
        auth = Algorithm(auth.name, auth.key, draw(st.sampled_from([96, 128, 160])))
    selector = draw(st.none() | selectors(sa.src.version))
    flags = NO_FLAGS
    for flag in SAFlag:
        if draw(st.booleans()):
            flags |= flag
    encap = None
    if sa.proto == ESP and draw(st.booleans()):
        oa = draw(st.none() | addresses(sa.src.version))
        encap = Encap(2, draw(st.integers(1, 65535)), draw(st.integers(1, 65535)), oa)
    if draw(st.integers(0, 4)) == 0:  # an IPComp SA: a compression algorithm, nothing else
        comp = Algorithm(draw(st.sampled_from(["deflate", "lzs", "lzjh"])))
        return SecurityAssociation(
            sa.src, sa.dst, draw(st.integers(0x100, 0xFFFF)), IPCOMP, sa.mode, sa.reqid, comp=comp,
            flags=flags, lifetime=sa.lifetime, selector=selector,
        )  # fmt: skip
    return SecurityAssociation(
        sa.src, sa.dst, sa.spi, sa.proto, sa.mode, sa.reqid, auth, sa.enc, sa.aead, None, sa.replay_window,
        flags, lifetime=sa.lifetime, selector=selector, encap=encap,
    )  # fmt: skip


@st.composite
def migrate_requests(draw: st.DrawFn) -> MigrateRequest:
    selector = draw(selectors())
    bundles = []
    for _ in range(draw(st.integers(1, 6))):
        old, new = draw(st.sampled_from([4, 6])), draw(st.sampled_from([4, 6]))
        bundles.append(
            MigrateBundle(
                draw(addresses(old)), draw(addresses(old)), draw(addresses(new)), draw(addresses(new)),
                draw(st.sampled_from([ESP, AH])), draw(st.sampled_from([Mode.TUNNEL, Mode.BEET])),
                draw(st.integers(0, 2**32 - 1)),
            )
        )  # fmt: skip
    kma = None
    if draw(st.booleans()):
        version = draw(st.sampled_from([4, 6]))
        kma = KMAddress(draw(addresses(version)), draw(addresses(version)))
    return MigrateRequest(selector, draw(st.sampled_from(list(Dir))), tuple(bundles), kma)
