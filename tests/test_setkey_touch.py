"""``pfmigrate setkey`` says what it touches: the backend it chose when not told, a
flush of this kernel's tables typed at a terminal only with ``--yes``, the in-process
engine's short life. A kernel backend is stood in for by pfmigrate's engine under a
kernel backend's name (the checks go by the backend's name), so no kernel is needed."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path
from typing import TextIO

import pytest

from pfmigrate.backends import inprocess, linux
from pfmigrate.backends.inprocess import Hub, open_inprocess
from pfmigrate.backends.pfkey_ops import PfKeyOperations
from pfmigrate.cli import main
from pfmigrate.cli.setkey import parse
from pfmigrate.cli.setkey.commands import Options, Session
from pfmigrate.engine import Capabilities, KeyEngine
from pfmigrate.model import (
    ESP,
    MH,
    Algorithm,
    Dir,
    IPAddress,
    MigrateEvent,
    Mode,
    Policy,
    SecurityAssociation,
    Selector,
    Template,
)
from pfmigrate.sadb import Engine
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA
from tests.keyd_harness import keyd_thread

CONFIGS = Path(__file__).parent / "setkey_configs"
SA = SecurityAssociation(
    ip_address("10.0.0.1"), ip_address("10.0.0.2"), 0x1000, ESP, enc=Algorithm("cbc(aes)", bytes(16))
)
POLICY = Policy(Selector.host("10.0.0.1", "10.0.0.2"), Dir.OUT)


@pytest.fixture
def hub() -> Hub:
    hub = Hub()
    with open_inprocess(hub) as engine:
        engine.add_sa(SA)
        engine.add_policy(POLICY)
    return hub


def counts(hub: Hub) -> tuple[int, int]:
    with open_inprocess(hub) as engine:
        return len(engine.dump_sas()), len(engine.dump_policies())


@pytest.fixture
def kernel(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Hub:
    """``linux-pfkey`` and ``linux-xfrm`` open ``hub`` under their own names; the probes
    find no AF_KEY and a NETLINK_XFRM, so that the default is linux-xfrm."""

    def opener(name: str) -> object:
        return lambda timeout=5.0: KeyEngine(PfKeyOperations(os.getpid(), name=name), hub.connect())

    monkeypatch.setattr(linux, "open_pfkey", opener("linux-pfkey"))
    monkeypatch.setattr(linux, "open_xfrm", opener("linux-xfrm"))
    monkeypatch.setattr(linux, "probe_pfkey", lambda: Capabilities("linux-pfkey", False))
    monkeypatch.setattr(linux, "probe_xfrm", lambda: Capabilities("linux-xfrm", True, migrate=True))
    monkeypatch.setattr(inprocess, "open_inprocess", lambda timeout=5.0: open_inprocess(hub, timeout=timeout))
    monkeypatch.setenv("PFMIGRATE_KEYD_SOCKET", "/nonexistent/keyd.sock")
    return hub


class Terminal:
    """A pseudo-terminal: ``tty`` its follower side as a text file (``isatty()`` is
    true), ``said()`` what was written to it, read from the leader's side."""

    def __init__(self) -> None:
        self.leader, follower = os.openpty()
        self.tty: TextIO = open(follower, "w", encoding="utf-8")  # noqa: SIM115 (closed by the fixture)

    def said(self) -> str:
        self.tty.flush()
        return os.read(self.leader, 65536).decode().replace("\r\n", "\n")

    def close(self) -> None:
        self.tty.close()
        os.close(self.leader)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    pty = Terminal()
    try:
        yield pty
    finally:
        pty.close()


def setkey(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["setkey", *argv])
    out, err = capsys.readouterr()
    return status, out, err


# --- the backend chosen, named ---------------------------------------------------------------------------


def test_without_backend_setkey_names_the_keyd_it_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = tmp_path / "keyd.sock"
    with keyd_thread(tmp_path):
        status, out, err = setkey(["-D", "--keyd-socket", str(sock)], capsys)
    assert (status, out) == (0, "No SAD entries.\n")
    assert err == f"pfmigrate: using keyd at {sock}\n"


def test_without_backend_setkey_names_the_kernel(kernel: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = setkey(["-DP"], capsys)
    assert status == 0
    assert "10.0.0.1[any] 10.0.0.2[any] any" in out
    assert err == "pfmigrate: using linux-xfrm (this kernel's SAD and SPD, through netlink XFRM)\n"


def test_a_backend_asked_for_is_not_named_again(kernel: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    assert setkey(["--backend", "linux-xfrm", "-D"], capsys)[::2] == (0, "")


# --- -F and -FP on this kernel's tables ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "what"),
    [("-F", "the one SA of this kernel's SAD"), ("-FP", "the one policy of this kernel's SPD")],
)
def test_a_flush_of_the_kernel_typed_at_a_terminal_asks_for_yes(
    flag: str,
    what: str,
    kernel: Hub,
    terminal: Terminal,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", terminal.tty)
    status, out, err = setkey(["--backend", "linux-pfkey", flag], capsys)
    assert (status, out) == (1, "")
    assert err == (
        f"pfmigrate: {flag} would delete {what} (linux-pfkey), which every program of this machine shares; "
        f"run `pfmigrate setkey {flag} --yes` to flush it (asked because standard input is a terminal: "
        "from a script, it goes ahead as setkey does)\n"
    )
    assert counts(kernel) == (1, 1)
    assert setkey(["--backend", "linux-pfkey", flag, "--yes"], capsys) == (0, "", "")
    assert counts(kernel) == ((1, 0) if flag == "-FP" else (0, 1))


def test_the_question_counts_what_would_go(
    kernel: Hub, terminal: Terminal, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_inprocess(kernel) as engine:
        engine.add_sa(SecurityAssociation(SA.src, SA.dst, 0x1001, ESP, enc=SA.enc))
    monkeypatch.setattr(sys, "stdin", terminal.tty)
    assert "-F would delete all 2 SAs of this kernel's SAD (linux-xfrm)" in setkey(["-F"], capsys)[2]
    assert counts(kernel) == (2, 1)


def test_a_flush_of_the_kernel_from_a_script_goes_ahead(
    kernel: Hub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # (not a terminal: a pipe, a file, /dev/null)
    assert setkey(["--backend", "linux-xfrm", "-F"], capsys) == (0, "", "")
    assert setkey(["--backend", "linux-xfrm", "-FP"], capsys) == (0, "", "")
    assert counts(kernel) == (0, 0)


def test_a_flush_of_an_empty_table_asks_nothing(
    kernel: Hub, terminal: Terminal, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_inprocess(kernel) as engine:
        engine.flush()
    monkeypatch.setattr(sys, "stdin", terminal.tty)
    assert setkey(["--backend", "linux-pfkey", "-F"], capsys) == (0, "", "")


@pytest.mark.parametrize("backend", ["inprocess", "keyd"])
def test_a_flush_of_another_engine_asks_nothing(
    backend: str,
    kernel: Hub,
    terminal: Terminal,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", terminal.tty)
    sock = tmp_path / "keyd.sock"
    with keyd_thread(tmp_path):
        status, out, err = setkey(["--backend", backend, "--keyd-socket", str(sock), "-F"], capsys)
    assert (status, out, err) == (0, "", "")
    assert counts(kernel) == ((0, 1) if backend == "inprocess" else (1, 1))


def test_yes_goes_with_a_flush(capsys: pytest.CaptureFixture[str]) -> None:
    assert setkey(["--backend", "inprocess", "-D", "--yes"], capsys) == (1, "", "pfmigrate: --yes goes with -F\n")


# --- the in-process engine's short life --------------------------------------------------------------------


def test_the_in_process_engine_says_at_a_terminal_that_it_lives_as_long_as_the_command(
    terminal: Terminal, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stderr", terminal.tty)
    monkeypatch.setattr(sys, "stdin", io.StringIO("spdadd ::1 ::2 any -P out discard;\n"))
    assert main(["setkey", "--backend", "inprocess", "-c"]) == 0
    assert terminal.said() == f"pfmigrate: note: inprocess ({inprocess.LIFETIME})\n"
    assert "gone when the command ends" in inprocess.LIFETIME


def test_the_in_process_engine_is_quiet_in_a_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert setkey(["--backend", "inprocess", "-D"], capsys) == (0, "No SAD entries.\n", "")


# --- RFC mode: a migrate of an in policy moves its fwd twin too ----------------------------------------------


def seed_run(hub: Hub, text: str, options: Options) -> list[str]:
    err = io.StringIO()
    with open_inprocess(hub) as engine:
        Session(engine, out=io.StringIO(), err=err, options=options).run(parse(text, "conf"))
    return err.getvalue().splitlines()


def twin_peer(hub: Hub) -> IPAddress | None:
    with open_inprocess(hub) as engine:
        return engine.get_policy(Selector.host(HOME_AGENT, HOME_ADDRESS, MH), Dir.FWD).templates[0].dst


@pytest.mark.parametrize("semantics", ["pfmigrate", "linux"])
def test_in_rfc_mode_a_migrate_of_an_in_policy_moves_its_fwd_twin(semantics: str) -> None:
    hub = Hub(Engine(semantics=semantics))
    assert seed_run(hub, (CONFIGS / "mip6.conf").read_text(), Options()) == []
    assert twin_peer(hub) == ip_address(OLD_COA)
    with open_inprocess(hub) as ike:
        ike.subscribe()
        assert seed_run(hub, (CONFIGS / "migrate.conf").read_text(), Options()) == []
        heard = [e.request.dir for _ in range(8) for e in ike.next_events(0.0) if isinstance(e, MigrateEvent)]
    assert twin_peer(hub) == ip_address(NEW_COA)
    assert heard == [Dir.OUT, Dir.IN, Dir.FWD]


def test_the_fwd_twin_of_a_unique_request_moves_by_its_endpoints() -> None:
    hub = Hub()
    old, new = "esp/tunnel/10.0.0.9-10.0.0.1/unique:7", "esp/tunnel/10.0.0.8-10.0.0.1/unique:7"
    setup = (
        f"add 10.0.0.9 10.0.0.1 esp 0x700 -m tunnel -u 7 -E null; spdadd 10.0.1.0/24 10.0.2.0/24 any -P in ipsec {old};"
    )
    assert seed_run(hub, setup, Options()) == []
    assert seed_run(hub, f"migrate 10.0.1.0/24 10.0.2.0/24 any -P in {old} {new};", Options()) == []
    with open_inprocess(hub) as engine:
        moved = {p.dir: p.templates[0] for p in engine.dump_policies()}
    assert moved[Dir.IN] == Template(ESP, Mode.TUNNEL, ip_address("10.0.0.8"), ip_address("10.0.0.1"), 7)
    assert moved[Dir.FWD] == Template(ESP, Mode.TUNNEL, ip_address("10.0.0.8"), ip_address("10.0.0.1"), 0)


def test_kernel_mode_migrates_only_the_policy_named() -> None:
    hub = Hub()
    assert seed_run(hub, (CONFIGS / "mip6.conf").read_text(), Options()) == []
    assert seed_run(hub, (CONFIGS / "migrate.conf").read_text(), Options(rfc=False)) == []
    assert twin_peer(hub) == ip_address(OLD_COA)


def test_a_missing_twin_of_a_migrated_in_policy_is_reported() -> None:
    hub = Hub()
    assert seed_run(hub, (CONFIGS / "mip6.conf").read_text(), Options(rfc=False)) == []
    [error] = seed_run(hub, (CONFIGS / "migrate.conf").read_text(), Options())
    assert error.startswith("conf:11:1: migrate (its fwd copy, RFC mode): No such file or directory")
    with open_inprocess(hub) as engine:
        back = engine.get_policy(Selector.host(HOME_AGENT, HOME_ADDRESS, MH), Dir.IN)
    assert back.templates[0].dst == ip_address(NEW_COA)


def test_a_fwd_migrate_written_for_the_old_rule_is_noted_and_skipped() -> None:
    """Files written when a migrate moved only the policy it named carry a migrate -P fwd
    of their own; Linux would refuse it once the twin has moved (ENODATA)."""
    hub = Hub(Engine(semantics="linux"))
    forward = (
        f"migrate {HOME_AGENT} {HOME_ADDRESS} 135 -P fwd esp/tunnel/{HOME_AGENT}-{OLD_COA}/require "
        f"esp/tunnel/{HOME_AGENT}-{NEW_COA}/require;"
    )
    text = (CONFIGS / "mip6.conf").read_text() + (CONFIGS / "migrate.conf").read_text() + forward
    assert seed_run(hub, text, Options()) == [
        "conf:40:1: note: the fwd twin moved with its in policy (RFC mode); this migrate is not needed"
    ]
    assert twin_peer(hub) == ip_address(NEW_COA)
    [refused] = seed_run(hub, forward, Options(rfc=False))  # (another run: nothing moved there; Linux answers)
    assert refused.startswith("conf:1:1: migrate: No data available")


# --- -r beyond what Linux keeps --------------------------------------------------------------------------


@pytest.mark.parametrize("semantics", ["pfmigrate", "linux"])
def test_a_replay_window_over_32_is_noted_with_what_the_sa_gets(semantics: str) -> None:
    hub = Hub(Engine(semantics=semantics))
    errors = seed_run(hub, "add 10.0.0.1 10.0.0.2 esp 0x1000 -r 64 -E null;", Options())
    assert errors == [
        "conf:1:34: note: -r 64 becomes 32: Linux keeps a replay window of at most 32 packets from PF_KEY, and "
        "from XFRM without ESN (ip xfrm state ... replay-window 64 flag esn), which pfmigrate does not set up"
    ]
    with open_inprocess(hub) as engine:
        assert [sa.replay_window for sa in engine.dump_sas()] == [32]


def test_a_replay_window_linux_keeps_is_not_noted() -> None:
    hub = Hub()
    assert seed_run(hub, "add 10.0.0.1 10.0.0.2 esp 0x1000 -r 32 -E null;", Options()) == []
    with open_inprocess(hub) as engine:
        assert [sa.replay_window for sa in engine.dump_sas()] == [32]
