"""The policy half of the language: selectors, ``-P`` policies with their requests and
priorities, and pfmigrate's ``migrate`` statement.

Linux's priority is a 32-bit number where smaller comes first; setkey writes it as an
offset from the default (0x80000000), larger meaning earlier: ``prio 10`` is
0x80000000 - 10, ``prio high + 5`` is 0x40000000 - 5. A policy without one gets the
default, as setkey gives it.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, ip_address

from pfmigrate.cli.setkey import words
from pfmigrate.cli.setkey.cursor import Cursor
from pfmigrate.cli.setkey.lexer import Kind, Token
from pfmigrate.model import (
    AH,
    ESP,
    IPCOMP,
    Action,
    Dir,
    IPAddress,
    IPNetwork,
    KMAddress,
    MigrateBundle,
    MigrateRequest,
    Mode,
    Selector,
    Template,
)

#: Upper-layer protocols by name (``/etc/protocols`` and setkey's own words).
UPPER = {
    "any": 0, "icmp": 1, "ipencap": 4, "ip4": 4, "tcp": 6, "udp": 17, "ipv6": 41, "gre": 47,
    "icmp6": 58, "ipv6-icmp": 58, "sctp": 132, "mobility-header": 135, "ipv6-mh": 135, "mh": 135,
}  # fmt: skip
UPPER_NAMES = {0: "any", 1: "icmp", 4: "ipencap", 6: "tcp", 17: "udp", 41: "ipv6", 47: "gre",
               58: "ipv6-icmp", 132: "sctp", 135: "mobility-header"}  # fmt: skip
UPPER_WHAT = "an upper-layer protocol (any, tcp, udp, icmp, icmp6, gre, 135, or 0-255)"
TYPED = frozenset({1, 58, 135})  # ICMP, ICMPv6, Mobility Header: type,code in the port fields
GRE = 47
DIRECTIONS = {"in": Dir.IN, "out": Dir.OUT, "fwd": Dir.FWD}
ACTIONS = {"ipsec": Action.IPSEC, "none": Action.NONE, "discard": Action.DISCARD}
REQUEST_PROTOCOLS = {"esp": ESP, "ah": AH, "ipcomp": IPCOMP}
REQUEST_MODES = {"transport": Mode.TRANSPORT, "tunnel": Mode.TUNNEL, "beet": Mode.BEET}
PRIORITY_BASES = {"low": 0xC0000000, "def": 0x80000000, "high": 0x40000000}
DEFAULT_PRIORITY = PRIORITY_BASES["def"]
MAX_UNIQUE_ID = 0x3FFF  # Linux replaces a larger one with a reqid of its own choosing
MAX_REQUESTS = 6  # Linux's XFRM_MAX_DEPTH: a policy with more templates is refused


def selector(cur: Cursor, families: set[int]) -> Selector:
    """``src_range dst_range upperspec [type,code | gre key]``."""
    src_token = cur.peek()
    src, sport = _range(cur, "a source address range", families)
    dst_token = cur.peek()
    dst, dport = _range(cur, "a destination address range", families)
    if dst.version != src.version:
        dst_token.fail(f"{dst} is not of the same address family as {src}")
    proto = upper(cur.word(UPPER_WHAT))
    sport, dport = sport or 0, dport or 0
    special = proto in TYPED or proto == GRE
    if special and (sport or dport):
        (src_token if sport else dst_token).fail(
            f"{UPPER_NAMES[proto]} has no ports; its type,code (or GRE key) follows the protocol"
        )
    misc = cur.peek()
    if misc.kind is Kind.WORD and not misc.text.startswith("-"):
        if not special:
            misc.fail("only icmp, icmp6, 135 (Mobility Header) and gre take a type,code or key here")
        cur.take()
        sport, dport = _gre_key(misc) if proto == GRE else _type_code(misc)
    return Selector(src, dst, proto, sport, dport)


def _range(cur: Cursor, what: str, families: set[int]) -> tuple[IPNetwork, int | None]:
    token = cur.word(what)
    network, port = words.address_range(token)
    if network.version not in families:
        token.fail(f"-{min(families)} allows IPv{min(families)} addresses only, and {network} is not one")
    after = cur.peek()  # setkey also reads "10.0.0.1 [80]"
    if port is None and after.kind is Kind.WORD and after.text.startswith("["):
        port = words.bracketed_port(cur.take(), 0)
    return network, port


def upper(token: Token) -> int:
    """A protocol by setkey's names, by number, or by its name in ``/etc/protocols``
    (igmp, ospf, udplite...), which setkey looks up too."""
    proto = UPPER.get(token.text)
    if proto is None:
        proto = _system_protocol(token.text)
    if proto is None:
        proto = words.decimal(token, UPPER_WHAT, 255)
    return 0 if proto == 255 else proto  # 255 is PF_KEY's "any"


def _system_protocol(name: str) -> int | None:
    try:
        return socket.getprotobyname(name)
    except (OSError, ValueError):  # unknown, or no name at all (a NUL byte, a lone surrogate)
        return None


def _type_code(token: Token) -> tuple[int, int]:
    kind, comma, _ = token.text.partition(",")
    number = words.decimal(token.part(0, len(kind)), "a type (0-255)", 255)
    return number, words.decimal(token.part(len(kind) + 1), "a code (0-255)", 255) if comma else 0


def _gre_key(token: Token) -> tuple[int, int]:
    if "." in token.text:
        try:
            key = int(IPv4Address(token.text))
        except ValueError:
            token.expected("a GRE key (a number or a dotted quad)")
    else:
        key = words.decimal(token, "a GRE key (a number or a dotted quad)", 0xFFFFFFFF)
    return key >> 16, key & 0xFFFF


def _direction(cur: Cursor) -> Dir:
    flag = cur.take()
    if flag.text == "-ctx":
        flag.fail("security labels (-ctx) are not supported: pfmigrate's model has no security context")
    if flag.text != "-P":
        flag.expected('"-P" and a policy')
    token = cur.word("a direction (in, out, fwd)")
    if token.text not in DIRECTIONS:
        token.expected("a direction (in, out, fwd)")
    return DIRECTIONS[token.text]


def policy(cur: Cursor) -> tuple[Dir, int, Action, tuple[Template, ...]]:
    """``-P direction [priority spec] discard|none|ipsec request...``."""
    direction = _direction(cur)
    priority = _priority(cur) if cur.accept("priority", "prio") else DEFAULT_PRIORITY
    token = cur.word("an action (ipsec, none, discard)")
    if token.text not in ACTIONS:
        token.expected("an action (ipsec, none, discard)")
    action = ACTIONS[token.text]
    templates: list[Template] = []
    while action is Action.IPSEC and _at_request(cur):
        token = cur.take()
        if len(templates) == MAX_REQUESTS:
            token.fail(f"a policy holds at most {MAX_REQUESTS} requests (Linux's XFRM_MAX_DEPTH)")
        templates.append(request(token))
    return direction, priority, action, tuple(templates)


def _at_request(cur: Cursor) -> bool:
    """Whether a request comes next: a word with a "/", or a bare protocol (a request
    missing its mode). Any other word ends the list, so that a ";" left out before the
    next statement is reported as such."""
    token = cur.peek()
    if token.kind is not Kind.WORD or cur.at_option():
        return False
    return "/" in token.text or token.text in REQUEST_PROTOCOLS


def delete_direction(cur: Cursor) -> Dir:
    """``-P direction``, perhaps followed by the rest of the policy, as spdadd wrote it."""
    start = cur.pos
    direction = _direction(cur)
    if cur.peek().kind is Kind.WORD:
        cur.pos = start
        direction = policy(cur)[0]
    return direction


def _priority(cur: Cursor) -> int:
    token = cur.word("a priority (low, def or high, or an offset)")
    base = PRIORITY_BASES.get(token.text)
    if base is None:
        sign, digits = _signed(cur, token)
        value = DEFAULT_PRIORITY + (digits if sign == "-" else -digits)
    else:
        value = base
        after = cur.peek()
        if after.kind is Kind.WORD and after.text[:1] in ("+", "-"):  # the action follows otherwise
            sign, digits = _signed(cur, cur.take())
            limit = 0x40000000 if sign == "+" else 0x3FFFFFFF
            if digits > limit:
                token.fail(f"an offset from {token.text} goes up to {limit} in that direction")
            value = base - digits if sign == "+" else base + digits
    if not 0 <= value <= 0xFFFFFFFF:
        token.fail("the priority is out of range (offsets go from -2147483647 to 2147483648)")
    return value


def _signed(cur: Cursor, token: Token) -> tuple[str, int]:
    """A number with an optional sign, written as one word or two."""
    sign = token.text[:1] if token.text[:1] in "+-" else "+"
    digits = token.part(1) if token.text[:1] in "+-" else token
    if not digits.text:
        digits = cur.word("a number")
    return sign, words.decimal(digits, "a priority offset", 0xFFFFFFFF)


def _parts(token: Token, separator: str) -> list[Token]:
    parts, start = [], 0
    for i, c in enumerate(token.text):
        if c == separator:
            parts.append(token.part(start, i))
            start = i + 1
    parts.append(token.part(start))
    return parts


def request(token: Token) -> Template:
    """``protocol/mode[/[src-dst][/[level]]]``, as setkey reads it."""
    parts = _parts(token, "/")
    if len(parts) > 4:
        parts[4].fail("a request has at most four parts: protocol/mode/src-dst/level")
    if parts[0].text not in REQUEST_PROTOCOLS:
        parts[0].expected("a request (protocol/mode/src-dst/level) of esp, ah or ipcomp")
    if len(parts) < 2:
        token.part(len(token.text)).expected('"/" and a mode (transport, tunnel)')
    if parts[1].text not in REQUEST_MODES:
        parts[1].expected("a mode (transport, tunnel)")
    mode = REQUEST_MODES[parts[1].text]
    src = dst = None
    if len(parts) > 2 and parts[2].text:
        (src, sport), (dst, dport) = words.endpoints(parts[2])
        if sport or dport:
            parts[2].fail("ports in a request are for ESP in UDP, which pfmigrate's templates cannot hold")
    elif mode is not Mode.TRANSPORT:
        (parts[2] if len(parts) > 2 else token.part(len(token.text))).expected(f"the {mode.value} endpoints (/src-dst)")
    optional, reqid = level(parts[3]) if len(parts) > 3 and parts[3].text else (False, 0)
    return Template(REQUEST_PROTOCOLS[parts[0].text], mode, src, dst, reqid, optional)


def level(token: Token) -> tuple[bool, int]:
    """``default|use|require|unique:N`` as (optional, reqid). ``default`` is ``require``:
    Linux treats the two alike."""
    name, colon, _ = token.text.partition(":")
    if name not in ("default", "use", "require", "unique"):
        token.part(0, len(name)).expected("a level (default, use, require, unique:N)")
    if colon and name != "unique":
        token.part(len(name)).fail("only unique takes an id (unique:N)")
    if name != "unique":
        return name == "use", 0
    if not colon:
        token.fail(
            "unique needs its id here (unique:N, with -u N on the SAs): pfmigrate's model names a unique "
            "request by its reqid and cannot ask Linux to pick one"
        )
    reqid = words.decimal(token.part(len(name) + 1), f"a policy id (1-{MAX_UNIQUE_ID})", MAX_UNIQUE_ID)
    if reqid == 0:
        token.part(len(name) + 1).fail(f"a policy id goes from 1 to {MAX_UNIQUE_ID}")
    return False, reqid


def migrate(cur: Cursor, chosen: Selector) -> MigrateRequest:
    """``-P direction [ipsec] old new [old new]... [-k local-remote]``: each bundle as
    its request before the move, then after it."""
    direction = _direction(cur)
    cur.accept("ipsec")
    requests: list[tuple[Token, Template]] = []
    while _at_request(cur):
        token = cur.take()
        requests.append((token, request(token)))
    if not requests:
        cur.peek().expected("the old and the new request of a bundle (esp/tunnel/OLD-PEER/require esp/tunnel/...)")
    if len(requests) % 2:
        requests[-1][0].fail("this request has no partner: each bundle is its old request, then its new one")
    if len(requests) > 12:
        requests[12][0].fail("a MIGRATE moves at most 6 bundles")
    bundles = []
    for (old_token, old), (new_token, new) in zip(requests[0::2], requests[1::2], strict=True):
        old_src, old_dst = _endpoints_of(old_token, old)
        new_src, new_dst = _endpoints_of(new_token, new)
        if (old.proto, old.mode, old.reqid) != (new.proto, new.mode, new.reqid):
            new_token.fail("the new request must keep the old one's protocol, mode and id; only the endpoints move")
        bundles.append(MigrateBundle(old_src, old_dst, new_src, new_dst, old.proto, old.mode, old.reqid))
    kmaddress = None
    if cur.accept("-k"):
        token = cur.word("the key managers' addresses after the move (local-remote)")
        (local, lport), (remote, rport) = words.endpoints(token)
        if lport is not None or rport is not None:
            token.fail("key-manager addresses have no ports")
        kmaddress = KMAddress(local, remote)
    return MigrateRequest(chosen, direction, tuple(bundles), kmaddress)


def _endpoints_of(token: Token, template: Template) -> tuple[IPAddress, IPAddress]:
    if template.src is None or template.dst is None:
        token.fail("a migrate request names its endpoints (src-dst)")
    return template.src, template.dst


def looks_like_address(token: Token) -> bool:
    try:
        ip_address(token.text)
    except ValueError:
        return False
    return True
