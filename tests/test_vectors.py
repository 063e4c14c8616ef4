"""Messages captured from Linux 6.1 ``af_key`` (``tests/vectors/pfkey_linux.json``),
checked without a kernel: each decodes to its recorded meaning and encodes back to the
bytes Linux sent (with the padding Linux leaves uninitialised zeroed)."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

import pytest

from pfmigrate.pfkey import (
    SA,
    AddressSrc,
    AuthAlg,
    Direction,
    EncAlg,
    ExtType,
    IPProto,
    KMAddress,
    Level,
    LifetimeHard,
    LifetimeSoft,
    Message,
    Mode,
    MsgType,
    Policy,
    Proposal,
    SAState,
    SockAddr,
    SupportedEncrypt,
    decode,
)
from pfmigrate.pfkey.jsonform import to_json
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA
from tests.vectorlib import load_vectors, zero_address_padding

VECTORS = {vector["name"]: vector for vector in load_vectors()}


def _migrate_requests(m: Message) -> list[tuple[Any, ...]]:
    return [(rq.mode, rq.level, str(rq.src.address) if rq.src else None) for rq in m.require(Policy).requests]


# The facts each vector stands for, written by hand, independently of the decoder.
FACTS: dict[str, Callable[[Message], bool]] = {
    "migrate_broadcast_kmaddress": lambda m: (
        m.type == MsgType.X_MIGRATE
        and (m.seq, m.pid) == (0, 0)
        and [ext.exttype for ext in m.extensions]
        == [ExtType.X_KMADDRESS, ExtType.ADDRESS_SRC, ExtType.ADDRESS_DST, ExtType.X_POLICY]
        and m.require(KMAddress) == KMAddress(SockAddr.of(NEW_COA), SockAddr.of(HOME_AGENT))
        and m.require(AddressSrc).proto == IPProto.MH
        and str(m.require(AddressSrc).address.address) == HOME_ADDRESS
        and _migrate_requests(m) == [(Mode.TUNNEL, Level.REQUIRE, OLD_COA), (Mode.TUNNEL, Level.REQUIRE, NEW_COA)]
    ),
    "migrate_broadcast": lambda m: m.get(KMAddress) is None and m.require(Policy).dir == Direction.OUTBOUND,
    "migrate_error_enoent": lambda m: (m.type, m.errno, m.extensions) == (MsgType.X_MIGRATE, errno.ENOENT, ()),
    "migrate_error_enodata": lambda m: (m.type, m.errno) == (MsgType.X_MIGRATE, errno.ENODATA),
    "get_error_esrch": lambda m: (m.type, m.errno) == (MsgType.GET, errno.ESRCH),
    "add_reply": lambda m: m.require(SA).spi == 0x2000 and m.require(SA).auth == AuthAlg.X_SHA2_256HMAC,
    "get_reply": lambda m: m.require(SA).state == SAState.MATURE and m.require(SA).encrypt == EncAlg.X_AESCBC,
    "getspi_reply": lambda m: m.require(SA).state == SAState.LARVAL and 0x1000 <= m.require(SA).spi <= 0x1FFF,
    "dump_last": lambda m: m.type == MsgType.DUMP and m.seq == 0,
    "register_esp_reply": lambda m: any(a.id == EncAlg.X_AESCBC for a in m.require(SupportedEncrypt).algs),
    "spdadd_reply": lambda m: m.require(Policy).id != 0 and m.reserved != 0,  # Linux puts a refcount there
    "spddump_last": lambda m: m.type == MsgType.X_SPDDUMP and m.seq == 0,
    "expire_soft": lambda m: (
        m.type == MsgType.EXPIRE and m.require(SA).state == SAState.DYING and m.require(LifetimeSoft).addtime == 1
    ),
    "expire_hard": lambda m: m.require(SA).state == SAState.DEAD and m.require(LifetimeHard).addtime == 3,
    "acquire": lambda m: m.type == MsgType.ACQUIRE and m.require(Proposal).replay == 32 and m.pid == 0,
    "expire_request_eopnotsupp": lambda m: (m.type, m.errno) == (MsgType.EXPIRE, errno.EOPNOTSUPP),
}


def test_every_vector_has_facts() -> None:
    assert set(FACTS) == set(VECTORS)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_decodes_to_its_meaning(name: str) -> None:
    vector = VECTORS[name]
    msg = decode(bytes.fromhex(vector["hex"]))
    assert to_json(msg) == vector["expected"]
    assert FACTS[name](msg), vector["meaning"]


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_encodes_back_to_linux_bytes(name: str) -> None:
    raw = bytes.fromhex(VECTORS[name]["hex"])
    assert decode(raw).encode() == zero_address_padding(raw)


def test_linux_leaves_migrate_address_padding_uninitialised() -> None:
    # Why zero_address_padding exists: the captured broadcast really has junk there.
    raw = bytes.fromhex(VECTORS["migrate_broadcast_kmaddress"]["hex"])
    assert raw != zero_address_padding(raw)
