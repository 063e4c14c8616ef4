"""The handover picture from the agents' own logs: the mobile node's and the home agent's
daemon shells (as `pfmigrate mn` and `pfmigrate ha` run them) each on an in-process
engine, a link between their Mobility Header sockets, each logging JSON lines to its
own file through pfmigrate.jsonlogs' formatter; then `pfmigrate demo --from-logs` draws
the two files."""

from __future__ import annotations

import itertools
import logging
import xml.etree.ElementTree as ET
from collections import deque
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from pfmigrate.backends.inprocess import open_inprocess
from pfmigrate.cli import main
from pfmigrate.jsonlogs import JsonFormatter
from pfmigrate.mobility.daemon import HomeAgentDaemon, MobileNodeDaemon
from pfmigrate.mobility.mhsocket import Received
from pfmigrate.mobility.seedconfig import seed_configs
from pfmigrate.mobility.timeline import TIE, LogError, LogLine, from_logs, read_log
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA

HOA, HA = IPv6Address(HOME_ADDRESS), IPv6Address(HOME_AGENT)
SVG = "{http://www.w3.org/2000/svg}"


class Link:
    """Two Mobility Header ports joined: what the mobile node sends (from its home
    address) reaches the home agent with the care-of address in a Home Address option,
    as Linux delivers it; what the home agent sends reaches the mobile node."""

    def __init__(self) -> None:
        self.coa: IPv6Address | None = None
        self.to_ha: deque[Received] = deque()
        self.to_mn: deque[Received] = deque()
        self.mn, self.ha = _End(self, "mn"), _End(self, "ha")


class _End:
    def __init__(self, link: Link, role: str) -> None:
        self.link, self.role = link, role

    def send(
        self, message: bytes, dst: IPv6Address, *, src: IPv6Address | None = None, rh2: IPv6Address | None = None
    ) -> int:
        if self.role == "mn":
            self.link.to_ha.append(Received(message, HOA, dst, home_address_option=self.link.coa))
        else:
            self.link.to_mn.append(Received(message, HA, HOA))
        return len(message)

    def receive(self, timeout: float | None = None) -> Received | None:
        queue = self.link.to_mn if self.role == "mn" else self.link.to_ha
        return queue.popleft() if queue else None


@pytest.fixture
def logs(tmp_path: Path) -> tuple[Path, Path]:
    """The logs of a mobile node that moves to two care-of addresses and home again."""
    mn_log, ha_log = tmp_path / "mn.log", tmp_path / "ha.log"
    logger = logging.getLogger("pfmigrate.mobility")
    level = logger.level
    logger.setLevel(logging.INFO)
    with mn_log.open("w") as mn_file, ha_log.open("w") as ha_file:
        handler = logging.StreamHandler(mn_file)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        mn_config, ha_config = seed_configs()
        link = Link()
        where: list[IPv6Address] = [HOA]
        try:
            with open_inprocess() as mn_engine, open_inprocess() as ha_engine:
                handler.setStream(ha_file)
                ha_file.write('{"time": "x", "event": "started", "role": "ha"}\n')  # a bad time: skipped
                home_agent = HomeAgentDaemon(ha_config, ha_engine, link.ha)
                handler.setStream(mn_file)
                mobile_node = MobileNodeDaemon(mn_config, mn_engine, link.mn, read=lambda _: list(where))
                for coa in (IPv6Address(OLD_COA), IPv6Address(NEW_COA), HOA):
                    where[:] = [coa]
                    link.coa = coa
                    for _ in range(3):  # BU over, BA back, the answer taken in
                        handler.setStream(mn_file)
                        mobile_node.turn(timeout=0.0)
                        handler.setStream(ha_file)
                        home_agent.turn(timeout=0.0)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
    return mn_log, ha_log


def test_the_logs_of_both_agents_make_one_timeline(logs: tuple[Path, Path]) -> None:
    mn_log, ha_log = logs
    with mn_log.open() as mn_lines, ha_log.open() as ha_lines:
        mn, ha = read_log(mn_lines, "mn.log"), read_log(ha_lines, "ha.log")
    assert (mn[0], ha[0]) == ("mn", "ha")  # the mobile node's told by its events, the agent's by "started"
    timeline = from_logs([mn, ha])
    entries = timeline.entries
    times = [e.at for e in entries]
    assert min(times) == 0.0
    assert all(b >= a - TIE for a, b in itertools.pairwise(times))  # by time, but causes first within a tie
    arrows = [(e.who, e.to, e.event) for e in entries if e.to is not None]
    bu_sent = sum(1 for line in mn[1] if line.fields["event"] == "bu-sent")
    ba_sent = sum(1 for line in ha[1] if line.fields["event"] == "ba-sent")
    assert bu_sent == ba_sent == 3  # a registration per move, the last one home
    assert arrows.count(("MN", "HA", "BU")) == bu_sent
    assert arrows.count(("HA", "MN", "BA")) == ba_sent
    assert ("MN", "MN engine", "MIGRATE") in arrows
    assert ("HA", "HA engine", "MIGRATE") in arrows
    assert ("MN engine", "MN", "migrate-done") in arrows
    assert {e.who for e in entries} == {"MN", "MN engine", "HA", "HA engine"}
    # each Binding Update comes before the home agent hears it, and its answer after
    order = [(e.who, e.event) for e in entries]
    first_bu, first_heard = order.index(("MN", "BU")), order.index(("HA", "bu-received"))
    assert first_bu < first_heard < order.index(("HA", "BA")) < order.index(("MN", "ba-received"))


def test_demo_draws_the_logs_as_svg(
    logs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    picture = tmp_path / "handover.svg"
    assert main(["demo", "--from-logs", str(logs[0]), str(logs[1]), "--svg", str(picture)]) == 0
    out = capsys.readouterr().out
    assert "MN -> HA: BU" in out
    assert "HA -> MN: BA" in out
    root = ET.parse(picture).getroot()
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert {"MN engine", "MN", "HA", "HA engine"} <= set(texts)
    assert "a handover as logged by the mobile node and the home agent" in texts[0]
    arrows = [line for line in root.iter(f"{SVG}line") if line.get("marker-end")]
    with logs[0].open() as mn_lines, logs[1].open() as ha_lines:
        timeline = from_logs([read_log(mn_lines, "mn"), read_log(ha_lines, "ha")])
    assert len(arrows) == sum(1 for e in timeline.entries if e.to is not None) > 10
    assert any(t.startswith("BU coa=" + OLD_COA) for t in texts)


def test_a_receipt_is_drawn_after_its_sending_when_the_times_tie() -> None:
    """Logged in the same millisecond, the home agent's receipt of a Binding Update (its
    log read first) still comes after the mobile node's sending; farther apart than a
    tie, the times decide (a Binding Update from another node, say)."""

    def line(at: float, role: str, event: str) -> LogLine:
        return LogLine(at, role, {"event": event})

    ha = [line(10.0, "ha", "bu-received"), line(10.0, "ha", "ba-sent"), line(12.0, "ha", "bu-received")]
    mn = [line(10.0, "mn", "bu-sent"), line(10.001, "mn", "ba-received")]
    timeline = from_logs([("ha", ha), ("mn", mn)])
    assert [(e.who, e.event) for e in timeline.entries] == [
        ("MN", "BU"), ("HA", "bu-received"), ("HA", "BA"), ("MN", "ba-received"), ("HA", "bu-received")
    ]  # fmt: skip
    assert [e.at for e in timeline.entries] == [0.0, 0.0, 0.0, pytest.approx(0.001), 2.0]


def test_journalctl_lines_are_read_too(logs: tuple[Path, Path]) -> None:
    """``journalctl -u pfmigrate-mn`` puts a prefix before each line: it is skipped."""
    text = logs[0].read_text().splitlines()
    prefixed = [f"Dec 08 10:00:00 mn pfmigrate[42]: {line}" for line in text]
    assert read_log(prefixed, "journal") == read_log(text, "plain")


def test_one_log_alone_is_drawn(logs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--from-logs", str(logs[1])]) == 0
    out = capsys.readouterr().out
    assert "HA -> MN: BA" in out
    assert "MN -> HA" not in out


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("", "no events of pfmigrate mn or pfmigrate ha"),
        ("Traceback (most recent call last):\nnot json {\n", "no events"),
        ('{"time": "2026-01-01T00:00:00.000Z", "event": "migrate"}\n', "cannot tell a mobile node's log"),
    ],
)
def test_a_log_that_cannot_be_drawn_is_named(
    content: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "x.log"
    log.write_text(content)
    assert main(["demo", "--from-logs", str(log)]) == 1
    err = capsys.readouterr().err
    assert str(log) in err
    assert said in err
    with pytest.raises(LogError, match=said):
        read_log(content.splitlines(), "x")


def test_two_logs_of_one_role_and_a_missing_file_are_refused(
    logs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--from-logs", str(logs[0]), str(logs[0])]) == 1
    assert "two logs of the same role" in capsys.readouterr().err
    assert main(["demo", "--from-logs", str(tmp_path / "nowhere.log")]) == 1
    assert "not a log file" in capsys.readouterr().err
    assert main(["demo", "--from-logs", str(logs[0]), "--wire"]) == 1
    assert "--wire" in capsys.readouterr().err
