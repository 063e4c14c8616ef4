"""Run sequences against a PF_KEY engine of our own, through the interface it is written to.

The engine stands for the kernel side of every AF_KEY socket of one namespace:

* ``connect()`` is opening a socket: a new client, whose id the engine chooses. The
  three clients of a run are connected in order before the first step, so client
  ``connect()``-ed first is socket 0, and so on.
* ``handle(client, data, now)`` is ``send(data)`` on that client's socket at wall-clock
  time ``now`` (seconds since the epoch, a float). It returns what ``send()`` returns,
  an errno (0 for success: Linux's own refusals before parsing, such as EINVAL for a
  bad version or EMSGSIZE for a bad length, are errnos here; refusals after parsing are
  error messages delivered to the sender), and every message the engine delivers
  because of it, in order, as ``(client, bytes)``. Like Linux, it delivers everything
  a request causes before it returns.

  The same in named form is taken too: an object with ``send_errno`` and
  ``deliveries``, each delivery a ``(client, bytes)`` pair or an object with
  ``client`` and ``data`` (``pfmigrate.sadb``'s ``Outcome`` and ``Delivery``).

The run's clock starts at ``CLOCK_START`` and moves by the time Linux took between
steps when a Linux transcript's times are given (``times``), else by a millisecond a
step, so a run of 30 steps stays within the second in which Linux still holds an extra
reference to a new policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Sequence as Seq
from typing import Protocol

from tests.differential.sequences import SOCKETS, Sequence
from tests.differential.transcript import StepResult, Transcript

#: ``now`` at the first step: 2023-11-14T22:13:20Z.
CLOCK_START = 1_700_000_000.0
#: Seconds between steps when no times are given.
STEP_SECONDS = 0.001


class DeliveryLike(Protocol):
    """One message for one client, in named form."""

    @property
    def client(self) -> int: ...

    @property
    def data(self) -> bytes: ...


class OutcomeLike(Protocol):
    """``handle``'s answer in named form."""

    @property
    def send_errno(self) -> int: ...

    @property
    def deliveries(self) -> Iterable[DeliveryLike | tuple[int, bytes]]: ...


Answer = tuple[int, Iterable[tuple[int, bytes]]] | OutcomeLike


class PfKeyEngine(Protocol):
    """The kernel side of the PF_KEY sockets of one namespace."""

    def connect(self) -> int:
        """A new client (an opened socket); the id to pass to ``handle``."""
        ...

    def handle(self, client: int, data: bytes, now: float) -> Answer:
        """``send(data)`` from ``client`` at ``now``: ``send()``'s errno (0: success) and the deliveries."""
        ...


EngineFactory = Callable[[], PfKeyEngine]


class EngineFailure(AssertionError):
    """The engine raised, or delivered to a client it never handed out."""


def unpack(answer: Answer) -> tuple[int, list[tuple[int, bytes]]]:
    """``handle``'s answer as ``(errno, [(client, bytes), ...])``, whichever form it came in."""
    deliveries: Iterable[DeliveryLike | tuple[int, bytes]]
    if isinstance(answer, tuple):
        error, deliveries = answer
    else:
        error, deliveries = answer.send_errno, answer.deliveries
    pairs: list[tuple[int, bytes]] = []
    for delivery in deliveries:
        if isinstance(delivery, tuple):
            client, data = delivery
        else:
            client, data = delivery.client, delivery.data
        pairs.append((client, bytes(data)))
    return error, pairs


def run_on_engine(
    sequence: Sequence, engine_factory: EngineFactory, *, times: Seq[float] | None = None, origin: str = ""
) -> Transcript:
    """Run ``sequence`` on a new engine; ``times`` are seconds from the start of each step."""
    engine = engine_factory()
    clients = [engine.connect() for _ in range(SOCKETS)]
    if len(set(clients)) != SOCKETS:
        raise EngineFailure(f"connect() gave the client ids {clients}: they must differ")
    socket_of = {client: i for i, client in enumerate(clients)}
    results: list[StepResult] = []
    for i, step in enumerate(sequence.steps):
        elapsed = times[i] if times is not None and i < len(times) else i * STEP_SECONDS
        try:
            error, deliveries = unpack(engine.handle(clients[step.socket], step.data, CLOCK_START + elapsed))
        except Exception as exc:
            raise EngineFailure(f"seed {sequence.seed} step {i} ({step.note}): the engine raised {exc!r}") from exc
        received: list[list[bytes]] = [[] for _ in range(SOCKETS)]
        for client, data in deliveries:
            if client not in socket_of:
                raise EngineFailure(f"seed {sequence.seed} step {i}: delivery to client {client}, not one of {clients}")
            received[socket_of[client]].append(data)
        results.append(StepResult(error, tuple(tuple(r) for r in received), elapsed))
    name = origin or type(engine).__qualname__
    return Transcript(sequence.seed, tuple(results), sequence.digest(), name)


def engine_factory(semantics: str = "linux") -> EngineFactory:
    """``pfmigrate.sadb.Engine`` with the given semantics ("linux" answers as Linux 6.1)."""
    from pfmigrate.sadb import Engine

    return lambda: Engine(semantics=semantics)
