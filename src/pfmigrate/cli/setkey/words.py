"""Values inside one word: numbers, addresses, ``address/prefix[port]`` ranges,
``src-dst`` endpoint pairs and keys. Each function takes the word's token and raises
``SetkeyError`` at the exact character that is wrong."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from pfmigrate.cli.setkey.lexer import Kind, Token
from pfmigrate.model import IPAddress, IPNetwork

_HEX = frozenset("0123456789abcdefABCDEF")


def _is_decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()


def decimal(token: Token, what: str, maximum: int) -> int:
    """A decimal number from 0 to ``maximum``."""
    if not _is_decimal(token.text):
        token.expected(what)
    value = int(token.text)
    if value > maximum:
        token.fail(f"{what} must be at most {maximum}, not {token.text}")
    return value


def number(token: Token, what: str, maximum: int) -> int:
    """A decimal number, or hexadecimal after ``0x``."""
    text = token.text
    if text[:2].lower() != "0x":
        return decimal(token, what, maximum)
    digits = text[2:]
    if not digits or not set(digits) <= _HEX:
        token.expected(what)
    value = int(digits, 16)
    if value > maximum:
        token.fail(f"{what} must be at most {maximum:#x}, not {text}")
    return value


def address(token: Token) -> IPAddress:
    text = token.text
    if "%" in text:
        token.fail(f"a scoped address ({text}) has no meaning to the key engine; leave out the %zone")
    try:
        return ip_address(text)
    except ValueError:
        token.expected("a numeric IPv4 or IPv6 address (host names are not resolved)")


def port(token: Token) -> int:
    return 0 if token.text == "any" else decimal(token, 'a port number or "any"', 0xFFFF)


def bracketed_port(token: Token, start: int) -> int:
    """The ``[port]`` at ``start``, which must end the word."""
    text = token.text
    close = text.find("]", start)
    if close < 0:
        token.part(len(text)).expected('"]" after the port')
    if close + 1 != len(text):
        token.part(close + 1).fail(f"nothing may follow the port, found {token.part(close + 1).describe()}")
    return port(token.part(start + 1, close))


def address_port(token: Token) -> tuple[IPAddress, int | None]:
    """``address`` or ``address[port]``; the port is ``None`` when not written."""
    bracket = token.text.find("[")
    if bracket < 0:
        return address(token), None
    return address(token.part(0, bracket)), bracketed_port(token, bracket)


def address_range(token: Token) -> tuple[IPNetwork, int | None]:
    """``address[/prefixlen][[port]]``: host bits under the prefix are cleared."""
    text = token.text
    ends = [i for i in (text.find("/"), text.find("["), len(text)) if i >= 0]
    cut = min(ends)
    host = address(token.part(0, cut))
    prefix: int = host.max_prefixlen
    if cut < len(text) and text[cut] == "/":
        bracket = text.find("[", cut)
        end = len(text) if bracket < 0 else bracket
        what = f"a prefix length (0 to {host.max_prefixlen} for IPv{host.version})"
        prefix = decimal(token.part(cut + 1, end), what, host.max_prefixlen)
        cut = end
    found_port = bracketed_port(token, cut) if cut < len(text) else None
    return ip_network((host, prefix), strict=False), found_port


def endpoints(token: Token) -> tuple[tuple[IPAddress, int | None], tuple[IPAddress, int | None]]:
    """``src-dst``, each with an optional ``[port]``, both of one address family."""
    text = token.text
    hyphen = text.find("-")
    if hyphen < 0:
        token.expected("two addresses joined by a hyphen (src-dst)")
    if text.find("-", hyphen + 1) >= 0:
        token.part(text.find("-", hyphen + 1)).fail("only one hyphen may join the two addresses")
    src = address_port(token.part(0, hyphen))
    dst = address_port(token.part(hyphen + 1))
    if src[0].version != dst[0].version:
        token.part(hyphen + 1).fail(f"{dst[0]} is not of the same address family as {src[0]}")
    return src, dst


def key(token: Token) -> bytes:
    """A key: a double-quoted string (its UTF-8 bytes), or ``0x`` and hex digits."""
    if token.kind is Kind.STRING:
        return token.value.encode()
    what = 'a key (a "double-quoted string" or 0x followed by hex digits)'
    text = token.text
    if token.kind is not Kind.WORD or text[:2].lower() != "0x":
        token.expected(what)
    digits = text[2:]
    bad = next((i for i, c in enumerate(digits) if c not in _HEX), None)
    if not digits or bad is not None:
        token.part(2 + (bad or 0)).expected("a hex digit")
    if len(digits) % 2:
        token.fail(f"a hex key has an even number of digits (whole bytes), this one has {len(digits)}")
    return bytes.fromhex(digits)
