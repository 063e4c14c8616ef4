"""The model through each backend's wire format and back, without a kernel."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfmigrate.backends import pfkey_ops, xfrm_ops
from pfmigrate.engine import Unsupported
from pfmigrate.model import (
    AH,
    ESP,
    Dir,
    KMAddress,
    MigrateBundle,
    MigrateRequest,
    Mode,
    Policy,
    SecurityAssociation,
    Selector,
    Template,
)
from pfmigrate.pfkey import MsgType
from pfmigrate.pfkey import decode as pfkey_decode
from pfmigrate.xfrm import Attribute, UserpolicyInfo, UsersaInfo, XfrmMessage
from pfmigrate.xfrm import MsgType as XfrmMsgType
from pfmigrate.xfrm import decode as xfrm_decode
from tests.model_strategies import (
    addresses,
    migrate_requests,
    pfkey_policies,
    pfkey_sas,
    policies,
    selectors,
    xfrm_sas,
)

EXAMPLES = settings(max_examples=300, deadline=None)


def xfrm_one(data: bytes) -> XfrmMessage:
    [msg] = xfrm_decode(data)
    assert isinstance(msg, XfrmMessage)
    return msg


@EXAMPLES
@given(pfkey_sas())
def test_sa_through_pfkey(sa: SecurityAssociation) -> None:
    wire = pfkey_ops.sa_message(MsgType.ADD, sa).encode()
    assert pfkey_ops.sa_from(pfkey_decode(wire)) == sa


@EXAMPLES
@given(xfrm_sas())
def test_sa_through_xfrm(sa: SecurityAssociation) -> None:
    msg = xfrm_one(xfrm_ops.sa_to(XfrmMsgType.NEWSA, sa, 1).encode())
    assert isinstance(msg.fixed, UsersaInfo)
    assert xfrm_ops.sa_from(msg.fixed, msg.attrs) == sa


@EXAMPLES
@given(pfkey_policies())
def test_policy_through_pfkey(policy: Policy) -> None:
    wire = pfkey_ops.policy_message(MsgType.X_SPDADD, policy).encode()
    assert pfkey_ops.policy_from(pfkey_decode(wire)) == policy


@EXAMPLES
@given(policies())
def test_policy_through_xfrm(policy: Policy) -> None:
    msg = xfrm_one(xfrm_ops.policy_to(XfrmMsgType.NEWPOLICY, policy, 1).encode())
    assert isinstance(msg.fixed, UserpolicyInfo)
    assert xfrm_ops.policy_from(msg.fixed, msg.attrs) == policy


@EXAMPLES
@given(migrate_requests())
def test_migrate_through_pfkey(request: MigrateRequest) -> None:
    wire = pfkey_ops.migrate_message(request).encode()
    announced = pfkey_decode(wire)
    # A broadcast carries the selector's protocol as XFRM does (0: any) and no ports.
    assert pfkey_ops.migrate_from(announced).bundles == request.bundles
    assert pfkey_ops.migrate_from(announced).kmaddress == request.kmaddress


@EXAMPLES
@given(migrate_requests())
def test_migrate_through_xfrm(request: MigrateRequest) -> None:
    assert xfrm_ops.migrate_from(xfrm_one(xfrm_ops.migrate_to(request, 7).encode())) == request


@EXAMPLES
@given(migrate_requests())
def test_the_migrate_fast_path_writes_the_same_bytes(request: MigrateRequest) -> None:
    assert xfrm_ops.encode_migrate(request, 7) == xfrm_ops.migrate_to(request, 7).encode()


@st.composite
def handover_requests(draw: st.DrawFn) -> MigrateRequest:
    """One bundle and KMADDRESS, the agents' message: mostly all IPv6 (the fastest path),
    sometimes with an IPv4 pair or key-manager address to take the general one."""
    families = st.sampled_from([6, 6, 6, 4])
    old, new, km = draw(families), draw(families), draw(families)
    bundle = MigrateBundle(
        draw(addresses(old)), draw(addresses(old)), draw(addresses(new)), draw(addresses(new)),
        draw(st.sampled_from([ESP, AH])), draw(st.sampled_from(list(Mode))), draw(st.integers(0, 2**32 - 1)),
    )  # fmt: skip
    kma = KMAddress(draw(addresses(km)), draw(addresses(km)))
    return MigrateRequest(draw(selectors(draw(families))), draw(st.sampled_from(list(Dir))), (bundle,), kma)


@EXAMPLES
@given(handover_requests(), st.integers(0, 2**32 - 1))
def test_the_handover_fast_path_writes_the_same_bytes(request: MigrateRequest, seq: int) -> None:
    assert xfrm_ops.encode_migrate(request, seq) == xfrm_ops.migrate_to(request, seq).encode()


def test_an_sa_selector_for_all_traffic_of_its_family_is_no_selector() -> None:
    from ipaddress import ip_address

    from pfmigrate.model import SecurityAssociation, Selector

    any4 = SecurityAssociation(ip_address("10.0.0.1"), ip_address("10.0.0.2"), 0x100, selector=Selector.any(4))
    assert any4.selector is None
    assert any4 == SecurityAssociation(ip_address("10.0.0.1"), ip_address("10.0.0.2"), 0x100)
    narrower = Selector.host("10.0.0.1", "10.0.0.2")
    assert SecurityAssociation(ip_address("10.0.0.1"), ip_address("10.0.0.2"), 0x100, selector=narrower).selector


def test_an_xfrm_sa_without_the_algorithm_its_protocol_needs_is_larval() -> None:
    """XFRM does not report an SA's state; Linux sets up no ESP SA without encryption, no
    AH without authentication, no IPComp without compression, so only a larval one
    (GETSPI's, an ACQUIRE's) comes back without them."""
    from ipaddress import ip_address

    from pfmigrate.model import IPCOMP, Algorithm, SAState

    src, dst = ip_address("10.0.0.1"), ip_address("10.0.0.2")
    aes, sha = Algorithm("cbc(aes)", bytes(16)), Algorithm("hmac(sha256)", bytes(32), 128)
    cases = [
        (SecurityAssociation(src, dst, 0x4444), SAState.LARVAL),
        (SecurityAssociation(src, dst, 0x4444, auth=sha), SAState.LARVAL),  # (ESP needs encryption)
        (SecurityAssociation(src, dst, 0x4444, enc=aes), SAState.MATURE),
        (SecurityAssociation(src, dst, 0x4444, AH), SAState.LARVAL),
        (SecurityAssociation(src, dst, 0x4444, AH, auth=sha), SAState.MATURE),
        (SecurityAssociation(src, dst, 0x4444, IPCOMP, comp=Algorithm("deflate", b"")), SAState.MATURE),
    ]
    for sa, state in cases:
        msg = xfrm_one(xfrm_ops.sa_to(XfrmMsgType.NEWSA, sa, 1).encode())
        assert isinstance(msg.fixed, UsersaInfo)
        assert xfrm_ops.sa_from(msg.fixed, msg.attrs).state is state, sa


@pytest.mark.parametrize(
    "template",
    [Template(ESP, reqid=0x4000), Template(ESP, reqid=7, optional=True)],
    ids=["reqid-above-0x3fff", "reqid-on-an-optional-template"],
)
def test_a_template_pfkey_would_change_is_unsupported(template: Template) -> None:
    """Linux's af_key gives a reqid above 0x3fff one of its own, and keeps none for an
    optional template: said, not done behind the caller's back."""
    policy = Policy(Selector.any(4), Dir.OUT, (template,))
    with pytest.raises(Unsupported):
        pfkey_ops.policy_message(MsgType.X_SPDADD, policy)
    assert xfrm_ops.policy_from(*_info_and_attrs(policy)).templates == (template,)  # (XFRM keeps it)


def _info_and_attrs(policy: Policy) -> tuple[UserpolicyInfo, tuple[Attribute, ...]]:
    msg = xfrm_one(xfrm_ops.policy_to(XfrmMsgType.NEWPOLICY, policy, 1).encode())
    assert isinstance(msg.fixed, UserpolicyInfo)
    return msg.fixed, msg.attrs


def test_nat_traversal_is_checked_when_made_and_pfkey_refuses_what_it_cannot_keep() -> None:
    from ipaddress import ip_address

    from pfmigrate.model import Algorithm, Encap

    with pytest.raises(ValueError, match="NAT-T source port 70000"):
        Encap(sport=70000)
    assert Encap(oa="192.0.2.9") == Encap(oa=ip_address("192.0.2.9"))  # type: ignore[arg-type]
    v4 = SecurityAssociation(
        ip_address("10.0.0.1"), ip_address("10.0.0.2"), 0x100, enc=Algorithm("cbc(aes)", bytes(16))
    )
    with pytest.raises(Unsupported, match="original address in the SA's family"):
        pfkey_ops.sa_message(MsgType.ADD, dataclasses.replace(v4, encap=Encap(oa=ip_address("2001:db8::9"))))


def test_pfkey_has_sas_of_three_protocols_only() -> None:
    from ipaddress import ip_address

    ops = pfkey_ops.PfKeyOperations(4242)
    for make in (
        lambda: ops.get_sa(ip_address("10.0.0.2"), 0x100, 17),
        lambda: ops.delete_sa(ip_address("10.0.0.2"), 0x100, 6),
        lambda: ops.allocate_spi(ip_address("10.0.0.1"), ip_address("10.0.0.2"), 4, 0, (0x100, 0x200), Mode.TRANSPORT),
    ):
        with pytest.raises(Unsupported, match="not of protocol"):
            make()
