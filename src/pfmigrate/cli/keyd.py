"""``pfmigrate keyd``: serve pfmigrate's key engine to the processes of this machine.

Clients speak PF_KEY v2 over a Unix ``SOCK_SEQPACKET`` socket, one message per packet
(``pfmigrate.backends.keyd``). The SAD and SPD live in a SQLite journal and survive
restarts and crashes; root, keyd's own user and ``--admin-group`` may change them,
``--read-group`` may read them without keys, anyone else is refused with EPERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import stat
from pathlib import Path
from typing import Any

from pfmigrate import jsonlogs
from pfmigrate.backends.keyd import socket_path
from pfmigrate.cli import argtypes
from pfmigrate.cli.errors import CommandError
from pfmigrate.keyd.journal import Journal, JournalError
from pfmigrate.keyd.server import DEFAULT_PER_USER, Server, ServerError, group_id, listen, unlisten
from pfmigrate.keyd.service import DEFAULT_OUTBOX, AccessRules, Service
from pfmigrate.sadb import Engine

DEFAULT_JOURNAL = Path("/var/lib/pfmigrate/keyd.db")
log = logging.getLogger("pfmigrate.keyd")


def register(commands: Any) -> None:
    keyd = commands.add_parser("keyd", help="serve the key engine on a PF_KEY socket (crash-safe, access-controlled)")
    keyd.add_argument(
        "--socket", type=Path, help="the socket (default $PFMIGRATE_KEYD_SOCKET or /run/pfmigrate/keyd.sock)"
    )
    keyd.add_argument(
        "--journal", type=Path, default=DEFAULT_JOURNAL, help=f"the SQLite journal (default {DEFAULT_JOURNAL})"
    )
    keyd.add_argument("--admin-group", help="a group whose members may change the SAD and SPD (root always may)")
    keyd.add_argument("--read-group", help="a group whose members may read them, without keys")
    keyd.add_argument("--socket-mode", type=argtypes.file_mode, default=0o666, help="socket file mode (octal)")
    keyd.add_argument("--semantics", choices=["pfmigrate", "linux"], default="pfmigrate",
                      help="pfmigrate's MIGRATE and broadcast numbers, or exactly Linux's af_key")  # fmt: skip
    keyd.add_argument("--metrics", type=Path, help="write Prometheus-format metrics to this file every second")
    keyd.add_argument(
        "--outbox", type=argtypes.positive, default=DEFAULT_OUTBOX, help="messages a slow client may have waiting"
    )
    keyd.add_argument("--max-per-user", type=argtypes.positive, default=DEFAULT_PER_USER,
                      help="connections a user other than an administrator may hold at once")  # fmt: skip
    keyd.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    keyd.set_defaults(run=run)


def build(args: argparse.Namespace) -> Server:
    """keyd ready to serve. Whatever can refuse the start is found out before the journal
    is opened (opening creates it): a refused start leaves no empty journal behind."""
    rules = AccessRules(
        os.getuid(),
        group_id(args.admin_group) if args.admin_group else None,
        group_id(args.read_group) if args.read_group else None,
    )
    _check_journal_path(args.journal)
    path = socket_path(args.socket)
    listener = listen(path, args.socket_mode)
    try:
        try:
            args.journal.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"{args.journal.parent}: cannot make the journal's directory: {exc.strerror}") from exc
        journal = Journal(args.journal)
        try:
            engine = Engine(semantics=args.semantics)
            engine.restore(*journal.load())
        except BaseException:
            journal.close()
            raise
    except BaseException:
        unlisten(listener, path)  # (another keyd's journal, a damaged one: this start gives up its socket)
        raise
    log.info(
        "restored from the journal",
        extra={"event": "restored", "journal": str(args.journal), "sas": len(engine.sad), "policies": len(engine.spd)},
    )
    service = Service(engine, journal, rules, outbox_limit=args.outbox)
    return Server(service, path, metrics_path=args.metrics, per_user=args.max_per_user, listener=listener)


def _check_journal_path(path: Path) -> None:
    """A journal that is there must be a regular file: SQLite would read a FIFO or a
    device (and write its own log beside it, in /dev for /dev/zero)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return  # (made when keyd opens it)
    except OSError as exc:
        raise JournalError(f"{path}: cannot look at the journal: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        raise JournalError(f"{path}: the journal must be a regular file, and this is not one")


def run(args: argparse.Namespace) -> int:
    jsonlogs.setup("pfmigrate.keyd", args.log_level)
    try:
        server = build(args)
    except (JournalError, ServerError) as exc:
        raise CommandError(str(exc)) from exc
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.stop())
    try:
        server.serve()
    except JournalError as exc:  # nothing unwritten was acknowledged: a restart resumes from the journal
        raise CommandError(f"stopping: {exc}") from exc
    return 0
