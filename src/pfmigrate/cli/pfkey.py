"""``pfmigrate pfkey decode|encode``: PF_KEY messages between hex, text and JSON.

``decode`` reads a stream: messages back to back, each as long as its ``sadb_msg_len``
says. ``pfmigrate xfrm decode`` and ``pfmigrate mh decode`` read netlink and Mobility
Header streams the same way, with the helpers here.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from pfmigrate._jsonform import errno_json
from pfmigrate.cli.errors import CommandError, standard_input
from pfmigrate.cli.setkey.reading import bounded, read_file
from pfmigrate.pfkey import Message, decode
from pfmigrate.pfkey.jsonform import JSONFormError, from_json, to_json
from pfmigrate.pfkey.render import render


def register(commands: Any) -> None:
    group = commands.add_parser("pfkey", help="decode and encode PF_KEY v2 messages")
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")

    dec = verbs.add_parser("decode", help="hex → readable text or JSON (messages back to back by sadb_msg_len)")
    add_decode_arguments(dec)
    dec.set_defaults(run=run_decode)

    enc = verbs.add_parser("encode", help="JSON (as decode --json prints it) → hex")
    enc.add_argument("file", nargs="?", default="-", help="a JSON file, or - for stdin (the default)")
    enc.set_defaults(run=run_encode)


HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
#: What ``encode`` and ``decode -`` read at most. The largest PF_KEY message is 512 KiB
#: (its length counts 8-byte units in 16 bits); as ``decode --json`` prints it, at worst
#: (all one-unit extensions) some 6.6 MiB, and its hex with separators 1.5 MiB.
MAX_INPUT_BYTES = 16 * 1024 * 1024


T = TypeVar("T")
_U16, _U32 = struct.Struct("=H"), struct.Struct("=I")


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every ``decode`` takes: hex or ``-``, and ``--json``."""
    parser.add_argument("hex", nargs="+", help="the messages as hex (spaces and colons allowed), or - alone for stdin")
    parser.add_argument("--json", action="store_true", help="one JSON object a message, one a line (docs/json.md)")


def read_hex(parts: list[str], reader: str) -> bytes:
    """The bytes of hex arguments, or of stdin for ``-``."""
    if "-" in parts and parts != ["-"]:
        raise CommandError("- reads the message from stdin, and then it is the only argument")
    if parts == ["-"]:
        text = bounded(standard_input().read, "stdin", limit=MAX_INPUT_BYTES, reader=reader)
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


def decode_stream(
    data: bytes, what: str, size_at: Callable[[bytes, int], int | None], decode_one: Callable[[bytes], T]
) -> list[tuple[int, T]]:
    """Each message of ``data`` with its offset. ``size_at(data, at)`` is how many bytes
    the header at ``at`` says its message takes (``None`` if too few bytes are left for
    it to say); a message that claims too little or too much goes to ``decode_one`` with
    the rest of the input, so that the codec says what is wrong. A ``CommandError``
    names the message, its offset in the input, and the codec's own error."""
    if not data:
        raise CommandError(f"the input holds no {what}")
    out: list[tuple[int, T]] = []
    at = 0
    while at < len(data):
        size = size_at(data, at)
        end = at + size if size is not None and 0 < size <= len(data) - at else len(data)
        try:
            out.append((at, decode_one(data[at:end])))
        except ValueError as exc:  # DecodeError, or a value's own rule as a codec may raise it
            raise CommandError(f"message {len(out) + 1} at offset {at}: not a valid {what}: {exc}") from None
        at = end
    return out


def print_stream(items: list[tuple[int, T]], as_json: Callable[[T], Any] | None, as_text: Callable[[T], str]) -> None:
    """One JSON object a line, or text with a heading for each message when there are several."""
    for i, (at, item) in enumerate(items, 1):
        if as_json is not None:
            print(json.dumps(as_json(item)))
            continue
        if len(items) > 1:
            print(f"# message {i}, offset {at}" if i == 1 else f"\n# message {i}, offset {at}")
        print(as_text(item))


def pfkey_size(data: bytes, at: int) -> int | None:
    """``sadb_msg_len`` (8-byte units, at offset 4) in bytes."""
    return 8 * _U16.unpack_from(data, at + 4)[0] if len(data) - at >= 6 else None


def message_json(msg: Message) -> dict[str, Any]:
    """``to_json`` with the errno named, as every JSON output names it."""
    return {**to_json(msg), "errno": errno_json(msg.errno)}


def run_decode(args: argparse.Namespace) -> int:
    messages = decode_stream(read_hex(args.hex, "pfkey decode"), "PF_KEY message", pfkey_size, decode)
    print_stream(messages, message_json if args.json else None, render)
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
