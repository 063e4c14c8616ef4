"""X_MIGRATE on pfmigrate's engine: Linux's behaviour, and where pfmigrate does better.

Every difference tested here is listed in docs/differences-from-linux.md.
"""

from __future__ import annotations

import errno

import pytest

from pfmigrate.pfkey import (
    SA,
    AddressDst,
    AddressSrc,
    Direction,
    IPProto,
    IPsecRequest,
    KMAddress,
    Level,
    Message,
    Mode,
    MsgType,
    Policy,
    PolicyType,
    SAType,
    SockAddr,
    decode,
)
from pfmigrate.pfkey.generation import generation_of
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA, seed_migrate
from tests.sadb_box import Box, addresses, esp_sa, mh_policy, migrate, sa_key, tunnel
from tests.vectorlib import load_vectors, zero_address_padding

ENOTUNIQ = 76


def endpoints(box: Box) -> dict[int, tuple[str, str]]:
    """Each SA's SPI and (source, destination), from a DUMP."""
    answers = box.to(box.send(Message(MsgType.DUMP, SAType.UNSPEC)), box.a)
    out = {}
    for m in answers:
        if m.errno:
            return {}
        out[m.require(SA).spi] = (
            str(m.require(AddressSrc).address.address),
            str(m.require(AddressDst).address.address),
        )
    return out


def state(box: Box) -> tuple[object, ...]:
    """Everything a dump shows, to see that nothing changed."""
    sas = [d.data for d in box.send(Message(MsgType.DUMP, SAType.UNSPEC)).deliveries if d.client == box.a]
    spd = [d.data for d in box.send(Message(MsgType.X_SPDDUMP, SAType.UNSPEC)).deliveries if d.client == box.a]
    return (sas, spd)


@pytest.fixture(params=["linux", "pfmigrate"])
def box(request: pytest.FixtureRequest) -> Box:
    return Box(request.param)


def mobile_node(box: Box, *, reqid: int = 0, spis: tuple[int, ...] = (0x1000,)) -> None:
    for spi in spis:
        box.ok(esp_sa(spi, reqid=reqid))
    box.ok(mh_policy(reqid=reqid))


def test_the_seed_migrate_moves_the_sa_rewrites_the_template_and_tells_everyone(box: Box) -> None:
    mobile_node(box)
    outcome = box.send(migrate())
    for client in (box.a, box.b):
        [heard] = box.to(outcome, client)
        assert heard.type == MsgType.X_MIGRATE
        assert heard.seq == 0  # an announcement, not an answer
        assert heard.pid == 0
        assert heard.require(KMAddress).local.address.exploded == "3ffe:0501:ffff:0400:0001:0002:0003:0004"
    assert endpoints(box) == {0x1000: (NEW_COA, HOME_AGENT)}
    [policy] = box.to(box.send(Message(MsgType.X_SPDDUMP, SAType.UNSPEC)), box.a)
    [template] = policy.require(Policy).requests
    assert template.src is not None
    assert str(template.src.address) == NEW_COA


def test_keys_counters_and_spi_survive_the_move(box: Box) -> None:
    mobile_node(box)
    box.engine.account(HOME_AGENT, 0x1000, 50, 500, box.now)
    before = box.ok(sa_key(0x1000))
    box.ok(migrate())
    after = box.ok(sa_key(0x1000, NEW_COA))
    assert after.require(SA) == before.require(SA)
    keep = [type(e).__name__ for e in before.extensions if type(e).__name__.startswith(("Key", "LifetimeC"))]
    for name in keep:
        assert next(e for e in after.extensions if type(e).__name__ == name) == next(
            e for e in before.extensions if type(e).__name__ == name
        )


def test_no_policy_is_enoent_and_no_matching_template_is_enodata(box: Box) -> None:
    assert box.refused(migrate()) == errno.ENOENT
    box.ok(mh_policy(HOME_AGENT))  # a tunnel between other endpoints
    assert box.refused(migrate()) == errno.ENODATA


def test_a_failed_migrate_changes_nothing(box: Box) -> None:
    box.ok(esp_sa(0x1000, HOME_AGENT, OLD_COA))  # the inbound SA ...
    box.ok(mh_policy(inbound=True))
    box.ok(esp_sa(0x1000, HOME_AGENT, NEW_COA))  # ... and one with its SPI at the new destination
    before = state(box)
    assert box.refused(migrate(inbound=True)) == errno.ENODATA
    assert state(box) == before


# --- where pfmigrate improves on Linux -----------------------------------------------------------


def test_during_a_rekey_linux_moves_one_sa_and_pfmigrate_moves_the_bundle(box: Box) -> None:
    mobile_node(box, reqid=7, spis=(0x1000, 0x1001))  # the old SA and its replacement, one reqid
    box.ok(migrate(reqid=7))
    moved = endpoints(box)
    if box.semantics == "linux":
        assert sorted(moved.values()) == [(NEW_COA, HOME_AGENT), (OLD_COA, HOME_AGENT)]  # one left behind
    else:
        assert moved == {0x1000: (NEW_COA, HOME_AGENT), 0x1001: (NEW_COA, HOME_AGENT)}


def test_pfmigrate_names_the_bundle_by_reqid_without_the_old_address(box: Box) -> None:
    mobile_node(box, reqid=7)
    by_reqid = migrate("::", NEW_COA, reqid=7)
    if box.semantics == "linux":
        assert box.refused(by_reqid) == errno.ENODATA  # Linux needs the old care-of address
        return
    box.ok(by_reqid)
    assert endpoints(box) == {0x1000: (NEW_COA, HOME_AGENT)}
    box.ok(migrate("::", OLD_COA, reqid=7))  # and back, again without saying where from
    assert endpoints(box) == {0x1000: (OLD_COA, HOME_AGENT)}


def test_pfmigrate_names_one_sa_by_spi() -> None:
    box = Box("pfmigrate")
    mobile_node(box, reqid=7, spis=(0x1000, 0x1001))
    box.ok(migrate(reqid=7, spi=0x1001))
    assert endpoints(box) == {0x1000: (OLD_COA, HOME_AGENT), 0x1001: (NEW_COA, HOME_AGENT)}


def test_an_ambiguous_request_is_refused_not_guessed(box: Box) -> None:
    box.ok(esp_sa(0x1000, reqid=7))
    box.ok(esp_sa(0x2000, reqid=8))  # another bundle between the same addresses
    box.ok(mh_policy(reqid=7))
    request = migrate(reqid=0)  # reqid 0: "any"
    if box.semantics == "linux":
        box.ok(request)
        assert sorted(endpoints(box).values()) == [(NEW_COA, HOME_AGENT), (OLD_COA, HOME_AGENT)]  # it chose one
    else:
        assert box.refused(request) == ENOTUNIQ
        assert endpoints(box) == {0x1000: (OLD_COA, HOME_AGENT), 0x2000: (OLD_COA, HOME_AGENT)}
        box.ok(migrate(reqid=7))
        assert endpoints(box) == {0x1000: (NEW_COA, HOME_AGENT), 0x2000: (OLD_COA, HOME_AGENT)}


def test_a_repeated_migrate_succeeds_without_change_for_pfmigrate_only(box: Box) -> None:
    mobile_node(box)
    box.ok(migrate())
    before = state(box)
    if box.semantics == "linux":
        assert box.refused(migrate()) == errno.ENODATA
    else:
        retry = box.send(migrate())
        assert [(d.client, decode(d.data).errno) for d in retry.deliveries] == [(box.a, 0)]  # the sender only
    assert state(box) == before


def test_pfmigrate_numbers_its_broadcasts_and_linux_does_not(box: Box) -> None:
    first = box.send(esp_sa(0x1000))
    second = box.send(mh_policy())
    numbers = [generation_of(decode(d.data)) for d in first.deliveries + second.deliveries]
    if box.semantics == "linux":
        assert numbers == [None] * 4
    else:
        assert numbers == [1, 1, 2, 2]  # each broadcast numbered once, every client the same number
    answer_only = box.send(sa_key(0x1000))  # a GET answers one client: not numbered
    assert [generation_of(decode(d.data)) for d in answer_only.deliveries] == [None]


def test_linux_sends_a_wrong_length_for_policies_mixing_families_and_pfmigrate_does_not(box: Box) -> None:
    src, dst, policy = mh_policy().extensions
    assert isinstance(policy, Policy)
    v4_tunnel = IPsecRequest(
        IPProto.ESP, Mode.TUNNEL, Level.REQUIRE, 0, SockAddr.of("10.0.0.1"), SockAddr.of("10.0.0.2")
    )
    transport = IPsecRequest(IPProto.AH, Mode.TRANSPORT, Level.REQUIRE, 0)
    mixed = Policy(policy.type, policy.dir, requests=(v4_tunnel, transport))
    answer = box.send(Message(MsgType.X_SPDADD, SAType.UNSPEC, extensions=(src, dst, mixed))).deliveries[-1].data
    stated = int.from_bytes(answer[4:6], "little") * 8
    if box.semantics == "linux":
        assert stated == len(answer) + 24  # Linux's arithmetic, copied
    else:
        assert stated == len(answer)


@pytest.mark.parametrize("kmaddress", [True, False])
def test_the_announcement_is_the_bytes_linux_sent_for_the_seed(kmaddress: bool) -> None:
    """The vectors were captured from Linux 6.1 after the seed's MIGRATE (tests/vectors)."""
    name = "migrate_broadcast_kmaddress" if kmaddress else "migrate_broadcast"
    [vector] = [v for v in load_vectors() if v["name"] == name]
    box = Box("linux")
    mobile_node(box)
    outcome = box.send(seed_migrate(kmaddress=kmaddress))
    assert outcome.deliveries[0].data.hex() == zero_address_padding(bytes.fromhex(vector["hex"])).hex()


def test_a_repeated_migrate_named_by_reqid_changes_nothing_and_tells_only_the_sender() -> None:
    """The retry of a move named by reqid: the SAs of the bundle (a re-key pair) and the
    template are at the new address already; no SA is moved again, nothing is broadcast
    and no broadcast number is spent."""
    box = Box("pfmigrate")
    mobile_node(box, reqid=7, spis=(0x1000, 0x1001))
    box.ok(migrate("::", NEW_COA, reqid=7))
    before, generation = state(box), box.engine.generation
    retry = box.send(migrate("::", NEW_COA, reqid=7))
    assert [(d.client, decode(d.data).errno) for d in retry.deliveries] == [(box.a, 0)]
    assert (state(box), box.engine.generation) == (before, generation)


def test_a_bundle_whose_template_is_not_at_the_new_address_is_no_retry() -> None:
    """Another reqid's template at the new address does not make a move of reqid 7 from
    endpoints it is not at a retry: that is ENODATA, as for any move that finds nothing."""
    box = Box("pfmigrate")
    src, dst = addresses(HOME_ADDRESS, HOME_AGENT, IPProto.MH)
    two = Policy(
        PolicyType.IPSEC,
        Direction.OUTBOUND,
        requests=(tunnel(OLD_COA, HOME_AGENT, 7), tunnel(NEW_COA, HOME_AGENT, 8)),
    )
    box.ok(Message(MsgType.X_SPDADD, SAType.UNSPEC, extensions=(src, dst, two)))
    assert box.refused(migrate("3ffe:501:ffff:900::1", NEW_COA, reqid=7)) == errno.ENODATA
