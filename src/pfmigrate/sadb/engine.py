"""pfmigrate's own key engine: a SAD and SPD that answer PF_KEY as Linux ``af_key`` does.

Sans-IO: ``handle(client, data, now)`` takes one PF_KEY request from a client (what it
would ``send()`` on an AF_KEY socket) and returns an ``Outcome``: the errno ``send()``
itself would fail with (0 if it succeeds) and the deliveries, in order, each a message
for one client. ``tick(now)`` runs the lifetime timers. Clients stand for sockets:
``connect()`` opens one, newest first in broadcasts as in Linux.

With ``semantics="linux"`` the engine is a faithful Linux 6.1: that is what the
differential tests hold it to. The default, ``"pfmigrate"``, keeps everything else and
improves MIGRATE (``docs/differences-from-linux.md``).
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import random
from collections.abc import Callable
from typing import TypeVar

from pfmigrate.pfkey.constants import AF_INET, AF_INET6
from pfmigrate.pfkey.generation import with_generation
from pfmigrate.sadb import acquire, lifetimes
from pfmigrate.sadb.chains import Chains
from pfmigrate.sadb.core import (
    ALL,
    HANDLERS,
    ONE,
    PROMISC_ONLY,
    REGISTERED,
    Batches,
    Client,
    Delivery,
    Outcome,
    Request,
    header_only,
)
from pfmigrate.sadb.records import ACQ, PolicyRecord, SARecord
from pfmigrate.sadb.tables import Change, Database, Table
from pfmigrate.sadb.wire import Refused, check_base, split

T = TypeVar("T")
_SERIAL_BITS = 40
_SERIAL_MASK = (1 << _SERIAL_BITS) - 1


class Engine:
    """A SAD and SPD with Linux's PF_KEY semantics (see the module docstring)."""

    def __init__(self, *, semantics: str = "pfmigrate", rng: random.Random | None = None) -> None:
        if semantics not in ("linux", "pfmigrate"):
            raise ValueError(f"semantics is 'linux' or 'pfmigrate', not {semantics!r}")
        self.semantics = semantics
        self.linux = semantics == "linux"  # copy Linux's faults too
        self.rng = rng or random.Random()
        self.clients: dict[int, Client] = {}
        self._next_client = 0
        self._serial = 0
        self.db = Database()
        self.sad: Table[int, SARecord] = Table(
            "sad",
            self.db,
            {
                "spi": lambda sa: (sa.daddr, sa.spi, sa.proto, sa.family) if sa.spi else None,
                "src": lambda sa: (sa.daddr, sa.saddr, sa.family),
                "seq": lambda sa: sa.seq if sa.state == ACQ and sa.seq else None,  # larvals by ACQUIRE seq
                "larval": lambda sa: (
                    (sa.mode, sa.reqid, sa.family, sa.proto, sa.daddr, sa.saddr)
                    if sa.state == ACQ and not sa.spi
                    else None
                ),
                "reqid": lambda sa: sa.reqid or None,
            },
        )
        self.spd: Table[int, PolicyRecord] = Table(
            "spd",
            self.db,
            {
                "identity": PolicyRecord.identity,
                "index": lambda p: p.index,
                # the outbound lookup of a flow: host-to-host selectors by their addresses
                "exact": lambda p: p.exact_key(),
                "inexact": lambda p: None if p.exact_key() else p.dir,
            },
        )
        # The SA timers: a heap of deadline << 40 | SA serial (an int is smaller than a
        # tuple, and there may be a million). An entry may be stale: each is checked
        # against the SA when it comes up (``_due``).
        self.timers: list[int] = []
        self.journal: Callable[[list[Change]], None] | None = None
        self.chains = Chains() if self.linux else None  # the order Linux meets SAs in
        self.db.on_commit = self._committed
        self.idx_generator = 0
        self.gen_reqid = 0x3FFF
        self.acqseq = 0
        self.generation = 0  # broadcasts sent, for listeners to see a gap (pfmigrate semantics)

    # --- clients and delivery ---------------------------------------------------------------------

    def connect(self) -> int:
        """A new client (an AF_KEY socket); it comes first in broadcasts, as in Linux."""
        client = self._next_client
        self._next_client += 1
        self.clients = {client: Client(client), **self.clients}
        return client

    def disconnect(self, client: int) -> None:
        self.clients.pop(client, None)

    def next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def broadcast(
        self, out: list[Delivery], data: bytes, flags: int, one: int | None = None, *, numbered: bool = True
    ) -> None:
        """``pfkey_broadcast``: promiscuous clients always get a copy; ``one`` last.

        With pfmigrate semantics every broadcast to all or to the registered clients
        carries the engine's generation number (an X_KMPRIVATE extension holding a
        host-order u64, one more for each such broadcast), so a listener can tell that
        it missed one. Linux gives no such sign: its broadcasts are silently dropped
        for a client whose queue is full. (``numbered=False``: a client's own message
        passed on as it is, which may hold an X_KMPRIVATE already.)
        """
        if numbered and self.semantics == "pfmigrate" and flags in (ALL, REGISTERED):
            self.generation += 1
            data = with_generation(data, self.generation)
        for c in self.clients.values():
            if c.promisc:
                out.append(Delivery(c.id, data))
            if c.id == one:
                continue
            if flags == ALL or (flags & REGISTERED and not flags & PROMISC_ONLY and c.registered):
                out.append(Delivery(c.id, data))
        if one is not None and one in self.clients:
            out.append(Delivery(one, data))

    # --- the entry point --------------------------------------------------------------------------

    def handle(self, client: int, data: bytes, now: float, *, stream: bool = False) -> Outcome:
        """One request from ``client`` at time ``now`` (seconds since the epoch).

        A DUMP or X_SPDDUMP answers with one message per entry. With ``stream`` they
        come as ``Outcome.more``, made from a snapshot of the table as the caller
        asks for them (as Linux makes a dump while the socket is read), so a dump of a
        million SAs is never held in memory at once; otherwise they are all in
        ``deliveries``."""
        try:
            _, mtype, _, satype, _, _, seq, pid = check_base(data)
        except Refused as refused:
            return Outcome(refused.errno, (), str(refused))
        out: list[Delivery] = []
        reason = ""
        more: Batches | None = None
        self.broadcast(out, data, PROMISC_ONLY)  # the raw request, before anything is checked
        try:
            request = Request(client, data, mtype, satype, seq, pid, split(data), now)
            handler = HANDLERS.get(mtype)
            if handler is None:
                raise Refused(errno.EOPNOTSUPP, f"no handler for type {mtype}")
            handler(self, request, out)
            more = request.more
        except Refused as refused:
            self.broadcast(out, header_only(data[:16], errno_=refused.errno), ONE, client)
            reason = str(refused)
        self._settle()
        if more is not None and not stream:
            for batch in more:
                out += batch
            more = None
        return Outcome(0, tuple(out), reason, more)

    def dump(self, req: Request, entries: list[T], message: Callable[[T, int], bytes]) -> None:
        """Answer ``req`` with one message per entry, ``message(entry, seq)``, numbered
        as ``pfkey_dump`` numbers them (the last one 0), made only when read."""

        def batches() -> Batches:
            last = len(entries) - 1
            for i, entry in enumerate(entries):
                out: list[Delivery] = []
                self.broadcast(out, message(entry, 0 if i == last else i + 1), ONE, req.client)
                yield out

        req.more = batches()

    # --- SA helpers ---------------------------------------------------------------------------------

    def sa_by_spi(self, family: int, daddr: bytes, spi: int, proto: int) -> SARecord | None:
        found = self.sad.find("spi", (daddr, spi, proto, family))
        if not found:
            return None
        return found[-1] if len(found) == 1 else self.chain_order(found, "spi")[0]

    def sas_between(self, daddr: bytes, saddr: bytes, family: int, reqid: int) -> list[SARecord]:
        """The SAs from ``saddr`` to ``daddr`` with ``reqid``, as Linux's bydst chain meets them."""
        found = [sa for sa in self.sad.find("src", (daddr, saddr, family)) if sa.reqid == reqid]
        return self.chain_order(found, "dst")

    def chain_order(self, rows: list[SARecord], table: str) -> list[SARecord]:
        """SAs that share a key in the order Linux finds them (Linux semantics), else
        newest first."""
        if self.chains is not None:
            return self.chains.order(rows, table)
        return sorted(rows, key=lambda sa: sa.serial, reverse=True)

    def acquire_by_seq(self, seq: int) -> SARecord | None:
        """``__xfrm_find_acq_byseq``: the first larval waiting for ``seq`` on a walk of
        the tables."""
        found = [sa for sa in self.sad.find("seq", seq) if sa.state == ACQ]
        if not found:
            return None
        if self.chains is not None:
            return self.chains.walk_order(found)[0]
        return found[-1]

    def insert_sa(self, sa: SARecord) -> None:
        self.sad.put(sa.serial, sa)

    # --- saving and restoring (keyd's journal) -------------------------------------------------

    COUNTERS = ("serial", "idx_generator", "gen_reqid", "acqseq", "generation")

    def counters(self) -> dict[str, int]:
        """The numbers the engine hands out next: saved with its rows, so that a restarted
        engine gives no serial, policy index, reqid or broadcast number twice."""
        return {
            "serial": self._serial, "idx_generator": self.idx_generator, "gen_reqid": self.gen_reqid,
            "acqseq": self.acqseq, "generation": self.generation,
        }  # fmt: skip

    def restore(self, sas: list[SARecord], policies: list[PolicyRecord], counters: dict[str, int]) -> None:
        """Load saved rows and counters into an empty engine (before any journal is attached)."""
        if len(self.sad) or len(self.spd):
            raise RuntimeError("restore() needs an empty engine")
        with self.db.transaction():
            for sa in sorted(sas, key=lambda row: row.serial):
                self.sad.put(sa.serial, sa)
            for policy in sorted(policies, key=lambda row: row.serial):
                self.spd.put(policy.serial, policy)
        # (never below a loaded row's serial: a new row must not take an old one's key)
        highest = max([sa.serial for sa in sas] + [policy.serial for policy in policies], default=0)
        self._serial = max(counters.get("serial", self._serial), highest)
        self.idx_generator = counters.get("idx_generator", self.idx_generator)
        self.gen_reqid = counters.get("gen_reqid", self.gen_reqid)
        self.acqseq = counters.get("acqseq", self.acqseq)
        self.generation = counters.get("generation", self.generation)
        self._settle()

    # --- time and traffic -----------------------------------------------------------------------

    def tick(self, now: float) -> tuple[Delivery, ...]:
        """Run the lifetime timers due by ``now``: the soft and hard EXPIREs they send."""
        out: list[Delivery] = []
        while (sa := self._due(now)) is not None:
            lifetimes.run_timer(self, sa, now, out)
            self._push(self.sad.get(sa.serial))  # its next deadline, if it lives on
        self._settle()
        return tuple(out)

    def next_deadline(self) -> int | None:
        """When ``tick`` next has work, if ever (for a shell's sleep)."""
        self._due(None)
        return self.timers[0] >> _SERIAL_BITS if self.timers else None

    def _due(self, now: float | None) -> SARecord | None:
        """Drop stale heap entries; then the SA whose deadline has come by ``now``, taken
        off the heap (with ``now`` None, nothing is taken)."""
        timers = self.timers
        while timers:
            entry = timers[0]
            due, serial = entry >> _SERIAL_BITS, entry & _SERIAL_MASK
            sa = self.sad.get(serial)
            current = lifetimes.deadline(sa) if sa is not None else None
            if current == due:
                if now is None or due > now:
                    return None
                heapq.heappop(timers)
                return sa
            heapq.heappop(timers)  # stale: the SA is gone, or its deadline moved
            if current is not None and current > due:
                heapq.heappush(timers, current << _SERIAL_BITS | serial)
        return None

    def account(self, daddr: str, spi: int, proto: int, nbytes: int, now: float) -> Outcome:
        """One packet of ``nbytes`` through the SA (``daddr``, ``spi``, ``proto``): the
        byte and packet limits, and the soft or hard EXPIRE they cause. ``send_errno``
        is ESRCH if there is no such SA, EINVAL if it may carry no more packets."""
        family, raw = raw_address(daddr)
        sa = self.sa_by_spi(family, raw, spi, proto)
        if sa is None:
            return Outcome(errno.ESRCH, ())
        out: list[Delivery] = []
        carried = lifetimes.account(self, sa, nbytes, now, out)
        self._settle()
        return Outcome(0 if carried else errno.EINVAL, tuple(out))

    def outgoing(
        self, src: str, dst: str, now: float, *, proto: int = 0, sport: int = 0, dport: int = 0, nbytes: int = 0
    ) -> Outcome:
        """A packet the host sends from ``src`` to ``dst``: the outbound policy decides.

        ``send_errno`` is 0 if it leaves (its SAs count it), EPERM if a policy blocks it,
        EAGAIN while an SA is missing; the first such packet makes a larval SA and an
        ACQUIRE to the registered key managers (the deliveries).
        """
        family, saddr = raw_address(src)
        d_family, daddr = raw_address(dst)
        if family != d_family:
            raise ValueError(f"{src} and {dst} are of different families")
        out: list[Delivery] = []
        sent = acquire.outgoing(self, (family, saddr, daddr, proto, sport, dport), nbytes, now, out)
        self._settle()
        return Outcome(sent, tuple(out))

    def _settle(self) -> None:
        """What Linux does once a request is over: a table resize it made due."""
        if self.chains is not None:
            self.chains.resize_if_due()

    def _committed(self, changes: list[Change]) -> None:
        if self.chains is not None:
            self.chains.apply(changes)
        for change in changes:
            if change.table == "sad" and change.row is not None:
                # A later deadline is found when the earlier one comes up; an earlier one
                # needs an entry of its own.
                due = lifetimes.deadline(change.row)
                before = lifetimes.deadline(change.before) if change.before is not None else None
                if due is not None and (before is None or due < before):
                    heapq.heappush(self.timers, due << _SERIAL_BITS | change.key)
        if self.journal is not None:
            self.journal(changes)

    def _push(self, sa: SARecord | None) -> None:
        if sa is not None and (due := lifetimes.deadline(sa)) is not None:
            heapq.heappush(self.timers, due << _SERIAL_BITS | sa.serial)


# --- SA requests -------------------------------------------------------------------------------------


def raw_address(text: str) -> tuple[int, bytes]:
    """An address as the engine keeps it: its family and 16 bytes (IPv4 in the first 4)."""
    address = ipaddress.ip_address(text)
    if address.version == 4:
        return AF_INET, address.packed + bytes(12)
    return AF_INET6, address.packed
