"""The differential harness itself, without a kernel: sequences, transcripts, comparison, adapter."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable

import pytest

from pfmigrate.pfkey import (
    SA,
    AddressDst,
    AddressSrc,
    DecodeError,
    Direction,
    IPProto,
    IPsecRequest,
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
    SAType,
    SockAddr,
    SPIRange,
    decode,
)
from tests.differential import replay
from tests.differential.engine import EngineFailure, run_on_engine
from tests.differential.sequences import PIDS, Sequence, Step, generate
from tests.differential.stats import format_histogram, histogram, outcome
from tests.differential.transcript import StepResult, Transcript, compare, normalise

SEEDS = range(300)


@pytest.fixture(scope="module")
def sequences() -> list[Sequence]:
    return [generate(seed) for seed in SEEDS]


def decoded(sequences: Iterable[Sequence]) -> Iterable[tuple[Step, Message]]:
    for sequence in sequences:
        for step in sequence.steps:
            try:
                yield step, decode(step.data)
            except DecodeError:
                continue


# --- sequences -----------------------------------------------------------------------------------


def test_a_seed_always_gives_the_same_sequence() -> None:
    assert generate(12345) == generate(12345)
    assert generate(12345).digest() == generate(12345).digest()
    assert generate(12345) != generate(12346)
    steps = generate(7, steps=11).steps
    assert len(steps) == 11 + 2  # and the final DUMP and X_SPDDUMP
    assert [step.note for step in steps[-2:]] == ["final DUMP", "final X_SPDDUMP"]


def test_only_sockets_0_and_1_send_and_only_1_registers_or_turns_promiscuous(sequences: list[Sequence]) -> None:
    for sequence in sequences:
        for step in sequence.steps:
            assert step.socket in (0, 1)
            if len(step.data) > 1 and step.data[1] in (MsgType.REGISTER, MsgType.X_PROMISC):
                assert step.socket == 1, step.note


def test_getspi_never_lets_linux_choose_a_random_spi(sequences: list[Sequence]) -> None:
    for step, msg in decoded(sequences):
        if msg.type == MsgType.GETSPI:
            spi_range = msg.get(SPIRange)
            assert spi_range is not None, step.note
            assert spi_range.min >= spi_range.max, step.note


def test_no_lifetime_is_short_enough_to_expire_during_a_run(sequences: list[Sequence]) -> None:
    for step, msg in decoded(sequences):
        for ext in msg.extensions:
            if isinstance(ext, LifetimeHard | LifetimeSoft):
                assert ext.addtime in (0,) or ext.addtime >= 3600, step.note
                assert ext.usetime in (0,) or ext.usetime >= 3600, step.note


def test_sequences_cover_what_they_should(sequences: list[Sequence]) -> None:
    notes = " ".join(step.note for sequence in sequences for step in sequence.steps)
    types = {step.data[1] for sequence in sequences for step in sequence.steps if len(step.data) > 1}
    wanted = {
        MsgType.GETSPI, MsgType.UPDATE, MsgType.ADD, MsgType.DELETE, MsgType.GET, MsgType.REGISTER,
        MsgType.FLUSH, MsgType.DUMP, MsgType.X_PROMISC, MsgType.X_SPDUPDATE, MsgType.X_SPDADD,
        MsgType.X_SPDDELETE, MsgType.X_SPDGET, MsgType.X_SPDDUMP, MsgType.X_SPDFLUSH, MsgType.X_SPDSETIDX,
        MsgType.X_SPDDELETE2, MsgType.X_MIGRATE, MsgType.EXPIRE, 0,
    }  # fmt: skip
    assert wanted <= types
    for phrase in (
        "re-key", "with KMADDRESS", "without KMADDRESS", "stale old endpoints", "no such policy", "dir INVALID",
        "family changes", "2 bundles", "unknown auth algorithm", "unknown encryption algorithm",
        "encryption key of", "rfc4106(gcm(aes))", "sadb_msg_version", "sadb_msg_reserved", "sadb_msg_len",
        "after sadb_msg_len", "length 0", "runs past the end", "twice", "shortened to", "family", "prefix length",
        "UPDATE missing", "UPDATE larval", "ADD again", "FLUSH UNSPEC", "X_PROMISC on", "X_PROMISC off",
        "no handler", "outside 1..24",
    ):  # fmt: skip
        assert phrase in notes, phrase
    levels = {
        rq.level for _, msg in decoded(sequences) if msg.type == MsgType.X_SPDADD
        for policy in [msg.get(Policy)] if policy is not None for rq in policy.requests
    }  # fmt: skip
    assert {Level.USE, Level.REQUIRE, Level.UNIQUE} <= levels


def test_pids_name_the_sending_socket(sequences: list[Sequence]) -> None:
    for step, msg in decoded(sequences):
        assert msg.pid == PIDS[step.socket], step.note


# --- transcripts and their comparison ---------------------------------------------------------------

V6 = "2001:db8::1"


def policy_reply(reqid: int, *, reserved: int = 2, addtime: int = 1_700_000_000) -> bytes:
    request = IPsecRequest(IPProto.ESP, Mode.TUNNEL, Level.UNIQUE, reqid, SockAddr.of(V6), SockAddr.of("2001:db8::2"))
    return Message(
        MsgType.X_SPDADD,
        seq=1,
        pid=PIDS[0],
        reserved=reserved,
        extensions=(
            AddressSrc.of(f"{V6}/128"),
            AddressDst.of("2001:db8::9/128"),
            LifetimeCurrent(0, 0, addtime, 0),
            Policy(PolicyType.IPSEC, Direction.OUTBOUND, 1, 0, (request,)),
        ),
    ).encode()


def transcript(*received: tuple[bytes, ...], errno: int = 0, seed: int = 1) -> Transcript:
    sockets = (*received, *(() for _ in range(3 - len(received))))
    return Transcript(seed, (StepResult(errno, tuple(sockets)),), "d" * 64, "test")


def test_transcripts_round_trip_through_json() -> None:
    original = Transcript(
        9, (StepResult(0, ((policy_reply(5),), (), (b"\x02" * 16,)), 0.25), StepResult(22, ((), (), ()))), "ab", "x"
    )
    assert Transcript.from_json(original.to_json()) == original


def test_identical_runs_compare_equal_and_wall_clock_times_do_not_count() -> None:
    assert compare(transcript((policy_reply(5),)), transcript((policy_reply(5),))) == []
    assert compare(transcript((policy_reply(5, addtime=1),)), transcript((policy_reply(5, addtime=2),))) == []


def test_refcounts_spis_and_errnos_do_count() -> None:
    [difference] = compare(transcript((policy_reply(5, reserved=2),)), transcript((policy_reply(5, reserved=3),)))
    assert "reserved=2" in difference
    assert "reserved=3" in difference
    assert "step 0, socket 0, message 1" in difference
    both = compare(
        transcript((policy_reply(5),), (policy_reply(5),)), transcript((policy_reply(6),), (policy_reply(6),))
    )
    assert len(both) == 1
    assert "sockets 0, 1, message 1" in both[0]
    [difference] = compare(transcript(errno=22), transcript(errno=0))
    assert "EINVAL" in difference
    sa = [Message(MsgType.GET, SAType.ESP, extensions=(SA(spi),)).encode() for spi in (0x100, 0x101)]
    [difference] = compare(transcript((sa[0],)), transcript((sa[1],)))
    assert "spi=0x00000100" in difference
    assert "spi=0x00000101" in difference


def test_missing_and_extra_messages_are_named() -> None:
    one, two = policy_reply(5), policy_reply(6)
    [difference] = compare(transcript((one, two)), transcript((one,)))
    assert "only Linux sent message 2" in difference
    [difference] = compare(transcript((), (one,)), transcript())
    assert "socket 1, only Linux sent message 1" in difference


def test_generated_reqids_are_renamed_in_order_of_appearance() -> None:
    linux = transcript((policy_reply(0x4123), policy_reply(0x4124), policy_reply(0x4123)))
    ours = transcript((policy_reply(0x4000), policy_reply(0x4001), policy_reply(0x4000)))
    assert compare(linux, ours) == []
    swapped = transcript((policy_reply(0x4001), policy_reply(0x4000), policy_reply(0x4000)))
    assert compare(linux, swapped) != []
    assert compare(transcript((policy_reply(5),)), transcript((policy_reply(6),))) != []  # manual reqids count


def test_migrate_padding_after_ipv6_addresses_is_ignored() -> None:
    request = IPsecRequest(IPProto.ESP, Mode.TUNNEL, Level.REQUIRE, 0, SockAddr.of(V6), SockAddr.of("2001:db8::2"))
    broadcast = Message(
        MsgType.X_MIGRATE,
        SAType.ESP,
        extensions=(
            KMAddress(SockAddr.of(V6), SockAddr.of("2001:db8::2")),
            AddressSrc.of(f"{V6}/128"),
            AddressDst.of("2001:db8::9/128"),
            Policy(PolicyType.IPSEC, Direction.OUTBOUND, requests=(request, request)),
        ),
    ).encode()
    dirty = bytearray(broadcast)
    src_at = 16 + 64  # after the header and the 64-byte KMADDRESS
    dirty[src_at + 36 : src_at + 40] = b"\xde\xad\xbe\xef"
    assert compare(transcript((broadcast,)), transcript((bytes(dirty),))) == []
    dirty[src_at + 20] ^= 1  # inside the address: a real difference
    assert compare(transcript((broadcast,)), transcript((bytes(dirty),))) != []


def test_undecodable_messages_are_shown_as_hex() -> None:
    bad = policy_reply(5)[:-8]  # sadb_msg_len now says more than there is, and a request is cut
    [difference] = compare(transcript((bad,)), transcript((policy_reply(5),)))
    assert "undecodable" in difference
    miscounted = bytearray(policy_reply(5))
    miscounted[4] -= 3  # only the length is wrong, as Linux gets it wrong for some policies
    [difference] = compare(transcript((bytes(miscounted),)), transcript((policy_reply(5),)))
    assert f"[sadb_msg_len says {len(miscounted) - 24} bytes, the message has {len(miscounted)}]" in difference
    assert "esp/tunnel/2001:db8::1-2001:db8::2/unique reqid=5" in difference
    unchanged = policy_reply(5, addtime=0)[:-8]
    assert normalise(transcript((unchanged,)))[0][0][0] == unchanged


# --- the engine adapter ----------------------------------------------------------------------------


class EchoEngine:
    """Answers every request by sending it back to its sender, in the tuple form."""

    def __init__(self) -> None:
        self.clients: list[int] = []

    def connect(self) -> int:
        self.clients.append(100 + len(self.clients))
        return self.clients[-1]

    def handle(self, client: int, data: bytes, now: float) -> tuple[int, list[tuple[int, bytes]]]:
        assert now >= 1_700_000_000
        return 0, [(client, data)]


@dataclasses.dataclass(frozen=True)
class Delivery:
    client: int
    data: bytes


@dataclasses.dataclass(frozen=True)
class Outcome:
    send_errno: int
    deliveries: tuple[Delivery, ...]


class NamedEngine(EchoEngine):
    """The same in the named form (``send_errno``, ``deliveries`` of ``client``/``data``)."""

    def handle(self, client: int, data: bytes, now: float) -> Outcome:  # type: ignore[override]
        return Outcome(22, (Delivery(self.clients[2], data),))


def test_run_on_engine_maps_clients_to_sockets_in_connection_order() -> None:
    sequence = generate(3, steps=5)
    result = run_on_engine(sequence, EchoEngine)
    assert result.seed == 3
    assert result.sequence_digest == sequence.digest()
    for step, got in zip(sequence.steps, result.steps, strict=True):
        assert got.received[step.socket] == (step.data,)
        assert got.send_errno == 0
    named = run_on_engine(sequence, NamedEngine, times=[0.5] * len(sequence.steps))
    assert all(got.received[2] and got.send_errno == 22 and got.elapsed == 0.5 for got in named.steps)


def test_a_delivery_to_a_stranger_is_an_engine_failure() -> None:
    class Stray(EchoEngine):
        def handle(self, client: int, data: bytes, now: float) -> tuple[int, list[tuple[int, bytes]]]:
            return 0, [(7, data)]

    with pytest.raises(EngineFailure, match="client 7"):
        run_on_engine(generate(1, steps=1), Stray)


# --- statistics and replay ----------------------------------------------------------------------------


def test_outcomes_find_the_error_reply_and_skip_a_promiscuous_echo() -> None:
    request = Message(MsgType.GET, SAType.ESP, seq=4, pid=PIDS[1], extensions=(SA(1),)).encode()
    error = bytearray(request[:16])
    error[2] = 3
    struct.pack_into("=H", error, 4, 2)
    step = Step(1, request, "GET")
    assert outcome(step, StepResult(0, ((), (request, bytes(error)), ()))) == "ESRCH"
    assert outcome(step, StepResult(0, ((), (request,), ()))) == "ok"
    assert outcome(step, StepResult(90, ((), (), ()))) == "send:EMSGSIZE"
    counts = histogram([(Sequence(1, (step,)), Transcript(1, (StepResult(0, ((), (bytes(error),), ())),)))])
    assert "GET" in format_histogram(counts)
    assert "ESRCH 1" in format_histogram(counts)


def test_replay_shows_the_sequence_without_a_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    assert replay.main(["5", "--steps", "4"]) == 0
    out = capsys.readouterr().out
    assert "seed 5: 6 steps" in out  # 4, a DUMP and an X_SPDDUMP
    assert "--- step 3" in out
    text = replay.render_sequence(generate(5, 2), transcript((policy_reply(5),), seed=5))
    assert "socket 0 receives (1/1)" in text
