"""``pfmigrate setkey``'s reader: real configurations in, model objects out, and every
mistake reported at its file, line and column with what was expected there."""

from __future__ import annotations

import socket
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfmigrate.cli.errors import CommandError
from pfmigrate.cli.setkey import SetkeyError, parse
from pfmigrate.cli.setkey.lexer import Kind, tokenize
from pfmigrate.cli.setkey.policies import DEFAULT_PRIORITY
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
)
from pfmigrate.model import (
    AH,
    ESP,
    IPCOMP,
    MH,
    Action,
    Algorithm,
    Dir,
    Encap,
    KMAddress,
    Lifetime,
    MigrateBundle,
    Mode,
    Selector,
    Template,
)
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA

CONFIGS = Path(__file__).parent / "setkey_configs"


def bundle(old_src: str, old_dst: str, new_src: str, new_dst: str, *rest: Any) -> MigrateBundle:
    a = ip_address
    return MigrateBundle(a(old_src), a(old_dst), a(new_src), a(new_dst), *rest)


def config(name: str) -> list[Statement]:
    path = CONFIGS / name
    return parse(path.read_text(), str(path))


def one(text: str) -> Statement:
    [statement] = parse(text, "conf")
    return statement


def sa_of(text: str) -> AddSA:
    statement = one(text)
    assert isinstance(statement, AddSA)
    return statement


def policy_of(text: str) -> SpdAdd:
    statement = one(text)
    assert isinstance(statement, SpdAdd)
    return statement


# --- the lexer ------------------------------------------------------------------------------------


def test_tokens_know_their_line_and_column() -> None:
    tokens = tokenize('add 10.0.0.1 # a comment ; "not a string\n\t -A "key; with #";', "f")
    assert [(t.kind, t.text, t.line, t.column) for t in tokens] == [
        (Kind.WORD, "add", 1, 1),
        (Kind.WORD, "10.0.0.1", 1, 5),
        (Kind.WORD, "-A", 2, 3),
        (Kind.STRING, '"key; with #"', 2, 6),
        (Kind.SEMI, ";", 2, 19),
        (Kind.END, "", 2, 20),
    ]


def test_a_word_ends_at_a_semicolon_and_a_quote() -> None:
    tokens = tokenize('spddump;flush"x"')
    assert [t.text for t in tokens] == ["spddump", ";", "flush", '"x"', ""]


def test_a_part_of_a_word_keeps_its_column() -> None:
    [word, _] = tokenize("   esp/tunnel/a-b/require")
    part = word.part(11, 14)
    assert (part.text, part.line, part.column) == ("a-b", 1, 15)


# --- the sample configurations ----------------------------------------------------------------------


def test_transport_mode_between_two_hosts() -> None:
    statements = config("transport.conf")
    assert [type(s) for s in statements] == [Flush, SpdFlush, AddSA, AddSA, AddSA, AddSA, SpdAdd, SpdAdd]
    ah = statements[2]
    assert isinstance(ah, AddSA)
    assert ah.sa.proto == AH
    assert ah.sa.mode is Mode.TRANSPORT
    assert ah.sa.auth == Algorithm("hmac(md5)", bytes.fromhex("c0291ff014dccdd03874d9e8e4cdf3e6"), 96)
    esp = statements[4]
    assert isinstance(esp, AddSA)
    assert esp.sa.enc is not None
    assert esp.sa.enc.name == "cbc(des3_ede)"
    assert esp.sa.auth is None
    out = statements[6]
    assert isinstance(out, SpdAdd)
    assert out.policy.selector == Selector.host("192.168.1.10", "192.168.1.20")
    assert out.policy.dir is Dir.OUT
    assert out.policy.templates == (Template(ESP), Template(AH))
    assert out.policy.priority == DEFAULT_PRIORITY
    assert out.at.line == 15


def test_tunnel_between_gateways() -> None:
    statements = config("tunnel.conf")
    first = statements[2]
    assert isinstance(first, AddSA)
    sa = first.sa
    assert (sa.mode, sa.reqid, sa.replay_window) == (Mode.TUNNEL, 101, 32)
    assert sa.enc == Algorithm("cbc(aes)", bytes(range(16)))
    assert sa.auth == Algorithm("hmac(sha1)", b"20-byte-sha1-secret!", 96)
    assert sa.lifetime == Lifetime(hard_add=3600, soft_add=3000)
    second = statements[3]
    assert isinstance(second, AddSA)
    assert second.sa.lifetime == Lifetime(hard_bytes=1_000_000_000, soft_bytes=900_000_000)
    out = statements[4]
    assert isinstance(out, SpdAdd)
    assert out.policy.selector == Selector(ip_network("10.0.1.0/24"), ip_network("10.0.2.0/24"))
    assert out.policy.templates == (
        Template(ESP, Mode.TUNNEL, ip_address("172.16.0.1"), ip_address("172.16.0.2"), 101),
    )
    clear = statements[6]
    assert isinstance(clear, SpdAdd)
    assert clear.policy.action is Action.NONE
    assert clear.policy.priority == 0x40000000 - 10


def test_mobile_ipv6_policies_of_the_seed() -> None:
    statements = config("mip6.conf")
    out = statements[4]
    assert isinstance(out, SpdAdd)
    assert out.policy.selector == Selector.host(HOME_ADDRESS, HOME_AGENT, MH)
    [template] = out.policy.templates
    assert template == Template(ESP, Mode.TUNNEL, ip_address(OLD_COA), ip_address(HOME_AGENT))
    ns = statements[6]
    assert isinstance(ns, SpdAdd)
    assert ns.policy.selector == Selector(ip_network("::/0"), ip_network("::/0"), 58, 135, 0)
    assert ns.policy.action is Action.NONE


def test_migrate_statement_of_the_seed() -> None:
    out, back = config("migrate.conf")
    assert isinstance(out, Migrate)
    assert isinstance(back, Migrate)
    request = out.request
    assert request.selector == Selector.host(HOME_ADDRESS, HOME_AGENT, MH)
    assert request.dir is Dir.OUT
    assert request.bundles == (bundle(OLD_COA, HOME_AGENT, NEW_COA, HOME_AGENT, ESP, Mode.TUNNEL),)
    assert request.kmaddress == KMAddress(ip_address(NEW_COA), ip_address(HOME_AGENT))
    assert back.request.dir is Dir.IN
    assert back.request.bundles == (bundle(HOME_AGENT, OLD_COA, HOME_AGENT, NEW_COA),)


def test_ipcomp_with_esp() -> None:
    statements = config("ipcomp.conf")
    first = statements[0]
    assert isinstance(first, AddSA)
    assert (first.sa.proto, first.sa.mode, first.sa.comp) == (IPCOMP, Mode.TUNNEL, Algorithm("deflate"))
    out = statements[4]
    assert isinstance(out, SpdAdd)
    ipcomp, esp = out.policy.templates
    assert (ipcomp.proto, ipcomp.mode, ipcomp.optional) == (IPCOMP, Mode.TUNNEL, False)
    assert (esp.proto, esp.mode) == (ESP, Mode.TRANSPORT)
    inbound = statements[5]
    assert isinstance(inbound, SpdAdd)
    assert inbound.policy.templates[0].optional


def test_esp_in_udp() -> None:
    first, second, policy = config("natt.conf")
    assert isinstance(first, AddSA)
    assert first.sa.encap == Encap(2, 4500, 31000, ip_address("10.0.0.7"))
    assert first.sa.enc == Algorithm("rfc3686(ctr(aes))", bytes(range(20)))
    assert isinstance(second, AddSA)
    assert second.sa.encap == Encap(2, 4500, 4500)
    assert isinstance(policy, SpdAdd)
    assert policy.policy.selector.proto == 17


# --- the rest of the language -------------------------------------------------------------------------


def test_every_statement() -> None:
    text = """
        get 10.0.0.1 10.0.0.2 esp 0x1000; delete -4 10.0.0.1 10.0.0.2 ah 4096;
        deleteall 10.0.0.1 10.0.0.2 ipcomp; flush; flush esp; dump ah; dump;
        getspi 10.0.0.1 10.0.0.2 esp 0 -u 7; spdflush; spddump;
        spddelete 10.0.0.0/8 10.1.0.0/16 tcp -P in; quit;
    """
    a, b = ip_address("10.0.0.1"), ip_address("10.0.0.2")
    assert parse(text) == [
        GetSA(a, b, ESP, 0x1000),
        DeleteSA(a, b, AH, 4096),
        DeleteAll(a, b, IPCOMP),
        Flush(),
        Flush(ESP),
        Dump(AH),
        Dump(),
        GetSPI(a, b, ESP, 0, 7),
        SpdFlush(),
        SpdDump(),
        SpdDelete(Selector(ip_network("10.0.0.0/8"), ip_network("10.1.0.0/16"), 6), Dir.IN),
        Exit(),
    ]


def test_spddelete_takes_the_whole_policy_too() -> None:
    statement = one("spddelete 10.0.0.1 10.0.0.2 any -P out ipsec esp/transport//require;")
    assert statement == SpdDelete(Selector.host("10.0.0.1", "10.0.0.2"), Dir.OUT)


def test_update_and_spdupdate() -> None:
    assert sa_of("update 10.0.0.1 10.0.0.2 ah 300 -A hmac-sha1 0x" + "11" * 20 + ";").update
    assert policy_of("spdupdate 10.0.0.1 10.0.0.2 any -P fwd discard;").update


@pytest.mark.parametrize(
    ("spec", "priority"),
    [
        ("", DEFAULT_PRIORITY),
        ("prio def", 0x80000000),
        ("priority 10", 0x80000000 - 10),
        ("prio -10", 0x80000000 + 10),
        ("prio - 10", 0x80000000 + 10),
        ("prio high + 5", 0x40000000 - 5),
        ("prio high +5", 0x40000000 - 5),
        ("prio low - 3", 0xC0000000 + 3),
        ("prio 2147483648", 0),
        ("prio -2147483647", 0xFFFFFFFF),
    ],
)
def test_priorities(spec: str, priority: int) -> None:
    assert policy_of(f"spdadd 10.0.0.1 10.0.0.2 any -P out {spec} none;").policy.priority == priority


@pytest.mark.parametrize(
    ("upper", "expected"),
    [
        ("any", (0, 0, 0)),
        ("255", (0, 0, 0)),
        ("tcp", (6, 0, 0)),
        ("icmp6", (58, 0, 0)),
        ("icmp6 135,0", (58, 135, 0)),
        ("ipv6-icmp 1,4", (58, 1, 4)),
        ("135", (135, 0, 0)),
        ("135 5", (135, 5, 0)),
        ("mobility-header", (135, 0, 0)),
        ("gre 1234", (47, 0, 1234)),
        ("gre 0.1.0.2", (47, 1, 2)),
        ("41", (41, 0, 0)),
    ],
)
def test_upper_layer_protocols(upper: str, expected: tuple[int, int, int]) -> None:
    selector = policy_of(f"spdadd ::1 ::2 {upper} -P out none;").policy.selector
    assert (selector.proto, selector.sport, selector.dport) == expected


def test_ranges_ports_and_prefixes() -> None:
    selector = policy_of("spdadd 10.0.11.41/32[21] 10.0.11.33/24 [any] tcp -P out none;").policy.selector
    assert selector == Selector(ip_network("10.0.11.41/32"), ip_network("10.0.11.0/24"), 6, 21, 0)


def test_requests() -> None:
    policy = policy_of(
        "spdadd 10.0.0.1 10.0.0.2 any -P out ipsec esp/transport/ ah/transport//use "
        "esp/tunnel/1.1.1.1-2.2.2.2/default esp/tunnel/1.1.1.1[0]-2.2.2.2[any] "
        "ipcomp/beet/1.1.1.1-2.2.2.2/unique:16383 ah/transport/3.3.3.3-4.4.4.4/require;"
    ).policy
    one, two = ip_address("1.1.1.1"), ip_address("2.2.2.2")
    assert policy.templates == (
        Template(ESP),
        Template(AH, optional=True),
        Template(ESP, Mode.TUNNEL, one, two),
        Template(ESP, Mode.TUNNEL, one, two),
        Template(IPCOMP, Mode.BEET, one, two, 16383),
        Template(AH, Mode.TRANSPORT, ip_address("3.3.3.3"), ip_address("4.4.4.4")),
    )


def test_algorithms_and_keys() -> None:
    null = sa_of("add 10.0.0.1 10.0.0.2 esp 300 -E null -A null;").sa
    assert null.enc == Algorithm("ecb(cipher_null)")
    assert null.auth == Algorithm("digest_null")
    gcm = sa_of("add 10.0.0.1 10.0.0.2 esp 300 -E aes-gcm-16 0x" + "ab" * 36 + ";").sa
    assert gcm.aead == Algorithm("rfc4106(gcm(aes))", b"\xab" * 36, 128)
    assert gcm.enc is None
    sha512 = sa_of("add 10.0.0.1 10.0.0.2 ah 300 -A hmac-sha2-512 0x" + "00" * 64 + ";").sa
    assert sha512.auth == Algorithm("hmac(sha512)", bytes(64), 256)
    assert sa_of('add ::1 ::2 esp 300 -E cast128-cbc "12345";').sa.enc == Algorithm("cbc(cast5)", b"12345")


def test_extensions() -> None:
    sa = sa_of("add 10.0.0.1 10.0.0.2 esp 300 -m any -r 64 -u 9 -lh 10 -ls 5 -bh 100 -bs 50 -E null;").sa
    assert (sa.mode, sa.replay_window, sa.reqid) == (Mode.TRANSPORT, 64, 9)
    assert sa.lifetime == Lifetime(soft_bytes=50, hard_bytes=100, soft_add=5, hard_add=10)


def test_padding_options_are_accepted_with_a_note() -> None:
    statement = sa_of("add 10.0.0.1 10.0.0.2 esp 300 -f zero-pad -f nocyclic-seq -E null;")
    assert len(statement.notes) == 2
    assert statement.notes[0].startswith("conf:1:31: note: -f zero-pad has no effect")


def test_the_limits_linux_keeps_are_accepted_up_to_the_limit() -> None:
    assert sa_of("add 10.0.0.1 10.0.0.2 esp 300 -r 255 -E null;").sa.replay_window == 255
    assert sa_of("add 10.0.0.1 10.0.0.2 ipcomp 0xffff -C deflate;").sa.spi == 0xFFFF
    six = policy_of("spdadd 10.0.0.1 10.0.0.2 any -P out ipsec " + "esp/transport//require " * 6 + ";")
    assert len(six.policy.templates) == 6
    assert one("getspi 10.0.0.1 10.0.0.2 ipcomp 0xffff;") == GetSPI(
        ip_address("10.0.0.1"), ip_address("10.0.0.2"), IPCOMP, 0xFFFF
    )
    assert one("get 10.0.0.1 10.0.0.2 ipcomp 0x10000;") == GetSA(  # finding one is Linux's business
        ip_address("10.0.0.1"), ip_address("10.0.0.2"), IPCOMP, 0x10000
    )


def test_getspi_takes_the_extensions_setkey_documents() -> None:
    statement = one("getspi 10.0.0.1 10.0.0.2 esp 0x2000 -m transport -u 5 -r 64 -lh 30 -f zero-pad;")
    assert statement == GetSPI(ip_address("10.0.0.1"), ip_address("10.0.0.2"), ESP, 0x2000, 5)
    assert isinstance(statement, GetSPI)
    assert [note.split(": note: ")[0] for note in statement.notes] == ["conf:1:55", "conf:1:61", "conf:1:68"]
    assert statement.notes[0].endswith("-r has no effect on getspi: Linux's larval SA has a mode and a reqid only")
    assert one("getspi 10.0.0.1 10.0.0.2 esp 0 -m any;") == GetSPI(
        ip_address("10.0.0.1"), ip_address("10.0.0.2"), ESP, 0
    )
    tunnel = one("getspi 10.0.0.1 10.0.0.2 esp 0 -m tunnel;")
    assert isinstance(tunnel, GetSPI)
    assert tunnel.mode == Mode.TUNNEL


@pytest.mark.parametrize(("name", "number"), [("igmp", 2), ("ospf", 89), ("ipip", 94), ("l2tp", 115), ("udplite", 136)])
def test_upper_layer_protocols_by_their_names_in_etc_protocols(name: str, number: int) -> None:
    try:
        socket.getprotobyname(name)
    except OSError:
        pytest.skip(f"this system's protocols database does not name {name}")
    assert policy_of(f"spdadd 10.0.0.1 10.0.0.2 {name} -P out none;").policy.selector.proto == number


def test_family_flags() -> None:
    assert isinstance(one("delete -46n ::1 ::2 esp 300;"), DeleteSA)
    assert isinstance(one("spdadd -4 10.0.0.1 10.0.0.2 any -P out none;"), SpdAdd)


def test_statements_span_lines_and_share_them() -> None:
    statements = parse("spdflush;\nspddump\n\n  ;  flush ; # done\n", "f")
    assert [(s.at.line, s.at.column) for s in statements] == [(1, 1), (2, 1), (4, 6)]


# --- mistakes, at their place --------------------------------------------------------------------------

ADD = "add 10.0.0.1 10.0.0.2 esp 0x1000"
SPD = "spdadd 10.0.0.1 10.0.0.2 any -P out"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "addd 1.2.3.4;",
            "1:1",
            "expected a statement (add, update, getspi, get, delete, deleteall, flush, dump, spdadd",
        ),
        ("flush;\n  spdadd; ", "2:9", 'expected a source address range, found ";"'),
        (
            "add 10.0.0.1 10.0.0.2 espp 0x1000 -E null;",
            "1:23",
            'expected a protocol (esp, ah, ipcomp, esp-udp), found "espp"',
        ),
        (
            "add 10.0.0.1 10.0.0.256 esp 300 -E null;",
            "1:14",
            'expected a numeric IPv4 or IPv6 address (host names are not resolved), found "10.0.0.256"',
        ),
        ("add host.example 10.0.0.2 esp 300 -E null;", "1:5", "host names are not resolved"),
        ("add fe80::1%eth0 fe80::2 esp 300 -E null;", "1:5", "a scoped address (fe80::1%eth0)"),
        ("add 10.0.0.1 ::2 esp 300 -E null;", "1:14", "::2 is not of the same address family as 10.0.0.1"),
        ("add -6 10.0.0.1 10.0.0.2 esp 300 -E null;", "1:8", "-6 allows IPv6 addresses only"),
        ("add 10.0.0.1[500] 10.0.0.2 esp 300 -E null;", "1:5", "a port on an SA's address is for esp-udp"),
        (
            "spdadd 10.0.0.1/33 10.0.0.2 any -P out none;",
            "1:17",
            "prefix length (0 to 32 for IPv4) must be at most 32, not 33",
        ),
        ("spdadd ::1/12x ::2 any -P out none;", "1:12", 'expected a prefix length (0 to 128 for IPv6), found "12x"'),
        ("spdadd 10.0.0.1[80 10.0.0.2 any -P out none;", "1:19", 'expected "]" after the port, found nothing'),
        ("spdadd 10.0.0.1[70000] 10.0.0.2 any -P out none;", "1:17", 'a port number or "any" must be at most 65535'),
        ("spdadd 10.0.0.1[80]x 10.0.0.2 any -P out none;", "1:20", 'nothing may follow the port, found "x"'),
        (
            f"{ADD} -E null\nadd 10.0.0.3 10.0.0.4 ah 300 -A null;",
            "2:1",
            'expected ";" to end the add statement of line 1, found "add"',
        ),
        ("spdflush", "1:9", 'expected ";" to end the spdflush statement, found the end of the input'),
        (f'{ADD} -A hmac-md5 "unterminated;\n', "1:46", "unterminated string"),
        (
            f"{ADD} -E aes-cbc 0x0011223344556677889;",
            "1:45",
            "a hex key has an even number of digits (whole bytes), this one has 19",
        ),
        (f"{ADD} -E aes-cbc 0x00112233g4;", "1:55", 'expected a hex digit, found "g4"'),
        (f"{ADD} -E aes-cbc 0x0011;", "1:45", "aes-cbc takes a 128-, 192- or 256-bit key, and this key has 16 bits"),
        (f'{ADD} -E 3des-cbc "short";', "1:46", "3des-cbc takes a 192-bit key, and this key has 40 bits"),
        (
            f"{ADD} -E aes-cbc;",
            "1:44",
            'expected a key (a "double-quoted string" or 0x followed by hex digits), found ";"',
        ),
        (f"{ADD} -E aes-cbd 0x00;", "1:37", "expected an encryption algorithm (des-cbc, 3des-cbc, null, blowfish-cbc"),
        (f"{ADD} -E null -A hmac-sha3 0x00;", "1:45", "expected an authentication algorithm (hmac-md5, hmac-sha1"),
        (f"{ADD} -E des-deriv 0x00;", "1:37", "des-deriv is a KAME algorithm that Linux does not have"),
        (f"{ADD} -m tunnel;", "1:43", 'expected -E and an encryption algorithm for this esp SA, found ";"'),
        (f"{ADD} -E null -C deflate;", "1:42", "-C has no place in an esp SA"),
        (f"{ADD} -E null 0x0011;", "1:42", "null takes no key"),
        (f'{ADD} -E null "key";', "1:42", "null takes no key"),
        ("add 10.0.0.1 10.0.0.2 ah 0x1000 -E null;", "1:33", "-E has no place in an ah SA"),
        (f"{ADD} -E aes-gcm-16 0x{'00' * 20} -A null;", "1:91", "aes-gcm-16 authenticates by itself"),
        (f"{ADD} -m tunnel -m transport -E null;", "1:44", "-m is given twice"),
        (f"{ADD} -m sideways -E null;", "1:37", "expected a mode (transport, tunnel, beet, any)"),
        (f"{ADD} -x 5 -E null;", "1:34", "expected an option (-m, -r, -u, -f, -lh, -ls, -bh, -bs) or an algorithm"),
        (f"{ADD} -f fancy-pad -E null;", "1:37", "expected a padding option"),
        (f'{ADD} -ctx 1 1 "x" -E null;', "1:34", "security labels (-ctx) are not supported"),
        ("add 10.0.0.1 10.0.0.2 esp 255 -E null;", "1:27", "SPIs 0 to 255 are reserved"),
        ("add 10.0.0.1 10.0.0.2 esp 0x1ffffffff -E null;", "1:27", "an SPI must be at most 0xffffffff"),
        ("add 10.0.0.1 10.0.0.2 esp-old 300 -E null;", "1:23", "esp-old (RFC 1827 ESP) does not exist in Linux"),
        ('add 10.0.0.1 10.0.0.2 tcp 0x1000 -A tcp-md5 "x";', "1:23", "TCP-MD5 SAs (tcp) are a BSD feature"),
        (
            f"{SPD} ipsec esp/tunnel/10.0.0.1-10.0.0.2/requir;",
            "1:72",
            'expected a level (default, use, require, unique:N), found "requir"',
        ),
        (f"{SPD} ipsec esp/transport//unique;", "1:58", "unique needs its id here (unique:N"),
        (f"{SPD} ipsec esp/transport//unique:0;", "1:65", "a policy id goes from 1 to 16383"),
        (f"{SPD} ipsec esp/transport//unique:16384;", "1:65", "a policy id (1-16383) must be at most 16383"),
        (f"{SPD} ipsec esp/transport//use:3;", "1:61", "only unique takes an id"),
        (f"{SPD} ipsec esp/tunnel//require;", "1:54", "expected the tunnel endpoints (/src-dst), found nothing"),
        (f"{SPD} ipsec esp/tunnel;", "1:53", "expected the tunnel endpoints (/src-dst), found nothing"),
        (f"{SPD} ipsec esp;", "1:46", 'expected "/" and a mode (transport, tunnel), found nothing'),
        (f"{SPD} ipsec esp/any//require;", "1:47", 'expected a mode (transport, tunnel), found "any"'),
        (
            f"{SPD} ipsec tcp/transport//require;",
            "1:43",
            "expected a request (protocol/mode/src-dst/level) of esp, ah or ipcomp",
        ),
        (f"{SPD} ipsec esp/tunnel/10.0.0.1/require;", "1:54", "expected two addresses joined by a hyphen (src-dst)"),
        (f"{SPD} ipsec esp/tunnel/10.0.0.1-::2/require;", "1:63", "::2 is not of the same address family as 10.0.0.1"),
        (
            f"{SPD} ipsec esp/tunnel/1.1.1.1[4500]-2.2.2.2[4500]/require;",
            "1:54",
            "ports in a request are for ESP in UDP",
        ),
        (f"{SPD} ipsec esp/transport//require/more;", "1:66", "a request has at most four parts"),
        (
            "spdadd 10.0.0.1 10.0.0.2 any -P inbound none;",
            "1:33",
            'expected a direction (in, out, fwd), found "inbound"',
        ),
        ("spdadd 10.0.0.1 10.0.0.2 any -p out none;", "1:30", 'expected "-P" and a policy, found "-p"'),
        (f"{SPD} bypass;", "1:37", 'expected an action (ipsec, none, discard), found "bypass"'),
        (
            f"{SPD} none esp/transport//require;",
            "1:42",
            'expected ";" to end the spdadd statement, found "esp/transport//require"',
        ),
        (f"{SPD} prio 2147483649 none;", "1:42", "the priority is out of range"),
        (f"{SPD} prio high + 1073741825 none;", "1:42", "an offset from high goes up to 1073741824"),
        (f"{SPD} prio middle none;", "1:42", 'expected a priority offset, found "middle"'),
        (
            "spdadd 10.0.0.1 10.0.0.2 tcpp -P out none;",
            "1:26",
            'expected an upper-layer protocol (any, tcp, udp, icmp, icmp6, gre, 135, or 0-255), found "tcpp"',
        ),
        ("spdadd 10.0.0.1 10.0.0.2 256 -P out none;", "1:26", "must be at most 255, not 256"),
        (
            "spdadd 10.0.0.1 10.0.0.2 tcp 80 -P out none;",
            "1:30",
            "only icmp, icmp6, 135 (Mobility Header) and gre take",
        ),
        ("spdadd 10.0.0.1[7] 10.0.0.2 icmp -P out none;", "1:8", "icmp has no ports"),
        ("spdadd ::1 ::2 icmp6 135,x -P out none;", "1:26", 'expected a code (0-255), found "x"'),
        ("spdadd 10.0.0.1 10.0.0.2 gre 1.2.3 -P out none;", "1:30", "expected a GRE key"),
        ('spdadd tagged "x" -P out none;', "1:8", "tagged policies are a BSD packet-filter feature"),
        ('spdadd 10.0.0.1 10.0.0.2 any -ctx 1 1 "x" -P out none;', "1:30", "security labels (-ctx) are not supported"),
        ("spddelete 10.0.0.1 10.0.0.2 any;", "1:32", 'expected "-P" and a policy, found ";"'),
        ("; flush;", "1:1", "expected a statement (add,"),
        ("flush esp ah;", "1:11", 'expected ";" to end the flush statement, found "ah"'),
        ("getspi 10.0.0.1 10.0.0.2 esp 0 -E null;", "1:32", "-E has no place in getspi"),
        ("getspi 10.0.0.1 10.0.0.2 esp 0 -u 5 -x;", "1:37", "expected an option (-m, -r, -u"),
        # limits Linux keeps, refused before anything runs rather than halfway through
        (f"{ADD} -r 256 -E null;", "1:37", "a replay window size (PF_KEY's field is one byte) must be at most 255"),
        (
            f"{SPD} ipsec " + "esp/transport//require " * 7 + ";",
            "1:181",
            "a policy holds at most 6 requests (Linux's XFRM_MAX_DEPTH)",
        ),
        ("add 10.0.0.1 10.0.0.2 ipcomp 0x10000 -C deflate;", "1:30", "an ipcomp SPI is its 16-bit CPI: at most 0xffff"),
        (
            "getspi 10.0.0.1 10.0.0.2 ipcomp 65536;",
            "1:33",
            "an ipcomp SPI is its 16-bit CPI: at most 0xffff, not 65536",
        ),
        # a ";" left out before the next statement, after a request list
        (
            f"{SPD} ipsec esp/transport//require\nspdadd 10.0.0.1 10.0.0.3 any -P out none;",
            "2:1",
            'expected ";" to end the spdadd statement of line 1, found "spdadd"',
        ),
        (
            f"{SPD} ipsec esp/transport//require bogus;",
            "1:66",
            'expected ";" to end the spdadd statement, found "bogus"',
        ),
    ],
)
def test_mistakes_are_reported_where_they_are(text: str, where: str, message: str) -> None:
    with pytest.raises(SetkeyError) as caught:
        parse(text, "conf")
    assert str(caught.value).startswith(f"conf:{where}: ")
    assert message in caught.value.message
    assert isinstance(caught.value, CommandError)


MIGRATE = "migrate ::1 ::2 135 -P out"
OLD, NEW = "esp/tunnel/::3-::2/require", "esp/tunnel/::4-::2/require"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (f"{MIGRATE};", "1:27", "expected the old and the new request of a bundle"),
        (f"{MIGRATE} {OLD};", "1:28", "this request has no partner"),
        (f"{MIGRATE} {OLD} esp/transport//require;", "1:55", "a migrate request names its endpoints"),
        (f"{MIGRATE} {OLD} ah/tunnel/::4-::2/require;", "1:55", "must keep the old one's protocol, mode and id"),
        (
            f"{MIGRATE} {OLD} {NEW.replace('require', 'unique:4')};",
            "1:55",
            "must keep the old one's protocol, mode and id",
        ),
        (f"{MIGRATE} {(OLD + ' ' + NEW + ' ') * 7};", "1:352", "a MIGRATE moves at most 6 bundles"),
        (f"{MIGRATE} {OLD} {NEW} -k ::4;", "1:85", "expected two addresses joined by a hyphen"),
        (f"{MIGRATE} {OLD} {NEW} -k ::4[1]-::2;", "1:85", "key-manager addresses have no ports"),
        (f"{MIGRATE} {OLD} {NEW} -x;", "1:82", 'expected ";" to end the migrate statement, found "-x"'),
        (f"{MIGRATE} {OLD} {NEW}\nflush;", "2:1", 'expected ";" to end the migrate statement of line 1, found "flush"'),
    ],
)
def test_migrate_mistakes(text: str, where: str, message: str) -> None:
    with pytest.raises(SetkeyError) as caught:
        parse(text, "conf")
    assert str(caught.value).startswith(f"conf:{where}: ")
    assert message in caught.value.message


def test_migrate_with_several_bundles_and_unique_ids() -> None:
    statement = one(
        "migrate 10.0.0.0/24 10.1.0.0/24 any -P fwd ipsec "
        "esp/tunnel/1.1.1.1-2.2.2.2/unique:3 esp/tunnel/1.1.1.9-2.2.2.2/unique:3 "
        "ah/transport/1.1.1.1-2.2.2.2/use ah/transport/1.1.1.9-2.2.2.2/use;"
    )
    assert isinstance(statement, Migrate)
    assert statement.request.kmaddress is None
    assert statement.request.bundles == (
        bundle("1.1.1.1", "2.2.2.2", "1.1.1.9", "2.2.2.2", ESP, Mode.TUNNEL, 3),
        bundle("1.1.1.1", "2.2.2.2", "1.1.1.9", "2.2.2.2", AH, Mode.TRANSPORT),
    )


# --- nothing but SetkeyError, whatever the text ------------------------------------------------------------

FRAGMENTS = st.sampled_from(
    [
        "add", "spdadd", "migrate", "get", "delete", "deleteall", "flush", "dump", "getspi", "spddelete",
        "10.0.0.1", "::1", "10.0.0.0/24", "[80]", "[any]", "/", "-", "esp", "ah", "ipcomp", "esp-udp",
        "0x1000", "300", "-E", "-A", "-C", "-m", "tunnel", "-P", "out", "in", "ipsec", "none", "prio", "+",
        "high", "aes-cbc", "hmac-sha1", "deflate", '"key"', "0x00112233", "esp/tunnel/1.1.1.1-2.2.2.2/require",
        "unique:5", "135,0", "icmp6", "-k", "::3-::4", ";", "#", "\n", " ", '"',
    ]
)  # fmt: skip


def _parse_or_locate(text: str) -> tuple[int, int] | None:
    """Parses ``text``; where the error is if it is not valid, ``None`` if it is."""
    try:
        parse(text, "fuzz")
    except SetkeyError as exc:
        return exc.line, exc.column
    return None


@given(st.text(alphabet=st.sampled_from('ab1:. \t\n;#"[]/-\u00e9\u2028')))
def test_every_token_is_where_it_says(text: str) -> None:
    try:
        tokens, mistake = tokenize(text, "fuzz"), ""
    except SetkeyError as exc:
        tokens, mistake = [], exc.message
    assert mistake == "" or mistake.startswith("unterminated string")
    lines = text.split("\n")
    for token in tokens[:-1]:
        assert lines[token.line - 1][token.column - 1 :].startswith(token.text)
    comments = ["".join(c for c in line.split("#")[0] if c not in ' \t\r\f\v;"') for line in lines]
    if '"' not in text:  # then the words are the text without blanks, comments and ";"
        assert "".join(t.text for t in tokens if t.kind is Kind.WORD) == "".join(comments)


@given(st.text())
def test_arbitrary_text_raises_nothing_but_setkey_error(text: str) -> None:
    where = _parse_or_locate(text)
    assert where is None or where >= (1, 1)


@given(st.lists(FRAGMENTS, max_size=30).map(" ".join))
def test_setkey_like_text_raises_nothing_but_setkey_error(text: str) -> None:
    where = _parse_or_locate(text)
    assert where is None or (1 <= where[0] <= text.count("\n") + 1 and where[1] >= 1)
