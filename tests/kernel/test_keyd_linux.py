"""keyd and Linux give the same results: a PF_KEY client, the setkey command and the
monitor, run once against Linux 6.1 (in UML) and once against keyd.

keyd runs with Linux semantics here, so that a raw PF_KEY client sees the same bytes
(after the usual normalisation: wall-clock times, Linux's uninitialised padding).
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testbed.netns import in_new_netns

from pfmigrate.backends.keyd import connect
from pfmigrate.pfkey import Message, MsgType, SAType
from pfmigrate.pfkey.constants import AF_KEY, PF_KEY_V2
from pfmigrate.seed import HOME_AGENT, NEW_COA, OLD_COA
from tests.differential.transcript import StepResult, Transcript, normalise
from tests.sadb_box import esp_sa, mh_policy, migrate

pytestmark = pytest.mark.kernel

CONFIGS = Path(__file__).resolve().parent.parent / "setkey_configs"


@pytest.fixture
def keyd(tmp_path: Path) -> Iterator[Path]:
    """``pfmigrate keyd`` with Linux semantics, in the guest, on a socket of its own."""
    sock = tmp_path / "keyd.sock"
    command = [sys.executable, "-m", "pfmigrate", "keyd", "--socket", str(sock), "--journal",
               str(tmp_path / "keyd.db"), "--semantics", "linux", "--log-level", "warning"]  # fmt: skip
    with (tmp_path / "keyd.log").open("ab") as log:
        process = subprocess.Popen(command, stderr=log)
    deadline = time.monotonic() + 30
    while True:
        try:
            connect(sock).close()
            break
        except OSError:
            assert process.poll() is None, (tmp_path / "keyd.log").read_text()
            assert time.monotonic() < deadline, "keyd did not start"
            time.sleep(0.05)
    yield sock
    process.terminate()
    process.wait(10)


@pytest.fixture(autouse=True)
def clean_linux() -> Iterator[None]:
    subprocess.run(["ip", "xfrm", "state", "flush"], check=True)
    subprocess.run(["ip", "xfrm", "policy", "flush"], check=True)
    yield
    subprocess.run(["ip", "xfrm", "state", "flush"], check=True)
    subprocess.run(["ip", "xfrm", "policy", "flush"], check=True)


def scenario() -> list[bytes]:
    """The seed mobile node's set-up and move, as a raw PF_KEY client sends it."""
    messages = [
        Message(MsgType.REGISTER, SAType.ESP), esp_sa(0x1000), esp_sa(0x1001, *reversed_ends()), mh_policy(),
        Message(MsgType.GET, SAType.ESP, extensions=esp_sa(0x1000).extensions[:1] + esp_sa(0x1000).extensions[2:4]),
        migrate(), Message(MsgType.DUMP, SAType.UNSPEC), Message(MsgType.X_SPDDUMP, SAType.UNSPEC),
        migrate(),  # again: Linux (and keyd with Linux semantics) say ENODATA
    ]  # fmt: skip
    pid = os.getpid()
    return [Message(m.type, m.satype, i + 1, pid, 0, m.extensions).encode() for i, m in enumerate(messages)]


def reversed_ends() -> tuple[str, str]:
    return HOME_AGENT, OLD_COA


BARRIER_SEQ = 0x7FFF0000


def run_raw(sock: socket.socket, requests: list[bytes]) -> Transcript:
    """Each request, then everything the socket received for it: all that comes before
    the answer to a barrier sent after it (a GET that names no SA, answered with an
    error on both). Both carry out requests in order, so nothing of the step comes
    later; keyd's answers wait for its journal, which no quiet time could bound."""
    steps = []
    sock.settimeout(10)
    for number, data in enumerate(requests):
        barrier = BARRIER_SEQ + number
        sock.send(data)
        sock.send(Message(MsgType.GET, SAType.ESP, barrier, os.getpid()).encode())
        got: list[bytes] = []
        while not _answers(raw := sock.recv(65536), barrier):
            got.append(raw)
        steps.append(StepResult(0, (tuple(got),)))
    return Transcript(0, tuple(steps))


def _answers(raw: bytes, barrier: int) -> bool:
    seq, pid = struct.unpack_from("=II", raw, 8)
    return raw[1] == MsgType.GET and (seq, pid) == (barrier, os.getpid())


def test_a_raw_pf_key_client_gets_the_same_bytes_from_keyd_and_from_linux(keyd: Path) -> None:
    requests = scenario()

    def on_a_fresh_linux() -> Transcript:  # a new namespace: its policy ids count from zero, as keyd's
        with socket.socket(AF_KEY, socket.SOCK_RAW, PF_KEY_V2) as af_key:
            return run_raw(af_key, requests)

    on_linux = in_new_netns(on_a_fresh_linux)
    with connect(keyd) as packets:
        on_keyd = run_raw(packets, requests)
    assert normalise(on_keyd) == normalise(on_linux)
    assert sum(len(step.received[0]) for step in on_linux.steps) >= 10


def setkey(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pfmigrate", "setkey", *args], input=stdin, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def without_times(text: str) -> str:
    """setkey's dumps with the clock readings taken out, and the policy ids: each engine
    counts them from its own start (Linux's counter has seen the session's other tests)."""
    text = re.sub(r"(created|current|lastused): .*?(?=\t|\n|$)", r"\1: T", text)
    text = re.sub(r"spid=\d+", "spid=N", text)
    return re.sub(r"diff: \d+\(s\)", "diff: N(s)", text)


def test_setkey_shows_the_same_sad_and_spd_on_keyd_and_on_linux(keyd: Path) -> None:
    outputs = {}
    for backend in ("linux-pfkey", "keyd"):
        where = ["--backend", backend, "--keyd-socket", str(keyd)]
        setkey(*where, "-k", "-f", str(CONFIGS / "mip6.conf"))
        setkey(*where, "-k", "-f", str(CONFIGS / "migrate.conf"))
        outputs[backend] = (without_times(setkey(*where, "-D")), without_times(setkey(*where, "-D", "-P")))
        setkey(*where, "-F")
        setkey(*where, "-F", "-P")
    assert outputs["keyd"] == outputs["linux-pfkey"]
    sad, spd = outputs["keyd"]
    assert "3ffe:501:ffff:400:1:2:3:4" in sad
    assert "3ffe:501:ffff:500:1:2:3:4" not in sad
    assert "esp/tunnel/3ffe:501:ffff:400:1:2:3:4-3ffe:501:ffff:100::1/require" in spd


def _without_time(event: dict[str, Any]) -> dict[str, Any]:
    """A monitor event without its timestamp (two runs a moment apart)."""
    assert "time" in event
    return {key: value for key, value in event.items() if key != "time"}


def test_the_monitor_reports_the_same_migrate_from_keyd_and_from_linux(keyd: Path) -> None:
    lines = {}
    for backend in ("linux-pfkey", "keyd"):
        where = ["--backend", backend, "--keyd-socket", str(keyd)]
        setkey(*where, "-k", "-f", str(CONFIGS / "mip6.conf"))
        monitor = subprocess.Popen(
            [sys.executable, "-m", "pfmigrate", "monitor", *where, "--json", "--count", "2", "--timeout", "20"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert monitor.stderr is not None
        monitor.stderr.readline()  # "listening on ...": it has subscribed
        setkey(*where, "-k", "-f", str(CONFIGS / "migrate.conf"))
        out, _ = monitor.communicate(timeout=30)
        lines[backend] = out.splitlines()
        setkey(*where, "-F")
        setkey(*where, "-F", "-P")
    untimed = {backend: [_without_time(json.loads(line)) for line in got] for backend, got in lines.items()}
    assert untimed["keyd"] == untimed["linux-pfkey"]
    assert len(lines["keyd"]) == 2
    events = untimed["linux-pfkey"]
    assert [event["event"] for event in events] == ["migrate", "migrate"]
    for event in events:  # Linux's PF_KEY announcement with its KMADDRESS, as decoded
        assert event["request"]["kmaddress"] == {"local": NEW_COA, "remote": HOME_AGENT}
        assert [b["new_src"] for b in event["request"]["bundles"]] in ([NEW_COA], [HOME_AGENT])
