"""The ``pfmigrate`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pfmigrate import __version__
from pfmigrate.cli import demo, keyd, mh, mobility, monitor, pfkey, setkey, xfrm
from pfmigrate.cli.errors import CommandError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pfmigrate",
        description="PF_KEY MIGRATE as the interface between Mobile IPv6 and IPsec/IKE.",
    )
    parser.add_argument("--version", action="version", version=f"pfmigrate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pfkey.register(commands)
    xfrm.register(commands)
    mh.register(commands)
    demo.register(commands)
    monitor.register(commands)
    keyd.register(commands)
    mobility.register(commands)
    setkey.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except BrokenPipeError:  # `pfmigrate ... | head`
        return 0
    except KeyboardInterrupt:  # Ctrl-C: the shell's status for SIGINT, not a traceback
        print("pfmigrate: interrupted", file=sys.stderr)
        return 130
    except CommandError as exc:
        print(f"pfmigrate: {exc}", file=sys.stderr)
        return 1
    return status
