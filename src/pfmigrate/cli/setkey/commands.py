"""Statements carried out on a key engine, as setkey carries them out.

Each statement is one request to the engine, except ``deleteall``, ``flush PROTOCOL``
and ``dump PROTOCOL``, which dump the SAD and then act on the SAs of that protocol
(the key-engine interface flushes and dumps every protocol at once). When the engine
refuses a statement, the error is printed with the statement's place and the next
statement runs, as setkey goes on; the run then ends with status 1.

RFC mode (setkey's default on Linux, ``-r``): an ``in`` policy added, updated,
deleted or migrated takes a ``fwd`` policy with it, the same but with a ``unique``
first request made ``require``, because Linux checks forwarded packets against ``fwd``
policies only. Kernel mode (``-k``) does exactly what each statement says.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

from pfmigrate.cli.errors import listening_failed
from pfmigrate.cli.monitor import describe
from pfmigrate.cli.setkey import dump
from pfmigrate.cli.setkey.parser import MAX_CPI
from pfmigrate.cli.setkey.statements import (
    AddSA,
    DeleteAll,
    DeleteSA,
    Dump,
    Exit,
    Flush,
    GetSA,
    GetSPI,
    Migrate,
    SpdAdd,
    SpdDelete,
    SpdDump,
    SpdFlush,
    Statement,
)
from pfmigrate.engine import SPI_RANGE, KeyEngine, KeyEngineError
from pfmigrate.model import IPCOMP, Dir, MigrateRequest, Policy, SAState, SecurityAssociation
from pfmigrate.modeljson import event_to_data, protocol_json, to_data


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    keys: bool = False  # show keys in dumps (--keys)
    json: bool = False  # results as JSON, one document a line (--json)
    rfc: bool = True  # fwd copies of in policies (-r, the default; -k turns it off)
    dead: bool = False  # dumps show dead SAs too (-a)


def notes(statements: Iterable[Statement]) -> list[str]:
    """What the parser noted (options accepted without effect), each with its place."""
    return [note for s in statements if isinstance(s, AddSA | GetSPI) for note in s.notes]


def _spi_range(proto: int) -> tuple[int, int]:
    """Where the engine picks an SPI for ``getspi ... 0``: an IPComp SA's is its 16-bit
    CPI, and Linux refuses a range that goes beyond."""
    return (SPI_RANGE[0], min(SPI_RANGE[1], MAX_CPI)) if proto == IPCOMP else SPI_RANGE


def forward_copy(policy: Policy) -> Policy:
    """The ``fwd`` policy RFC mode adds beside an ``in`` one."""
    templates = list(policy.templates)
    if templates and templates[0].reqid and not templates[0].optional:
        templates[0] = dataclasses.replace(templates[0], reqid=0)  # unique:N becomes require
    return dataclasses.replace(policy, dir=Dir.FWD, templates=tuple(templates), index=0)


def forward_move(request: MigrateRequest, engine: KeyEngine) -> MigrateRequest:
    """The ``migrate`` of an ``in`` policy's ``fwd`` twin, which RFC mode made: the same
    move, except that a bundle names no unique id the twin's templates lack (its copy
    of a ``unique`` first request is ``require``). The SAs moved with the ``in`` policy;
    this moves the twin's templates."""
    twin = engine.get_policy(request.selector, Dir.FWD)
    ids = {template.reqid for template in twin.templates}
    bundles = tuple(b if b.reqid in ids else dataclasses.replace(b, reqid=0) for b in request.bundles)
    return dataclasses.replace(request, dir=Dir.FWD, bundles=bundles)


def _move(request: MigrateRequest) -> tuple[object, ...]:
    """What a ``migrate`` moves, whatever its direction: the selector and the bundles'
    endpoints, protocols and modes (not their ids, which a twin's may lack)."""
    return request.selector, tuple(dataclasses.replace(b, reqid=0) for b in request.bundles)


class Session:
    """Runs statements on one engine, printing results to ``out`` and errors to ``err``."""

    def __init__(
        self,
        engine: KeyEngine,
        *,
        out: TextIO,
        err: TextIO,
        options: Options = Options(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.out = out
        self.err = err
        self.options = options
        self.clock = clock
        self.failures = 0
        self.twins_moved: set[tuple[object, ...]] = set()  # (``_move``) fwd twins an in migrate moved (RFC mode)

    def run(self, statements: Sequence[Statement]) -> bool:
        """Every statement in turn; ``False`` once an ``exit`` statement is reached."""
        for line in notes(statements):
            print(line, file=self.err)
        for statement in statements:
            if isinstance(statement, Exit):
                return False
            try:
                self.execute(statement)
            except BrokenPipeError:  # our reader left (`setkey -D | head`): not the engine's doing
                raise
            except OSError as exc:  # KeyEngineError, or the backend's socket failing
                self.report(statement, exc)
        return True

    def report(self, statement: Statement, exc: OSError, what: str = "") -> None:
        self.failures += 1
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if isinstance(exc, KeyEngineError):
            reason += f": {exc.meaning}" if exc.meaning else ""
            reason += f" ({exc.detail})" if exc.detail else ""
        print(f"{statement.at}: {what or statement.verb}: {reason}", file=self.err, flush=True)

    def execute(self, statement: Statement) -> None:
        engine = self.engine
        match statement:
            case AddSA(sa=sa, update=update):
                (engine.update_sa if update else engine.add_sa)(sa)
            case GetSPI(src=src, dst=dst, proto=proto, spi=spi, reqid=reqid, mode=mode):
                span = (spi, spi) if spi else _spi_range(proto)
                got = engine.allocate_spi(src, dst, proto, reqid=reqid, spi_range=span, mode=mode)
                self._emit(
                    {"src": str(src), "dst": str(dst), "proto": protocol_json(proto), "spi": got, "reqid": reqid},
                    f"{src} {dst}\n\t{dump.SA_PROTOCOLS[proto]} spi={got}(0x{got:08x}) "
                    f"reqid={reqid}(0x{reqid:08x}) state=larval",
                )
            case GetSA(dst=dst, spi=spi, proto=proto):
                found = engine.get_sa(dst, spi, proto)
                self._emit(to_data(found, keys=self.options.keys), dump.sa_entry(found, **self._sa_style()))
            case DeleteSA(dst=dst, spi=spi, proto=proto):
                engine.delete_sa(dst, spi, proto)
            case DeleteAll(src=src, dst=dst, proto=proto):
                for sa in engine.dump_sas():
                    if (sa.src, sa.dst, sa.proto) == (src, dst, proto):
                        engine.delete_sa(sa.dst, sa.spi, sa.proto)
            case Flush(proto=0):
                engine.run(engine.ops.flush_sas())
            case Flush(proto=proto):
                for sa in engine.dump_sas():
                    if sa.proto == proto:
                        engine.delete_sa(sa.dst, sa.spi, sa.proto)
            case Dump(proto=proto):
                self.show_sad([sa for sa in engine.dump_sas() if not proto or sa.proto == proto])
            case SpdAdd(policy=policy, update=update):
                change = engine.update_policy if update else engine.add_policy
                change(policy)
                if self.options.rfc and policy.dir is Dir.IN:
                    self._fwd(statement, lambda: change(forward_copy(policy)))
            case SpdDelete(selector=selector, dir=direction):
                engine.delete_policy(selector, direction)
                if self.options.rfc and direction is Dir.IN:
                    self._fwd(statement, lambda: engine.delete_policy(selector, Dir.FWD))
            case SpdFlush():
                engine.run(engine.ops.flush_policies())
            case SpdDump():
                self.show_spd(engine.dump_policies())
            case Migrate(request=request) if request.dir is Dir.FWD and _move(request) in self.twins_moved:
                print(
                    f"{statement.at}: note: the fwd twin moved with its in policy (RFC mode); "
                    "this migrate is not needed",
                    file=self.err,
                    flush=True,
                )  # (written for setkey before it moved twins: Linux would refuse the repeat)
            case Migrate(request=request):
                engine.migrate(request)
                if self.options.rfc and request.dir is Dir.IN:
                    self._fwd(statement, lambda: self._move_twin(request))

    def _move_twin(self, request: MigrateRequest) -> None:
        self.engine.migrate(forward_move(request, self.engine))
        self.twins_moved.add(_move(request))

    def _fwd(self, statement: Statement, act: Callable[[], object]) -> None:
        try:
            act()
        except OSError as exc:
            self.report(statement, exc, f"{statement.verb} (its fwd copy, RFC mode)")

    def _sa_style(self) -> dict[str, Any]:
        return {"keys": self.options.keys, "now": self.clock()}

    def _emit(self, data: object, text: str) -> None:
        print(json.dumps(data) if self.options.json else text, file=self.out, flush=True)

    def show_sad(self, sas: list[SecurityAssociation]) -> None:
        shown = [sa for sa in sas if self.options.dead or sa.state is not SAState.DEAD]
        data = [to_data(sa, keys=self.options.keys) for sa in shown]
        self._emit(data, dump.sad(shown, **self._sa_style()))

    def show_spd(self, policies: list[Policy]) -> None:
        self._emit([to_data(policy) for policy in policies], dump.spd(policies))


def watch(engine: KeyEngine, out: TextIO, *, as_json: bool = False, count: int = 0, timeout: float = 0.0) -> int:
    """``setkey -x``: print each event as it comes, until ``count`` events, ``timeout``
    seconds or Ctrl-C; the number of events seen."""
    seen = 0
    deadline = time.monotonic() + timeout if timeout else None
    try:
        engine.subscribe()
    except OSError as exc:
        raise listening_failed(engine.name, exc, started=False) from None
    try:
        while not (count and seen >= count):
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                break
            for event in engine.next_events(1.0 if wait is None else min(wait, 1.0)):
                print(json.dumps(event_to_data(event)) if as_json else describe(event), file=out, flush=True)
                seen += 1
                if seen == count:
                    break
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # (keyd stopped, say)
        raise listening_failed(engine.name, exc, started=True) from None
    return seen
