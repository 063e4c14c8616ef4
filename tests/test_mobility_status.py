"""Status and control of the agents: the JSON-lines protocol without I/O, a home agent
answering ``status`` over a real Unix socket while it serves, ``pfmigrate ha status``,
the metrics file, and SIGTERM (a clean ``stopped``, the tables kept)."""

from __future__ import annotations

import json
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from testbed.netns import _enter_new_netns

from pfmigrate.backends.inprocess import open_inprocess
from pfmigrate.backends.keyd import open_keyd
from pfmigrate.cli import main
from pfmigrate.mobility import control, policies
from pfmigrate.mobility.config import ConfigError, HAConfig, load_ha, load_mn, parse
from pfmigrate.mobility.control import Connection, ControlError, ControlServer, Request
from pfmigrate.mobility.daemon import HomeAgentDaemon, MobileNodeDaemon
from pfmigrate.mobility.metrics import BUCKETS, AgentMetrics, MetricsFile
from pfmigrate.mobility.seedconfig import home_agent_toml, seed_configs
from pfmigrate.mobility.status import Status, StatusError, from_json, render, to_json
from tests.keyd_harness import keyd_thread, wait_until
from tests.seed_scenario import without_index
from tests.test_mobility_daemon import COA, HA, HOA, Port, binding_update

# --- the protocol, without I/O ----------------------------------------------------------------------


def answers(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


def test_requests_are_json_lines_answered_in_order_whatever_the_chunks() -> None:
    asked: list[Request] = []

    def answer(request: Request) -> dict[str, Any]:
        asked.append(request)
        return {"n": len(asked)}

    conn = Connection(answer)
    assert conn.receive(b'{"comm') == b""  # half a line: nothing yet
    out = conn.receive(b'and": "status"}\n\n{"command": "status"}\n')
    assert answers(out) == [{"ok": True, "n": 1}, {"ok": True, "n": 2}]
    assert asked == [Request("status")] * 2


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (b"status", "one JSON object per line"),
        (b"[1]", "a JSON object, not list"),
        (b'{"command": "stop"}', "expected one of status, found 'stop'"),
        (b'{"command": "status", "x": 1}', "unknown key 'x'"),
        (b"\xff\xfe", "one JSON object per line"),
    ],
)
def test_a_bad_request_is_answered_with_what_is_wrong(line: bytes, said: str) -> None:
    conn = Connection(lambda _: {})
    (answer,) = answers(conn.receive(line + b"\n"))
    assert answer["ok"] is False
    assert said in answer["error"]
    assert not conn.closed  # the next line is a request again
    assert answers(conn.receive(b'{"command": "status"}\n')) == [{"ok": True}]


def test_a_line_too_long_closes_the_connection() -> None:
    conn = Connection(lambda _: {})
    (answer,) = answers(conn.receive(b"x" * (control.MAX_LINE + 1)))
    assert answer["ok"] is False
    assert str(control.MAX_LINE) in answer["error"]
    assert conn.closed
    assert conn.receive(b'{"command": "status"}\n') == b""


def test_an_answer_is_read_or_refused_with_the_daemons_words() -> None:
    assert control.parse_answer(b'{"ok": true, "status": {}}\n') == {"ok": True, "status": {}}
    with pytest.raises(ControlError, match="the daemon refused: no such thing"):
        control.parse_answer(b'{"ok": false, "error": "no such thing"}\n')
    with pytest.raises(ControlError, match="not JSON"):
        control.parse_answer(b"<html>\n")


def test_a_status_that_is_not_one_is_named_by_its_field() -> None:
    with pytest.raises(StatusError, match=r"entries\[0\]\.sequence: expected int, found str"):
        from_json({"role": "ha", "backend": "x", "route_optimisation": True,
                   "entries": [{"home_address": "::1", "home_agent": "::2", "state": "bound", "sequence": "1",
                                "key_management": False, "acknowledged": True}]})  # fmt: skip


# --- a home agent answering over a real socket ------------------------------------------------------


@contextmanager
def serving(daemon: HomeAgentDaemon | MobileNodeDaemon, path: Path) -> Iterator[ControlServer]:
    """The daemon with its control socket, turning in a thread as ``serve`` turns it."""
    server = ControlServer(path, daemon.answer)
    daemon.control = server
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            daemon.turn(timeout=0.005)
            time.sleep(0.001)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_a_home_agent_answers_status_with_its_binding_cache_and_bundles(tmp_path: Path) -> None:
    _, config = seed_configs()
    port = Port()
    path = tmp_path / "run" / "ha.sock"  # (a directory that is not there yet)
    with open_inprocess() as engine:
        home_agent = HomeAgentDaemon(config, engine, port, clock=lambda: 100.0)
        port.incoming.append(binding_update(1))
        home_agent.turn(timeout=0.0)
        with serving(home_agent, path):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            answer = control.ask(path)
    status = from_json(answer["status"])
    assert (status.role, status.backend, status.bundles_error) == ("ha", "inprocess", None)
    (entry,) = status.entries
    assert (entry.home_address, entry.care_of_address, entry.state, entry.sequence) == (str(HOA), str(COA), "bound", 1)
    assert entry.lifetime_left == 600.0  # the BU asked 150 units of 4 s, all granted, none gone yet
    expected = policies.ha_policy_set(config, config.mobile_nodes[0], str(COA)).policies
    assert len(entry.bundles) == sum(len(p.templates) for p in without_index(expected))
    tunnels = {(b.direction, b.tunnel_src, b.tunnel_dst) for b in entry.bundles if b.mode == "tunnel"}
    assert ("out", str(HA), str(COA)) in tunnels
    reqids = {b.reqid for b in entry.bundles}
    assert reqids <= set(range(100, 108))
    assert len(reqids) > 1
    assert not path.exists()  # removed when the server closed


def test_a_stale_socket_is_replaced_and_a_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "ha.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a daemon that was killed left its socket
    first = ControlServer(path, lambda _: {})
    try:
        with pytest.raises(ControlError, match="another daemon answers there"):
            ControlServer(path, lambda _: {})
    finally:
        first.close()
    path.write_text("not a socket")
    with pytest.raises(ControlError, match="not a socket"):
        ControlServer(path, lambda _: {})


def test_asking_where_no_daemon_is_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ha", "status", "--control", str(tmp_path / "ha.sock")]) == 1
    err = capsys.readouterr().err
    assert f"no daemon answers on {tmp_path / 'ha.sock'}" in err
    assert "Traceback" not in err


def test_pfmigrate_ha_status_prints_json_and_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, config = seed_configs()
    port = Port()
    path = tmp_path / "ha.sock"
    with open_inprocess() as engine:
        home_agent = HomeAgentDaemon(config, engine, port, clock=lambda: 100.0)
        port.incoming.append(binding_update(1))
        home_agent.turn(timeout=0.0)
        with serving(home_agent, path):
            assert main(["ha", "status", "--json", "--control", str(path)]) == 0
            printed = json.loads(capsys.readouterr().out)
            assert main(["ha", "status", "--control", str(path)]) == 0
            table = capsys.readouterr().out
            assert main(["mn", "status", "--control", str(path)]) == 1
            assert "is a pfmigrate ha, not a pfmigrate mn" in capsys.readouterr().err
    assert printed == to_json(from_json(printed))
    (entry,) = printed["entries"]
    assert (entry["home_address"], entry["care_of_address"], entry["state"]) == (str(HOA), str(COA), "bound")
    assert {"selector", "direction", "mode", "reqid", "tunnel_src", "tunnel_dst"} == set(entry["bundles"][0])
    lines = table.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("home address"))
    row = lines[header + 1]
    for column in ("care-of address", "seq", "state"):  # the row's cells start under their headings (or end, numbers)
        assert lines[header].index(column) <= len(row)
    assert row.split()[:2] == [str(HOA), str(COA)]
    assert re.search(r"\b600 s\b", row)
    assert "bound" in row
    assert any(f"{HA} -> {COA}" in line for line in lines[header + 2 :])


def test_a_mobile_node_lists_its_home_registration() -> None:
    mn_config, _ = seed_configs()
    with open_inprocess() as engine:
        node = MobileNodeDaemon(mn_config, engine, Port(), clock=lambda: 100.0, read=lambda _: [COA])
        node.turn(timeout=0.0)
        status = node.status()
    (entry,) = status.entries
    assert (entry.care_of_address, entry.home_agent, entry.state, entry.lifetime_left) == (
        str(COA), str(HA), "registering", None,
    )  # fmt: skip
    assert entry.sequence == 1
    assert entry.bundles
    assert "registering" in render(status)
    assert render(Status("mn", "inprocess", False, ())).startswith("mobile node on inprocess, without route")


# --- metrics ----------------------------------------------------------------------------------------

SAMPLE = re.compile(r"^([a-z_]+)(?:\{([^}]*)\})? (\S+)$")


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The Prometheus text format, strictly: every family has HELP and TYPE before its
    samples, every sample belongs to a declared family."""
    assert text.endswith("\n")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    declared: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge", "histogram")
            declared[name] = kind
            continue
        found = SAMPLE.match(line)
        assert found, f"not a sample: {line!r}"
        name, labels, value = found.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name.endswith(("_bucket", "_sum", "_count")) else name
        assert family in declared or name in declared, f"{name} has no TYPE"
        pairs = frozenset(tuple(p.split("=", 1)) for p in labels.split(",")) if labels else frozenset()
        samples[name, frozenset((k, v.strip('"')) for k, v in pairs)] = float(value)
    return samples


def test_the_metrics_file_counts_what_the_log_says(tmp_path: Path) -> None:
    _, config = seed_configs()
    port = Port()
    ticks = iter(x / 1000 for x in range(100_000, 200_000, 3))  # 3 ms a look at the clock
    with open_inprocess() as engine:
        home_agent = HomeAgentDaemon(config, engine, port, clock=lambda: next(ticks))
        port.incoming.append(binding_update(1))
        home_agent.turn(timeout=0.0)
        port.incoming.append(binding_update(1))  # the same number again: refused with 135
        home_agent.turn(timeout=0.0)
        metrics = MetricsFile(tmp_path / "ha.prom")
        metrics.write(home_agent.render_metrics(), 0.0)
    found = parse_metrics((tmp_path / "ha.prom").read_text())
    role = ("role", "ha")

    def value(name: str, *labels: tuple[str, str]) -> float:
        return found[name, frozenset({role, *labels})]

    assert value("pfmigrate_mobility_bindings") == 1
    assert value("pfmigrate_mobility_binding_updates_received_total") == 2
    assert value("pfmigrate_mobility_binding_acks_sent_total", ("status", "0")) == 1
    assert value("pfmigrate_mobility_binding_acks_sent_total", ("status", "135")) == 1
    assert value("pfmigrate_mobility_refusals_total", ("status", "135")) == 1
    assert value("pfmigrate_mobility_migrates_total", ("outcome", "done")) == 1
    assert value("pfmigrate_mobility_migrate_seconds_count") == 1
    assert 0 < value("pfmigrate_mobility_migrate_seconds_sum") < 1
    buckets = [value("pfmigrate_mobility_migrate_seconds_bucket", ("le", f"{b:g}")) for b in BUCKETS]
    assert buckets == sorted(buckets)
    assert buckets[-1] == 1
    assert value("pfmigrate_mobility_migrate_seconds_bucket", ("le", "+Inf")) == 1
    assert stat.S_IMODE((tmp_path / "ha.prom").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["ha.prom"]  # no temporary file left


def test_settling_notes_and_latency_are_counted() -> None:
    metrics = AgentMetrics("mn")
    metrics.note("migrate", {}, 10.0)
    for note in ("outcome-unknown", "read-back-again", "converged"):
        metrics.note(note, {"hoa": "::1"}, 10.5)
    metrics.note("migrate-done", {"to": "::2"}, 10.75)
    metrics.note("migrate", {}, 20.0)
    metrics.note("migrate-failed", {"errno": 1}, 80.0)  # beyond the last bucket
    metrics.note("ba-received", {"status": 129}, 81.0)
    text = metrics.render()
    found = parse_metrics(text)
    role = ("role", "mn")
    for note in ("outcome-unknown", "read-back-again", "converged", "migrate-failed"):
        assert found["pfmigrate_mobility_settling_total", frozenset({role, ("note", note)})] == 1
    assert found["pfmigrate_mobility_migrate_seconds_bucket", frozenset({role, ("le", "1")})] == 1
    assert found["pfmigrate_mobility_migrate_seconds_bucket", frozenset({role, ("le", "+Inf")})] == 2
    assert found["pfmigrate_mobility_migrate_seconds_sum", frozenset({role})] == 60.75
    assert found["pfmigrate_mobility_refusals_total", frozenset({role, ("status", "129")})] == 1


def test_metrics_are_written_at_most_once_a_second() -> None:
    metrics = MetricsFile(Path("unused"))
    assert metrics.due(5.0)
    metrics.written_at = 5.0
    assert not metrics.due(5.99)
    assert metrics.due(6.0)


# --- the daemon as a process: SIGTERM ---------------------------------------------------------------


@pytest.mark.usefixtures("netns")
def test_sigterm_stops_cleanly_writes_metrics_and_keeps_the_tables(tmp_path: Path) -> None:
    """``pfmigrate ha`` on keyd, in a network namespace of its own: it answers status,
    and on SIGTERM says ``stopped``, exits 0, removes its control socket, writes its
    metrics, and leaves its tunnels in the key engine (docs/mobility-config.md)."""
    directory = tmp_path / "k"
    directory.mkdir()
    with keyd_thread(directory):
        keyd_socket = directory / "keyd.sock"
        text = home_agent_toml("keyd").replace('name = "keyd"', f'name = "keyd"\nkeyd_socket = "{keyd_socket}"')
        config = tmp_path / "ha.toml"
        config.write_text(text)
        path, prom = tmp_path / "ha.sock", tmp_path / "ha.prom"
        with (tmp_path / "ha.log").open("w") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "pfmigrate", "ha", "--config", str(config), "--no-route-optimisation",
                 "--control", str(path), "--metrics", str(prom)],
                stderr=log, preexec_fn=_enter_new_netns,
            )  # fmt: skip
        try:
            wait_until(lambda: path.exists() or agent.poll() is not None, "the control socket")
            assert agent.poll() is None, (tmp_path / "ha.log").read_text()
            status = from_json(control.ask(path)["status"])
            assert (status.role, status.backend, status.route_optimisation) == ("ha", "keyd", False)
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(20) == 0
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
        lines = [json.loads(line) for line in (tmp_path / "ha.log").read_text().splitlines()]
        assert [line["event"] for line in lines if line.get("event") in ("started", "stopped")] == [
            "started", "stopped",
        ]  # fmt: skip
        stopped = lines[-1]
        assert (stopped["event"], stopped["signal"], stopped["tables"]) == ("stopped", "SIGTERM", "kept")
        assert not path.exists()
        found = parse_metrics(prom.read_text())
        assert found["pfmigrate_mobility_bindings", frozenset({("role", "ha")})] == 0
        _, seed_ha = seed_configs()
        with open_keyd(keyd_socket) as engine:
            kept = engine.dump_policies()
        expected = policies.ha_policy_set(seed_ha, seed_ha.mobile_nodes[0], None).policies
        assert without_index(kept) == without_index(expected)


def test_a_bug_behind_an_answer_is_told_to_the_client_and_the_connection_goes_on() -> None:
    def broken(_: Request) -> dict[str, Any]:
        raise KeyError("entries")

    conn = Connection(broken)
    (answer,) = answers(conn.receive(b'{"command": "status"}\n'))
    assert answer == {"ok": False, "error": "the daemon could not answer: KeyError: 'entries'"}
    assert not conn.closed


def test_the_control_socket_and_route_optimisation_come_from_the_configuration() -> None:
    text = home_agent_toml().replace(
        "allow_key_management_mobility = false",
        'allow_key_management_mobility = false\nroute_optimisation = false\ncontrol_socket = "/run/x/ha.sock"',
    )
    config = parse(text, "ha.toml")
    assert isinstance(config, HAConfig)
    assert (config.route_optimisation, config.control_socket) == (False, Path("/run/x/ha.sock"))
    _, seed = seed_configs()
    assert (seed.route_optimisation, seed.control_socket) == (True, Path("/run/pfmigrate/ha.sock"))
    with pytest.raises(ConfigError, match=r"ha\.toml: home_agent\.control_socket: expected a socket path, found an"):
        parse(text.replace('"/run/x/ha.sock"', '""'), "ha.toml")
    with pytest.raises(ConfigError, match=r"home_agent\.control_socket: expected a socket path the daemon can listen"):
        parse(text.replace("/run/x/ha.sock", "/run/" + "x" * 120), "ha.toml")
    with pytest.raises(ConfigError, match=r"home_agent\.route_optimisation: expected true or false, found 'no'"):
        parse(text.replace("route_optimisation = false", 'route_optimisation = "no"'), "ha.toml")


def test_the_examples_say_where_their_control_sockets_are() -> None:
    examples = Path(__file__).resolve().parent.parent / "examples"
    assert load_mn(examples / "mn.toml").control_socket == Path("/run/pfmigrate/mn.sock")
    assert load_ha(examples / "ha.toml").control_socket == Path("/run/pfmigrate/ha.sock")
