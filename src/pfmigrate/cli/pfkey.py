"""``pfmigrate pfkey decode|encode``: PF_KEY messages between hex, text and JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pfmigrate.cli.errors import CommandError, standard_input
from pfmigrate.cli.setkey.reading import bounded, read_file
from pfmigrate.pfkey import DecodeError, decode
from pfmigrate.pfkey.jsonform import JSONFormError, from_json, to_json
from pfmigrate.pfkey.render import render


def register(commands: Any) -> None:
    group = commands.add_parser("pfkey", help="decode and encode PF_KEY v2 messages")
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")

    dec = verbs.add_parser("decode", help="hex → readable text or JSON")
    dec.add_argument("hex", nargs="+", help="the message as hex (spaces and colons allowed), or - alone for stdin")
    dec.add_argument("--json", action="store_true", help="print JSON with symbolic names and numbers")
    dec.set_defaults(run=run_decode)

    enc = verbs.add_parser("encode", help="JSON (as decode --json prints it) → hex")
    enc.add_argument("file", nargs="?", default="-", help="a JSON file, or - for stdin (the default)")
    enc.set_defaults(run=run_encode)


HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
#: What ``encode`` and ``decode -`` read at most. The largest PF_KEY message is 512 KiB
#: (its length counts 8-byte units in 16 bits); as ``decode --json`` prints it, at worst
#: (all one-unit extensions) some 6.6 MiB, and its hex with separators 1.5 MiB.
MAX_INPUT_BYTES = 16 * 1024 * 1024


def _read_hex(parts: list[str]) -> bytes:
    if "-" in parts and parts != ["-"]:
        raise CommandError("- reads the message from stdin, and then it is the only argument")
    if parts == ["-"]:
        text = bounded(standard_input().read, "stdin", limit=MAX_INPUT_BYTES, reader="pfkey decode")
    else:
        text = " ".join(parts)
    start = len(text) - len(text.lstrip())
    if text[start : start + 2].lower() == "0x":
        start += 2
    digits = []
    for i, c in enumerate(text[start:], start):
        if c in HEX_DIGITS:
            digits.append(c)
        elif not (c.isspace() or c == ":"):
            raise CommandError(f"input is not hex at character {i + 1} ({c!r})")
    if len(digits) % 2:
        raise CommandError(f"input has an odd number of hex digits ({len(digits)})")
    return bytes.fromhex("".join(digits))


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
    if args.file == "-":
        data = bounded(standard_input().buffer.read, source, limit=MAX_INPUT_BYTES, reader="pfkey encode")
    else:
        data = read_file(args.file, limit=MAX_INPUT_BYTES, reader="pfkey encode", wanted="a JSON file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{source}: not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise CommandError(f"{source}: not JSON this program reads: nested too deeply") from None
    except ValueError:  # the one other refusal: a number of more digits than Python converts
        limit = sys.get_int_max_str_digits()
        raise CommandError(f"{source}: not JSON this program reads: a number of more than {limit} digits") from None
    try:
        msg = from_json(raw)
        wire = msg.encode()
    except (JSONFormError, ValueError) as exc:
        raise CommandError(f"{source}: {exc}") from None
    print(wire.hex())
    return 0
