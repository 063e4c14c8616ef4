"""``pfmigrate mn --config FILE`` and ``pfmigrate ha --config FILE``: the Mobile IPv6
mobile node and home agent (configuration: docs/mobility-config.md); ``pfmigrate mn
status`` and ``pfmigrate ha status``: what a running one holds, asked over its control
socket."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pfmigrate import jsonlogs
from pfmigrate.backends.registry import BackendUnavailable
from pfmigrate.cli.errors import CommandError, reason
from pfmigrate.engine import KeyEngine, KeyEngineError
from pfmigrate.mobility import kernelcheck
from pfmigrate.mobility.config import (
    DEFAULT_HA_CONTROL,
    DEFAULT_MN_CONTROL,
    ConfigError,
    HAConfig,
    MNConfig,
    load_ha,
    load_mn,
)
from pfmigrate.mobility.control import ControlError, ControlServer, ask
from pfmigrate.mobility.daemon import HomeAgentDaemon, MobileNodeDaemon, log, open_engine, route_optimization
from pfmigrate.mobility.metrics import MetricsFile
from pfmigrate.mobility.mhsocket import MHSocket
from pfmigrate.mobility.status import StatusError, from_json, render


def register(commands: Any) -> None:
    for name, role in (("mn", "mobile node"), ("ha", "home agent")):
        parser = commands.add_parser(
            name, help=f"run the Mobile IPv6 {role} (Linux: MH sockets need root); `{name} status` asks a running one"
        )
        parser.add_argument("--config", type=Path, help="its TOML configuration (required to run it)")
        parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
        parser.add_argument(
            "--no-route-optimisation", action="store_true",
            help="run without the kernel's Home Address option and type 2 routing header states "
            "(as route_optimisation = false; for kernels without mip6)",
        )  # fmt: skip
        parser.add_argument("--control", type=Path, help="its control socket (default: the configuration's)")
        parser.add_argument("--metrics", type=Path, help="write Prometheus metrics to FILE (at most once a second)")
        parser.set_defaults(run=run, role=name)
        actions = parser.add_subparsers(dest="action", metavar="ACTION")
        status = actions.add_parser("status", help=f"list a running {role}'s bindings and their IPsec bundles")
        status.add_argument("--json", action="store_true", help="one JSON object, for programs")
        status.add_argument("--control", type=Path, help="the daemon's control socket")
        status.add_argument("--config", type=Path, help="find the control socket in this configuration")
        status.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer (default 5)")
        status.set_defaults(run=show_status, role=name)


def show_status(args: argparse.Namespace) -> int:
    path: Path = args.control or (DEFAULT_MN_CONTROL if args.role == "mn" else DEFAULT_HA_CONTROL)
    if args.control is None and args.config is not None:
        try:
            path = (load_mn(args.config) if args.role == "mn" else load_ha(args.config)).control_socket
        except ConfigError as exc:
            raise CommandError(str(exc)) from exc
    try:
        answer = ask(path, "status", timeout=args.timeout)
        status = from_json(answer.get("status"))
    except (ControlError, StatusError) as exc:
        raise CommandError(str(exc)) from exc
    if status.role != args.role:
        raise CommandError(f"the daemon on {path} is a pfmigrate {status.role}, not a pfmigrate {args.role}")
    if args.json:
        json.dump(answer["status"], sys.stdout, indent=2)
        print()
    else:
        sys.stdout.write(render(status))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.config is None:
        raise CommandError(f"pfmigrate {args.role} needs --config FILE (or `pfmigrate {args.role} status`)")
    jsonlogs.setup("pfmigrate.mobility", args.log_level)
    with contextlib.ExitStack() as resources:  # each closed at the end, whatever happens after it opened
        try:
            config: MNConfig | HAConfig = load_mn(args.config) if args.role == "mn" else load_ha(args.config)
            if isinstance(config, MNConfig):
                kernelcheck.check_interface(config.interface, config.source)
            wanted = config.route_optimisation and not args.no_route_optimisation
            engine = resources.enter_context(open_engine(config.backend.name, config.backend.keyd_socket))
            kernelcheck.check(engine, route_optimisation=wanted)
            mh = resources.enter_context(MHSocket())
            ro = route_optimization(engine, wanted=wanted)
            if ro is not None and ro.engine is not engine:  # its own XFRM handle
                resources.enter_context(ro.engine)
            reopen = keyd_reopener(config.backend.keyd_socket) if engine.name == "keyd" else None
            daemon: MobileNodeDaemon | HomeAgentDaemon = (
                MobileNodeDaemon(config, engine, mh, ro=ro, reopen=reopen)
                if isinstance(config, MNConfig)
                else HomeAgentDaemon(config, engine, mh, ro=ro, reopen=reopen)
            )
            resources.callback(lambda: daemon.engine.close())  # (the one opened last, if it was reopened)
            daemon.control = resources.enter_context(
                contextlib.closing(ControlServer(args.control or config.control_socket, daemon.answer))
            )
            metrics = None if args.metrics is None else MetricsFile(args.metrics)
            if metrics is not None:  # a path that cannot be written is said now, not at the first move
                metrics.write(daemon.render_metrics(), time.monotonic())
        except (ConfigError, BackendUnavailable, KeyEngineError, kernelcheck.Unfit, ControlError) as exc:
            raise CommandError(str(exc)) from exc
        except PermissionError as exc:
            raise CommandError(f"a Mobility Header socket needs root (CAP_NET_RAW): {exc}") from exc
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            raise CommandError(f"cannot start:{where} {reason(exc)}") from exc
        stopping: list[str] = []

        def stop(signum: int, _: object) -> None:
            stopping.append(signal.Signals(signum).name)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop)
        log.info("started", extra={"event": "started", "role": args.role, "backend": engine.name,
                                   "route_optimisation": daemon.ro is not None,
                                   "control": str(daemon.control.path)})  # fmt: skip
        serve(daemon, lambda: bool(stopping), metrics=metrics)
        # The tables stay as they are (docs/mobility-config.md, "Stopping"): traffic keeps
        # flowing through the daemon's absence, and a daemon started again reconciles them.
        log.info("stopped", extra={"event": "stopped", "role": args.role, "signal": stopping[0],
                                   "tables": "kept"})  # fmt: skip
    return 0


def keyd_reopener(keyd_socket: Path | None) -> Callable[[], KeyEngine]:
    """How a daemon on keyd opens it again when keyd went away under a move (a restart):
    keyd again, never the default backend anew; a keyd not back yet is an ``OSError``,
    which leaves the move's outcome unknown until the next read-back. (The kernel's
    sockets do not go away: the Linux backends are not reopened.)"""

    def reopen() -> KeyEngine:
        try:
            return open_engine("keyd", keyd_socket)
        except BackendUnavailable as exc:
            raise ConnectionRefusedError(errno.ECONNREFUSED, str(exc)) from exc

    return reopen


def serve(
    daemon: MobileNodeDaemon | HomeAgentDaemon, stopping: Callable[[], bool], *, metrics: MetricsFile | None = None
) -> None:
    """Run the daemon until ``stopping()``, writing ``metrics`` at most once a second and
    at the end. A key engine that goes away under a change (keyd restarted) is opened
    again by the daemon, which reads its tables back; any other socket that fails under
    it stops it with the reason: the tables may hold half a move, and a daemon started
    again puts them right before it does anything else."""
    try:
        while not stopping():
            daemon.turn()
            if metrics is not None and metrics.due(time.monotonic()):
                _write(daemon, metrics)
    except OSError as exc:
        said = reason(exc)
        log.error("stopping", extra={"event": "stopping", "reason": said})
        raise CommandError(f"stopping: {said}; started again, the daemon puts its IPsec tables right") from exc
    finally:
        if metrics is not None:
            _write(daemon, metrics)


def _write(daemon: MobileNodeDaemon | HomeAgentDaemon, metrics: MetricsFile) -> None:
    """Write the metrics file; a failure (a full disk) is logged, and the daemon goes on."""
    try:
        metrics.write(daemon.render_metrics(), time.monotonic())
    except OSError as exc:
        metrics.written_at = time.monotonic()  # (tried again a second later, not at every turn)
        log.warning("metrics-failed", extra={"event": "metrics-failed", "path": str(metrics.path),
                                             "reason": reason(exc)})  # fmt: skip
