"""The Linux backends' exchanges, fed by hand: how a dump that stops short and an answer
that cannot be read end (with an error that says so, not with a silent partial result
or a timeout)."""

from __future__ import annotations

import dataclasses
import errno
import struct
from collections.abc import Callable
from ipaddress import ip_address, ip_network

import pytest

from pfmigrate.backends import pfkey_ops
from pfmigrate.backends.pfkey_ops import PfKeyOperations, selector_extensions
from pfmigrate.backends.xfrm_ops import XfrmOperations
from pfmigrate.engine import EventsLostError, KeyEngine, KeyEngineError
from pfmigrate.mobility import routeopt
from pfmigrate.model import Algorithm, Dir, SecurityAssociation, Selector
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


class Scripted:
    """A transport whose answers the test writes: ``answer`` gives each request's, and
    ``incoming`` holds what has arrived; ``lost_notices`` losses are reported first."""

    def __init__(self, answer: Callable[[bytes], list[bytes]]) -> None:
        self.answer = answer
        self.incoming: list[bytes] = []
        self.lost_notices = 0

    def send(self, data: bytes) -> None:
        self.incoming += self.answer(data)

    def recv_ready(self) -> bytes | None:
        if self.lost_notices:
            self.lost_notices -= 1
            raise EventsLostError("broadcasts were dropped")
        return self.incoming.pop(0) if self.incoming else None

    def recv(self, timeout: float) -> bytes | None:
        return self.recv_ready()

    def drain(self) -> None:
        pass

    def close(self) -> None:
        pass


AES = Algorithm("cbc(aes)", bytes(16))


def _sa(spi: int) -> SecurityAssociation:
    return SecurityAssociation(ip_address("10.0.0.1"), ip_address("10.0.0.2"), spi, enc=AES)


def _dumped(spi: int, seq: int) -> bytes:
    return dataclasses.replace(pfkey_ops.sa_message(PfkeyMsgType.DUMP, _sa(spi)), seq=seq, pid=4242).encode()


def test_the_tail_of_a_dump_that_timed_out_is_not_the_next_dumps_answer() -> None:
    """PF_KEY numbers a dump's answers 1, 2, ..., 0, not by the request: the rest of a
    dump given up on is read to its end before the next request goes out."""
    answers = iter([[], [_dumped(0x10, 0)]])  # the first dump: nothing in time; the second: one SA
    transport = Scripted(lambda request: next(answers))
    engine = KeyEngine(PfKeyOperations(4242, name="keyd"), transport, timeout=0.01)
    with pytest.raises(KeyEngineError) as timed_out:
        engine.dump_sas()
    assert timed_out.value.errno == errno.ETIMEDOUT
    transport.incoming = [_dumped(0x1, 1), _dumped(0x2, 0)]  # the first dump's answers, late
    assert [sa.spi for sa in engine.dump_sas()] == [0x10]


def test_a_request_is_not_failed_by_broadcasts_dropped_for_its_client() -> None:
    """A client that only sends requests never reads the broadcasts; when keyd or the
    kernel drops some, the request's own answer still counts."""
    transport = Scripted(lambda request: [request])  # (an ADD is answered with itself, errno 0)
    transport.lost_notices = 2
    engine = KeyEngine(PfKeyOperations(4242, name="keyd"), transport, timeout=1.0)
    engine.add_sa(_sa(0x100))
    assert transport.lost_notices == 0
