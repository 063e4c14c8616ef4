"""SAD and SPD entries in the shape of setkey ``-D`` and ``-DP``, with keys hidden
unless asked for."""

from __future__ import annotations

import dataclasses
import time
from ipaddress import ip_address, ip_network

import pytest

from pfmigrate.backends import pfkey_ops
from pfmigrate.cli.setkey.dump import policy_entry, priority_text, request_text, sa_entry, sad, selector_text, spd
from pfmigrate.model import (
    AH,
    ESP,
    IPCOMP,
    Action,
    Algorithm,
    Counters,
    Dir,
    Encap,
    Lifetime,
    Mode,
    Policy,
    SAFlag,
    SAState,
    SecurityAssociation,
    Selector,
    Template,
)
from pfmigrate.pfkey import SA, EncAlg, KeyEncrypt, MsgType

NOW = 1_700_000_000.0
ADDED = 1_699_999_000
USED = 1_699_999_900


def test_an_sa_line_by_line() -> None:
    sa = SecurityAssociation(
        ip_address("10.0.0.1"), ip_address("10.0.0.2"), 0x1000, ESP, Mode.TUNNEL, 7,
        auth=Algorithm("hmac(sha256)", bytes(32), 96), enc=Algorithm("cbc(aes)", bytes(16)), replay_window=32,
        flags=SAFlag.NOECN, lifetime=Lifetime(100, 200, 3, 4, 3000, 3600, 50, 60),
        current=Counters(1234, 5, ADDED, USED), state=SAState.DYING,
    )  # fmt: skip
    assert sa_entry(sa, now=NOW).split("\n") == [
        "10.0.0.1 10.0.0.2",
        "\tesp mode=tunnel spi=4096(0x00001000) reqid=7(0x00000007)",
        "\tE: aes-cbc  (128-bit key hidden; --keys shows it)",
        "\tA: hmac-sha256  (256-bit key hidden; --keys shows it)",
        "\tseq=0x00000000 replay=32 flags=0x80000000 state=dying",
        f"\tcreated: {time.ctime(ADDED)[4:24]}\tcurrent: {time.ctime(NOW)[4:24]}",
        "\tdiff: 1000(s)\thard: 3600(s)\tsoft: 3000(s)",
        f"\tlast: {time.ctime(USED)[4:24]}\thard: 60(s)\tsoft: 50(s)",
        "\tcurrent: 1234(bytes)\thard: 200(bytes)\tsoft: 100(bytes)",
        "\tallocated: 5\thard: 4\tsoft: 3",
    ]


def test_times_never_reached_are_blank() -> None:
    lines = sa_entry(SecurityAssociation(ip_address("::1"), ip_address("::2"), 300, AH), now=NOW).split("\n")
    assert lines[3] == f"\tcreated: {' ' * 20}\tcurrent: {time.ctime(NOW)[4:24]}"
    assert lines[4] == "\tdiff: 0(s)\thard: 0(s)\tsoft: 0(s)"
    assert lines[5] == f"\tlast: {' ' * 20}\thard: 0(s)\tsoft: 0(s)"


def test_keys_in_groups_of_four_bytes_when_asked_for() -> None:
    sa = SecurityAssociation(
        ip_address("10.0.0.1"), ip_address("10.0.0.2"), 300, ESP,
        auth=Algorithm("hmac(sha1)", bytes(range(20)), 96), enc=Algorithm("cbc(blowfish)", b"a blowfish key"),
    )  # fmt: skip
    lines = sa_entry(sa, keys=True, now=NOW).split("\n")
    assert lines[2] == "\tE: blowfish-cbc  6120626c 6f776669 7368206b 6579"
    assert lines[3] == "\tA: hmac-sha1  00010203 04050607 08090a0b 0c0d0e0f 10111213"


def test_names_of_other_algorithms() -> None:
    gcm = SecurityAssociation(
        ip_address("10.0.0.1"), ip_address("10.0.0.2"), 300, ESP, aead=Algorithm("rfc4106(gcm(aes))", bytes(20), 128)
    )
    assert "\tE: aes-gcm-16  (160-bit key hidden; --keys shows it)" in sa_entry(gcm, now=NOW)
    serpent = SecurityAssociation(
        ip_address("10.0.0.1"), ip_address("10.0.0.2"), 300, ESP, enc=Algorithm("cbc(serpent)")
    )
    assert "\tE: cbc(serpent)\n" in sa_entry(serpent, now=NOW)
    null = SecurityAssociation(
        ip_address("10.0.0.1"), ip_address("10.0.0.2"), 300, ESP, enc=Algorithm("ecb(cipher_null)")
    )
    assert "\tE: null\n" in sa_entry(null, now=NOW)


def test_ipcomp_and_esp_in_udp() -> None:
    ipcomp = SecurityAssociation(
        ip_address("10.0.0.1"), ip_address("10.0.0.2"), 0x4001, IPCOMP, comp=Algorithm("deflate")
    )
    assert sa_entry(ipcomp, now=NOW).split("\n")[1:3] == [
        "\tipcomp mode=transport spi=16385(0x00004001) reqid=0(0x00000000)",
        "\tC: deflate",
    ]
    udp = SecurityAssociation(
        ip_address("192.0.2.1"), ip_address("198.51.100.7"), 0x7001, ESP, Mode.TUNNEL,
        enc=Algorithm("cbc(aes)", bytes(16)), encap=Encap(2, 4500, 31000, ip_address("10.0.0.7")),
    )  # fmt: skip
    assert sa_entry(udp, now=NOW).split("\n")[:3] == [
        "192.0.2.1[4500] 198.51.100.7[31000]",
        "\tesp-udp mode=tunnel spi=28673(0x00007001) reqid=0(0x00000000)",
        "\tNAT OA=10.0.0.7",
    ]


def as_linux_answers(sa: SecurityAssociation, encrypt: EncAlg, *, key: bool) -> SecurityAssociation:
    """``sa`` read back from a PF_KEY message whose SA extension names ``encrypt``, with
    or without the encryption key's extension."""
    msg = pfkey_ops.sa_message(MsgType.ADD, sa)
    extensions = [dataclasses.replace(e, encrypt=encrypt) if isinstance(e, SA) else e for e in msg.extensions]
    kept = [e for e in extensions if key or not isinstance(e, KeyEncrypt)]
    return pfkey_ops.sa_from(dataclasses.replace(msg, extensions=tuple(kept)))


def test_a_larval_sa_shows_no_algorithm() -> None:
    larval = SecurityAssociation(ip_address("10.0.0.1"), ip_address("10.0.0.2"), 0x2000, ESP, state=SAState.LARVAL)
    for proto in (ESP, IPCOMP):  # what Linux answers for an SA made by GETSPI: algorithm 0, no key
        read = as_linux_answers(dataclasses.replace(larval, proto=proto), EncAlg.NONE, key=False)
        assert (read.enc, read.aead, read.comp) == (None, None, None)
        assert sa_entry(read, now=NOW).split("\n")[2].startswith("\tseq=0x00000000 ")


def test_an_esp_cipher_pf_key_has_no_number_for_still_shows() -> None:
    sa = SecurityAssociation(
        ip_address("10.0.0.1"), ip_address("10.0.0.2"), 300, ESP, enc=Algorithm("cbc(aes)", bytes(16))
    )
    read = as_linux_answers(sa, EncAlg.NONE, key=True)  # Linux's encrypt 0, but the key is there, as setkey sees
    assert read.enc == Algorithm("ealg-0", bytes(16))
    assert "\tE: ealg-0  (128-bit key hidden; --keys shows it)" in sa_entry(read, now=NOW)


def test_dead_sas_only_when_asked_for() -> None:
    dead = SecurityAssociation(ip_address("10.0.0.1"), ip_address("10.0.0.2"), 300, AH, state=SAState.DEAD)
    assert sad([dead], now=NOW) == "No SAD entries."
    assert "state=dead" in sad([dead], dead=True, now=NOW)
    assert sad([], now=NOW) == "No SAD entries."


# --- policies -------------------------------------------------------------------------------------------


def test_a_tunnel_policy() -> None:
    policy = Policy(
        Selector(ip_network("10.0.1.0/24"), ip_network("10.0.2.0/24")),
        Dir.OUT,
        (Template(ESP, Mode.TUNNEL, ip_address("172.16.0.1"), ip_address("172.16.0.2"), 101), Template(AH)),
        priority=0x80000000,
        index=9,
    )
    assert policy_entry(policy) == (
        "10.0.1.0/24[any] 10.0.2.0/24[any] any\n"
        "\tout prio def ipsec\n"
        "\tesp/tunnel/172.16.0.1-172.16.0.2/unique:101\n"
        "\tah/transport//require\n"
        "\tspid=9"
    )


def test_policies_without_requests_or_priority() -> None:
    discard = Policy(Selector.host("::1", "::2", 58), Dir.IN, action=Action.DISCARD, index=3)
    assert policy_entry(discard) == "::1 ::2 ipv6-icmp\n\tin discard\n\tspid=3"
    assert spd([]) == "No SPD entries."


@pytest.mark.parametrize(
    ("selector", "text"),
    [
        (Selector.host("10.0.0.1", "10.0.0.2"), "10.0.0.1[any] 10.0.0.2[any] any"),
        (Selector(ip_network("10.0.0.0/8"), ip_network("0.0.0.0/0"), 6, 80, 0), "10.0.0.0/8[80] 0.0.0.0/0[any] tcp"),
        (Selector(ip_network("::/0"), ip_network("::/0"), 58, 135, 0), "::/0 ::/0 ipv6-icmp 135,0"),
        (Selector(ip_network("::/0"), ip_network("::/0"), 58), "::/0 ::/0 ipv6-icmp"),
        (Selector.host("::1", "::2", 135), "::1 ::2 mobility-header"),
        (Selector(ip_network("::1/128"), ip_network("::2/128"), 135, 5, 0), "::1 ::2 mobility-header 5,0"),
        (Selector(ip_network("10.0.0.1/32"), ip_network("10.0.0.2/32"), 47, 1, 2), "10.0.0.1 10.0.0.2 gre 65538"),
        (Selector(ip_network("10.0.0.1/32"), ip_network("10.0.0.2/32"), 200, 1, 2), "10.0.0.1[1] 10.0.0.2[2] 200"),
    ],
)
def test_selectors(selector: Selector, text: str) -> None:
    assert selector_text(selector) == text


@pytest.mark.parametrize(
    ("priority", "text"),
    [
        (0, ""),
        (0x80000000, "prio def"),
        (0x80000000 - 5, "prio def + 5"),
        (0x80000000 + 5, "prio def - 5"),
        (0x40000000 - 10, "prio high + 10"),
        (0xC0000003, "prio low - 3"),
        (0x5FFFFFFF, "prio high - 536870911"),
        (0x60000000, "prio def + 536870912"),
        (0xA0000000, "prio low + 536870912"),
        (0xFFFFFFFF, "prio low - 1073741823"),
    ],
)
def test_priorities(priority: int, text: str) -> None:
    assert priority_text(priority) == text


@pytest.mark.parametrize(
    ("template", "text"),
    [
        (Template(ESP), "esp/transport//require"),
        (Template(AH, optional=True), "ah/transport//use"),
        (Template(IPCOMP, Mode.TUNNEL, ip_address("::1"), ip_address("::2")), "ipcomp/tunnel/::1-::2/require"),
        (Template(ESP, Mode.BEET, ip_address("::1"), ip_address("::2"), 5), "esp/beet/::1-::2/unique:5"),
        (Template(ESP, reqid=0x4000), "esp/transport//unique#16384"),
        (Template(ESP, reqid=5, optional=True), "esp/transport//use:5"),
    ],
)
def test_requests(template: Template, text: str) -> None:
    assert request_text(template) == text
