"""The readable rendering and the JSON form of Mobility Header messages."""

from __future__ import annotations

import json
from ipaddress import IPv6Address
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from pfmigrate.mip6 import (
    AlternateCareOfAddress,
    BAFlags,
    BAStatus,
    BindingAck,
    BindingAuthorizationData,
    BindingRefreshAdvice,
    BindingUpdate,
    BUFlags,
    CareOfTest,
    Message,
    MHType,
    MobileNetworkPrefix,
    NonceIndices,
    OptType,
    UnknownMessage,
    UnknownOption,
)
from pfmigrate.mip6.jsonform import JSONFormError, from_json, to_json
from pfmigrate.mip6.render import render
from tests.mip6_strategies import messages

COA = IPv6Address("3ffe:501:ffff:500:1:2:3:4")
SOME = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_render_binding_update() -> None:
    bu = BindingUpdate(
        1,
        BUFlags.A | BUFlags.H | BUFlags.K | BUFlags(0x0001),
        100,
        (AlternateCareOfAddress(COA), NonceIndices(4, 5), BindingAuthorizationData(bytes(range(12)))),
    )
    assert render(bu).splitlines() == [
        "BINDING_UPDATE len=56 sequence=1 flags=A|H|K|0x1 lifetime=100 (400 s)",
        "  ALTERNATE_CARE_OF_ADDRESS address=3ffe:501:ffff:500:1:2:3:4",
        "  NONCE_INDICES home_nonce_index=4 care_of_nonce_index=5",
        "  BINDING_AUTHORIZATION_DATA authenticator=000102030405060708090a0b",
    ]


def test_render_acknowledgement_and_unknowns() -> None:
    ba = BindingAck(
        BAStatus(200), BAFlags.K | BAFlags.R, 9, 0, (BindingRefreshAdvice(75), UnknownOption(OptType(42), b""))
    )
    assert render(ba).splitlines() == [
        "BINDING_ACK len=24 status=200 flags=K|R sequence=9 lifetime=0 (0 s)",
        "  BINDING_REFRESH_ADVICE interval=75 (300 s)",
        '  option 42 data=""',
    ]
    assert render(UnknownMessage(MHType(12), b"\x01\x02")) == "MH type 12 len=8 data=0102"
    assert render(CareOfTest(1, bytes(8), b"\xff" * 8)) == (
        "CARE_OF_TEST len=24 nonce_index=1 cookie=0000000000000000 keygen_token=ffffffffffffffff"
    )
    prefix = BindingUpdate(options=(MobileNetworkPrefix.of("3ffe:501:ffff:600::1/64"),))
    assert render(prefix).splitlines()[1] == "  MOBILE_NETWORK_PREFIX 3ffe:501:ffff:600::1/64"


@SOME
@given(message=messages())
def test_json_form_round_trips(message: Message) -> None:
    form = to_json(message)
    assert from_json(json.loads(json.dumps(form))) == message
    assert form["length"] == len(message.encode(None, None))
    assert render(message).startswith(form["mh_type"]["name"] or f"MH type {message.mh_type}")


def test_json_form_accepts_what_a_person_writes() -> None:
    written = {
        "mh_type": "binding_update",
        "sequence": 3,
        "flags": ["A", "h", "K"],
        "lifetime": 10,
        "options": [{"type": 3, "address": "3ffe:501:ffff:500:1:2:3:4"}, {"type": "NONCE_INDICES"}],
    }
    assert from_json(written) == BindingUpdate(
        3, BUFlags.A | BUFlags.H | BUFlags.K, 10, (AlternateCareOfAddress(COA), NonceIndices())
    )


@pytest.mark.parametrize(
    ("raw", "path", "words"),
    [
        ([], "message", "an object with an 'mh_type'"),
        ({"mh_type": "NOPE"}, "message.mh_type", "unknown MHType 'NOPE'"),
        ({"mh_type": 5, "colour": 1}, "message", "no field(s) colour"),
        ({"mh_type": 5, "sequence": "1"}, "message.sequence", "expected an integer"),
        ({"mh_type": 5, "sequence": 70000}, "message", "does not fit in 16 bits"),
        ({"mh_type": 5, "flags": ["A", "Z"]}, "message.flags[1]", "'Z' is not one of"),
        ({"mh_type": 7, "home_address": "::1", "status": 2, "options": {}}, "message.options", "expected a list"),
        ({"mh_type": 7, "home_address": "10.0.0.1"}, "message.home_address", "10.0.0.1"),
        ({"mh_type": 1, "cookie": "zz"}, "message.cookie", "is not hex"),
        ({"mh_type": 5, "options": [{"address": "::1"}]}, "message.options[0]", "an object with a 'type'"),
        ({"mh_type": 5, "options": [{"type": 1}]}, "message.options[0]", "PADN is padding"),
        ({"mh_type": 40, "data": "00"}, "message", "do not make a message"),
    ],
)
def test_json_form_errors_name_the_path(raw: Any, path: str, words: str) -> None:
    with pytest.raises(JSONFormError) as caught:
        from_json(raw)
    assert caught.value.path == path
    assert words in caught.value.reason
