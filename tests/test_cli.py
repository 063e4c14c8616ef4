"""The ``pfmigrate`` command: pfkey decode/encode and the demo, run as a user would."""

from __future__ import annotations

import errno
import io
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from pfmigrate.backends import linux
from pfmigrate.cli import main
from pfmigrate.cli.monitor import describe
from pfmigrate.engine import Capabilities, KeyEngineError
from pfmigrate.keyd.server import Server
from pfmigrate.model import (
    AcquireEvent,
    Dir,
    EventsLost,
    ExpireEvent,
    KMAddress,
    MigrateBundle,
    MigrateEvent,
    MigrateRequest,
    Mode,
    SecurityAssociation,
    Selector,
)
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA, seed_migrate
from tests.keyd_harness import keyd_thread

SEED_HEX = seed_migrate().encode().hex()


def run(argv: list[str], stdin: str | bytes = "", monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    if monkeypatch is not None:
        raw = stdin.encode() if isinstance(stdin, str) else stdin
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"))
    return main(argv)


def test_decode_prints_readable_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pfkey", "decode", SEED_HEX]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SADB_X_MIGRATE satype=ESP len=320")
    assert "esp/tunnel/3ffe:501:ffff:500:1:2:3:4-3ffe:501:ffff:100::1/require" in out
    assert "X_KMADDRESS       local=3ffe:501:ffff:400:1:2:3:4 remote=3ffe:501:ffff:100::1" in out


def test_decode_accepts_spaced_hex_and_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spaced = " ".join(SEED_HEX[i : i + 8] for i in range(0, len(SEED_HEX), 8))
    assert run(["pfkey", "decode", "-"], spaced + "\n", monkeypatch) == 0
    assert "SADB_X_MIGRATE" in capsys.readouterr().out


def test_decode_json_then_encode_gives_the_same_hex(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["pfkey", "decode", "--json", SEED_HEX]) == 0
    document = capsys.readouterr().out
    parsed = json.loads(document)
    assert parsed["type"] == {"name": "X_MIGRATE", "value": 24}
    assert parsed["extensions"][2]["requests"][1]["src"]["address"] == "3ffe:501:ffff:400:1:2:3:4"
    assert run(["pfkey", "encode"], document, monkeypatch) == 0
    assert capsys.readouterr().out.strip() == SEED_HEX


def test_encode_accepts_names_written_by_hand(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    document = json.dumps(
        {
            "type": "X_SPDGET",
            "extensions": [{"ext": "X_POLICY", "type": "IPSEC", "dir": "outbound", "id": 7}],
        }
    )
    assert run(["pfkey", "encode"], document, monkeypatch) == 0
    assert capsys.readouterr().out.strip() == "0210000004000000000000000000000002001200020002000700000000000000"


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["pfkey", "decode", "0218"], "", "not a valid PF_KEY message: offset 0: a 2-byte message is shorter"),
        (["pfkey", "decode", "02zz"], "", "input is not hex at character 3 ('z')"),
        (["pfkey", "decode", "0x02 18", "zz"], "", "input is not hex at character 9 ('z')"),
        (["pfkey", "decode", "021"], "", "input has an odd number of hex digits (3)"),
        (["pfkey", "decode", "-", "02"], "", "- reads the message from stdin, and then it is the only argument"),
        (["pfkey", "decode", "0318000002000000" + "00" * 8], "", "offset 0: sadb_msg_version is 3, not 2"),
        (["pfkey", "encode"], "{", "stdin: not JSON: line 1 column 2"),
        (["pfkey", "encode"], '{"extensions": []}', "stdin: message: a message needs a 'type'"),
        (
            ["pfkey", "encode"],
            '{"type": 24, "extensions": [{"ext": "X_POLICY", "dir": "INBUND"}]}',
            "message.extensions[0].dir: unknown Direction 'INBUND'",
        ),
        (
            ["pfkey", "encode"],
            '{"type": 24, "extensions": [{"ext": "ADDRESS_SRC", "address": "::1", "prefixlen": 129}]}',
            "message.extensions[0]: AddressSrc: prefix length 129 is too long",
        ),
        (["pfkey", "encode", "/nonexistent.json"], "", "cannot read /nonexistent.json: No such file or directory"),
        (["pfkey", "encode"], b'\xff{"type": 1}', "stdin: not UTF-8 text (byte 0)"),
        (["pfkey", "encode"], "[" * 100_000 + "]" * 100_000, "stdin: not JSON this program reads: nested too deeply"),
        (["pfkey", "encode"], '{"type": 1, "seq": ' + "9" * 5000 + "}", "a number of more than 4300 digits"),
        (
            ["pfkey", "encode"],
            json.dumps({"type": 1, "extensions": [{"ext": 30, "data": "00" * 600_004}]}),
            "message: extension 0 (UnknownExtension) is longer than the 524280 bytes one extension may hold",
        ),
        (
            ["pfkey", "encode"],
            '{"type": 24, "extensions": [{"ext": "ADDRESS_SRC", "prefixlen": 128}]}',
            "message.extensions[0].address: missing: AddressSrc needs it",
        ),
        (
            ["pfkey", "encode"],
            '{"type": 24, "extensions": [{"ext": "ADDRESS_SRC", "address": "fe80::1%eth0"}]}',
            "message.extensions[0].address: write the zone of 'fe80::1%eth0' as scope_id",
        ),
        (
            ["pfkey", "encode"],
            '{"type": 24, "extensions": [{"ext": "ADDRESS_SRC", "address": {"address": 5}}]}',
            "message.extensions[0].address.address: expected an IP address as text, got 5",
        ),
        (["demo", "--json"], "", "--json shows the message on the wire: give --wire with it"),
        (["setkey", "-D", "--count", "3"], "", "--count and --timeout go with -x"),
        (["demo", "--svg", "/"], "", "--svg '/' is a directory, not a file"),
        (["demo", "--svg", "/nonexistent/x.svg"], "", "cannot write the SVG to /nonexistent/x.svg: no directory"),
    ],
)
def test_bad_input_says_what_and_where(
    argv: list[str], stdin: str, message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(argv, stdin, monkeypatch) == 1
    err = capsys.readouterr().err
    assert err.startswith("pfmigrate: ")
    assert message in err


def test_demo_shows_the_seed_message_on_the_wire_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--wire"]) == 0
    out = capsys.readouterr().out
    assert "Encoded (320 bytes" in out
    assert "Round trip: identical" in out


def test_console_script_and_module_entry_points() -> None:
    script = Path(sys.executable).parent / "pfmigrate"  # installed beside this Python
    for argv in ([str(script), "--version"], [sys.executable, "-m", "pfmigrate", "--version"]):
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        assert done.stdout.startswith("pfmigrate ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["keyd", "--socket-mode", "rw"], "argument --socket-mode: expected an octal file mode like 0660, not 'rw'"),
        (["keyd", "--outbox", "0"], "argument --outbox: expected 1 or more, not 0"),
        (["keyd", "--max-per-user", "-3"], "argument --max-per-user: expected 1 or more, not -3"),
        (["setkey", "-x", "--count", "-1"], "argument --count: expected 0 or more, not -1"),
        (["monitor", "--timeout", "nan"], "argument --timeout: expected 0 seconds or more, not nan"),
    ],
)
def test_a_bad_option_value_is_a_usage_error(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_keyd_socket_that_is_not_one_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "keyd.conf"
    plain.write_text("not a socket\n")
    for path, why in ((plain, "that is not a socket"), (tmp_path / "gone.sock", "there is no socket there")):
        assert main(["setkey", "--backend", "keyd", "--keyd-socket", str(path), "-D"]) == 1
        err = capsys.readouterr().err
        assert f"cannot reach keyd at {path}: {why}" in err
        assert "[Errno" not in err


def test_a_missing_kernel_interface_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_af_key(**_: object) -> None:
        raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")

    monkeypatch.setattr(linux, "open_pfkey", no_af_key)
    monkeypatch.setattr(
        linux, "probe_pfkey", lambda: Capabilities("linux-pfkey", False, notes=("no AF_KEY sockets in this kernel",))
    )
    assert main(["setkey", "--backend", "linux-pfkey", "-D"]) == 1
    assert capsys.readouterr().err.strip() == (
        "pfmigrate: backend linux-pfkey is not available here: no AF_KEY sockets in this kernel"
    )


def test_the_monitor_describes_each_kind_of_event() -> None:
    hoa, ha, old, new = (ip_address(a) for a in (HOME_ADDRESS, HOME_AGENT, OLD_COA, NEW_COA))
    migrate = MigrateEvent(
        MigrateRequest(
            Selector.host(hoa, ha, 135), Dir.OUT, (MigrateBundle(old, ha, new, ha, reqid=5),), KMAddress(new, ha)
        )
    )
    assert describe(migrate).splitlines() == [
        f"MIGRATE out {Selector.host(hoa, ha, 135)}",
        f"  proto 50 tunnel reqid 5: {old} -> {ha}  becomes  {new} -> {ha}",
        f"  kmaddress local {new} remote {ha}",
    ]
    acquire = AcquireEvent(None, old, ha, 50, Mode.TUNNEL, 5, 8, 3)
    assert describe(acquire) == f"ACQUIRE proto 50 tunnel {old} -> {ha} (policy 8, reqid 5, seq 3)"
    expire = ExpireEvent(SecurityAssociation(old, ha, 0x2004, reqid=5), hard=True)
    assert describe(expire) == f"EXPIRE (hard) proto 50 spi 0x00002004 {old} -> {ha} reqid 5"
    assert describe(EventsLost("ENOBUFS")) == "EVENTS LOST: ENOBUFS; dump the SAD and SPD to resynchronise"
    assert "CONFIG_XFRM_MIGRATE" in str(KeyEngineError(errno.ENOPROTOOPT, "migrate"))


# --- listening, and input that is not there -------------------------------------------------------


def test_listening_without_the_right_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The XFRM event groups need CAP_NET_ADMIN: the monitor and ``setkey -x`` say so."""
    plain = linux.xfrm_socket

    def no_groups(groups: Iterable[int] = ()) -> socket.socket:
        if groups:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return plain()

    monkeypatch.setattr(linux, "xfrm_socket", no_groups)
    for argv in (["monitor", "--backend", "linux-xfrm", "--count", "1"], ["setkey", "--backend", "linux-xfrm", "-x"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "cannot listen to linux-xfrm: listen for events: Operation not permitted: the SAD and SPD need" in err
        assert "Traceback" not in err


def _stop_once_listened_to(server: Server) -> None:
    """Stop keyd once a client has registered for events: one that listens."""
    deadline = time.monotonic() + 10
    while not any(c.registered for c in list(server.service.engine.clients.values())):
        if time.monotonic() > deadline:
            break  # (stopped anyway: the test then fails on what the command said)
        time.sleep(0.01)
    server.stop()


@pytest.mark.parametrize("argv", [["monitor"], ["setkey", "-x"]], ids=["monitor", "setkey-x"])
def test_a_keyd_that_stops_ends_listening_with_a_clear_error(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with keyd_thread(tmp_path) as server:
        threading.Thread(target=_stop_once_listened_to, args=(server,)).start()
        status = main([*argv, "--backend", "keyd", "--keyd-socket", str(tmp_path / "keyd.sock"), "--timeout", "10"])
    assert status == 1
    assert (
        capsys.readouterr().err.splitlines()[-1] == "pfmigrate: stopped listening to keyd: keyd closed the connection"
    )


@pytest.mark.parametrize(
    "argv", [["setkey", "-c"], ["setkey", "-f", "-"], ["pfkey", "decode", "-"], ["pfkey", "encode"]]
)
def test_a_closed_standard_input_is_named(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", None)  # (what Python gives a process started with it closed)
    assert main(argv) == 1
    assert capsys.readouterr().err == "pfmigrate: there is no standard input to read (it is closed)\n"


def test_a_selectors_message_type_is_not_shown_as_a_port() -> None:
    """MH and ICMP select a message type (and ICMP a code), carried where ports go; they
    are shown as ``ip xfrm`` shows them."""
    hoa, ha = ip_address(HOME_ADDRESS), ip_address(HOME_AGENT)
    one, other = ip_network(f"{ha}/128"), ip_network(f"{hoa}/128")
    assert str(Selector(one, other, 135, 6)) == f"{one} -> {other} proto 135 type 6"
    assert str(Selector(one, other, 58, 1, 4)) == f"{one} -> {other} proto 58 type 1 code 4"
    assert str(Selector(one, other, 6, 0, 22)) == f"{one} -> {other} proto 6 dport 22"
