"""``pfmigrate monitor``: events with their time, and ``--reconnect`` across a keyd
killed and started again."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from pfmigrate.backends.keyd import open_keyd
from pfmigrate.cli.monitor import Reconnected, event_json, stamped
from pfmigrate.model import ESP, Dir, EventsLost, MigrateBundle, MigrateRequest, Mode
from tests.keyd_harness import HA, NEW, OLD, OUT_SELECTOR, KeydProcess, out_policy

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def move(src: object, dst: object) -> MigrateRequest:
    return MigrateRequest(OUT_SELECTOR, Dir.OUT, (MigrateBundle(src, HA, dst, HA, ESP, Mode.TUNNEL),))  # type: ignore[arg-type]


def start_monitor(socket: Path, *extra: str) -> subprocess.Popen[str]:
    monitor = subprocess.Popen(
        [sys.executable, "-m", "pfmigrate", "monitor", "--backend", "keyd", "--keyd-socket", str(socket),
         "--timeout", "60", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert monitor.stderr is not None
    assert "listening on" in monitor.stderr.readline()
    return monitor


def test_text_and_json_lines_carry_the_time() -> None:
    now = 1_780_000_000.25
    lost = EventsLost("keyd dropped messages")
    assert (
        stamped(lost, now)
        == "2026-05-28T20:26:40.250Z EVENTS LOST: keyd dropped messages; dump the SAD and SPD to resynchronise"
    )
    assert json.loads(event_json(lost, now)) == {
        "time": "2026-05-28T20:26:40.250Z", "event": "events-lost", "reason": "keyd dropped messages",
    }  # fmt: skip
    back = Reconnected("keyd", 1.25, 3)
    assert stamped(back, now).endswith(" RECONNECTED to keyd after 1.2 s (3 attempts)")
    assert json.loads(event_json(back, now))["event"] == "reconnected"


def test_reconnect_across_a_keyd_restart(tmp_path: Path) -> None:
    keyd = KeydProcess(tmp_path)
    keyd.start()
    try:
        with open_keyd(keyd.socket) as engine:
            engine.add_policy(out_policy(OLD))
        with start_monitor(keyd.socket, "--json", "--reconnect", "--count", "2") as monitor:
            assert monitor.stdout is not None
            assert monitor.stderr is not None
            with open_keyd(keyd.socket) as engine:
                engine.migrate(move(OLD, NEW))
            first = json.loads(monitor.stdout.readline())
            keyd.kill()
            keyd.start()
            back, lost = (json.loads(monitor.stdout.readline()) for _ in range(2))
            with open_keyd(keyd.socket) as engine:
                engine.migrate(move(NEW, OLD))
            second = json.loads(monitor.stdout.readline())
            said = monitor.stderr.read()
            assert monitor.wait(30) == 0
    finally:
        keyd.stop()
    assert [line["event"] for line in (first, back, lost, second)] == [
        "migrate",
        "reconnected",
        "events-lost",
        "migrate",
    ]
    assert all(re.fullmatch(STAMP, line["time"]) for line in (first, back, lost, second))
    assert first["time"] <= back["time"] <= second["time"]
    assert (back["backend"], back["attempts"] >= 1) == ("keyd", True)
    assert second["request"]["bundles"][0]["new_src"] == str(OLD)
    assert "pfmigrate: lost keyd: " in said


def test_without_reconnect_a_lost_keyd_ends_the_monitor(tmp_path: Path) -> None:
    keyd = KeydProcess(tmp_path)
    keyd.start()
    try:
        monitor = start_monitor(keyd.socket)
        keyd.kill()
        _, err = monitor.communicate(timeout=30)
    finally:
        keyd.stop()
    assert monitor.returncode == 1
    assert "pfmigrate: stopped listening to keyd" in err


def test_text_events_start_with_the_time(tmp_path: Path) -> None:
    keyd = KeydProcess(tmp_path)
    keyd.start()
    try:
        with open_keyd(keyd.socket) as engine:
            engine.add_policy(out_policy(OLD))
        monitor = start_monitor(keyd.socket, "--count", "1")
        with open_keyd(keyd.socket) as engine:
            engine.migrate(move(OLD, NEW))
        out, _ = monitor.communicate(timeout=30)
    finally:
        keyd.stop()
    assert re.match(STAMP + r" MIGRATE out ", out)


def test_reconnect_gives_up_when_the_time_is_up(tmp_path: Path) -> None:
    keyd = KeydProcess(tmp_path)
    keyd.start()
    monitor = subprocess.Popen(
        [sys.executable, "-m", "pfmigrate", "monitor", "--backend", "keyd", "--keyd-socket", str(keyd.socket),
         "--reconnect", "--timeout", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert monitor.stderr is not None
        assert "listening on" in monitor.stderr.readline()
        keyd.kill()
        out, err = monitor.communicate(timeout=30)
    finally:
        keyd.stop()
    assert monitor.returncode == 0
    assert out == ""
    assert "reconnecting" in err
