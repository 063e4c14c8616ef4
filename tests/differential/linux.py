"""Run sequences against Linux ``af_key`` and record what every socket receives.

Each sequence runs in a network namespace of its own, created just for it, so it
starts from an empty SAD and SPD and Linux's per-namespace policy index counter starts
from zero each time (a policy's id is part of every answer about it). The three AF_KEY
sockets are opened in order. For each step the message goes to the step's socket; an
``OSError`` from ``send()`` gives its errno; then every socket is drained.

``af_key`` does all its work inside ``send()``: the handler runs and every reply and
broadcast is queued on the receiving sockets before ``send()`` returns. The one
exception is a dump that fills its socket's receive buffer: it stops and goes on as the
socket is read, inside ``recv()``. So a non-blocking drain, repeated over all sockets
until a whole pass finds nothing, collects everything a step causes (a short sleep then
lets deferred kernel work run: see ``DEFERRED_WORK``). ``settle`` (a
number of seconds) makes each step also wait that long afterwards and fail if anything
still arrives: the test that the drain is complete.

Module loading. Linux loads kernel modules on demand while it answers: crypto
algorithms and their templates, ``ah4``, IPComp. Every time it looks for an algorithm
that does not exist (``xfrm_probe_algs`` on each REGISTER asks for ``cbc(sm4)``,
``hmac(sm3)``, ``lzs`` and ``lzjh``; each new ``authenc(...)`` combination asks for
itself first) it runs the user-space modprobe, which inside User-Mode Linux takes a
tenth of a second or more. That makes a REGISTER take most of a second, and time
matters to the answers: for its first second a new policy without lifetimes holds an
extra reference for its timer, which shows in ``sadb_msg_reserved``. So ``prepared()``
first loads every module a sequence can need (``warm_up``: REGISTER, and an SA of
every algorithm, AH over IPv4, IPComp), then switches on-demand loading off
(``kernel.modprobe`` empty) while the sequences run. Answers are the same, because
everything loadable is loaded and everything else would have failed to load anyway;
runs take milliseconds instead of seconds.
"""

from __future__ import annotations

import contextlib
import platform
import select
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from testbed.netns import _enter_new_netns, in_new_netns

from pfmigrate.pfkey import (
    SA,
    SA2,
    AddressDst,
    AddressSrc,
    AuthAlg,
    EncAlg,
    Extension,
    KeyAuth,
    KeyEncrypt,
    Message,
    Mode,
    MsgType,
    SAType,
    SockAddr,
)
from pfmigrate.pfkey.constants import AF_KEY, PF_KEY_V2
from tests.differential.sequences import AUTH_ALGORITHMS, DEFAULT_STEPS, ENC_ALGORITHMS, SOCKETS, Sequence, generate
from tests.differential.transcript import StepResult, Transcript

_RECV_SIZE = 0xFFFF * 8 + 8  # larger than the largest PF_KEY message
MODPROBE = Path("/proc/sys/kernel/modprobe")
# A pause after each step, so that work the kernel deferred runs before the next one.
# An SA insert that makes the namespace's SA hash table too full schedules a resize on
# a workqueue; the resize rebuilds the hash chains and so changes which of two SAs with
# the same addresses a later lookup meets first. Without a pause the resize runs
# whenever the scheduler gets to it, and the same sequence can give different answers.
DEFERRED_WORK = 0.0002


class LateDelivery(AssertionError):
    """A message arrived after the drain: ``send()`` had not delivered everything."""


def kernel() -> str:
    return f"Linux {platform.release()}"


def unavailable() -> str | None:
    """Why AF_KEY sockets cannot be opened here, or ``None`` if they can."""
    try:
        socket.socket(AF_KEY, socket.SOCK_RAW, PF_KEY_V2).close()
    except OSError as exc:
        return f"cannot open an AF_KEY socket: {exc}"
    return None


def _drain(socks: list[socket.socket], buffer: bytearray) -> tuple[tuple[bytes, ...], ...]:
    got: list[list[bytes]] = [[] for _ in socks]
    progress = True
    while progress:
        progress = False
        for i, sock in enumerate(socks):
            while True:
                try:
                    n = sock.recv_into(buffer, len(buffer), socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                got[i].append(bytes(buffer[:n]))
                progress = True
    return tuple(tuple(messages) for messages in got)


def run_here(sequence: Sequence, *, settle: float = 0.0) -> Transcript:
    """Run ``sequence`` in the current network namespace (which should be new and empty)."""
    socks = [socket.socket(AF_KEY, socket.SOCK_RAW, PF_KEY_V2) for _ in range(SOCKETS)]
    buffer = bytearray(_RECV_SIZE)
    results: list[StepResult] = []
    try:
        for sock in socks:
            sock.setblocking(False)
        start = time.monotonic()
        for i, step in enumerate(sequence.steps):
            elapsed = time.monotonic() - start
            try:
                sent = socks[step.socket].send(step.data)
                error = 0
                if sent != len(step.data):
                    raise AssertionError(f"step {i}: send() took {sent} of {len(step.data)} bytes")
            except OSError as exc:
                error = exc.errno or -1
            received = _drain(socks, buffer)
            if settle > 0:
                ready, _, _ = select.select(socks, [], [], settle)
                if ready:
                    late = _drain(socks, buffer)
                    counts = [len(messages) for messages in late]
                    raise LateDelivery(
                        f"seed {sequence.seed} step {i} ({step.note}): messages per socket {counts} "
                        f"arrived after the drain"
                    )
            results.append(StepResult(error, received, round(elapsed, 6)))
            time.sleep(DEFERRED_WORK)
    finally:
        for sock in socks:
            sock.close()
    return Transcript(sequence.seed, tuple(results), sequence.digest(), kernel())


def run_on_linux(sequence: Sequence, *, settle: float = 0.0) -> Transcript:
    """Run ``sequence`` in a fresh network namespace (a forked child process)."""
    return in_new_netns(lambda: run_here(sequence, settle=settle))


def run_sequences(sequences: Iterable[Sequence], *, settle: float = 0.0) -> list[Transcript]:
    """Run each sequence in a fresh network namespace of its own.

    One child process runs them all and moves to a new namespace before each, which
    costs about a twentieth of forking a child per sequence.
    """
    batch = list(sequences)

    def body() -> list[Transcript]:
        out = []
        for sequence in batch:
            _enter_new_netns()
            out.append(run_here(sequence, settle=settle))
        return out

    return in_new_netns(body)


def run_many(seeds: Iterable[int], steps: int = DEFAULT_STEPS, *, settle: float = 0.0) -> list[Transcript]:
    """``generate`` and run each seed; transcripts in the order of ``seeds``."""
    return run_sequences((generate(seed, steps) for seed in seeds), settle=settle)


# --- module loading ---------------------------------------------------------------------------


def _warm_up_here() -> None:
    sock = socket.socket(AF_KEY, socket.SOCK_RAW, PF_KEY_V2)
    sock.setblocking(False)
    buffer = bytearray(_RECV_SIZE)
    messages: list[Message] = [Message(MsgType.REGISTER, SAType.ESP), Message(MsgType.REGISTER, SAType.AH)]
    spi = 0x100

    def add(satype: SAType, sa: SA, keys: tuple[Extension, ...], src: str, dst: str, mode: Mode) -> None:
        nonlocal spi
        spi += 1
        sa = SA(spi, sa.replay, sa.state, sa.auth, sa.encrypt)
        ends = (AddressSrc(SockAddr.of(src), 0), AddressDst(SockAddr.of(dst), 0))
        messages.append(Message(MsgType.ADD, satype, extensions=(sa, SA2(mode), *ends, *keys)))

    pairs = (("10.0.0.1", "10.0.0.2"), ("2001:db8::1", "2001:db8::2"))
    for src, dst in pairs:
        for mode in (Mode.TRANSPORT, Mode.TUNNEL):
            for auth in AUTH_ALGORITHMS:
                auth_key = KeyAuth(auth.bits[0], bytes(auth.bits[0] // 8))
                add(SAType.AH, SA(0, auth=AuthAlg.of(auth.id)), (auth_key,), src, dst, mode)
                add(SAType.ESP, SA(0, auth=AuthAlg.of(auth.id), encrypt=EncAlg.X_AESCBC),
                    (auth_key, KeyEncrypt.of(bytes(16))), src, dst, mode)  # fmt: skip
            for enc in ENC_ALGORITHMS:
                enc_key = KeyEncrypt(enc.bits[0], bytes(range(enc.bits[0] // 8)))
                add(SAType.ESP, SA(0, encrypt=EncAlg.of(enc.id)), (enc_key,), src, dst, mode)
                add(SAType.ESP, SA(0, auth=AuthAlg.SHA1HMAC, encrypt=EncAlg.of(enc.id)),
                    (KeyAuth.of(bytes(20)), enc_key), src, dst, mode)  # fmt: skip
            add(SAType.X_IPCOMP, SA(0, encrypt=EncAlg.of(2)), (), src, dst, mode)  # DEFLATE
    for msg in messages:
        with contextlib.suppress(OSError):
            sock.send(msg.encode())
        _drain([sock], buffer)
    sock.close()


def warm_up() -> None:
    """Have Linux load every module a sequence can make it load (in a throwaway namespace)."""
    in_new_netns(_warm_up_here)


@contextlib.contextmanager
def module_loading_off() -> Iterator[None]:
    """No on-demand module loading inside the block (``kernel.modprobe`` empty); root only."""
    saved = MODPROBE.read_text()
    MODPROBE.write_text("\n")
    try:
        yield
    finally:
        MODPROBE.write_text(saved)


@contextlib.contextmanager
def prepared() -> Iterator[None]:
    """``warm_up``, then ``module_loading_off`` for the block: runs that take milliseconds."""
    warm_up()
    with module_loading_off():
        yield
