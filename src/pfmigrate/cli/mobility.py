"""``pfmigrate mn --config FILE`` and ``pfmigrate ha --config FILE``: the Mobile IPv6
mobile node and home agent (configuration: docs/mobility-config.md)."""

from __future__ import annotations

import argparse
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pfmigrate import jsonlogs
from pfmigrate.backends.registry import BackendUnavailable
from pfmigrate.cli.errors import CommandError, reason
from pfmigrate.engine import KeyEngine, KeyEngineError
from pfmigrate.mobility.config import ConfigError, HAConfig, MNConfig, load_ha, load_mn
from pfmigrate.mobility.daemon import HomeAgentDaemon, MobileNodeDaemon, log, open_engine, route_optimization
from pfmigrate.mobility.mhsocket import MHSocket


def register(commands: Any) -> None:
    for name, role in (("mn", "mobile node"), ("ha", "home agent")):
        parser = commands.add_parser(name, help=f"run the Mobile IPv6 {role} (Linux: MH sockets need root)")
        parser.add_argument("--config", type=Path, required=True, help="its TOML configuration")
        parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
        parser.set_defaults(run=run, role=name)


def run(args: argparse.Namespace) -> int:
    jsonlogs.setup("pfmigrate.mobility", args.log_level)
    with contextlib.ExitStack() as resources:  # each closed at the end, whatever happens after it opened
        try:
            config: MNConfig | HAConfig = load_mn(args.config) if args.role == "mn" else load_ha(args.config)
            engine = resources.enter_context(open_engine(config.backend.name, config.backend.keyd_socket))
            mh = resources.enter_context(MHSocket())
            ro = route_optimization(engine)
            if ro is not None and ro.engine is not engine:  # its own XFRM handle
                resources.enter_context(ro.engine)
            backend = config.backend

            def reopen() -> KeyEngine:  # keyd restarted under a move: the outcome is settled on the new connection
                return open_engine(backend.name, backend.keyd_socket)

            daemon: MobileNodeDaemon | HomeAgentDaemon = (
                MobileNodeDaemon(config, engine, mh, ro=ro, reopen=reopen)
                if isinstance(config, MNConfig)
                else HomeAgentDaemon(config, engine, mh, ro=ro, reopen=reopen)
            )
            resources.callback(lambda: daemon.engine.close())  # (the one opened last, if it was reopened)
        except (ConfigError, BackendUnavailable, KeyEngineError) as exc:
            raise CommandError(str(exc)) from exc
        except PermissionError as exc:
            raise CommandError(f"a Mobility Header socket needs root (CAP_NET_RAW): {exc}") from exc
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop)
        log.info("started", extra={"event": "started", "role": args.role, "backend": engine.name,
                                   "route_optimisation": daemon.ro is not None})  # fmt: skip
        serve(daemon, lambda: stopping)
    return 0


def serve(daemon: MobileNodeDaemon | HomeAgentDaemon, stopping: Callable[[], bool]) -> None:
    """Run the daemon until ``stopping()``. A key engine that goes away under a change
    (keyd restarted) is opened again by the daemon, which reads its tables back; any
    other socket that fails under it stops it with the reason: the tables may hold half
    a move, and a daemon started again puts them right before it does anything else."""
    try:
        while not stopping():
            daemon.turn()
    except OSError as exc:
        said = reason(exc)
        log.error("stopping", extra={"event": "stopping", "reason": said})
        raise CommandError(f"stopping: {said}; started again, the daemon puts its IPsec tables right") from exc
