"""Reads setkey statements into ``statements`` values (recursive descent over tokens).

``parse`` reads the whole input and raises ``SetkeyError`` at the first statement that
cannot be read, naming the file, line and column and what was expected there, so
nothing runs from a file with a mistake in it. What setkey reads loosely is refused
with a reason where Linux would do something else than the statement seems to say
(``unique`` without an id, an SPI below 256, a key of the wrong length, ``esp-old``);
what Linux ignores (``-f random-pad``) is accepted with a note.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pfmigrate.cli.setkey import policies, transforms, words
from pfmigrate.cli.setkey.cursor import Cursor
from pfmigrate.cli.setkey.lexer import Kind, Token, tokenize
from pfmigrate.cli.setkey.statements import (
    AddSA,
    DeleteAll,
    DeleteSA,
    Dump,
    Exit,
    Flush,
    GetSA,
    GetSPI,
    Migrate,
    SpdAdd,
    SpdDelete,
    SpdDump,
    SpdFlush,
    Statement,
    Where,
)
from pfmigrate.cli.setkey.transforms import Transform
from pfmigrate.model import (
    AH,
    ESP,
    IPCOMP,
    Encap,
    IPAddress,
    Lifetime,
    Mode,
    Policy,
    SecurityAssociation,
)

T = TypeVar("T")
PROTOCOLS = {"esp": ESP, "ah": AH, "ipcomp": IPCOMP, "esp-udp": ESP}
NOT_ON_LINUX = {
    "esp-old": "esp-old (RFC 1827 ESP) does not exist in Linux; use esp",
    "ah-old": "ah-old (RFC 1826 AH) does not exist in Linux; use ah",
    "tcp": "TCP-MD5 SAs (tcp) are a BSD feature; Linux keeps TCP-MD5 keys on the socket",
}
# Linux makes an SA of mode "any" a transport-mode SA
SA_MODES = {"transport": Mode.TRANSPORT, "tunnel": Mode.TUNNEL, "beet": Mode.BEET, "any": Mode.TRANSPORT}
PADDING = ("zero-pad", "random-pad", "seq-pad", "nocyclic-seq")
NATT_PORT = 4500
U32, U64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
MAX_REPLAY = 0xFF  # PF_KEY's sadb_sa_replay is one byte (a wider window needs XFRM's ESN)
# The widest window Linux keeps from PF_KEY's sadb_sa_replay, or from XFRM's replay_window
# without ESN: both are cut to the 32 bits of its replay bitmap (af_key's
# pfkey_msg2xfrm_state, xfrm_user's copy_from_user_state), silently.
LINUX_REPLAY = 32
MAX_CPI = 0xFFFF  # an IPComp SA's SPI is its 16-bit CPI (RFC 3173); Linux refuses a larger one


def parse(text: str, source: str = "<stdin>", first_line: int = 1) -> list[Statement]:
    """Every statement of ``text``, or ``SetkeyError`` at the first one that is wrong."""
    cur = Cursor(tokenize(text, source, first_line))
    statements = []
    while cur.peek().kind is not Kind.END:
        statements.append(statement(cur))
    return statements


def statement(cur: Cursor) -> Statement:
    start = cur.take()
    reader = READERS.get(start.text) if start.kind is Kind.WORD else None
    if reader is None:
        start.expected(f"a statement ({', '.join(READERS)})")
    return reader(cur, start)


def _where(token: Token) -> Where:
    return Where(token.source, token.line, token.column)


def _build(token: Token, make: Callable[[], T]) -> T:
    """A model value, its own checks reported at ``token``."""
    try:
        return make()
    except ValueError as exc:
        token.fail(str(exc))


# --- SA statements ----------------------------------------------------------------------------


def _endpoint(cur: Cursor, what: str, families: set[int]) -> tuple[Token, IPAddress, int | None]:
    token = cur.word(what)
    address, port = words.address_port(token)
    if address.version not in families:
        token.fail(f"-{min(families)} allows IPv{min(families)} addresses only, and {address} is not one")
    return token, address, port


def _pair(cur: Cursor) -> tuple[IPAddress, IPAddress, int | None, int | None, Token]:
    """``[-46n] src dst``, with the ports if written."""
    families = cur.family_flags()
    src_token, src, sport = _endpoint(cur, "a source address", families)
    dst_token, dst, dport = _endpoint(cur, "a destination address", families)
    if src.version != dst.version:
        dst_token.fail(f"{dst} is not of the same address family as {src}")
    return src, dst, sport, dport, src_token


def _protocol(cur: Cursor) -> tuple[Token, int]:
    token = cur.word("a protocol (esp, ah, ipcomp, esp-udp)")
    if token.text in NOT_ON_LINUX:
        token.fail(NOT_ON_LINUX[token.text])
    if token.text not in PROTOCOLS:
        token.expected("a protocol (esp, ah, ipcomp, esp-udp)")
    return token, PROTOCOLS[token.text]


def _spi(cur: Cursor, proto: int, *, new: bool = True, zero: bool = False) -> int:
    """An SPI; a ``new`` SA's is not one of the reserved (``zero``: except 0, "any"),
    and an IPComp one fits its 16-bit CPI."""
    token = cur.word("an SPI (a number, decimal or 0x hex)")
    spi = words.number(token, "an SPI", U32)
    if new and spi < 256 and not (zero and spi == 0):
        token.fail("SPIs 0 to 255 are reserved (RFC 4303); choose one from 256 up")
    if new and proto == IPCOMP and spi > MAX_CPI:
        token.fail(f"an ipcomp SPI is its 16-bit CPI: at most {MAX_CPI:#x}, not {token.text}")
    return spi


def _simple_sa(cur: Cursor, start: Token, *, spi: bool = True) -> tuple[IPAddress, IPAddress, int, int]:
    src, dst, _, _, _ = _pair(cur)  # Linux finds an SA by destination, SPI and protocol alone
    _, proto = _protocol(cur)
    number = _spi(cur, proto, new=False) if spi else 0
    cur.end(start)
    return src, dst, proto, number


def _get(cur: Cursor, start: Token) -> Statement:
    return GetSA(*_simple_sa(cur, start), at=_where(start))


def _delete(cur: Cursor, start: Token) -> Statement:
    return DeleteSA(*_simple_sa(cur, start), at=_where(start))


def _deleteall(cur: Cursor, start: Token) -> Statement:
    src, dst, proto, _ = _simple_sa(cur, start, spi=False)
    return DeleteAll(src, dst, proto, at=_where(start))


def _one_protocol(cur: Cursor, start: Token) -> int:
    proto = _protocol(cur)[1] if cur.peek().kind is Kind.WORD else 0
    cur.end(start)
    return proto


def _flush(cur: Cursor, start: Token) -> Statement:
    return Flush(_one_protocol(cur, start), at=_where(start))


def _dump(cur: Cursor, start: Token) -> Statement:
    return Dump(_one_protocol(cur, start), at=_where(start))


@dataclass
class _SAParts:
    """What the options of an ``add`` said so far (a builder, thrown away after)."""

    mode: Mode = Mode.TRANSPORT
    replay: int = 0
    replay_at: str = ""  # where -r is, for a note
    reqid: int = 0
    lifetime: dict[str, int] = field(default_factory=dict)
    algorithms: dict[str, tuple[Token, Transform, bytes]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


LIFETIMES = {"-lh": "hard_add", "-ls": "soft_add", "-bh": "hard_bytes", "-bs": "soft_bytes"}
ALGORITHM_TABLES = {
    "-E": ("an encryption algorithm", transforms.ENCRYPTION),
    "-A": ("an authentication algorithm", transforms.AUTHENTICATION),
    "-C": ("a compression algorithm", transforms.COMPRESSION),
}
OPTIONS = "an option (-m, -r, -u, -f, -lh, -ls, -bh, -bs) or an algorithm (-E, -A, -C)"
GETSPI_IGNORED = ("-r", "-lh", "-ls", "-bh", "-bs", "-R")  # (-f has its own note)


def _option(cur: Cursor, option: Token, parts: _SAParts) -> None:
    name = option.text
    if name in parts.seen and name != "-f":
        option.fail(f"{name} is given twice")
    parts.seen.add(name)
    if name == "-m":
        token = cur.word("a mode (transport, tunnel, beet, any)")
        if token.text not in SA_MODES:
            token.expected("a mode (transport, tunnel, beet, any)")
        parts.mode = SA_MODES[token.text]
    elif name == "-r":
        size = cur.word("a replay window size")
        parts.replay = words.decimal(size, "a replay window size (PF_KEY's field is one byte)", MAX_REPLAY)
        parts.replay_at = f"{option.source}:{option.line}:{option.column}"
    elif name == "-u":
        parts.reqid = words.decimal(cur.word("a reqid (the policy's unique:N)"), "a reqid", U32)
    elif name in LIFETIMES:
        unit = "seconds" if name[1] == "l" else "bytes"
        parts.lifetime[LIFETIMES[name]] = words.decimal(cur.word(f"a lifetime in {unit}"), f"{unit}", U64)
    elif name == "-f":
        token = cur.word(f"a padding option ({', '.join(PADDING)})")
        if token.text not in PADDING:
            token.expected(f"a padding option ({', '.join(PADDING)})")
        where = f"{option.source}:{option.line}:{option.column}"
        parts.notes.append(f"{where}: note: -f {token.text} has no effect: Linux has no choice of padding or cycling")
    elif name == "-R":
        pass  # Linux always puts the SPI on the wire as the CPI, which is what -R asks
    elif name in ALGORITHM_TABLES:
        parts.algorithms[name] = _algorithm(cur, *ALGORITHM_TABLES[name], option)
    elif name == "-ctx":
        option.fail("security labels (-ctx) are not supported: pfmigrate's model has no security context")
    else:
        option.expected(OPTIONS)


def _algorithm(cur: Cursor, what: str, table: dict[str, Transform], option: Token) -> tuple[Token, Transform, bytes]:
    token = cur.word(f"{what} ({transforms.choices(table)})")
    if token.text in transforms.NOT_ON_LINUX:
        token.fail(f"{token.text} is a KAME algorithm that Linux does not have")
    if token.text not in table:
        token.expected(f"{what} ({transforms.choices(table)})")
    transform = table[token.text]
    if not transform.takes_key:
        after = cur.peek()
        if after.kind is Kind.STRING or (after.kind is Kind.WORD and after.text.lower().startswith("0x")):
            after.fail(f"{transform.name} takes no key")
        return option, transform, b""
    key_token = cur.take()
    key = words.key(key_token)
    if 8 * len(key) not in transform.key_bits:
        key_token.fail(f"{transform.name} takes {transform.lengths()}, and this key has {8 * len(key)} bits")
    return option, transform, key


def _getspi(cur: Cursor, start: Token) -> Statement:
    """``getspi src dst protocol spi [extensions]``: setkey takes an ``add``'s extensions."""
    src, dst, _, _, _ = _pair(cur)
    _, proto = _protocol(cur)
    spi = _spi(cur, proto, zero=True)
    parts = _SAParts()
    while cur.at_option():
        option = cur.take()
        _option(cur, option, parts)
        _getspi_option(option, parts)
    cur.end(start)
    return GetSPI(src, dst, proto, spi, parts.reqid, _where(start), tuple(parts.notes), parts.mode)


def _getspi_option(option: Token, parts: _SAParts) -> None:
    """What becomes of an extension read by ``_option`` in a getspi: Linux's GETSPI makes
    the larval SA from its addresses, mode and reqid alone."""
    name = option.text
    if name in ALGORITHM_TABLES:
        option.fail(f"{name} has no place in getspi: the update that completes the larval SA gives its algorithms")
    if name in GETSPI_IGNORED:
        where = f"{option.source}:{option.line}:{option.column}"
        parts.notes.append(
            f"{where}: note: {name} has no effect on getspi: Linux's larval SA has a mode and a reqid only"
        )


def _add(cur: Cursor, start: Token) -> Statement:
    src, dst, sport, dport, src_token = _pair(cur)
    proto_token, proto = _protocol(cur)
    udp = proto_token.text == "esp-udp"
    oa = None
    if udp and cur.peek().kind is Kind.WORD and policies.looks_like_address(cur.peek()):
        oa = words.address(cur.take())
    if not udp and (sport is not None or dport is not None):
        src_token.fail("a port on an SA's address is for esp-udp (ESP in UDP) only")
    spi = _spi(cur, proto)
    parts = _SAParts()
    while cur.at_option():
        _option(cur, cur.take(), parts)
    enc, auth, comp = (parts.algorithms.get(flag) for flag in ("-E", "-A", "-C"))
    allowed = {ESP: ("-E", "-A"), AH: ("-A",), IPCOMP: ("-C",)}[proto]
    for flag, (token, _, _) in parts.algorithms.items():
        if flag not in allowed:
            token.fail(f"{flag} has no place in an {proto_token.text} SA")
    needed = {ESP: ("-E", enc), AH: ("-A", auth), IPCOMP: ("-C", comp)}[proto]
    if needed[1] is None:
        cur.peek().expected(f"{needed[0]} and {ALGORITHM_TABLES[needed[0]][0]} for this {proto_token.text} SA")
    if enc and enc[1].aead and auth:
        auth[0].fail(f"{enc[1].name} authenticates by itself: it takes no -A")
    cur.end(start)
    if parts.replay > LINUX_REPLAY:
        parts.notes.append(
            f"{parts.replay_at}: note: -r {parts.replay} becomes {LINUX_REPLAY}: Linux keeps a replay window of at "
            f"most {LINUX_REPLAY} packets from PF_KEY, and from XFRM without ESN (ip xfrm state ... replay-window "
            f"{parts.replay} flag esn), which pfmigrate does not set up"
        )
    sa = _build(
        start,
        lambda: SecurityAssociation(
            src, dst, spi, proto, parts.mode, parts.reqid,
            auth=auth[1].algorithm(auth[2]) if auth else None,
            enc=enc[1].algorithm(enc[2]) if enc and not enc[1].aead else None,
            aead=enc[1].algorithm(enc[2]) if enc and enc[1].aead else None,
            comp=comp[1].algorithm(b"") if comp else None,
            replay_window=parts.replay,
            lifetime=Lifetime(**parts.lifetime),
            encap=Encap(2, sport or NATT_PORT, dport or NATT_PORT, oa) if udp else None,
        ),
    )  # fmt: skip
    return AddSA(sa, start.text == "update", _where(start), tuple(parts.notes))


# --- SPD statements, migrate, exit ------------------------------------------------------------------


def _spdadd(cur: Cursor, start: Token) -> Statement:
    if cur.peek().text == "tagged":
        cur.peek().fail("tagged policies are a BSD packet-filter feature that Linux does not have")
    chosen = policies.selector(cur, cur.family_flags())
    direction, priority, action, templates = policies.policy(cur)
    cur.end(start)
    policy = _build(start, lambda: Policy(chosen, direction, templates, action, priority))
    return SpdAdd(policy, start.text == "spdupdate", _where(start))


def _spddelete(cur: Cursor, start: Token) -> Statement:
    chosen = policies.selector(cur, cur.family_flags())
    direction = policies.delete_direction(cur)
    cur.end(start)
    return SpdDelete(chosen, direction, _where(start))


def _migrate(cur: Cursor, start: Token) -> Statement:
    chosen = policies.selector(cur, cur.family_flags())
    request = policies.migrate(cur, chosen)
    cur.end(start)
    return Migrate(request, _where(start))


def _bare(make: Callable[[Where], Statement]) -> Callable[[Cursor, Token], Statement]:
    def read(cur: Cursor, start: Token) -> Statement:
        cur.end(start)
        return make(_where(start))

    return read


READERS: dict[str, Callable[[Cursor, Token], Statement]] = {
    "add": _add,
    "update": _add,
    "getspi": _getspi,
    "get": _get,
    "delete": _delete,
    "deleteall": _deleteall,
    "flush": _flush,
    "dump": _dump,
    "spdadd": _spdadd,
    "spdupdate": _spdadd,
    "spddelete": _spddelete,
    "spdflush": _bare(lambda at: SpdFlush(at)),
    "spddump": _bare(lambda at: SpdDump(at)),
    "migrate": _migrate,
    "exit": _bare(lambda at: Exit(at)),
    "quit": _bare(lambda at: Exit(at)),
    "bye": _bare(lambda at: Exit(at)),
}
