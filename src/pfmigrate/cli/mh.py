"""``pfmigrate mh decode``: Mobile IPv6 Mobility Headers from hex to text or JSON.

The input is a stream of Mobility Headers back to back, each ``8 * (Header Len + 1)``
octets. The Checksum covers an IPv6 pseudo-header, so it can be checked only with the
packet's addresses: with ``--src`` and ``--dst`` every message is checked and a wrong
checksum is an error; without them it is shown, marked not checked.
"""

from __future__ import annotations

import argparse
from ipaddress import IPv6Address
from typing import Any

from pfmigrate import mip6
from pfmigrate.cli.errors import CommandError
from pfmigrate.cli.pfkey import add_decode_arguments, decode_stream, print_stream, read_hex
from pfmigrate.mip6.jsonform import to_json
from pfmigrate.mip6.render import render

Decoded = tuple[mip6.Message, int, bool]  # the message, its Checksum field, whether it was checked


def ipv6_address(text: str) -> IPv6Address:
    """An IPv6 address (a Mobility Header travels in IPv6 only)."""
    try:
        return IPv6Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an IPv6 address, not {text!r}") from None


def register(commands: Any) -> None:
    group = commands.add_parser("mh", help="decode Mobile IPv6 Mobility Header messages")
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")
    dec = verbs.add_parser("decode", help="hex → readable text or JSON (messages back to back by Header Len)")
    add_decode_arguments(dec)
    dec.add_argument("--src", type=ipv6_address, help="the packets' source address: check the Checksum (with --dst)")
    dec.add_argument("--dst", type=ipv6_address, help="the packets' destination address (with --src)")
    dec.set_defaults(run=run_decode)


def mh_size(data: bytes, at: int) -> int | None:
    """Header Len (octet 1, in 8-octet units, not counting the first 8) in octets."""
    return 8 * (data[at + 1] + 1) if len(data) - at >= 2 else None


def checksum_json(decoded: Decoded) -> dict[str, Any]:
    msg, checksum, checked = decoded
    return {**to_json(msg), "checksum": {"value": checksum, "checked": checked}}


def checksum_text(decoded: Decoded, src: IPv6Address | None, dst: IPv6Address | None) -> str:
    msg, checksum, checked = decoded
    said = f"checked for {src} -> {dst}" if checked else "not checked: give --src and --dst"
    return f"{render(msg)}\n  checksum 0x{checksum:04x} ({said})"


def run_decode(args: argparse.Namespace) -> int:
    src: IPv6Address | None = args.src
    dst: IPv6Address | None = args.dst
    if (src is None) != (dst is None):
        raise CommandError("the Checksum needs both addresses: give --src and --dst, or neither")
    checked = src is not None

    def decode_one(chunk: bytes) -> Decoded:
        msg = mip6.decode(chunk, src, dst)
        return msg, int.from_bytes(chunk[4:6], "big"), checked

    messages = decode_stream(read_hex(args.hex, "mh decode"), "Mobility Header", mh_size, decode_one)
    print_stream(messages, checksum_json if args.json else None, lambda d: checksum_text(d, src, dst))
    return 0
