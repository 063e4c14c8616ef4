"""The Linux backends' exchanges, fed by hand: how a dump that stops short and an answer
that cannot be read end (with an error that says so, not with a silent partial result
or a timeout)."""

from __future__ import annotations

import errno
import struct
from ipaddress import ip_network

import pytest

from pfmigrate.backends.pfkey_ops import PfKeyOperations, selector_extensions
from pfmigrate.backends.xfrm_ops import XfrmOperations
from pfmigrate.engine import KeyEngineError
from pfmigrate.mobility import routeopt
from pfmigrate.model import Dir, Selector
from pfmigrate.pfkey import Direction, Message, PolicyType, SAType
from pfmigrate.pfkey import MsgType as PfkeyMsgType
from pfmigrate.pfkey import Policy as PolicyExt
from pfmigrate.xfrm import DUMP, MsgType, NetlinkDone, NlFlags, XfrmMessage
from tests.seed_scenario import OUT_SELECTOR

_HEADER = struct.Struct("=IHHII")


def seq_of(request: bytes) -> int:
    seq: int = _HEADER.unpack_from(request)[3]
    return seq


def test_a_dump_that_ends_with_an_error_is_an_error_not_a_short_list() -> None:
    exchange = XfrmOperations().dump_policies()
    done = NetlinkDone(flags=2, seq=seq_of(exchange.request), pid=0, error=-errno.EINTR).encode()
    assert exchange.feed(done)
    with pytest.raises(KeyEngineError) as refused:
        exchange.result()
    assert refused.value.errno == errno.EINTR
    assert "the dump ended with an error" in str(refused.value)


def test_a_dump_that_ends_well_is_its_entries() -> None:
    exchange = XfrmOperations().dump_policies()
    assert exchange.feed(NetlinkDone(flags=2, seq=seq_of(exchange.request), pid=0).encode())
    assert exchange.result() == []


def test_an_answer_that_does_not_decode_is_an_error_and_another_requests_is_ignored() -> None:
    exchange = XfrmOperations().get_policy(OUT_SELECTOR, Dir.OUT)
    seq = seq_of(exchange.request)
    garbled = _HEADER.pack(40, 21, 0, seq, 0) + bytes(8)  # a NEWPOLICY longer than what came, with our seq
    assert not exchange.feed(_HEADER.pack(40, 21, 0, seq + 1000, 0) + bytes(8))  # not ours
    assert exchange.feed(garbled)
    with pytest.raises(KeyEngineError) as refused:
        exchange.result()
    assert refused.value.errno == errno.EBADMSG
    assert "does not decode" in str(refused.value)


def test_an_af_key_answer_that_does_not_decode_is_an_error_and_anothers_is_ignored() -> None:
    ops = PfKeyOperations(4242)
    exchange = ops.get_policy(OUT_SELECTOR, Dir.OUT)
    ours = bytearray(exchange.request[:16])
    ours[4:6] = (9).to_bytes(2, "little")  # says 72 bytes; 16 came
    theirs = bytearray(ours)
    theirs[12:16] = (4343).to_bytes(4, "little")
    assert not exchange.feed(bytes(theirs))
    assert exchange.feed(bytes(ours))
    with pytest.raises(KeyEngineError) as refused:
        exchange.result()
    assert refused.value.errno == errno.EBADMSG
    dump = ops.dump_sas()
    part = bytearray(dump.request[:16])
    part[4:6], part[8:12] = (9).to_bytes(2, "little"), (3).to_bytes(4, "little")  # the third entry, unreadable
    assert dump.feed(bytes(part))
    with pytest.raises(KeyEngineError):
        dump.result()


def test_route_optimisations_requests_end_the_same_way() -> None:
    """The ro states' own exchange (``routeopt``): an unreadable answer of ours and a dump
    cut short are errors too."""
    dump = routeopt._Request("dump", XfrmMessage(MsgType.GETSA, NlFlags.REQUEST | DUMP, 7, 0))
    assert dump.feed(NetlinkDone(flags=2, seq=7, pid=0, error=-errno.EINTR).encode())
    with pytest.raises(KeyEngineError) as cut:
        dump.result()
    assert cut.value.errno == errno.EINTR
    request = routeopt._Request("flush", XfrmMessage(MsgType.FLUSHPOLICY, NlFlags.REQUEST | NlFlags.ACK, 8, 0))
    assert not request.feed(_HEADER.pack(40, 16, 0, 9, 0) + bytes(8))  # another's
    assert request.feed(_HEADER.pack(40, 16, 0, 8, 0) + bytes(8))
    with pytest.raises(KeyEngineError) as unreadable:
        request.result()
    assert unreadable.value.errno == errno.EBADMSG


def test_an_af_key_policy_dump_leaves_out_socket_policies() -> None:
    """Linux's X_SPDDUMP lists a socket's own policies too, with direction 4 or 5 (an IKE
    daemon's bypass on its sockets): they are not the SPD's, and not an error."""
    ops = PfKeyOperations(4242)
    exchange = ops.dump_policies()
    src, dst = selector_extensions(Selector(ip_network("0.0.0.0/0"), ip_network("0.0.0.0/0")))
    for seq, direction in ((1, Direction.OUTBOUND), (0, Direction(5))):  # (the last of a dump has seq 0)
        policy = PolicyExt(PolicyType.NONE, direction, 60)
        answer = Message(PfkeyMsgType.X_SPDDUMP, SAType.UNSPEC, seq, 4242, extensions=(src, dst, policy))
        exchange.feed(answer.encode())
    [only] = exchange.result()
    assert (only.dir, only.index) == (Dir.OUT, 60)
