"""``pfmigrate pfkey decode|encode``: PF_KEY messages between hex, text and JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pfmigrate.cli.errors import CommandError
from pfmigrate.pfkey import DecodeError, decode
from pfmigrate.pfkey.jsonform import JSONFormError, from_json, to_json
from pfmigrate.pfkey.render import render


def register(commands: Any) -> None:
    group = commands.add_parser("pfkey", help="decode and encode PF_KEY v2 messages")
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")

    dec = verbs.add_parser("decode", help="hex → readable text or JSON")
    dec.add_argument("hex", nargs="+", help="the message as hex (spaces and colons allowed), or - for stdin")
    dec.add_argument("--json", action="store_true", help="print JSON with symbolic names and numbers")
    dec.set_defaults(run=run_decode)

    enc = verbs.add_parser("encode", help="JSON (as decode --json prints it) → hex")
    enc.add_argument("file", nargs="?", default="-", help="a JSON file, or - for stdin (the default)")
    enc.set_defaults(run=run_encode)


def _read_hex(parts: list[str]) -> bytes:
    text = sys.stdin.read() if parts == ["-"] else " ".join(parts)
    cleaned = "".join(text.replace(":", " ").split())
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        bad = next((i for i, c in enumerate(cleaned) if c not in "0123456789abcdefABCDEF"), len(cleaned))
        where = f"at character {bad}" if bad < len(cleaned) else "(odd number of digits)"
        raise CommandError(f"input is not hex {where}") from None


def run_decode(args: argparse.Namespace) -> int:
    data = _read_hex(args.hex)
    try:
        msg = decode(data)
    except DecodeError as exc:
        raise CommandError(f"not a valid PF_KEY message: {exc}") from None
    print(json.dumps(to_json(msg), indent=2) if args.json else render(msg))
    return 0


def run_encode(args: argparse.Namespace) -> int:
    source = "stdin" if args.file == "-" else args.file
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {source}: {exc.strerror}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{source}: not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    try:
        msg = from_json(raw)
    except JSONFormError as exc:
        raise CommandError(f"{source}: {exc}") from None
    print(msg.encode().hex())
    return 0
