"""One JSON vocabulary (docs/json.md): the seed's policy, SA and MIGRATE through
``pfkey decode --json``, ``setkey --json``, ``monitor --json`` and the agents' JSON logs,
each thing spelled the same way in all four."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pfmigrate.cli import main
from pfmigrate.jsonlogs import JsonFormatter
from pfmigrate.model import Dir, Mode
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA, seed_migrate
from tests.keyd_harness import keyd_thread

VECTORS = {v["name"]: v for v in json.loads((Path(__file__).parent / "vectors" / "pfkey_linux.json").read_text())}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ESP = {"name": "ESP", "value": 50}
TUNNEL = {"name": "TUNNEL", "value": 2}
OUTBOUND = {"name": "OUTBOUND", "value": 2}
ENOENT = {"name": "ENOENT", "value": 2}
KEY = "0x" + "11" * 16
SCRIPT = f"""
add {OLD_COA} {HOME_AGENT} esp 0x1000 -m tunnel -u 7 -E aes-cbc {KEY} -A hmac-sha1 0x{"22" * 20};
spdadd {HOME_ADDRESS}/128 {HOME_AGENT}/128 135 -P out ipsec esp/tunnel/{OLD_COA}-{HOME_AGENT}/require;
get {OLD_COA} {HOME_AGENT} esp 0x1000;
spddump;
migrate {HOME_ADDRESS}/128 {HOME_AGENT}/128 135 -P out ipsec
    esp/tunnel/{OLD_COA}-{HOME_AGENT}/require esp/tunnel/{NEW_COA}-{HOME_AGENT}/require;
"""


def decode_json(capsys: pytest.CaptureFixture[str], hexes: str) -> list[dict[str, Any]]:
    assert main(["pfkey", "decode", "--json", hexes]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def log_line(**fields: Any) -> dict[str, Any]:
    record = logging.LogRecord("pfmigrate.mobility", logging.INFO, "", 0, fields["event"], (), None)
    record.__dict__.update(fields)
    parsed: dict[str, Any] = json.loads(JsonFormatter().format(record))
    return parsed


def run_setkey_and_monitor(directory: Path) -> tuple[list[Any], dict[str, Any]]:
    """The script through ``setkey --json`` on a keyd, watched by ``monitor --json``."""
    socket = str(directory / "keyd.sock")
    with keyd_thread(directory):
        monitor = subprocess.Popen(
            [sys.executable, "-m", "pfmigrate", "monitor", "--backend", "keyd", "--keyd-socket", socket,
             "--json", "--count", "1", "--timeout", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert monitor.stderr is not None
        assert "listening on" in monitor.stderr.readline()
        setkey = subprocess.run(
            [sys.executable, "-m", "pfmigrate", "setkey", "--backend", "keyd", "--keyd-socket", socket,
             "--json", "-k", "-c"],
            input=SCRIPT, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        out, _ = monitor.communicate(timeout=30)
    assert setkey.returncode == 0, setkey.stderr
    return [json.loads(line) for line in setkey.stdout.splitlines()], json.loads(out)


def test_the_same_things_are_spelled_the_same_way(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    [decoded] = decode_json(capsys, seed_migrate().encode().hex())
    (sa, [policy]), event = run_setkey_and_monitor(tmp_path)
    logged = log_line(event="migrate-failed", errno=2, mode=Mode.TUNNEL, dir=Dir.OUT)
    [policy_ext] = [e for e in decoded["extensions"] if e["ext"]["name"] == "X_POLICY"]
    old, new = policy_ext["requests"]
    request = event["request"]
    [bundle] = request["bundles"]

    # dir, mode and proto: the same objects in every output
    assert policy_ext["dir"] == policy["dir"] == request["dir"] == logged["dir"] == OUTBOUND
    assert old["mode"] == policy["templates"][0]["mode"] == bundle["mode"] == sa["mode"] == logged["mode"] == TUNNEL
    assert old["proto"] == policy["templates"][0]["proto"] == bundle["proto"] == sa["proto"] == ESP
    assert old["level"] == policy["templates"][0]["level"] == {"name": "REQUIRE", "value": 2}
    assert policy_ext["type"] == policy["action"] == {"name": "IPSEC", "value": 2}
    # the selector's protocol: PF_KEY's address extension and the model's selector agree
    [src_ext] = [e for e in decoded["extensions"] if e["ext"]["name"] == "ADDRESS_SRC"]
    assert (
        src_ext["proto"] == policy["selector"]["proto"] == request["selector"]["proto"] == {"name": "MH", "value": 135}
    )
    # addresses as text, under the same names
    assert old["src"]["address"] == bundle["old_src"] == policy["templates"][0]["src"] == OLD_COA
    assert new["src"]["address"] == bundle["new_src"] == NEW_COA
    assert request["selector"]["src"] == policy["selector"]["src"] == f"{HOME_ADDRESS}/128"
    # spi and reqid: numbers; state and algorithms: PF_KEY's names and numbers
    assert (sa["spi"], sa["reqid"]) == (0x1000, 7)
    assert sa["state"] == {"name": "MATURE", "value": 1}
    assert sa["enc"] == {"name": "X_AESCBC", "value": 12, "alg_name": "cbc(aes)", "key_bits": 128}
    assert sa["auth"] == {"name": "SHA1HMAC", "value": 3, "alg_name": "hmac(sha1)", "key_bits": 160, "icv_bits": 96}
    # time: ISO 8601 UTC to the millisecond, in monitor events and log lines alike
    assert TIME.match(event["time"])
    assert TIME.match(logged["time"])
    assert event["event"] == "migrate"


def test_errnos_are_named_alike_in_decodes_and_logs(capsys: pytest.CaptureFixture[str]) -> None:
    [reply] = decode_json(capsys, VECTORS["migrate_error_enoent"]["hex"])
    assert reply["errno"] == log_line(event="migrate-failed", errno=2)["errno"] == ENOENT
    [ok] = decode_json(capsys, VECTORS["acquire"]["hex"])
    assert ok["errno"] == {"name": None, "value": 0}


@pytest.mark.parametrize(
    ("fields", "key", "expected"),
    [
        ({"event": "ba-sent", "status": 0}, "status", {"name": "ACCEPTED", "value": 0}),
        ({"event": "rejected", "status": 135}, "status", {"name": "SEQUENCE_NUMBER_OUT_OF_WINDOW", "value": 135}),
        ({"event": "be-received", "status": 2}, "status", {"name": "UNRECOGNIZED_MH_TYPE", "value": 2}),
        ({"event": "mh-unrecognised", "type": 5}, "type", {"name": "BINDING_UPDATE", "value": 5}),
        ({"event": "refused", "type": 24}, "type", {"name": "X_MIGRATE", "value": 24}),
        ({"event": "send-failed", "errno": 101}, "errno", {"name": "ENETUNREACH", "value": 101}),
        ({"event": "moved", "sequence": 3}, "sequence", 3),
        ({"event": "other", "status": 3}, "status", 3),  # (a status of no known kind stays a number)
    ],
)
def test_log_fields_take_the_vocabulary(fields: dict[str, Any], key: str, expected: object) -> None:
    assert log_line(**fields)[key] == expected


def test_a_log_line_is_still_one_json_object_with_time_level_and_message() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("pfmigrate.test-vocabulary")
    logger.addHandler(handler)
    try:
        logger.warning("engine-lost", extra={"event": "engine-lost", "errno": 111, "reason": "refused"})
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert TIME.match(line["time"])
    assert (line["level"], line["message"], line["reason"]) == ("warning", "engine-lost", "refused")
    assert line["errno"] == {"name": "ECONNREFUSED", "value": 111}
