"""The PF_KEY codec against Linux ``af_key``: every request it builds is accepted, and
every reply, broadcast, dump and error Linux sends decodes to the expected fields.

These run inside User-Mode Linux (Linux 6.1 with ``af_key`` and ``xfrm_user``).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import subprocess
from collections.abc import Callable

import pytest

from pfmigrate.backends.pfkey_socket import PfKeyError, PfKeySocket
from pfmigrate.pfkey import (
    SA,
    SA2,
    AddressDst,
    AddressSrc,
    AuthAlg,
    Direction,
    EncAlg,
    IPProto,
    IPsecRequest,
    KeyAuth,
    KeyEncrypt,
    KMAddress,
    Level,
    LifetimeCurrent,
    LifetimeHard,
    LifetimeSoft,
    Message,
    Mode,
    MsgType,
    Policy,
    PolicyType,
    Proposal,
    SAState,
    SAType,
    SockAddr,
    SPIRange,
    SupportedAuth,
    SupportedEncrypt,
)
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA, seed_migrate, tunnel_request
from tests.kernel.conftest import Vectors

pytestmark = pytest.mark.kernel

AUTH_KEY = bytes(range(32))
ENC_KEY = bytes(range(100, 116))
COA_TO_HA = (AddressSrc.of(f"{OLD_COA}/128"), AddressDst.of(f"{HOME_AGENT}/128"))
MH_SELECTOR = (AddressSrc.of(f"{HOME_ADDRESS}/128", IPProto.MH), AddressDst.of(f"{HOME_AGENT}/128", IPProto.MH))


def esp_add(
    spi: int, src: str = OLD_COA, dst: str = HOME_AGENT, *, reqid: int = 0, soft: int = 3000, hard: int = 3600
) -> Message:
    """SADB_ADD of an ESP tunnel SA (AES-CBC, HMAC-SHA-256) from ``src`` to ``dst``,
    expiring softly and hard after ``soft`` and ``hard`` seconds."""
    return Message(
        MsgType.ADD,
        SAType.ESP,
        extensions=(
            SA(spi, 32, SAState.MATURE, AuthAlg.X_SHA2_256HMAC, EncAlg.X_AESCBC),
            SA2(Mode.TUNNEL, 0, reqid),
            LifetimeHard(0, 0, hard, 0),
            LifetimeSoft(0, 0, soft, 0),
            AddressSrc.of(f"{src}/128"),
            AddressDst.of(f"{dst}/128"),
            KeyAuth.of(AUTH_KEY),
            KeyEncrypt.of(ENC_KEY),
        ),
    )


def esp_get(spi: int, src: str, dst: str) -> Message:
    return Message(
        MsgType.GET, SAType.ESP, extensions=(SA(spi), AddressSrc.of(f"{src}/128"), AddressDst.of(f"{dst}/128"))
    )


def mh_policy(msg_type: MsgType, tunnel_src: str = OLD_COA, *, reqid: int = 0, priority: int = 0) -> Message:
    """The MN's outbound policy for MH from its home address, tunnelled to the HA."""
    policy = Policy(
        PolicyType.IPSEC,
        Direction.OUTBOUND,
        priority=priority,
        requests=(tunnel_request(tunnel_src, HOME_AGENT, reqid),),
    )
    return Message(msg_type, SAType.UNSPEC, extensions=(*MH_SELECTOR, policy))


def ip_xfrm(*args: str) -> str:
    return subprocess.run(["ip", "xfrm", *args], check=True, capture_output=True, text=True).stdout


# --- SAD -------------------------------------------------------------------------------------


def test_register_lists_the_kernels_algorithms(pfkey: PfKeySocket, vectors: Vectors) -> None:
    reply = pfkey.request(Message(MsgType.REGISTER, SAType.ESP))
    auth = {alg.id: alg for alg in reply.require(SupportedAuth).algs}
    enc = {alg.id: alg for alg in reply.require(SupportedEncrypt).algs}
    assert (auth[AuthAlg.X_SHA2_256HMAC].minbits, auth[AuthAlg.X_SHA2_256HMAC].maxbits) == (256, 256)
    assert (auth[AuthAlg.SHA1HMAC].minbits, auth[AuthAlg.SHA1HMAC].maxbits) == (160, 160)
    aes = enc[EncAlg.X_AESCBC]
    assert (aes.ivlen, aes.minbits, aes.maxbits) == (8, 128, 256)
    assert EncAlg.NULL in enc
    vectors.keep("register_esp_reply", reply, "REGISTER reply for ESP: the supported auth and encryption algorithms")


def test_getspi_then_update_makes_a_larval_sa_mature(pfkey: PfKeySocket, vectors: Vectors) -> None:
    reply = pfkey.request(
        Message(MsgType.GETSPI, SAType.ESP, extensions=(SA2(Mode.TUNNEL, 0, 5), *COA_TO_HA, SPIRange(0x1000, 0x1FFF)))
    )
    sa = reply.require(SA)
    assert 0x1000 <= sa.spi <= 0x1FFF
    assert sa.state == SAState.LARVAL
    assert reply.require(AddressDst).address == SockAddr.of(HOME_AGENT)
    assert reply.require(SA2).reqid == 5
    vectors.keep("getspi_reply", reply, "GETSPI reply: a LARVAL ESP SA with an SPI from 0x1000-0x1fff, reqid 5")

    update = Message(
        MsgType.UPDATE,
        SAType.ESP,
        extensions=(
            SA(sa.spi, 32, SAState.MATURE, AuthAlg.X_SHA2_256HMAC, EncAlg.X_AESCBC),
            SA2(Mode.TUNNEL, 0, 5),
            *COA_TO_HA,
            KeyAuth.of(AUTH_KEY),
            KeyEncrypt.of(ENC_KEY),
        ),
    )
    updated = pfkey.request(update)
    assert updated.require(SA).state == SAState.MATURE
    got = pfkey.request(esp_get(sa.spi, OLD_COA, HOME_AGENT))
    assert got.require(KeyAuth).key == AUTH_KEY
    assert got.require(KeyEncrypt).key == ENC_KEY


def test_add_get_delete(pfkey: PfKeySocket, vectors: Vectors) -> None:
    added = pfkey.request(esp_add(0x2000, reqid=7))
    assert added.require(SA).spi == 0x2000
    vectors.keep("add_reply", added, "ADD reply: ESP tunnel SA spi 0x2000 old CoA -> HA, reqid 7, with keys")

    got = pfkey.request(esp_get(0x2000, OLD_COA, HOME_AGENT))
    sa = got.require(SA)
    assert (sa.auth, sa.encrypt, sa.replay, sa.state) == (AuthAlg.X_SHA2_256HMAC, EncAlg.X_AESCBC, 32, SAState.MATURE)
    assert got.require(LifetimeHard).addtime == 3600
    assert got.require(LifetimeSoft).addtime == 3000
    assert got.get(LifetimeCurrent) is not None
    assert got.require(SA2) == SA2(Mode.TUNNEL, 0, 7)
    assert got.require(AddressSrc).address == SockAddr.of(OLD_COA)
    assert (got.require(KeyAuth).bits, got.require(KeyEncrypt).bits) == (256, 128)
    vectors.keep("get_reply", got, "GET reply: the SA of add_reply with lifetimes and keys")

    with pytest.raises(PfKeyError) as duplicate:
        pfkey.request(esp_add(0x2000))
    assert duplicate.value.errno == errno.EEXIST

    deleted = pfkey.request(Message(MsgType.DELETE, SAType.ESP, extensions=(SA(0x2000), *COA_TO_HA)))
    assert deleted.require(SA).state == SAState.DEAD
    with pytest.raises(PfKeyError) as gone:
        pfkey.request(esp_get(0x2000, OLD_COA, HOME_AGENT))
    assert gone.value.errno == errno.ESRCH
    assert gone.value.reply.extensions == ()  # an error is a bare 16-byte header
    vectors.keep("get_error_esrch", gone.value.reply, "GET of a deleted SA: header only, errno ESRCH (3)")


def test_dump_counts_down_to_zero_and_flush_empties(pfkey: PfKeySocket, vectors: Vectors) -> None:
    for spi in (0x3001, 0x3002, 0x3003):
        pfkey.request(esp_add(spi))
    parts = pfkey.dump(Message(MsgType.DUMP, SAType.UNSPEC))
    assert sorted(part.require(SA).spi for part in parts) == [0x3001, 0x3002, 0x3003]
    assert [part.seq for part in parts] == [1, 2, 0]  # numbered up from 1; the last is 0
    assert all(part.pid == pfkey.pid and part.satype == SAType.ESP for part in parts)
    vectors.keep("dump_last", parts[-1], "the last DUMP answer (seq 0) of three ESP SAs")

    flushed = pfkey.request(Message(MsgType.FLUSH, SAType.ESP))
    assert flushed.extensions == ()
    assert pfkey.dump(Message(MsgType.DUMP, SAType.UNSPEC)) == []


# --- SPD -----------------------------------------------------------------------------------------


def test_spd_add_update_get_dump_delete_flush(pfkey: PfKeySocket, vectors: Vectors) -> None:
    added = pfkey.request(mh_policy(MsgType.X_SPDADD))
    policy = added.require(Policy)
    assert policy.id != 0
    assert policy.requests == (tunnel_request(OLD_COA, HOME_AGENT),)
    assert added.require(AddressSrc) == MH_SELECTOR[0]
    vectors.keep("spdadd_reply", added, "X_SPDADD reply: outbound MH policy HoA -> HA, ESP tunnel old CoA -> HA")

    with pytest.raises(PfKeyError) as exists:
        pfkey.request(mh_policy(MsgType.X_SPDADD))
    assert exists.value.errno == errno.EEXIST

    updated = pfkey.request(mh_policy(MsgType.X_SPDUPDATE, priority=5))
    assert updated.require(Policy).priority == 5
    assert updated.require(Policy).id == policy.id

    got = pfkey.request(
        Message(MsgType.X_SPDGET, extensions=(Policy(PolicyType.IPSEC, Direction.OUTBOUND, id=policy.id),))
    )
    assert got.require(Policy).priority == 5
    assert got.require(AddressDst) == MH_SELECTOR[1]

    inbound_policy = Policy(PolicyType.IPSEC, Direction.INBOUND, requests=(tunnel_request(HOME_AGENT, OLD_COA, 9),))
    reverse = (AddressSrc.of(f"{HOME_AGENT}/128", IPProto.MH), AddressDst.of(f"{HOME_ADDRESS}/128", IPProto.MH))
    pfkey.request(Message(MsgType.X_SPDADD, extensions=(*reverse, inbound_policy)))
    dumped = pfkey.dump(Message(MsgType.X_SPDDUMP))
    assert sorted(part.require(Policy).dir for part in dumped) == [Direction.INBOUND, Direction.OUTBOUND]
    inbound = next(part.require(Policy) for part in dumped if part.require(Policy).dir == Direction.INBOUND)
    assert inbound.requests[0].level == Level.UNIQUE
    assert inbound.requests[0].reqid == 9
    vectors.keep("spddump_last", dumped[-1], "the last X_SPDDUMP answer of two MH policies")

    deleted = pfkey.request(mh_policy(MsgType.X_SPDDELETE))
    assert deleted.require(Policy).id == policy.id
    with pytest.raises(PfKeyError) as missing:
        pfkey.request(
            Message(MsgType.X_SPDDELETE2, extensions=(Policy(PolicyType.IPSEC, Direction.OUTBOUND, id=policy.id),))
        )
    assert missing.value.errno == errno.ENOENT
    pfkey.request(Message(MsgType.X_SPDFLUSH))
    assert pfkey.dump(Message(MsgType.X_SPDDUMP)) == []


def test_spddelete2_by_id(pfkey: PfKeySocket) -> None:
    policy_id = pfkey.request(mh_policy(MsgType.X_SPDADD)).require(Policy).id
    deleted = pfkey.request(
        Message(MsgType.X_SPDDELETE2, extensions=(Policy(PolicyType.IPSEC, Direction.OUTBOUND, id=policy_id),))
    )
    assert deleted.require(Policy).id == policy_id
    assert pfkey.dump(Message(MsgType.X_SPDDUMP)) == []


def test_promiscuous_socket_sees_other_sockets_requests(pfkey_socket: Callable[[], PfKeySocket]) -> None:
    actor, watcher = pfkey_socket(), pfkey_socket()
    watcher.request(Message(MsgType.X_PROMISC, SAType(1)))  # satype 1 turns promiscuous mode on
    request = actor.stamp(esp_add(0x4000))
    actor.send(request)
    seen = [watcher.wait_for(lambda m: m.seq == request.seq) for _ in range(2)]
    # The raw request itself, then the ADD broadcast that answers it.
    assert seen[0] == request
    assert seen[1].require(SA).spi == 0x4000
    assert seen[1].get(LifetimeCurrent) is not None


# --- MIGRATE ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kmaddress", [True, False], ids=["with-kmaddress", "without-kmaddress"])
def test_seed_migrate_moves_sa_and_policy(pfkey: PfKeySocket, vectors: Vectors, kmaddress: bool) -> None:
    pfkey.request(esp_add(0x1000))
    pfkey.request(mh_policy(MsgType.X_SPDADD))

    broadcast = pfkey.migrate(seed_migrate(kmaddress=kmaddress))

    # Linux's broadcast: seq and pid 0, KMADDRESS first, then the selector and the
    # old/new request pair, with the selector's protocol as XFRM holds it (MH).
    requests = (tunnel_request(OLD_COA, HOME_AGENT), tunnel_request(NEW_COA, HOME_AGENT))
    expected = (
        *([KMAddress(SockAddr.of(NEW_COA), SockAddr.of(HOME_AGENT))] if kmaddress else []),
        *MH_SELECTOR,
        Policy(PolicyType.IPSEC, Direction.OUTBOUND, requests=requests),
    )
    assert broadcast == Message(MsgType.X_MIGRATE, SAType.ESP, 0, 0, 0, expected)
    assert len(broadcast.encode()) == (320 if kmaddress else 256)
    name = "migrate_broadcast_kmaddress" if kmaddress else "migrate_broadcast"
    vectors.keep(
        name, broadcast, f"X_MIGRATE broadcast after the seed's MIGRATE {'with' if kmaddress else 'without'} KMADDRESS"
    )

    moved = pfkey.request(esp_get(0x1000, NEW_COA, HOME_AGENT))
    assert moved.require(SA).spi == 0x1000
    assert moved.require(KeyEncrypt).key == ENC_KEY
    assert moved.require(KeyAuth).key == AUTH_KEY
    # Linux finds an SA by (destination, SPI, protocol): the one SA now starts at the new CoA.
    [sa] = pfkey.dump(Message(MsgType.DUMP, SAType.ESP))
    assert (sa.require(SA).spi, sa.require(AddressSrc).address) == (0x1000, SockAddr.of(NEW_COA))
    policy = pfkey.dump(Message(MsgType.X_SPDDUMP))[0].require(Policy)
    assert policy.requests == (tunnel_request(NEW_COA, HOME_AGENT),)

    state, xpolicy = ip_xfrm("state"), ip_xfrm("policy")
    assert f"src {NEW_COA} dst {HOME_AGENT}" in state
    assert "spi 0x00001000" in state
    assert OLD_COA not in state
    assert f"tmpl src {NEW_COA} dst {HOME_AGENT}" in xpolicy
    assert OLD_COA not in xpolicy


def test_migrate_with_reqid_announces_unique_level(pfkey: PfKeySocket) -> None:
    pfkey.request(esp_add(0x1100, reqid=12))
    pfkey.request(mh_policy(MsgType.X_SPDADD, reqid=12))
    broadcast = pfkey.migrate(seed_migrate(reqid=12))
    requests = broadcast.require(Policy).requests
    assert [(rq.level, rq.reqid) for rq in requests] == [(Level.UNIQUE, 12), (Level.UNIQUE, 12)]
    assert pfkey.request(esp_get(0x1100, NEW_COA, HOME_AGENT)).require(SA2).reqid == 12


def test_migrate_without_policy_is_enoent(pfkey: PfKeySocket, vectors: Vectors) -> None:
    with pytest.raises(PfKeyError) as failure:
        pfkey.migrate(seed_migrate())
    reply = failure.value.reply
    assert (reply.errno, reply.extensions, reply.type) == (errno.ENOENT, (), MsgType.X_MIGRATE)
    assert (reply.seq, reply.pid) == (failure.value.request.seq, pfkey.pid)
    vectors.keep("migrate_error_enoent", reply, "X_MIGRATE with no matching policy: header only, errno ENOENT (2)")


def test_migrate_with_stale_old_endpoints_is_enodata(pfkey: PfKeySocket, vectors: Vectors) -> None:
    pfkey.request(esp_add(0x1200, NEW_COA))
    pfkey.request(mh_policy(MsgType.X_SPDADD, NEW_COA))  # the template already names the new CoA
    with pytest.raises(PfKeyError) as failure:
        pfkey.migrate(seed_migrate())  # ...but the request still says the old one
    assert failure.value.errno == errno.ENODATA
    vectors.keep(
        "migrate_error_enodata", failure.value.reply, "X_MIGRATE naming stale old endpoints: errno ENODATA (61)"
    )
    assert pfkey.request(esp_get(0x1200, NEW_COA, HOME_AGENT)).require(SA).spi == 0x1200  # nothing moved


@pytest.mark.parametrize("direction", [0, 4, 200])
def test_migrate_with_bad_direction_is_einval(pfkey: PfKeySocket, direction: int) -> None:
    pfkey.request(mh_policy(MsgType.X_SPDADD))
    msg = seed_migrate()
    policy = msg.require(Policy)
    bad = Message(
        msg.type,
        msg.satype,
        extensions=tuple(
            Policy(policy.type, Direction(direction), requests=policy.requests) if ext is policy else ext
            for ext in msg.extensions
        ),
    )
    with pytest.raises(PfKeyError) as failure:
        pfkey.migrate(bad)
    assert failure.value.errno == errno.EINVAL


# --- what Linux sends on its own, and what it refuses ------------------------------------------------


def test_expire_soft_then_hard_reaches_registered_sockets(pfkey: PfKeySocket, vectors: Vectors) -> None:
    pfkey.request(Message(MsgType.REGISTER, SAType.ESP))
    # Three seconds apart, so that a late first look at the lifetimes (one second after the
    # add) cannot find both limits passed and send the hard EXPIRE alone.
    pfkey.request(esp_add(0x5000, soft=1, hard=4))
    soft = pfkey.wait_for(lambda m: m.type == MsgType.EXPIRE, timeout=10)
    hard = pfkey.wait_for(lambda m: m.type == MsgType.EXPIRE, timeout=10)
    assert (soft.seq, soft.pid, hard.seq, hard.pid) == (0, 0, 0, 0)
    assert (soft.require(SA).spi, soft.require(SA).state) == (0x5000, SAState.DYING)
    assert soft.require(LifetimeSoft).addtime == 1
    assert soft.get(LifetimeHard) is None
    assert (hard.require(SA).state, hard.require(LifetimeHard).addtime) == (SAState.DEAD, 4)
    vectors.keep("expire_soft", soft, "EXPIRE (soft) after 1 s: SA DYING with the soft lifetime")
    vectors.keep("expire_hard", hard, "EXPIRE (hard) after 4 s: SA DEAD with the hard lifetime")


def test_acquire_when_a_policy_has_no_sa(pfkey: PfKeySocket, vectors: Vectors) -> None:
    pfkey.request(Message(MsgType.REGISTER, SAType.ESP))
    transport = IPsecRequest(IPProto.ESP, Mode.TRANSPORT, Level.REQUIRE, 0)
    selector = (
        AddressSrc(SockAddr.of("::1"), 128, IPProto.UDP),
        AddressDst(SockAddr.of("::1", 5000), 128, IPProto.UDP),
    )
    policy_id = (
        pfkey.request(
            Message(
                MsgType.X_SPDADD,
                extensions=(*selector, Policy(PolicyType.IPSEC, Direction.OUTBOUND, requests=(transport,))),
            )
        )
        .require(Policy)
        .id
    )
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp, contextlib.suppress(OSError):
        udp.sendto(b"needs an SA", ("::1", 5000))  # held back or refused until an SA exists
    acquire = pfkey.wait_for(lambda m: m.type == MsgType.ACQUIRE, timeout=5)
    assert acquire.satype == SAType.ESP
    assert acquire.require(AddressDst).address.address == SockAddr.of("::1").address
    assert acquire.require(Policy).id == policy_id
    assert acquire.require(Proposal).replay == 32
    vectors.keep(
        "acquire", acquire, "ACQUIRE for an outbound UDP policy on ::1 with no SA: addresses, policy id, proposal"
    )


def test_spdsetidx_is_answered_as_spdadd(pfkey: PfKeySocket) -> None:
    reply = pfkey.request(mh_policy(MsgType.X_SPDSETIDX))
    assert reply.type == MsgType.X_SPDADD
    assert reply.require(Policy).requests == (tunnel_request(OLD_COA, HOME_AGENT),)


@pytest.mark.parametrize(
    "msg_type",
    [MsgType.EXPIRE, MsgType.X_PCHANGE, MsgType.X_SPDACQUIRE, MsgType.X_SPDEXPIRE, MsgType.X_NAT_T_NEW_MAPPING],
)
def test_types_without_a_handler_are_eopnotsupp(pfkey: PfKeySocket, msg_type: MsgType, vectors: Vectors) -> None:
    with pytest.raises(PfKeyError) as failure:
        pfkey.request(Message(msg_type, SAType.ESP))
    assert failure.value.errno == errno.EOPNOTSUPP
    if msg_type == MsgType.EXPIRE:
        vectors.keep("expire_request_eopnotsupp", failure.value.reply, "EXPIRE sent to Linux: errno EOPNOTSUPP (95)")


@pytest.mark.parametrize("number", [0, 25, 200])
def test_types_outside_1_to_24_are_refused_by_send(pfkey: PfKeySocket, number: int) -> None:
    with pytest.raises(OSError, match="Invalid argument") as refused:
        pfkey.send(Message(MsgType(number)))
    assert refused.value.errno == errno.EINVAL


@pytest.mark.parametrize("extra", [1, 3, 7])
def test_bytes_after_the_declared_length_are_einval(pfkey: PfKeySocket, extra: int) -> None:
    # send() takes it (the base check divides by 8), but the extension walk refuses it in-band.
    request = pfkey.stamp(Message(MsgType.X_SPDFLUSH))
    pfkey.send(request.encode() + b"\xa5" * extra)
    reply = pfkey.wait_for(lambda m: pfkey.is_reply(m, request))
    assert reply.errno == errno.EINVAL
