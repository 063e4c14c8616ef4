"""``pfmigrate pfkey|xfrm|mh decode``: streams of messages back to back, as text and JSON,
and a bad message named by its place in the stream."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from pfmigrate.cli import main

HERE = Path(__file__).parent / "vectors"
PFKEY = {v["name"]: v for v in json.loads((HERE / "pfkey_linux.json").read_text())}
XFRM = {v["name"]: v for v in json.loads((HERE / "xfrm_linux.json").read_text())}
MH = {v["name"]: v for v in json.loads((HERE / "mip6_vectors.json").read_text())}


def run(argv: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("sys.stdin", io.StringIO(stdin))
            status = main(argv)
    else:
        status = main(argv)
    got = capsys.readouterr()
    return status, got.out, got.err


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_pfkey_decode_reads_messages_back_to_back(capsys: pytest.CaptureFixture[str]) -> None:
    stream = PFKEY["acquire"]["hex"] + PFKEY["migrate_broadcast_kmaddress"]["hex"] + PFKEY["get_error_esrch"]["hex"]
    status, out, _ = run(["pfkey", "decode", "--json", stream], capsys)
    assert status == 0
    first, second, third = lines(out)
    assert first["type"]["name"] == "ACQUIRE"
    assert second["type"] == {"name": "X_MIGRATE", "value": 24}
    assert third["errno"] == {"name": "ESRCH", "value": 3}
    status, out, _ = run(["pfkey", "decode", stream], capsys)
    assert "# message 2, offset 120\nSADB_X_MIGRATE" in out
    assert "# message 3, offset 440\nSADB_GET" in out


def test_pfkey_decode_json_with_a_named_errno_encodes_back(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    wire = PFKEY["migrate_error_enoent"]["hex"]
    _, out, _ = run(["pfkey", "decode", "--json", wire], capsys)
    assert json.loads(out)["errno"] == {"name": "ENOENT", "value": 2}
    (tmp_path / "reply.json").write_text(out)
    assert run(["pfkey", "encode", str(tmp_path / "reply.json")], capsys) == (0, wire + "\n", "")


def test_xfrm_decode_reads_a_netlink_stream(capsys: pytest.CaptureFixture[str]) -> None:
    stream = XFRM["migrate_notification"]["hex"] + XFRM["migrate_error_enoent"]["hex"] + XFRM["dump_done"]["hex"]
    status, out, _ = run(["xfrm", "decode", "--json", stream], capsys)
    assert status == 0
    migrate, error, done = lines(out)
    assert migrate["type"] == {"name": "MIGRATE", "value": 33}
    assert migrate["fixed"]["sel"]["proto"] == {"name": "MH", "value": 135}
    entry = migrate["attrs"][2]["entries"][0]
    assert entry["proto"] == {"name": "ESP", "value": 50}
    assert entry["mode"] == {"name": "TUNNEL", "value": 1}  # (XFRM's own number)
    assert error["errno"] == {"name": "ENOENT", "value": 2}
    assert error["request"]["type"] == {"name": "MIGRATE", "value": 33}
    assert done["type"] == {"name": "DONE", "value": 3}
    _, text, _ = run(["xfrm", "decode", stream], capsys)
    assert "XFRM_MSG_MIGRATE flags=0 len=296" in text
    assert "error=ENOENT (No such file or directory) request=MIGRATE" in text


def test_xfrm_decode_names_algorithms_as_the_c_struct_does(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(["xfrm", "decode", "--json", XFRM["getsa_reply"]["hex"]], capsys)
    [reply] = lines(out)
    algorithms = [a for a in reply["attrs"] if "alg_name" in a]
    assert algorithms
    assert all("name" not in a for a in algorithms)


def test_mh_decode_checks_the_checksum_with_both_addresses(capsys: pytest.CaptureFixture[str]) -> None:
    bu, ba = MH["bu_home_registration"], MH["ba_home_registration_accepted"]
    stream = bu["hex"] + ba["hex"]
    status, out, _ = run(["mh", "decode", "--json", "--src", bu["src"], "--dst", bu["dst"], stream], capsys)
    assert status == 0
    first, second = lines(out)
    assert first["mh_type"] == {"name": "BINDING_UPDATE", "value": 5}
    assert first["checksum"] == {"value": int(bu["checksum"], 16), "checked": True}
    assert second["status"] == {"name": "ACCEPTED", "value": 0}
    _, text, _ = run(["mh", "decode", stream], capsys)
    assert f"checksum {bu['checksum']} (not checked: give --src and --dst)" in text
    assert "# message 2, offset 32\nBINDING_ACK" in text


def test_mh_decode_reads_stdin(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["mh", "decode", "-"], capsys, stdin=MH["brr"]["hex"] + "\n")
    assert status == 0
    assert out.startswith("BINDING_REFRESH_REQUEST len=8")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pfkey", "decode", PFKEY["acquire"]["hex"] + "0218"],
         "message 2 at offset 120: not a valid PF_KEY message: offset 0: a 2-byte message is shorter"),
        (["pfkey", "decode", PFKEY["acquire"]["hex"][:200]],
         "message 1 at offset 0: not a valid PF_KEY message: offset 4: sadb_msg_len says 120 bytes"),
        (["xfrm", "decode", XFRM["dump_done"]["hex"] + XFRM["acquire"]["hex"][:64]],
         "message 2 at offset 20: not a valid netlink message: offset 0: nlmsg_len 376 is below 16 or runs past"),
        (["xfrm", "decode", XFRM["dump_done"]["hex"] + "00"],
         "message 2 at offset 20: not a valid netlink message: offset 0: 1 bytes are too few for a netlink header"),
        (["mh", "decode", MH["brr"]["hex"] + MH["hoti"]["hex"][:20]],
         "message 2 at offset 8: not a valid Mobility Header: offset 1: Header Len 1 says 16 octets"),
        (["mh", "decode", "--src", "::1", "--dst", "::2", MH["brr"]["hex"]],
         "message 1 at offset 0: not a valid Mobility Header: offset 4: Checksum is"),
        (["mh", "decode", "--src", "::1", MH["brr"]["hex"]], "give --src and --dst, or neither"),
        (["pfkey", "decode", ""], "the input holds no PF_KEY message"),
    ],
)  # fmt: skip
def test_a_bad_message_is_named_by_its_place_in_the_stream(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(argv, capsys)
    assert (status, out) == (1, "")
    assert err.startswith("pfmigrate: ")
    assert message in err


def test_mh_decode_wants_ipv6_addresses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["mh", "decode", "--src", "10.0.0.1", "--dst", "::1", MH["brr"]["hex"]])
    assert "expected an IPv6 address, not '10.0.0.1'" in capsys.readouterr().err
