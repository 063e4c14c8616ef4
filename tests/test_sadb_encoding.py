"""The engine packs its SA messages directly; here the codec builds the same messages
from value objects, and the two must agree byte for byte (for every SA that random
PF_KEY sequences leave in the engine, in every shape the engine sends)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pfmigrate.pfkey import (
    SA,
    SA2,
    AddressDst,
    AddressProxy,
    AddressSrc,
    Extension,
    KeyAuth,
    KeyEncrypt,
    LifetimeCurrent,
    LifetimeHard,
    LifetimeSoft,
    Message,
    MsgType,
    NatTDport,
    NatTSport,
    NatTType,
    SecCtx,
    decode,
)
from pfmigrate.sadb import Engine
from pfmigrate.sadb.records import (
    MODE_TO_PFKEY,
    PROTO_TO_SATYPE,
    SARecord,
    host_bits,
    report_limit,
    sa_message,
    same_address,
    sockaddr,
)
from tests.differential.sequences import generate


def by_codec(sa: SARecord, msg_type: int, seq: int, pid: int, *, keys: bool, hsc: int) -> bytes:
    """``pfkey_xfrm_state2msg`` written with the codec's value objects."""
    family, lft = sa.family, sa.lft
    auth = sa.aalg.id if sa.aalg is not None else 0
    encrypt = sa.calg.id if sa.calg is not None else sa.ealg.id if sa.ealg is not None else 0
    exts: list[Extension] = [SA(sa.spi, sa.replay_window, sa.reported_state, auth, encrypt, sa.flags)]  # type: ignore[arg-type]
    if hsc & 2:
        exts.append(LifetimeHard(report_limit(lft[3]) & 0xFFFFFFFF, report_limit(lft[1]), lft[5], lft[7]))
    if hsc & 1:
        exts.append(LifetimeSoft(report_limit(lft[2]) & 0xFFFFFFFF, report_limit(lft[0]), lft[4], lft[6]))
    exts.append(LifetimeCurrent(sa.cur_packets & 0xFFFFFFFF, sa.cur_bytes, sa.add_time, sa.use_time))
    bits = host_bits(family)
    exts += [AddressSrc(sockaddr(family, sa.saddr), bits, 0), AddressDst(sockaddr(family, sa.daddr), bits, 0)]  # type: ignore[arg-type]
    _, sel_saddr, sel_prefixlen, sel_proto, sel_sport = sa.sel
    if not same_address(sel_saddr, sa.saddr, family):
        exts.append(AddressProxy(sockaddr(family, sel_saddr, sel_sport), sel_prefixlen, sel_proto or 255))  # type: ignore[arg-type]
    if keys and sa.aalg is not None and sa.akey_bits:
        exts.append(KeyAuth(sa.akey_bits, sa.akey))
    if keys and sa.ealg is not None and sa.ekey_bits:
        exts.append(KeyEncrypt(sa.ekey_bits, sa.ekey))
    exts.append(SA2(MODE_TO_PFKEY[sa.mode], 0, sa.reqid))  # type: ignore[arg-type]
    if sa.encap is not None and sa.encap[0]:
        exts += [NatTType(sa.encap[0]), NatTSport(sa.encap[1]), NatTDport(sa.encap[2])]
    if sa.sec_ctx is not None:
        exts.append(SecCtx(*sa.sec_ctx))
    satype = PROTO_TO_SATYPE.get(sa.proto, 0)
    return Message(msg_type, satype, seq, pid, extensions=tuple(exts)).encode()  # type: ignore[arg-type]


@given(seed=st.integers(0, 2**32 - 1), semantics=st.sampled_from(["linux", "pfmigrate"]))
@settings(max_examples=60, deadline=None)
def test_direct_packing_is_the_codecs_encoding(seed: int, semantics: str) -> None:
    engine = Engine(semantics=semantics, rng=random.Random(seed))
    clients = [engine.connect() for _ in range(3)]
    for i, step in enumerate(generate(seed).steps):
        engine.handle(clients[step.socket], step.data, 1_800_000_000.0 + i)
        for sa in engine.sad.values():
            for keys, hsc, kind in ((True, 3, MsgType.GET), (False, 2, MsgType.EXPIRE), (False, 1, MsgType.EXPIRE)):
                ours = sa_message(sa, kind, i, 42, keys=keys, hsc=hsc)
                assert ours == by_codec(sa, kind, i, 42, keys=keys, hsc=hsc)
                assert decode(ours).encode() == ours
