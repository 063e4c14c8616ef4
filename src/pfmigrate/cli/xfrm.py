"""``pfmigrate xfrm decode``: XFRM netlink messages from hex to text or JSON.

The input is a stream, as a netlink socket reads it: messages back to back, each
``nlmsg_len`` bytes padded to 4.
"""

from __future__ import annotations

import argparse
import struct
from typing import Any

from pfmigrate.cli.pfkey import add_decode_arguments, decode_stream, print_stream, read_hex
from pfmigrate.xfrm import decode_one
from pfmigrate.xfrm.show import render, to_json

_U32 = struct.Struct("=I")


def register(commands: Any) -> None:
    group = commands.add_parser("xfrm", help="decode Linux XFRM netlink messages")
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")
    dec = verbs.add_parser("decode", help="hex → readable text or JSON (messages back to back by nlmsg_len)")
    add_decode_arguments(dec)
    dec.set_defaults(run=run_decode)


def netlink_size(data: bytes, at: int) -> int | None:
    """``nlmsg_len`` padded to 4, or the rest of the input for a last message unpadded."""
    if len(data) - at < 4:
        return None
    length: int = _U32.unpack_from(data, at)[0]
    if length > len(data) - at:
        return length
    return min((length + 3) & ~3, len(data) - at)


def run_decode(args: argparse.Namespace) -> int:
    messages = decode_stream(read_hex(args.hex, "xfrm decode"), "netlink message", netlink_size, decode_one)
    print_stream(messages, to_json if args.json else None, render)
    return 0
