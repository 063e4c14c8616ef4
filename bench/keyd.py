"""keyd: MIGRATE round trip and sustained messages per second through its socket,
beside Linux's own XFRM_MSG_MIGRATE round trip measured in the same run.

    python bench/keyd.py [--seconds S] [--clients N]

keyd runs as its own process with its journal on this machine's disk (every change is
durable before its answer). The round trip is one client sending the seed's MIGRATE
(prebuilt bytes) and waiting for the answer, the mobile node moving to the new care-of
address and back (and, for comparison only, the same with the journal in tmpfs, where
fsync costs nothing). The sustained rate is N client processes, each keeping 64 requests
in flight: GETs (answered from memory) and ADD/DELETE pairs (journaled; keyd commits
each batch of requests with one fsync). The anchor is Linux's XFRM_MSG_MIGRATE round
trip on this kernel, in a fresh network namespace.

Also measured, with no target: the memory a DUMP of many SAs makes keyd hold (Python's
allocations at their peak, ``tracemalloc``) while a client reads it, keyd's streamed
dump beside the same dump made whole (as keyd made it before it streamed them).

Also printed, with no target, two floors under any daemon's round trip on this machine:
one ``write`` and ``fdatasync`` of a record the size of the MIGRATE, in the journal's
directory (what making one change durable costs, whatever the store), and a round trip
through a SEQPACKET socket to another process that sends each packet back untouched
(what reaching a daemon costs before it does anything).

Targets: keyd's MIGRATE round trip at most 5x Linux's; at least 20,000 messages a second.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # testbed/ and bench/, when run as a script

from testbed.netns import in_new_netns

from bench.engine import add_sa, fill, migrate, spd_add
from bench.engine import measure_linux as linux_round_trip
from bench.timing import best_per_call
from pfmigrate.backends.keyd import connect
from pfmigrate.keyd.service import AccessRules, Peer, Service
from pfmigrate.pfkey import SA, AddressDst, AddressSrc, Direction, Message, MsgType, SAType
from pfmigrate.sadb import Engine
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA

TARGET_RATIO, TARGET_RATE = 5.0, 20_000
WINDOW = 64  # requests each client keeps in flight


def start_keyd(directory: Path) -> subprocess.Popen[bytes]:
    sock = directory / "keyd.sock"
    command = [sys.executable, "-m", "pfmigrate", "keyd", "--socket", str(sock), "--journal",
               str(directory / "keyd.db"), "--log-level", "error", "--outbox", "100000"]  # fmt: skip
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 30
    while True:
        try:
            connect(sock).close()
            return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("keyd did not start") from None
            time.sleep(0.05)


def ask(sock: socket.socket, data: bytes) -> bytes:
    sock.send(data)
    answer = sock.recv(65536)
    if answer[2]:
        raise RuntimeError(f"keyd refused a request: errno {answer[2]}")
    return answer


def round_trip(path: Path, seconds: float) -> float:
    """Seconds per MIGRATE, best of several timed rounds."""
    sock = connect(path)
    ask(sock, add_sa(0x1000, OLD_COA, HOME_AGENT, 1))
    ask(sock, spd_add(HOME_ADDRESS, HOME_AGENT, Direction.OUTBOUND, (OLD_COA, HOME_AGENT), 2))
    moves = [migrate(OLD_COA, NEW_COA, False), migrate(NEW_COA, OLD_COA, False)]

    def batch(calls: int) -> None:
        for i in range(calls):
            ask(sock, moves[i & 1])

    best = best_per_call(batch, 200, seconds)
    sock.close()
    return best


def fsync_floor(directory: Path, seconds: float) -> float:
    """Seconds for one ``write`` and ``fdatasync`` of 320 bytes, best of several rounds."""
    path = directory / "fsync-floor"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    record = os.urandom(320)

    def batch(calls: int) -> None:
        for _ in range(calls):
            os.write(fd, record)
            os.fdatasync(fd)

    try:
        return best_per_call(batch, 100, seconds)
    finally:
        os.close(fd)
        path.unlink()


def echo_floor(seconds: float) -> float:
    """Seconds per round trip to a process that sends each SEQPACKET packet back."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # the echo: nothing but recv and send
        mine.close()
        while packet := theirs.recv(65536):
            theirs.send(packet)
        os._exit(0)
    theirs.close()
    request = migrate(OLD_COA, NEW_COA, False)

    def batch(calls: int) -> None:
        for _ in range(calls):
            mine.send(request)
            mine.recv(65536)

    try:
        return best_per_call(batch, 1000, seconds)
    finally:
        mine.close()
        os.waitpid(pid, 0)


def own(data: bytes) -> bytes:
    """``data`` with this process's pid, so that its answers can be told from broadcasts."""
    return data[:12] + os.getpid().to_bytes(4, "little") + data[16:]


def get_request(spi: int) -> bytes:
    ends = (AddressSrc.of(f"{OLD_COA}/128"), AddressDst.of(f"{HOME_AGENT}/128"))
    return Message(MsgType.GET, SAType.ESP, spi, os.getpid(), extensions=(SA(spi), *ends)).encode()


def delete_request(spi: int) -> bytes:
    ends = (AddressSrc.of(f"{OLD_COA}/128"), AddressDst.of(f"{HOME_AGENT}/128"))
    return Message(MsgType.DELETE, SAType.ESP, spi, os.getpid(), extensions=(SA(spi), *ends)).encode()


def client(path: Path, kind: str, worker: int, seconds: float, counts: multiprocessing.Queue[int]) -> None:
    """Keep ``WINDOW`` requests in flight for ``seconds``; count the answers."""
    sock = connect(path)
    base = 0x100000 * (worker + 1)
    add = own(add_sa(base, OLD_COA, HOME_AGENT, 1))
    if kind == "get":
        ask(sock, add)
        requests = [get_request(base)]
    else:  # the same SA added and deleted, over and over
        requests = [add, delete_request(base)]
    pid = os.getpid().to_bytes(4, "little")
    sent = answered = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        while sent - answered < WINDOW:
            sock.send(requests[sent % len(requests)])
            sent += 1
        data = sock.recv(65536)
        if data[12:16] == pid:  # an answer to this client, not another client's broadcast
            answered += 1
    counts.put(answered)
    sock.close()


def rate(path: Path, kind: str, clients: int, seconds: float) -> float:
    counts: multiprocessing.Queue[int] = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=client, args=(path, kind, w, seconds, counts)) for w in range(clients)]
    for w in workers:
        w.start()
    total = sum(counts.get(timeout=seconds + 60) for _ in workers)
    for w in workers:
        w.join()
    return total / seconds


def dump_memory(count: int) -> tuple[int, int]:
    """(bytes at the peak of a streamed dump read to its end, the same for the whole
    dump) of ``count`` SAs, beyond the engine's own tables."""
    engine = Engine()
    fill(engine, engine.connect(), count)
    service = Service(engine, None, AccessRules(os.getuid()))
    reader = service.open(Peer(os.getpid(), 0, 0))
    request = Message(MsgType.DUMP, SAType.ESP, 1, os.getpid()).encode()
    tracemalloc.start()
    service.request(reader, request, time.time())
    service.commit()
    read = 0
    while reader.outbox:
        reader.outbox.popleft()
        service.room(reader)
        read += 1
    streamed = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    whole = engine.handle(reader.client or 0, request, time.time())
    made = len(whole.deliveries)
    whole_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if read != count or made != count:
        raise RuntimeError(f"the dumps gave {read} and {made} messages, not {count}")
    return streamed, whole_peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--clients", type=int, default=2, help="client processes for the sustained rate")
    parser.add_argument("--dump-sas", type=int, default=100_000, help="SAs in the dumped SAD")
    args = parser.parse_args()
    linux, moved = in_new_netns(lambda: linux_round_trip(args.seconds))
    echo = echo_floor(args.seconds)
    with tempfile.TemporaryDirectory(dir="/var/tmp") as directory:
        fsync = fsync_floor(Path(directory), args.seconds)
        keyd = start_keyd(Path(directory))
        try:
            path = Path(directory) / "keyd.sock"
            migrate_rt = round_trip(path, args.seconds)
            reads = rate(path, "get", args.clients, args.seconds)
            writes = rate(path, "write", args.clients, args.seconds)
        finally:
            keyd.terminate()
            keyd.wait(10)
    with tempfile.TemporaryDirectory(dir="/dev/shm") as directory:  # the same without the disk's fsync
        keyd = start_keyd(Path(directory))
        try:
            in_memory = round_trip(Path(directory) / "keyd.sock", args.seconds)
        finally:
            keyd.terminate()
            keyd.wait(10)
    streamed, whole = dump_memory(args.dump_sas)
    print("keyd (journal on disk, fsync before answers) beside Linux, this machine")
    print(f"{'Linux XFRM_MSG_MIGRATE round trip (anchor)':48} {linux * 1e6:>9.2f} µs  (it moved {moved})")
    print(f"{'keyd PF_KEY X_MIGRATE round trip':48} {migrate_rt * 1e6:>9.2f} µs  ({migrate_rt / linux:.1f}x Linux)")
    shm = "  the same, journal in tmpfs (no disk fsync)"
    print(f"{shm:48} {in_memory * 1e6:>9.2f} µs  ({in_memory / linux:.1f}x Linux)")
    for label, floor in (("floor: write+fdatasync, journal's directory", fsync),
                         ("floor: echo via another process, no work", echo)):  # fmt: skip
        print(f"{label:48} {floor * 1e6:>9.2f} µs  ({floor / linux:.1f}x Linux)")
    print(f"{f'keyd GETs, {args.clients} clients x {WINDOW} in flight':48} {reads:>9,.0f} messages/s")
    print(f"{f'keyd ADD+DELETE, {args.clients} clients x {WINDOW} in flight':48} {writes:>9,.0f} messages/s")
    print(f"{f'keyd DUMP of {args.dump_sas:,} SAs, made whole (anchor)':48} {whole / 2**20:>9.1f} MiB at the peak")
    print(f"{'  the same, streamed as the client reads':48} {streamed / 2**20:>9.1f} MiB at the peak")
    ratio = migrate_rt / linux
    checks = [
        (f"round trip / Linux <= {TARGET_RATIO}", f"{ratio:.1f}", ratio <= TARGET_RATIO),
        (f"GETs per second >= {TARGET_RATE:,}", f"{reads:,.0f}", reads >= TARGET_RATE),
        (f"ADD+DELETE per second >= {TARGET_RATE:,}", f"{writes:,.0f}", writes >= TARGET_RATE),
    ]
    for name, value, ok in checks:
        print(f"{name:40} {value:>10}  {'met' if ok else 'MISSED'}")
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
