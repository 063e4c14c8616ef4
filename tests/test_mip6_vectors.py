"""Mobility Header vectors (``tests/vectors/mip6_vectors.json``): bytes built by scapy for
the seed's scenario, beside what they mean. Each decodes, with its checksum checked, to
the message written out by hand below, encodes back to the same bytes, and has the JSON
form recorded with it."""

from __future__ import annotations

import json
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from pfmigrate.mip6 import (
    AlternateCareOfAddress,
    BAFlags,
    BAStatus,
    BEStatus,
    BindingAck,
    BindingError,
    BindingRefreshAdvice,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlags,
    HomeTest,
    HomeTestInit,
    Message,
    MobileNetworkPrefix,
    checksum_ok,
    decode,
    encode,
)
from pfmigrate.mip6.jsonform import from_json, to_json
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA

VECTORS: list[dict[str, Any]] = json.loads((Path(__file__).parent / "vectors" / "mip6_vectors.json").read_text())
COOKIE = bytes.fromhex("0102030405060708")
HOME_REGISTRATION = BUFlags.A | BUFlags.H | BUFlags.K

# What each vector means, written by hand from its description, independently of the decoder.
MEANINGS: dict[str, tuple[str, str, Message]] = {
    "bu_home_registration": (
        HOME_ADDRESS, HOME_AGENT,
        BindingUpdate(1, HOME_REGISTRATION, 100, (AlternateCareOfAddress(IPv6Address(OLD_COA)),)),
    ),
    "ba_home_registration_accepted": (
        HOME_AGENT, HOME_ADDRESS, BindingAck(BAStatus.ACCEPTED, BAFlags.K, 1, 100, (BindingRefreshAdvice(75),)),
    ),
    "bu_after_move": (
        HOME_ADDRESS, HOME_AGENT,
        BindingUpdate(2, HOME_REGISTRATION, 100, (AlternateCareOfAddress(IPv6Address(NEW_COA)),)),
    ),
    "ba_sequence_out_of_window": (
        HOME_AGENT, HOME_ADDRESS, BindingAck(BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, BAFlags(0), 2, 0),
    ),
    "be_unrecognized_mh_type": (
        HOME_AGENT, HOME_ADDRESS, BindingError(IPv6Address(HOME_ADDRESS), BEStatus.UNRECOGNIZED_MH_TYPE),
    ),
    "brr": (HOME_AGENT, HOME_ADDRESS, BindingRefreshRequest()),
    "bu_mobile_router": (
        HOME_ADDRESS, HOME_AGENT,
        BindingUpdate(
            7, HOME_REGISTRATION | BUFlags.R, 150,
            (AlternateCareOfAddress(IPv6Address(OLD_COA)), MobileNetworkPrefix.of("3ffe:501:ffff:600::/64")),
        ),
    ),
    "hoti": (HOME_ADDRESS, "3ffe:501:ffff:200::5", HomeTestInit(COOKIE)),
    "hot": ("3ffe:501:ffff:200::5", HOME_ADDRESS, HomeTest(3, COOKIE, bytes.fromhex("a1a2a3a4a5a6a7a8"))),
}  # fmt: skip


def test_every_vector_has_a_meaning() -> None:
    assert sorted(v["name"] for v in VECTORS) == sorted(MEANINGS)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: str(v["name"]))
def test_vector_decodes_to_its_meaning_and_back(vector: dict[str, Any]) -> None:
    src, dst, meaning = MEANINGS[vector["name"]]
    assert (vector["src"], vector["dst"]) == (src, dst)
    wire = bytes.fromhex(vector["hex"])
    assert checksum_ok(wire, src, dst)
    assert vector["checksum"] == f"0x{wire[4]:02x}{wire[5]:02x}"
    assert decode(wire, src, dst) == meaning
    assert encode(meaning, src, dst) == wire
    assert to_json(meaning) == vector["json"]
    assert from_json(vector["json"]) == meaning


def test_the_seeds_binding_updates_differ_only_in_what_moved() -> None:
    """The Binding Update after the move carries the new care-of address and the next
    sequence number; everything else, checksum aside, is as before."""
    before, after = (bytes.fromhex(v["hex"]) for v in VECTORS if v["name"] in ("bu_home_registration", "bu_after_move"))
    differing = [i for i in range(len(before)) if before[i] != after[i]]
    assert differing == [4, 5, 7, 22]  # the checksum, the sequence number's low octet, the CoA's 7th octet
