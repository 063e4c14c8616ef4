"""Each PF_KEY message type on pfmigrate's engine, without a kernel.

What Linux does byte for byte is the differential tests' business (kernel tier); these
say what each message does, who hears about it, and which errno a bad one gets.
"""

from __future__ import annotations

import errno

import pytest

from pfmigrate.pfkey import (
    SA,
    AddressDst,
    AddressSrc,
    AuthAlg,
    Direction,
    EncAlg,
    Filter,
    IPProto,
    LifetimeHard,
    LifetimeSoft,
    Message,
    MsgType,
    Policy,
    PolicyType,
    SAState,
    SAType,
    SPIRange,
    SupportedAuth,
    decode,
)
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, OLD_COA
from tests.sadb_box import NOW, PID, Box, addresses, esp_sa, mh_policy, sa_key

HEADER_ONLY = (MsgType.X_SPDACQUIRE, MsgType.X_SPDEXPIRE, MsgType.X_PCHANGE, MsgType.X_NAT_T_NEW_MAPPING)


@pytest.fixture(params=["linux", "pfmigrate"])
def box(request: pytest.FixtureRequest) -> Box:
    return Box(request.param)


# --- SAD -----------------------------------------------------------------------------------


def test_getspi_gives_a_larval_sa_an_spi_from_the_range_and_only_the_sender_hears(box: Box) -> None:
    request = Message(MsgType.GETSPI, SAType.ESP, extensions=(*addresses(OLD_COA, HOME_AGENT), SPIRange(0x500, 0x5FF)))
    outcome = box.send(request)
    assert box.to(outcome, box.b) == []
    [reply] = box.to(outcome, box.a)
    sa = reply.require(SA)
    assert 0x500 <= sa.spi <= 0x5FF
    assert sa.state == SAState.LARVAL
    assert reply.require(LifetimeHard).addtime == 30  # a larval waits 30 seconds for its keys
    again = Message(MsgType.GETSPI, SAType.ESP, extensions=(*addresses(OLD_COA, HOME_AGENT), SPIRange(sa.spi, sa.spi)))
    assert box.refused(again) == errno.ENOENT  # that SPI is taken


def test_update_fills_a_larval_sa_and_everyone_hears(box: Box) -> None:
    spi = box.ok(
        Message(MsgType.GETSPI, SAType.ESP, extensions=(*addresses(OLD_COA, HOME_AGENT), SPIRange(0x700, 0x700)))
    ).require(SA)
    outcome = box.send(esp_sa(spi.spi, kind=MsgType.UPDATE))
    for client in (box.a, box.b):
        [heard] = box.to(outcome, client)
        assert heard.type == MsgType.UPDATE
        assert heard.require(SA).state == SAState.MATURE
    assert box.ok(sa_key(0x700)).require(SA).state == SAState.MATURE
    assert box.refused(esp_sa(0x701, kind=MsgType.UPDATE)) == errno.ESRCH


def test_add_broadcasts_and_refuses_duplicates_and_bad_keys(box: Box) -> None:
    outcome = box.send(esp_sa(0x1000))
    assert [m.type for m in box.to(outcome, box.b)] == [MsgType.ADD]
    assert box.refused(esp_sa(0x1000)) == errno.EEXIST
    no_key = Message(
        MsgType.ADD, SAType.ESP, extensions=(SA(0x1001, encrypt=EncAlg.X_AESCBC), *addresses(OLD_COA, HOME_AGENT))
    )
    assert box.refused(no_key) == errno.EINVAL  # ESP needs an encryption key
    unknown = esp_sa(0x1002)
    unknown = Message(
        unknown.type,
        unknown.satype,
        extensions=(SA(0x1002, auth=AuthAlg.of(200), encrypt=EncAlg.X_AESCBC), *unknown.extensions[1:]),
    )
    assert box.refused(unknown) == errno.ENOSYS


def test_delete_and_get(box: Box) -> None:
    box.ok(esp_sa(0x1000))
    got = box.ok(sa_key(0x1000))
    assert got.type == MsgType.GET
    assert got.require(SA).spi == 0x1000
    outcome = box.send(sa_key(0x1000, kind=MsgType.DELETE))
    assert [m.type for m in box.to(outcome, box.b)] == [MsgType.DELETE]
    assert box.refused(sa_key(0x1000)) == errno.ESRCH
    assert box.refused(sa_key(0x1000, kind=MsgType.DELETE)) == errno.ESRCH


def test_a_key_managers_acquire_marks_a_larval_sa_failed(box: Box) -> None:
    box.ok(Message(MsgType.X_SPDADD, SAType.UNSPEC, extensions=mh_policy(reqid=5).extensions))
    box.send(Message(MsgType.REGISTER, SAType.ESP), box.b)
    box.engine.outgoing(HOME_ADDRESS, HOME_AGENT, NOW, proto=IPProto.MH)
    [larval] = [sa for sa in box.engine.sad.values() if sa.state == "acq"]
    failed = Message(MsgType.ACQUIRE, SAType.ESP, larval.seq, 1, errno.ENOENT).encode()
    assert box.engine.handle(box.b, failed, NOW).deliveries == ()  # no answer at all
    assert box.engine.sad.get(larval.serial) is not None
    assert box.engine.sad.get(larval.serial).state == "error"  # type: ignore[union-attr]
    with_extensions = Message(MsgType.ACQUIRE, SAType.ESP, extensions=addresses(OLD_COA, HOME_AGENT))
    assert box.refused(with_extensions) == errno.EOPNOTSUPP


def test_register_lists_the_algorithms_to_registered_clients(box: Box) -> None:
    outcome = box.send(Message(MsgType.REGISTER, SAType.ESP), box.b)
    [reply] = box.to(outcome, box.b)
    assert len(reply.encode()) == 176 + (16 if box.semantics == "pfmigrate" else 0)  # (the generation number)
    assert AddressSrc not in {type(e) for e in reply.extensions}
    assert any(isinstance(e, SupportedAuth) for e in reply.extensions)
    assert box.refused(Message(MsgType.REGISTER, SAType.ESP), box.b) == errno.EEXIST


def test_expire_soft_then_hard_by_time_to_registered_clients(box: Box) -> None:
    box.send(Message(MsgType.REGISTER, SAType.ESP), box.b)
    box.ok(esp_sa(0x1000, lifetimes=(10, 20)))
    assert box.engine.next_deadline() == NOW + 10
    assert box.engine.tick(NOW + 9) == ()
    soft = [decode(d.data) for d in box.engine.tick(NOW + 10)]
    assert [(m.type, m.require(SA).state, d) for m, d in zip(soft, [box.b], strict=True)] == [
        (MsgType.EXPIRE, SAState.DYING, box.b)
    ]
    hard = box.engine.tick(NOW + 25)
    assert [d.client for d in hard] == [box.b]
    assert decode(hard[0].data).require(SA).state == SAState.DEAD
    assert box.refused(sa_key(0x1000)) == errno.ESRCH  # a hard expiry deletes the SA
    assert box.refused(Message(MsgType.EXPIRE, SAType.ESP)) == errno.EOPNOTSUPP


def test_expire_by_bytes_through_accounting(box: Box) -> None:
    box.send(Message(MsgType.REGISTER, SAType.ESP), box.b)
    bytes_limits = (LifetimeSoft(0, 1000, 0, 0), LifetimeHard(0, 2000, 0, 0))
    box.ok(esp_sa(0x1000, lifetimes=None, extra=bytes_limits))
    assert box.engine.account(HOME_AGENT, 0x1000, 50, 600, NOW).deliveries == ()
    assert box.engine.account(HOME_AGENT, 0x1000, 50, 600, NOW).deliveries == ()  # 600 < 1000 before it
    soft = box.engine.account(HOME_AGENT, 0x1000, 50, 600, NOW)  # 1200 >= 1000: soft
    assert decode(soft.deliveries[0].data).require(SA).state == SAState.DYING
    assert box.engine.account(HOME_AGENT, 0x1000, 50, 600, NOW).send_errno == 0  # 1800 < 2000: carried
    hard = box.engine.account(HOME_AGENT, 0x1000, 50, 600, NOW)  # 2400 >= 2000: expired
    assert hard.send_errno == errno.EINVAL
    assert decode(hard.deliveries[0].data).type == MsgType.EXPIRE
    assert box.engine.account(HOME_AGENT, 0x1000, 50, 1, NOW).send_errno == errno.ESRCH


def test_flush_echoes_and_tells_everyone_when_something_went(box: Box) -> None:
    empty = box.send(Message(MsgType.FLUSH, SAType.UNSPEC))
    assert [(d.client, decode(d.data).type) for d in empty.deliveries] == [(box.a, MsgType.FLUSH)]
    box.ok(esp_sa(0x1000))
    full = box.send(Message(MsgType.FLUSH, SAType.UNSPEC))
    assert sorted(d.client for d in full.deliveries) == sorted([box.a, box.a, box.b])
    assert len(box.engine.sad) == 0


def test_dump_numbers_its_answers_down_to_zero_newest_first(box: Box) -> None:
    assert box.refused(Message(MsgType.DUMP, SAType.ESP)) == errno.ENOENT
    for spi in (0x1000, 0x1001, 0x1002):
        box.ok(esp_sa(spi))
    outcome = box.send(Message(MsgType.DUMP, SAType.ESP))
    got = box.to(outcome, box.a)
    assert [(m.seq, m.require(SA).spi) for m in got] == [(1, 0x1002), (2, 0x1001), (0, 0x1000)]
    assert box.to(outcome, box.b) == []
    only_one = Filter(bytes.fromhex("3ffe0501ffff05000001000200030004"), bytes(16), 10, 128, 0)
    filtered = box.to(box.send(Message(MsgType.DUMP, SAType.ESP, extensions=(only_one,))), box.a)
    assert len(filtered) == 3  # all three go from the old CoA


@pytest.mark.parametrize("kind", [MsgType.DUMP, MsgType.X_SPDDUMP])
def test_a_streamed_dump_is_the_dump_made_as_it_is_read_from_a_snapshot(box: Box, kind: MsgType) -> None:
    for spi in (0x1000, 0x1001, 0x1002):
        box.ok(esp_sa(spi))
    box.ok(mh_policy())
    box.ok(mh_policy(inbound=True))
    box.send(Message(MsgType.X_PROMISC, SAType.of(1)), box.b)  # b gets a copy of each
    request = Message(kind, SAType.ESP if kind == MsgType.DUMP else SAType.UNSPEC, 99, PID).encode()
    whole = box.engine.handle(box.a, request, NOW)
    streamed = box.engine.handle(box.a, request, NOW, stream=True)
    assert whole.more is None
    assert streamed.more is not None
    assert streamed.deliveries == whole.deliveries[:1]  # b's copy of the request: at once
    first = next(streamed.more)
    box.ok(esp_sa(0x1003))  # changes while the dump is read do not reach it
    box.ok(sa_key(0x1000, kind=MsgType.DELETE))
    box.send(Message(MsgType.X_SPDFLUSH, SAType.UNSPEC))
    rest = [delivery for batch in streamed.more for delivery in batch]
    assert (*streamed.deliveries, *first, *rest) == whole.deliveries
    assert [d.client for d in first] == [box.b, box.a]


def test_an_empty_streamed_dump_is_refused_at_once(box: Box) -> None:
    outcome = box.engine.handle(box.a, Message(MsgType.DUMP, SAType.ESP, 1, PID).encode(), NOW, stream=True)
    assert outcome.more is None
    assert [decode(d.data).errno for d in outcome.deliveries] == [errno.ENOENT]


def test_a_promiscuous_client_sees_every_request_and_answer(box: Box) -> None:
    box.send(Message(MsgType.X_PROMISC, SAType.of(1)), box.b)
    outcome = box.send(sa_key(0x9999))  # a GET that fails
    seen = box.to(outcome, box.b)
    assert [m.type for m in seen] == [MsgType.GET, MsgType.GET]  # the request, then the error answer
    assert seen[1].errno == errno.ESRCH


@pytest.mark.parametrize("kind", HEADER_ONLY)
def test_what_linux_does_not_take_from_users(box: Box, kind: MsgType) -> None:
    assert box.refused(Message(kind, SAType.UNSPEC)) == errno.EOPNOTSUPP


def test_malformed_messages_fail_in_send_or_in_band(box: Box) -> None:
    good = esp_sa(0x1000).encode()
    assert box.engine.handle(box.a, good[:10], NOW).send_errno == errno.EMSGSIZE
    assert box.engine.handle(box.a, bytes([3]) + good[1:], NOW).send_errno == errno.EINVAL  # version 3
    short = good[:4] + (len(good) // 8 - 1).to_bytes(2, "little") + good[6:-8]
    outcome = box.engine.handle(box.a, short, NOW)  # the last extension now runs past the end
    assert outcome.send_errno == 0
    assert decode(outcome.deliveries[-1].data).errno == errno.EINVAL
    assert outcome.reason


# --- SPD -----------------------------------------------------------------------------------------


def test_spdadd_answers_everyone_with_an_index_and_refuses_a_duplicate(box: Box) -> None:
    outcome = box.send(mh_policy())
    [heard] = box.to(outcome, box.b)
    policy = heard.require(Policy)
    assert heard.type == MsgType.X_SPDADD
    assert policy.id % 8 == 1
    assert box.refused(mh_policy()) == errno.EEXIST
    updated = box.ok(mh_policy(priority=5, kind=MsgType.X_SPDUPDATE)).require(Policy)
    assert (updated.id, updated.priority) == (policy.id, 5)
    setidx = box.ok(mh_policy(inbound=True, kind=MsgType.X_SPDSETIDX))
    assert setidx.type == MsgType.X_SPDADD  # Linux answers SETIDX as an ADD


def test_spdget_spddelete2_and_spddelete(box: Box) -> None:
    index = box.ok(mh_policy()).require(Policy).id
    by_id = Message(MsgType.X_SPDGET, SAType.UNSPEC, extensions=(Policy(PolicyType.IPSEC, Direction.OUTBOUND, index),))
    assert box.ok(by_id).require(Policy).id == index
    delete2 = Message(MsgType.X_SPDDELETE2, SAType.UNSPEC, extensions=by_id.extensions)
    assert box.ok(delete2).type == MsgType.X_SPDDELETE2
    assert box.refused(by_id) == errno.ENOENT
    box.ok(mh_policy())
    src, dst, _ = mh_policy().extensions
    delete = Message(MsgType.X_SPDDELETE, SAType.UNSPEC, extensions=(src, dst, Policy(dir=Direction.OUTBOUND)))
    assert box.ok(delete).type == MsgType.X_SPDDELETE
    assert box.refused(delete) == errno.ENOENT


def test_spddump_and_spdflush(box: Box) -> None:
    assert box.refused(Message(MsgType.X_SPDDUMP, SAType.UNSPEC)) == errno.ENOENT
    box.ok(mh_policy())
    box.ok(mh_policy(inbound=True))
    dumped = box.to(box.send(Message(MsgType.X_SPDDUMP, SAType.UNSPEC)), box.a)
    assert [m.seq for m in dumped] == [1, 0]
    assert [m.require(Policy).dir for m in dumped] == [Direction.INBOUND, Direction.OUTBOUND]
    flush = box.send(Message(MsgType.X_SPDFLUSH, SAType.UNSPEC))
    assert [m.type for m in box.to(flush, box.b)] == [MsgType.X_SPDFLUSH]
    assert len(box.engine.spd) == 0


def test_a_policy_needs_its_addresses_and_a_direction(box: Box) -> None:
    src, dst, policy = mh_policy().extensions
    assert box.refused(Message(MsgType.X_SPDADD, SAType.UNSPEC, extensions=(src, policy))) == errno.EINVAL
    assert isinstance(policy, Policy)
    no_dir = Policy(policy.type, Direction.of(0), requests=policy.requests)
    assert box.refused(Message(MsgType.X_SPDADD, SAType.UNSPEC, extensions=(src, dst, no_dir))) == errno.EINVAL
    assert isinstance(dst, AddressDst)


# --- a packet meets the SPD ---------------------------------------------------------------------


def test_an_outgoing_packet_without_an_sa_makes_an_acquire_that_getspi_and_update_answer(box: Box) -> None:
    box.ok(mh_policy(reqid=5))
    assert box.engine.outgoing(HOME_ADDRESS, HOME_AGENT, NOW, proto=IPProto.MH).deliveries == ()  # nobody registered
    box.send(Message(MsgType.REGISTER, SAType.ESP), box.b)
    first = box.engine.outgoing(HOME_ADDRESS, HOME_AGENT, NOW, proto=IPProto.MH)
    assert first.send_errno == errno.EAGAIN
    [acquire] = [decode(d.data) for d in first.deliveries]
    assert acquire.type == MsgType.ACQUIRE
    assert acquire.seq == 1
    assert acquire.require(AddressSrc).address.address.exploded == "3ffe:0501:ffff:0500:0001:0002:0003:0004"
    again = box.engine.outgoing(HOME_ADDRESS, HOME_AGENT, NOW, proto=IPProto.MH)
    assert (again.send_errno, again.deliveries) == (errno.EAGAIN, ())  # already being negotiated
    getspi = Message(MsgType.GETSPI, SAType.ESP, acquire.seq, 1, extensions=(*addresses(OLD_COA, HOME_AGENT),))
    spi = decode(box.engine.handle(box.b, getspi.encode(), NOW).deliveries[-1].data).require(SA).spi
    update = esp_sa(spi, reqid=5, kind=MsgType.UPDATE)  # (an ADD would find the SPI taken by the larval)
    box.engine.handle(
        box.b, Message(update.type, update.satype, acquire.seq, 1, extensions=update.extensions).encode(), NOW
    )
    assert [sa.state for sa in box.engine.sad.values()] == ["valid"]  # the larval became the SA
    assert box.engine.outgoing(HOME_ADDRESS, HOME_AGENT, NOW, proto=IPProto.MH, nbytes=100).send_errno == 0
    assert box.ok(sa_key(spi)).extensions  # and the packet was counted on it


def test_a_block_policy_stops_the_packet(box: Box) -> None:
    src, dst, _ = mh_policy().extensions
    block = Message(
        MsgType.X_SPDADD, SAType.UNSPEC, extensions=(src, dst, Policy(PolicyType.DISCARD, Direction.OUTBOUND))
    )
    box.ok(block)
    assert box.engine.outgoing(HOME_ADDRESS, HOME_AGENT, NOW, proto=IPProto.MH).send_errno == errno.EPERM
    assert box.engine.outgoing(HOME_ADDRESS, HOME_AGENT, NOW, proto=IPProto.TCP).send_errno == 0  # not MH: no policy
