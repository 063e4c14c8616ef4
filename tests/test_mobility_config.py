"""The mobility configuration: the examples read as documented, defaults and derived reqids
are what docs/mobility-config.md says, and every kind of mistake is one ConfigError naming
the file, the key path (and for TOML syntax the line and column) and what was expected.

Documents are built as dicts, changed one key at a time, and written back as TOML (with
inline tables, which name keys by the same paths as table headers).
"""

from __future__ import annotations

import copy
import json
import logging
import tomllib
from collections.abc import Iterator
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfmigrate.cli import main
from pfmigrate.mobility.config import (
    DEFAULT_PROTECT,
    BackendChoice,
    ConfigError,
    HAConfig,
    Keying,
    MNConfig,
    Protection,
    Role,
    Toward,
    load,
    load_ha,
    load_mn,
    parse,
)
from pfmigrate.model import Algorithm

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MN_EXAMPLE = tomllib.loads((EXAMPLES / "mn.toml").read_text())
HA_EXAMPLE = tomllib.loads((EXAMPLES / "ha.toml").read_text())
HOA, HA = "3ffe:501:ffff:100:1:2:3:4", "3ffe:501:ffff:100::1"
MINIMAL_MN: dict[str, Any] = {
    "role": "mn",
    "mobile_node": {"home_address": HOA, "home_agent": HA, "interface": "eth0"},
    "ipsec": {"keying": "ike"},
}
MINIMAL_HA: dict[str, Any] = {
    "role": "ha",
    "home_agent": {"address": HA},
    "ipsec": {"keying": "ike"},
    "mobile_nodes": [{"home_address": HOA}, {"home_address": "3ffe:501:ffff:100::beef"}],
}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def render(document: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(key)} = {toml_value(value)}\n" for key, value in document.items())


def _walk(document: dict[str, Any], path: str) -> tuple[Any, str | int]:
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = document
    for part in parts[:-1]:
        node = node[part]
    return node, parts[-1]


def changed(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    result = copy.deepcopy(document)
    node, last = _walk(result, path)
    node[last] = value
    return result


def without(document: dict[str, Any], path: str) -> dict[str, Any]:
    result = copy.deepcopy(document)
    node, last = _walk(result, path)
    del node[last]
    return result


def refused(document: dict[str, Any] | str) -> ConfigError:
    text = document if isinstance(document, str) else render(document)
    with pytest.raises(ConfigError) as caught:
        parse(text, "site.toml")
    return caught.value


# --- what reads -------------------------------------------------------------------------------


def test_the_mobile_node_example_reads_as_documented() -> None:
    config = load_mn(EXAMPLES / "mn.toml")
    assert config.source == str(EXAMPLES / "mn.toml")
    assert config.backend == BackendChoice("keyd", Path("/run/pfmigrate/keyd.sock"))
    assert config.home_address == IPv6Address(HOA)
    assert config.home_agent == IPv6Address(HA)
    assert config.home_prefix == IPv6Network("3ffe:501:ffff:100::/64")
    assert (config.interface, config.lifetime, config.key_management_mobility) == ("wlan0", 600, False)
    assert config.mobile_network_prefixes == (IPv6Network("3ffe:501:ffff:200::/64"),)
    ipsec = config.ipsec
    assert ipsec.keying is Keying.MANUAL
    assert ipsec.protect == tuple(Protection)
    assert len(ipsec.keys) == 8
    keys = ipsec.keys[Protection.BU_BA, Toward.HA]
    assert keys.spi == 0x2000
    assert keys.encryption_key == bytes.fromhex("b0f1f8773a9c9d4bec1084a0ecb1da48")
    encryption, authentication = ipsec.algorithms(keys)
    assert encryption == Algorithm("cbc(aes)", keys.encryption_key)
    assert authentication == Algorithm("hmac(sha256)", keys.authentication_key, 96)  # Linux's PF_KEY truncation
    assert repr(keys) == "ManualKeys(spi=8192)"  # keys stay out of logs


def test_the_home_agent_example_reads_as_documented() -> None:
    config = load_ha(EXAMPLES / "ha.toml")
    assert config.backend == BackendChoice("linux-xfrm")
    assert (config.address, config.prefix_length, config.max_lifetime) == (IPv6Address(HA), 64, 3600)
    router, laptop = config.mobile_nodes
    assert config.mobile_node(HOA) is router
    assert router.mobile_network_prefixes == (IPv6Network("3ffe:501:ffff:200::/64"),)
    assert (router.ipsec.keying, laptop.ipsec.keying) == (Keying.MANUAL, Keying.IKE)
    assert laptop.ipsec.protect == DEFAULT_PROTECT  # from the [ipsec] defaults
    assert (router.ipsec.reqid_base, laptop.ipsec.reqid_base) == (100, 108)
    assert not config.grants_key_management_mobility(router)  # manual keys: never K
    assert config.grants_key_management_mobility(laptop)
    # The mobile node's keys were copied as they are: the same SAs on both sides.
    assert router.ipsec.keys == load_mn(EXAMPLES / "mn.toml").ipsec.keys
    with pytest.raises(KeyError):
        config.mobile_node("3ffe:501:ffff:100::99")


def test_load_takes_either_role_and_load_mn_load_ha_insist() -> None:
    assert isinstance(load(EXAMPLES / "mn.toml"), MNConfig)
    assert isinstance(load(EXAMPLES / "ha.toml"), HAConfig)
    with pytest.raises(ConfigError) as caught:
        load_mn(EXAMPLES / "ha.toml")
    assert caught.value.path == "role"
    assert str(caught.value) == f'{EXAMPLES / "ha.toml"}: role: expected "mn" here, found "ha"'
    with pytest.raises(ConfigError):
        load(EXAMPLES / "mn.toml", role=Role.HA)


def test_a_minimal_mobile_node_takes_the_documented_defaults() -> None:
    config = parse(render(MINIMAL_MN))
    assert isinstance(config, MNConfig)
    assert config.backend == BackendChoice()
    assert (config.home_prefix_length, config.lifetime, config.mobile_network_prefixes) == (64, 600, ())
    assert config.key_management_mobility  # IKE: K by default
    ipsec = config.ipsec
    assert (ipsec.protect, ipsec.encryption, ipsec.authentication) == (DEFAULT_PROTECT, "cbc(aes)", "hmac(sha256)")
    assert (ipsec.reqid_base, ipsec.shared_reqids, dict(ipsec.keys)) == (100, False, {})


def test_reqids_a_pair_per_protection_or_one_when_shared() -> None:
    config = parse(render(changed(MINIMAL_MN, "ipsec.reqid_base", 40)))
    assert isinstance(config, MNConfig)
    reqids = {(p, t): config.ipsec.reqid(p, t) for p in Protection for t in Toward}
    assert reqids == {
        (Protection.BU_BA, Toward.HA): 40,
        (Protection.BU_BA, Toward.MN): 41,
        (Protection.MPS_MPA, Toward.HA): 42,
        (Protection.MPS_MPA, Toward.MN): 43,
        (Protection.HOTI_HOT, Toward.HA): 44,
        (Protection.HOTI_HOT, Toward.MN): 45,
        (Protection.PAYLOAD, Toward.HA): 46,
        (Protection.PAYLOAD, Toward.MN): 47,
    }
    shared = parse(render(changed(MINIMAL_MN, "ipsec", {"keying": "ike", "shared_reqids": True})))
    assert isinstance(shared, MNConfig)
    assert [shared.ipsec.reqid(p, t) for p in Protection for t in Toward] == [100, 100, 102, 102, 104, 104, 106, 106]


def test_home_agent_reqids_are_derived_from_the_position_unless_given() -> None:
    document = changed(MINIMAL_HA, "ipsec.reqid_base", 1000)
    document["mobile_nodes"].append({"home_address": "3ffe:501:ffff:100::c", "ipsec": {"reqid_base": 50}})
    config = parse(render(document))
    assert isinstance(config, HAConfig)
    assert [node.ipsec.reqid_base for node in config.mobile_nodes] == [1000, 1008, 50]


def test_a_node_overrides_the_home_agent_defaults_key_by_key() -> None:
    document = changed(MINIMAL_HA, "ipsec", {"keying": "ike", "protect": ["bu-ba"], "encryption": "cbc(des3_ede)"})
    document["mobile_nodes"][1]["ipsec"] = {"protect": ["bu-ba", "payload"]}
    config = parse(render(document))
    assert isinstance(config, HAConfig)
    first, second = config.mobile_nodes
    assert first.ipsec.protect == (Protection.BU_BA,)
    assert second.ipsec.protect == (Protection.BU_BA, Protection.PAYLOAD)
    assert first.ipsec.encryption == second.ipsec.encryption == "cbc(des3_ede)"


def test_null_encryption_takes_no_key() -> None:
    document = changed(MN_EXAMPLE, "ipsec.encryption", "ecb(cipher_null)")
    for protection in document["ipsec"]["sa"].values():
        for sa in protection.values():
            del sa["encryption_key"]
    config = parse(render(document))
    assert isinstance(config, MNConfig)
    assert all(keys.encryption_key == b"" for keys in config.ipsec.keys.values())


# --- mistakes ---------------------------------------------------------------------------------

MN_MISTAKES = [
    (without(MN_EXAMPLE, "role"), "role", 'expected the role: "mn", "ha", found nothing'),
    (changed(MN_EXAMPLE, "role", "router"), "role", "found 'router'"),
    (changed(MN_EXAMPLE, "role", 1), "role", "found 1"),
    (changed(MN_EXAMPLE, "backend.name", "bsd"), "backend.name", "expected one of keyd, linux-pfkey"),
    (changed(MN_EXAMPLE, "backend.name", "linux-xfrm"), "backend.keyd_socket", 'only for name = "keyd"'),
    (changed(MN_EXAMPLE, "backend.keyd_socket", ""), "backend.keyd_socket", "found an empty string"),
    (changed(MN_EXAMPLE, "backend.sockett", "/x"), "backend.sockett", "unknown key: expected one of name, keyd_socket"),
    (changed(MN_EXAMPLE, "backend", "keyd"), "backend", "expected a table, found 'keyd'"),
    (changed(MN_EXAMPLE, "ipsex", {}), "ipsex", "unknown key"),
    (changed(MN_EXAMPLE, "odd key", 1), '"odd key"', "unknown key"),
    (without(MN_EXAMPLE, "mobile_node"), "mobile_node", "expected a table, found nothing"),
    (changed(MN_EXAMPLE, "mobile_node.home_address", "home"), "mobile_node.home_address", "expected an IPv6 address"),
    (changed(MN_EXAMPLE, "mobile_node.home_address", "192.0.2.1"), "mobile_node.home_address", "found an IPv4 address"),
    (changed(MN_EXAMPLE, "mobile_node.home_address", "ff02::1"), "mobile_node.home_address", "a unicast address"),
    (changed(MN_EXAMPLE, "mobile_node.home_address", ["::1"]), "mobile_node.home_address", "found an array"),
    (without(MN_EXAMPLE, "mobile_node.home_agent"), "mobile_node.home_agent", "the key is missing"),
    (changed(MN_EXAMPLE, "mobile_node.home_agent", "3ffe:501:ffff:101::1"), "mobile_node.home_agent", "home prefix"),
    (changed(MN_EXAMPLE, "mobile_node.home_agent", HOA), "mobile_node.home_agent", "found the home address"),
    (changed(MN_EXAMPLE, "mobile_node.home_prefix_length", 0), "mobile_node.home_prefix_length", "from 1 to 127"),
    (changed(MN_EXAMPLE, "mobile_node.home_prefix_length", "64"), "mobile_node.home_prefix_length", "found '64'"),
    (changed(MN_EXAMPLE, "mobile_node.home_prefix_length", True), "mobile_node.home_prefix_length", "found true"),
    (without(MN_EXAMPLE, "mobile_node.interface"), "mobile_node.interface", "expected an interface name"),
    (changed(MN_EXAMPLE, "mobile_node.interface", "wlan0/1"), "mobile_node.interface", "Linux interface name"),
    (changed(MN_EXAMPLE, "mobile_node.interface", "x" * 16), "mobile_node.interface", "1 to 15 bytes"),
    (changed(MN_EXAMPLE, "mobile_node.interface", "wl\u0000an0"), "mobile_node.interface", "control characters"),
    (
        changed(MN_EXAMPLE, "mobile_node.home_address", "3ffe:501:ffff:100:1:2:3:4%eth0"),
        "mobile_node.home_address",
        "without a zone",
    ),
    (changed(MN_EXAMPLE, "mobile_node.lifetime", 601), "mobile_node.lifetime", "a multiple of 4 seconds"),
    (changed(MN_EXAMPLE, "mobile_node.lifetime", 0), "mobile_node.lifetime", "from 4 to 262140"),
    (changed(MN_EXAMPLE, "mobile_node.lifetime", 262144), "mobile_node.lifetime", "from 4 to 262140"),
    (changed(MN_EXAMPLE, "mobile_node.lifetime", 1.5), "mobile_node.lifetime", "found 1.5"),
    (
        changed(MN_EXAMPLE, "mobile_node.key_management_mobility", "yes"),
        "mobile_node.key_management_mobility",
        "true or false",
    ),
    (changed(MN_EXAMPLE, "mobile_node.key_management_mobility", True), "mobile_node.key_management_mobility", "K bit"),
    (changed(MN_EXAMPLE, "mobile_node.keep_trying", "always"), "mobile_node.keep_trying", "true or false"),
    (
        changed(MN_EXAMPLE, "mobile_node.mobile_network_prefixes", "3ffe::/16"),
        "mobile_node.mobile_network_prefixes",
        "an array",
    ),
    (
        changed(MN_EXAMPLE, "mobile_node.mobile_network_prefixes", ["3ffe:501:ffff:200::1/64"]),
        "mobile_node.mobile_network_prefixes[0]",
        "without host bits",
    ),
    (
        changed(MN_EXAMPLE, "mobile_node.mobile_network_prefixes", ["3ffe:501:ffff::/48"]),
        "mobile_node.mobile_network_prefixes[0]",
        "overlaps the home prefix",
    ),
    (
        changed(MN_EXAMPLE, "mobile_node.mobile_network_prefixes", ["::/0"]),
        "mobile_node.mobile_network_prefixes[0]",
        "::/0",
    ),
    (
        changed(
            MN_EXAMPLE, "mobile_node.mobile_network_prefixes", ["3ffe:501:ffff:200::/64", "3ffe:501:ffff:200::/56"]
        ),
        "mobile_node.mobile_network_prefixes[1]",
        "overlaps 3ffe:501:ffff:200::/64 (mobile_node.mobile_network_prefixes[0])",
    ),
    (
        changed(MN_EXAMPLE, "mobile_node.mobile_network_prefixes", [5]),
        "mobile_node.mobile_network_prefixes[0]",
        "found 5",
    ),
    (changed(MN_EXAMPLE, "mobile_node.home", 1), "mobile_node.home", "unknown key"),
    (without(MN_EXAMPLE, "ipsec.keying"), "ipsec.keying", 'expected the keying: "manual", "ike", found nothing'),
    (changed(MN_EXAMPLE, "ipsec.keying", "psk"), "ipsec.keying", "found 'psk'"),
    (changed(MN_EXAMPLE, "ipsec.protect", ["bu-ba", "ro"]), "ipsec.protect[1]", 'expected one of "bu-ba", "mps-mpa"'),
    (changed(MN_EXAMPLE, "ipsec.protect", ["bu-ba", "bu-ba"]), "ipsec.protect[1]", "given twice"),
    (changed(MN_EXAMPLE, "ipsec.protect", ["payload"]), "ipsec.protect", "MUST be used"),
    (changed(MN_EXAMPLE, "ipsec.protect", "bu-ba"), "ipsec.protect", "expected an array of protection names"),
    (changed(MN_EXAMPLE, "ipsec.encryption", "aes"), "ipsec.encryption", "expected one of ecb(cipher_null), cbc(des)"),
    (changed(MN_EXAMPLE, "ipsec.encryption", ""), "ipsec.encryption", "found ''"),
    (changed(MN_EXAMPLE, "ipsec.authentication", "digest_null"), "ipsec.authentication", "non-null"),
    (changed(MN_EXAMPLE, "ipsec.reqid_base", 0), "ipsec.reqid_base", "from 1 to 16376"),
    (changed(MN_EXAMPLE, "ipsec.reqid_base", 16377), "ipsec.reqid_base", "from 1 to 16376"),
    (changed(MN_EXAMPLE, "ipsec.shared_reqids", "no"), "ipsec.shared_reqids", "true or false"),
    (changed(MN_EXAMPLE, "ipsec.keying", "ike"), "ipsec.sa", "the key manager makes them"),
    (without(MN_EXAMPLE, "ipsec.sa"), "ipsec.sa", "SPI and keys of every SA"),
    (
        changed(MN_EXAMPLE, "ipsec.protect", ["bu-ba", "mps-mpa", "hoti-hot"]),
        "ipsec.sa.payload",
        "protect does not list",
    ),
    (changed(MN_EXAMPLE, "ipsec.sa.ro", {}), "ipsec.sa.ro", "unknown key: expected one of bu-ba"),
    (without(MN_EXAMPLE, "ipsec.sa.hoti-hot"), "ipsec.sa.hoti-hot", "expected a table, found nothing"),
    (without(MN_EXAMPLE, "ipsec.sa.bu-ba.to-mn"), "ipsec.sa.bu-ba.to-mn", "expected a table, found nothing"),
    (changed(MN_EXAMPLE, "ipsec.sa.bu-ba.to-cn", {}), "ipsec.sa.bu-ba.to-cn", "expected one of to-ha, to-mn"),
    (changed(MN_EXAMPLE, "ipsec.sa.bu-ba.to-ha.spi", 255), "ipsec.sa.bu-ba.to-ha.spi", "from 256 to 4294967295"),
    (changed(MN_EXAMPLE, "ipsec.sa.bu-ba.to-ha.spi", 1 << 32), "ipsec.sa.bu-ba.to-ha.spi", "found 4294967296"),
    (
        changed(MN_EXAMPLE, "ipsec.sa.payload.to-mn.spi", 0x2001),
        "ipsec.sa.payload.to-mn.spi",
        "ipsec.sa.bu-ba.to-mn.spi",
    ),
    (without(MN_EXAMPLE, "ipsec.sa.bu-ba.to-ha.spi"), "ipsec.sa.bu-ba.to-ha.spi", "the key is missing"),
    (
        changed(MN_EXAMPLE, "ipsec.sa.bu-ba.to-ha.encryption_key", "00" * 15),
        "ipsec.sa.bu-ba.to-ha.encryption_key",
        "expected a 128-, 192- or 256-bit key for cbc(aes), found 120 bits",
    ),
    (
        changed(MN_EXAMPLE, "ipsec.sa.bu-ba.to-ha.encryption_key", "0xabc"),
        "ipsec.sa.bu-ba.to-ha.encryption_key",
        "an even number of hex digits",
    ),
    (
        changed(MN_EXAMPLE, "ipsec.sa.bu-ba.to-ha.encryption_key", "secret key here!"),
        "ipsec.sa.bu-ba.to-ha.encryption_key",
        "in hexadecimal",
    ),
    (
        changed(MN_EXAMPLE, "ipsec.sa.mps-mpa.to-mn.authentication_key", "0x" + "11" * 20),
        "ipsec.sa.mps-mpa.to-mn.authentication_key",
        "expected a 256-bit key for hmac(sha256), found 160 bits",
    ),
    (
        without(MN_EXAMPLE, "ipsec.sa.mps-mpa.to-mn.authentication_key"),
        "ipsec.sa.mps-mpa.to-mn.authentication_key",
        "the key is missing",
    ),
    (changed(MN_EXAMPLE, "ipsec.sa.bu-ba.to-ha.spii", 1), "ipsec.sa.bu-ba.to-ha.spii", "unknown key"),
    (
        changed(MN_EXAMPLE, "ipsec.encryption", "ecb(cipher_null)"),
        "ipsec.sa.bu-ba.to-ha.encryption_key",
        "expected no key: ecb(cipher_null) takes none",
    ),
    (
        changed(MN_EXAMPLE, "ipsec.encryption", "rfc3686(ctr(aes))"),
        "ipsec.sa.bu-ba.to-ha.encryption_key",
        "a 160-, 224- or 288-bit key",
    ),
]


@pytest.mark.parametrize(("document", "path", "message"), MN_MISTAKES, ids=[m[1] for m in MN_MISTAKES])
def test_each_mobile_node_mistake_names_its_key(document: dict[str, Any], path: str, message: str) -> None:
    error = refused(document)
    assert (error.source, error.path, error.line) == ("site.toml", path, None)
    assert message in error.message
    assert str(error) == f"site.toml: {path}: {error.message}"


def _node(i: int) -> dict[str, Any]:
    return {"home_address": f"3ffe:501:ffff:100::{i:x}"}


HA_MISTAKES = [
    (without(HA_EXAMPLE, "home_agent"), "home_agent", "expected a table"),
    (without(HA_EXAMPLE, "home_agent.address"), "home_agent.address", "the key is missing"),
    (changed(HA_EXAMPLE, "home_agent.prefix_length", 128), "home_agent.prefix_length", "from 1 to 127"),
    (changed(HA_EXAMPLE, "home_agent.max_lifetime", 5), "home_agent.max_lifetime", "a multiple of 4"),
    (
        changed(HA_EXAMPLE, "home_agent.allow_key_management_mobility", 1),
        "home_agent.allow_key_management_mobility",
        "true or false",
    ),
    (changed(HA_EXAMPLE, "home_agent.interface", "eth0"), "home_agent.interface", "unknown key"),
    (without(HA_EXAMPLE, "mobile_nodes"), "mobile_nodes", "at least one [[mobile_nodes]]"),
    (changed(HA_EXAMPLE, "mobile_nodes", 5), "mobile_nodes", "expected an array of tables ([[mobile_nodes]]), found 5"),
    (changed(HA_EXAMPLE, "mobile_nodes", ["a"]), "mobile_nodes", "an array of tables"),
    (
        changed(HA_EXAMPLE, "mobile_nodes.1.home_address", "3ffe:501:fffe::1"),
        "mobile_nodes[1].home_address",
        "on the home prefix 3ffe:501:ffff:100::/64",
    ),
    (changed(HA_EXAMPLE, "mobile_nodes.1.home_address", HOA), "mobile_nodes[1].home_address", "mobile_nodes[0]'s"),
    (changed(HA_EXAMPLE, "mobile_nodes.1.home_address", HA), "mobile_nodes[1].home_address", "the home agent's"),
    (changed(HA_EXAMPLE, "mobile_nodes.1.name", "bob"), "mobile_nodes[1].name", "unknown key"),
    (
        changed(HA_EXAMPLE, "mobile_nodes.1.mobile_network_prefixes", ["3ffe:501:ffff:200::/60"]),
        "mobile_nodes[1].mobile_network_prefixes[0]",
        "overlaps 3ffe:501:ffff:200::/64 (mobile_nodes[0].mobile_network_prefixes[0])",
    ),
    (changed(HA_EXAMPLE, "ipsec.sa", {}), "ipsec.sa", "SAs belong to one mobile node"),
    (changed(HA_EXAMPLE, "ipsec.protect", ["bu-ba", "x"]), "ipsec.protect[1]", "expected one of"),
    (changed(HA_EXAMPLE, "ipsec.keying", "psk"), "ipsec.keying", "found 'psk'"),
    (changed(HA_EXAMPLE, "ipsec.encryption", "des"), "ipsec.encryption", "expected one of"),
    (changed(HA_EXAMPLE, "ipsec.reqid_base", 16377), "ipsec.reqid_base", "from 1 to 16376"),
    (without(HA_EXAMPLE, "ipsec.keying"), "mobile_nodes[1].ipsec.keying", "found nothing"),
    (
        changed(HA_EXAMPLE, "mobile_nodes.1.ipsec", {"reqid_base": 104}),
        "mobile_nodes[1].ipsec.reqid_base",
        "reqids 104-111 overlap mobile_nodes[0]'s 100-107",
    ),
    (
        changed(HA_EXAMPLE, "ipsec.reqid_base", 16376),
        "mobile_nodes[1].ipsec.reqid_base",
        "the derived reqids 16384-16391 pass 16383",
    ),
    (
        changed(
            HA_EXAMPLE,
            "mobile_nodes.1",
            {**_node(0xBEEF), "ipsec": {**HA_EXAMPLE["mobile_nodes"][0]["ipsec"], "reqid_base": 200}},
        ),
        "mobile_nodes[1].ipsec.sa.bu-ba.to-ha.spi",
        "already mobile_nodes[0].ipsec.sa.bu-ba.to-ha.spi's SPI (both SAs end at the home agent)",
    ),
    (changed(HA_EXAMPLE, "mobile_nodes.1.ipsec", {"sa": {}}), "mobile_nodes[1].ipsec.sa", "the key manager makes them"),
    (
        changed(HA_EXAMPLE, "mobile_nodes.0.ipsec.sa.bu-ba.to-mn.spi", 2),
        "mobile_nodes[0].ipsec.sa.bu-ba.to-mn.spi",
        "from 256",
    ),
]


@pytest.mark.parametrize(("document", "path", "message"), HA_MISTAKES, ids=[m[1] for m in HA_MISTAKES])
def test_each_home_agent_mistake_names_its_key(document: dict[str, Any], path: str, message: str) -> None:
    error = refused(document)
    assert (error.path, error.line) == (path, None)
    assert message in error.message


def test_the_same_spi_toward_different_mobile_nodes_is_allowed() -> None:
    document = copy.deepcopy(HA_EXAMPLE)
    second = copy.deepcopy(document["mobile_nodes"][0])
    second.update(home_address="3ffe:501:ffff:100::beef", mobile_network_prefixes=[])
    second["ipsec"]["reqid_base"] = 200
    for protection in second["ipsec"]["sa"].values():
        protection["to-ha"]["spi"] += 0x100  # the SAs to the home agent need their own SPIs
    document["mobile_nodes"][1] = second
    config = parse(render(document))
    assert isinstance(config, HAConfig)
    first, other = config.mobile_nodes
    assert first.ipsec.keys[Protection.BU_BA, Toward.MN].spi == other.ipsec.keys[Protection.BU_BA, Toward.MN].spi


def test_a_toml_syntax_error_gives_line_and_column() -> None:
    error = refused('role = "mn"\n[mobile_node]\nhome_address = \n')
    assert (error.source, error.path, error.line, error.column) == ("site.toml", "", 3, 16)
    assert error.message.startswith("invalid TOML: ")
    assert "(at line" not in error.message
    assert str(error).startswith("site.toml:3:16: invalid TOML: ")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("role = " + "9" * 5000 + "\n", "invalid TOML: Exceeds the limit"),
        ("role = " + "[" * 5000 + "]" * 5000 + "\n", "invalid TOML: arrays or tables nested too deeply"),
    ],
    ids=["huge-integer", "deep-arrays"],
)
def test_toml_python_cannot_hold_is_a_config_error(text: str, said: str) -> None:
    """What the TOML reader refuses beyond syntax (Python's limits) is named as well."""
    error = refused(text)
    assert (error.source, error.path) == ("site.toml", "")
    assert error.message.startswith(said)


def test_a_file_that_cannot_be_read_or_is_not_text(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "absent.toml")
    assert caught.value.source == str(tmp_path / "absent.toml")
    assert "cannot be read" in caught.value.message
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'role = "mn"\n\xff\n')
    with pytest.raises(ConfigError) as caught:
        load(binary)
    assert caught.value.message == "is not UTF-8 text (byte 12)"


def _paths(document: Any, prefix: str = "") -> list[str]:
    if isinstance(document, dict):
        items = list(document.items())
    elif isinstance(document, list):
        items = [(str(i), v) for i, v in enumerate(document)]
    else:
        return []
    found = []
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else key
        found.append(path)
        found.extend(_paths(value, path))
    return found


TOML_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 63) - 1)
    | st.text(max_size=20)
    | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["keying", "spi", "a"]), inner, max_size=3)
    ),
    max_leaves=5,
)


@settings(max_examples=300)
@given(st.sampled_from([MN_EXAMPLE, HA_EXAMPLE, MINIMAL_MN, MINIMAL_HA]), st.data())
def test_any_change_to_a_document_reads_or_is_one_config_error(base: dict[str, Any], data: st.DataObject) -> None:
    """Whatever a key becomes (or if it goes), the reader answers a config or a ConfigError."""
    path = data.draw(st.sampled_from(_paths(base)))
    value = data.draw(TOML_VALUES)
    document = without(base, path) if value is None else changed(base, path, _no_none(value))
    outcome: ConfigError | None = None
    try:
        parse(render(document), "fuzz.toml")
    except ConfigError as error:
        outcome = error
    if outcome is not None:
        assert outcome.source == "fuzz.toml"
        assert outcome.message


def _no_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_no_none(v) for v in value if v is not None]
    if isinstance(value, dict):
        return {k: _no_none(v) for k, v in value.items() if v is not None}
    return value


@pytest.fixture
def agent_logger() -> Iterator[None]:
    """The commands send the agents' logger to standard error; put it back after."""
    logger = logging.getLogger("pfmigrate.mobility")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.mark.parametrize(
    ("role", "text", "message"),
    [
        ("mn", None, "cannot be read: No such file or directory"),
        ("mn", 'role = "mn"\n[mobile_node]\nhome_address = "zz"\n',
         "mobile_node.home_address: expected an IPv6 address, found 'zz'"),
        ("ha", 'role = "mn"\n', 'role: expected "ha" here, found "mn"'),
    ],
)  # fmt: skip
@pytest.mark.usefixtures("agent_logger")
def test_the_agents_commands_refuse_a_bad_configuration_with_its_place(
    role: str, text: str | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.toml"
    if text is not None:
        path.write_text(text)
    assert main([role, "--config", str(path)]) == 1
    assert capsys.readouterr().err.strip() == f"pfmigrate: {path}: {message}"
