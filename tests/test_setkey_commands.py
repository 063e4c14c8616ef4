"""``pfmigrate setkey`` carrying out statements on pfmigrate's own engine (in-process,
no kernel): the sample configurations, RFC mode's fwd twins, the seed's MIGRATE, engine
errors reported with their line while the run goes on, and the command line itself."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest

from pfmigrate.backends.inprocess import Hub, open_inprocess
from pfmigrate.cli import main
from pfmigrate.cli.setkey import SetkeyError, parse
from pfmigrate.cli.setkey.commands import Options, Session, forward_copy, watch
from pfmigrate.cli.setkey.inputs import decode, interactive
from pfmigrate.cli.setkey.statements import AddSA, SpdAdd, Statement, Where
from pfmigrate.engine import KeyEngine
from pfmigrate.model import (
    AH,
    ESP,
    MH,
    Algorithm,
    Dir,
    MigrateEvent,
    Mode,
    Policy,
    SAState,
    SecurityAssociation,
    Selector,
    Template,
)
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA

CONFIGS = Path(__file__).parent / "setkey_configs"


@pytest.fixture
def hub() -> Hub:
    return Hub()


@pytest.fixture
def engine(hub: Hub) -> Iterator[KeyEngine]:
    with open_inprocess(hub) as engine:
        yield engine


RFC, KERNEL = Options(), Options(rfc=False)


class Run:
    """A session on ``engine`` with its output and errors kept."""

    def __init__(
        self, engine: KeyEngine, text: str | list[Statement], options: Options = RFC, source: str = "conf"
    ) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        self.session = Session(engine, out=self.out, err=self.err, options=options, clock=lambda: 1_000_000_000.0)
        self.went_on = self.session.run(parse(text, source) if isinstance(text, str) else text)

    @property
    def errors(self) -> list[str]:
        return self.err.getvalue().splitlines()


def text_of(*names: str) -> str:
    return "".join((CONFIGS / name).read_text() for name in names)


# --- the sample configurations ---------------------------------------------------------------------


def test_transport_configuration_in_rfc_mode(engine: KeyEngine) -> None:
    run = Run(engine, text_of("transport.conf"))
    assert run.errors == []
    sas = engine.dump_sas()
    assert sorted((sa.proto, sa.spi) for sa in sas) == [(ESP, 0x201), (ESP, 0x301), (AH, 0x200), (AH, 0x300)]
    policies = {p.dir: p for p in engine.dump_policies()}
    assert set(policies) == {Dir.IN, Dir.OUT, Dir.FWD}
    assert policies[Dir.FWD].selector == policies[Dir.IN].selector == Selector.host("192.168.1.20", "192.168.1.10")
    assert policies[Dir.FWD].templates == policies[Dir.IN].templates == (Template(ESP), Template(AH))


def test_kernel_mode_adds_no_fwd_twin(engine: KeyEngine) -> None:
    Run(engine, text_of("transport.conf"), KERNEL)
    assert sorted(p.dir.value for p in engine.dump_policies()) == ["in", "out"]


def test_the_fwd_twin_of_a_unique_request_requires_instead(engine: KeyEngine) -> None:
    run = Run(engine, text_of("tunnel.conf"))
    assert run.errors == []
    policies = {(p.dir, p.templates[0].reqid if p.templates else None) for p in engine.dump_policies()}
    assert (Dir.IN, 102) in policies
    assert (Dir.FWD, 0) in policies
    assert (Dir.OUT, 101) in policies
    sa = next(sa for sa in engine.dump_sas() if sa.spi == 0x1001)
    assert (sa.mode, sa.reqid, sa.lifetime.hard_add, sa.replay_window) == (Mode.TUNNEL, 101, 3600, 32)


def test_forward_copy_keeps_an_optional_first_request() -> None:
    [statement] = parse("spdadd ::1 ::2 any -P in ipsec esp/transport//use ah/transport//unique:4;")
    assert isinstance(statement, SpdAdd)
    policy = statement.policy
    twin = forward_copy(policy)
    assert twin.dir is Dir.FWD
    assert twin.templates == policy.templates


@pytest.mark.parametrize("name", ["ipcomp.conf", "natt.conf", "mip6.conf"])
def test_other_configurations_apply_cleanly(engine: KeyEngine, name: str) -> None:
    run = Run(engine, text_of(name))
    assert run.errors == []
    assert engine.dump_sas()
    assert engine.dump_policies()


def test_the_seed_moves_to_its_new_care_of_address(hub: Hub, engine: KeyEngine) -> None:
    with open_inprocess(hub) as ike:
        ike.subscribe()
        run = Run(engine, text_of("mip6.conf", "migrate.conf"), KERNEL)
        assert run.errors == []
        old, new, ha = ip_address(OLD_COA), ip_address(NEW_COA), ip_address(HOME_AGENT)
        assert sorted((str(sa.src), str(sa.dst)) for sa in engine.dump_sas()) == sorted(
            [(NEW_COA, HOME_AGENT), (HOME_AGENT, NEW_COA)]
        )
        out = engine.get_policy(Selector.host(HOME_ADDRESS, HOME_AGENT, MH), Dir.OUT)
        assert out.templates == (Template(ESP, Mode.TUNNEL, new, ha),)
        back = engine.get_policy(Selector.host(HOME_AGENT, HOME_ADDRESS, MH), Dir.IN)
        assert back.templates == (Template(ESP, Mode.TUNNEL, ha, new),)
        heard: list[MigrateEvent] = []
        for _ in range(16):
            heard += [e for e in ike.next_events(0.0) if isinstance(e, MigrateEvent)]
        assert [e.request.dir for e in heard] == [Dir.OUT, Dir.IN]
        assert all(e.request.kmaddress is not None and e.request.kmaddress.local == new for e in heard)
        assert all(old not in (sa.src, sa.dst) for sa in engine.dump_sas())


def test_in_rfc_mode_the_fwd_twin_moves_with_its_in_policy(engine: KeyEngine) -> None:
    Run(engine, text_of("mip6.conf", "migrate.conf"))
    twin = engine.get_policy(Selector.host(HOME_AGENT, HOME_ADDRESS, MH), Dir.FWD)
    assert twin.templates[0].dst == ip_address(NEW_COA)  # RFC mode made the twin: it follows


# --- errors from the engine: reported with their line, and the run goes on -------------------------------

KEY = "-E aes-cbc 0x" + "00" * 16
SA = f"add 10.0.0.1 10.0.0.2 esp 0x1000 {KEY}"


def test_an_engine_error_names_the_line_and_the_rest_runs(engine: KeyEngine) -> None:
    run = Run(engine, f"{SA};\n{SA};\nadd 10.0.0.1 10.0.0.2 esp 0x1001 {KEY};\n")
    exists = "File exists: an SA with that destination, SPI and protocol exists"
    assert run.errors == [f"conf:2:1: add: {exists} (answered by pfmigrate's engine)"]
    assert run.session.failures == 1
    assert sorted(sa.spi for sa in engine.dump_sas()) == [0x1000, 0x1001]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("delete 10.0.0.1 10.0.0.2 esp 0x999;", "conf:1:1: delete: No such process: no SA with that destination"),
        ("get 10.0.0.1 10.0.0.2 ah 0x999;", "conf:1:1: get: No such process: no SA with that destination"),
        (
            "spddelete 10.0.0.1 10.0.0.2 any -P out;",
            "conf:1:1: spddelete: No such file or directory: no policy with that selector and direction",
        ),
        (
            "add 10.0.0.1 10.0.0.2 esp 300 -E aes-gcm-16 0x" + "00" * 20 + ";",
            "conf:1:1: add: Function not implemented",
        ),
        ("migrate ::1 ::2 any -P out esp/tunnel/::3-::2/require esp/tunnel/::4-::2/require;", "conf:1:1: migrate:"),
    ],
)
def test_engine_refusals(engine: KeyEngine, text: str, error: str) -> None:
    [line] = Run(engine, text).errors
    assert line.startswith(error)


HERE = Where("conf", 1, 1)
HOSTS = Selector.host("10.0.0.1", "10.0.0.2")
WIDE_WINDOW = SecurityAssociation(
    ip_address("10.0.0.1"), ip_address("10.0.0.2"), 300, ESP, enc=Algorithm("cbc(aes)", bytes(16)), replay_window=256
)


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        (
            SpdAdd(Policy(HOSTS, Dir.OUT, (Template(ESP),) * 7), at=HERE),
            "conf:1:1: spdadd: Too many levels of symbolic links: a policy holds at most 6 templates",
        ),
        (AddSA(WIDE_WINDOW, at=HERE), "conf:1:1: add: Operation not supported"),
    ],
)
def test_engine_refusals_of_what_the_parser_refuses_first(engine: KeyEngine, statement: Statement, error: str) -> None:
    [line] = Run(engine, [statement]).errors  # built without the parser, which refuses them before anything runs
    assert line.startswith(error)


def test_deleting_an_in_policy_deletes_its_twin(engine: KeyEngine) -> None:
    Run(engine, "spdadd 10.0.0.1 10.0.0.2 any -P in none;")
    assert len(engine.dump_policies()) == 2
    run = Run(engine, "spddelete 10.0.0.1 10.0.0.2 any -P in;")
    assert run.errors == []
    assert engine.dump_policies() == []


def test_a_missing_twin_is_reported(engine: KeyEngine) -> None:
    Run(engine, "spdadd 10.0.0.1 10.0.0.2 any -P in none;", KERNEL)
    run = Run(engine, "spddelete 10.0.0.1 10.0.0.2 any -P in;")
    [error] = run.errors
    assert error.startswith("conf:1:1: spddelete (its fwd copy, RFC mode): No such file or directory")
    assert engine.dump_policies() == []


# --- every statement -------------------------------------------------------------------------------------

FOUR = f"""
add 10.0.0.1 10.0.0.2 esp 0x1000 {KEY};
add 10.0.0.1 10.0.0.2 esp 0x1001 {KEY};
add 10.0.0.1 10.0.0.3 esp 0x1002 {KEY};
add 10.0.0.1 10.0.0.2 ah 0x1003 -A hmac-sha1 0x0000000000000000000000000000000000000000;
"""


def test_deleteall_removes_the_protocol_between_two_addresses(engine: KeyEngine) -> None:
    Run(engine, FOUR + "deleteall 10.0.0.1 10.0.0.2 esp;")
    assert sorted(sa.spi for sa in engine.dump_sas()) == [0x1002, 0x1003]


def test_flush_of_one_protocol(engine: KeyEngine) -> None:
    Run(engine, FOUR + "flush esp;")
    assert [sa.proto for sa in engine.dump_sas()] == [AH]
    Run(engine, "flush; spdadd ::1 ::2 any -P out none; spdflush;")
    assert engine.dump_sas() == []
    assert engine.dump_policies() == []


def test_dump_of_one_protocol(engine: KeyEngine) -> None:
    run = Run(engine, FOUR + "dump ah;")
    text = run.out.getvalue()
    assert text.startswith("10.0.0.1 10.0.0.2\n\tah mode=transport spi=4099(0x00001003)")
    assert "esp mode" not in text


def test_get_prints_one_sa(engine: KeyEngine) -> None:
    run = Run(engine, FOUR + "get 10.0.0.1 10.0.0.3 esp 0x1002;")
    assert run.out.getvalue().splitlines()[:3] == [
        "10.0.0.1 10.0.0.3",
        "\tesp mode=transport spi=4098(0x00001002) reqid=0(0x00000000)",
        "\tE: aes-cbc  (128-bit key hidden; --keys shows it)",
    ]


def test_json_results(engine: KeyEngine) -> None:
    run = Run(engine, FOUR + "get 10.0.0.1 10.0.0.2 ah 0x1003; dump; spdadd ::1 ::2 tcp -P out none; spddump;",
              Options(json=True, rfc=False))  # fmt: skip
    got, dumped, policies = (json.loads(line) for line in run.out.getvalue().splitlines())
    assert got["auth"] == {"name": "SHA1HMAC", "value": 3, "alg_name": "hmac(sha1)", "key_bits": 160, "icv_bits": 96}
    assert len(dumped) == 4
    assert policies[0]["selector"]["proto"] == {"name": "TCP", "value": 6}


def test_getspi_speaks_the_json_vocabulary(engine: KeyEngine) -> None:
    run = Run(engine, "getspi 10.0.0.1 10.0.0.2 esp 0x2000;", Options(json=True))
    got = json.loads(run.out.getvalue())
    assert (got["proto"], got["spi"]) == ({"name": "ESP", "value": 50}, 0x2000)


def test_keys_show_only_when_asked(engine: KeyEngine) -> None:
    hidden = Run(engine, FOUR + "dump ah;").out.getvalue()
    shown = Run(engine, "dump ah;", Options(keys=True)).out.getvalue()
    assert "(160-bit key hidden; --keys shows it)" in hidden
    assert "\tA: hmac-sha1  00000000 00000000 00000000 00000000 00000000\n" in shown
    as_json = Run(engine, "dump ah;", Options(keys=True, json=True)).out.getvalue()
    assert json.loads(as_json)[0]["auth"]["key"] == "00" * 20


def test_getspi_and_update(engine: KeyEngine) -> None:
    run = Run(engine, "getspi 10.0.0.1 10.0.0.2 esp 0x4242 -u 5; getspi 10.0.0.1 10.0.0.2 ah 0;")
    first, second = run.out.getvalue().split("10.0.0.1 10.0.0.2\n")[1:]
    assert first.startswith("\tesp spi=16962(0x00004242) reqid=5(0x00000005) state=larval")
    assert second.startswith("\tah spi=")
    run = Run(engine, f"update 10.0.0.1 10.0.0.2 esp 0x4242 -u 5 {KEY};")
    assert run.errors == []
    [sa] = [sa for sa in engine.dump_sas() if sa.spi == 0x4242]
    assert sa.enc is not None
    assert sa.enc.name == "cbc(aes)"


def test_getspi_with_the_extensions_of_an_add(engine: KeyEngine) -> None:
    run = Run(engine, "getspi 10.0.0.1 10.0.0.2 esp 0x4242 -m any -u 5 -r 64;")
    assert run.errors == ["conf:1:49: note: -r has no effect on getspi: Linux's larval SA has a mode and a reqid only"]
    assert run.out.getvalue().startswith(
        "10.0.0.1 10.0.0.2\n\tesp spi=16962(0x00004242) reqid=5(0x00000005) state=larval"
    )


def test_a_larval_sa_is_dumped_without_algorithms(engine: KeyEngine) -> None:
    text = Run(
        engine, "getspi 10.0.0.1 10.0.0.2 esp 0x2000; getspi 10.0.0.1 10.0.0.2 ipcomp 0x3000; dump;"
    ).out.getvalue()
    assert "\tesp mode=transport spi=8192(0x00002000) reqid=0(0x00000000)\n\tseq=0x00000000 " in text
    assert "\tipcomp mode=transport spi=12288(0x00003000) reqid=0(0x00000000)\n\tseq=0x00000000 " in text
    assert "\tE: " not in text
    assert "\tC: " not in text
    dumped = json.loads(Run(engine, "dump;", Options(json=True)).out.getvalue())
    assert [(sa["state"]["name"], sa["enc"], sa["aead"], sa["comp"]) for sa in dumped] == [
        ("LARVAL", None, None, None)
    ] * 2


def test_getspi_in_tunnel_mode_makes_a_larval_tunnel_sa(engine: KeyEngine) -> None:
    """As setkey(8): ``-m tunnel`` gives the larval SA its mode, which the update that
    completes it keeps."""
    assert Run(engine, "getspi 10.0.0.1 10.0.0.2 esp 0x4242 -m tunnel -u 5;").errors == []
    [larval] = engine.dump_sas()
    assert (larval.mode, larval.state) == (Mode.TUNNEL, SAState.LARVAL)
    assert Run(engine, f"update 10.0.0.1 10.0.0.2 esp 0x4242 -m tunnel -u 5 {KEY};").errors == []
    [sa] = engine.dump_sas()
    assert (sa.mode, sa.state, sa.reqid) == (Mode.TUNNEL, SAState.MATURE, 5)


def test_getspi_of_an_ipcomp_sa_picks_a_16_bit_cpi(engine: KeyEngine) -> None:
    run = Run(engine, "getspi 10.0.0.1 10.0.0.2 ipcomp 0;")
    assert run.errors == []
    [sa] = engine.dump_sas()
    assert 256 <= sa.spi <= 0xFFFF


def test_exit_stops_the_run(engine: KeyEngine) -> None:
    run = Run(engine, "spdadd ::1 ::2 any -P out none; exit; spdflush;")
    assert run.went_on is False
    assert len(engine.dump_policies()) == 1


def test_notes_are_printed_before_the_run(engine: KeyEngine) -> None:
    run = Run(engine, f"add 10.0.0.1 10.0.0.2 esp 300 -f seq-pad {KEY};")
    assert run.errors == ["conf:1:31: note: -f seq-pad has no effect: Linux has no choice of padding or cycling"]
    assert run.session.failures == 0


def test_watch_prints_what_the_engine_announces(hub: Hub, engine: KeyEngine) -> None:
    with open_inprocess(hub) as listener:
        listener.subscribe()
        Run(engine, text_of("mip6.conf", "migrate.conf"), KERNEL)
        out = io.StringIO()
        assert watch(listener, out, count=2, timeout=5.0) == 2
    lines = out.getvalue().splitlines()
    assert lines[0] == f"MIGRATE out {HOME_ADDRESS}/128 -> {HOME_AGENT}/128 proto 135"
    assert f"  kmaddress local {NEW_COA} remote {HOME_AGENT}" in lines


def test_watch_in_json_and_with_a_timeout(hub: Hub, engine: KeyEngine) -> None:
    with open_inprocess(hub) as listener:
        listener.subscribe()
        Run(engine, text_of("mip6.conf", "migrate.conf"), KERNEL)
        out = io.StringIO()
        assert watch(listener, out, as_json=True, count=1) == 1
        assert json.loads(out.getvalue())["event"] == "migrate"
        assert watch(listener, io.StringIO(), timeout=0.05) == 1  # the second MIGRATE, then time is up


# --- input: files, pipes and terminals --------------------------------------------------------------------


def test_interactive_runs_each_statement_when_its_line_ends() -> None:
    batches: list[list[Statement]] = []
    mistakes: list[SetkeyError] = []
    lines = ["spdflush; spddump;\n", "flush\n", "  esp;  # two lines\n", "\n", "spdadd nonsense;\n"]
    lines += ["dump;\n", "exit;\n", "dump;\n"]

    def handle(statements: list[Statement]) -> bool:
        batches.append(statements)
        return not any(s.verb == "exit" for s in statements)

    interactive(lines, "<stdin>", handle, mistakes.append)
    assert [[s.verb for s in batch] for batch in batches] == [["spdflush", "spddump"], ["flush"], ["dump"], ["exit"]]
    assert batches[1][0].at.line == 2
    [mistake] = mistakes
    assert str(mistake).startswith("<stdin>:5:8: expected a numeric IPv4 or IPv6 address")


UNFINISHED = '<stdin>:3:1: expected ";" to end the spddump statement of line 2, found the end of the input'


def test_interactive_reports_a_statement_the_input_ends_inside() -> None:
    text = "spdflush;\nspddump\n"
    batches: list[list[Statement]] = []
    mistakes: list[SetkeyError] = []

    def handle(statements: list[Statement]) -> bool:
        batches.append(statements)
        return True

    interactive(text.splitlines(keepends=True), "<stdin>", handle, mistakes.append)
    assert [[s.verb for s in batch] for batch in batches] == [["spdflush"]]
    with pytest.raises(SetkeyError) as piped:
        parse(text, "<stdin>")
    assert [str(mistake) for mistake in mistakes] == [str(piped.value)] == [UNFINISHED]


def test_decode_points_at_a_byte_that_is_not_utf8() -> None:
    with pytest.raises(SetkeyError, match=r"^f:2:4: this byte is not UTF-8 text$"):
        decode("flush;\nab\u00e9".encode() + b"\xff", "f")


# --- the command line -----------------------------------------------------------------------------------


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["setkey", "--backend", "inprocess", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_runs_a_file_in_one_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "all.conf"
    conf.write_text(text_of("mip6.conf", "migrate.conf") + "dump;\nspddump;\n")
    status, out, err = cli(["-k", "-f", str(conf)], capsys)
    assert (status, err) == (0, "")
    assert f"{NEW_COA} {HOME_AGENT}\n\tesp mode=tunnel spi=4096(0x00001000) reqid=0(0x00000000)" in out
    assert f"\tesp/tunnel/{NEW_COA}-{HOME_AGENT}/require\n" in out
    assert OLD_COA not in out


def test_cli_runs_nothing_from_a_file_with_a_mistake(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("spddump;\ndump;\nadd 10.0.0.1 10.0.0.2 espp 0x1000 -E null;\n")
    status, out, err = cli(["-f", str(conf)], capsys)
    assert status == 1
    assert out == ""
    assert err == f'pfmigrate: {conf}:3:23: expected a protocol (esp, ah, ipcomp, esp-udp), found "espp"\n'


def test_cli_exit_status_after_an_engine_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "twice.conf"
    conf.write_text(f"{SA};\n{SA};\nspddump;\n")
    status, out, err = cli(["-f", str(conf)], capsys)
    assert status == 1
    assert out == "No SPD entries.\n"
    assert err.startswith(f"{conf}:2:1: add: File exists")


def test_cli_check_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text(
        "spdadd 10.0.0.0/8 10.1.0.0/16 any -P in prio high none;\nadd ::1 ::2 esp 300 -f zero-pad -E null;\n"
    )
    status, out, err = main(["setkey", "-n", "-f", str(conf)]), *capsys.readouterr()
    assert status == 0
    assert out == "spdadd 10.0.0.0/8[any] 10.1.0.0/16[any] any -P in prio high none;\nadd ::1 ::2 esp 0x12c -E null;\n"
    assert err.startswith(f"{conf}:2:21: note: -f zero-pad has no effect")


@pytest.mark.parametrize(
    ("argv", "out"),
    [
        (["-D"], "No SAD entries.\n"),
        (["-D", "-P"], "No SPD entries.\n"),
        (["-DP"], "No SPD entries.\n"),
        (["-F"], ""),
        (["-FP"], ""),
        (["-D", "--json"], "[]\n"),
        (["-x", "--timeout", "0.01"], ""),
    ],
)
def test_cli_flags(argv: list[str], out: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(argv, capsys) == (0, out, "")


def test_cli_reads_standard_input(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("spdadd ::1 ::2 any -P out discard;\nspddump;\n"))
    status, out, _ = cli(["-c"], capsys)
    assert status == 0
    assert out == "::1[any] ::2[any] any\n\tout prio def discard\n\tspid=1\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-c", "-P"], "pfmigrate: -P goes with -D or -F\n"),
        (["-n", "-D"], "pfmigrate: -n goes with -c or -f\n"),
        (
            ["-f", "/nonexistent/setkey.conf"],
            "pfmigrate: cannot read /nonexistent/setkey.conf: No such file or directory\n",
        ),
    ],
)
def test_cli_usage_mistakes(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(argv, capsys) == (1, "", message)


def test_cli_needs_one_action(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["setkey", "-P"])
    assert "one of the arguments -c -f -D -F -x is required" in capsys.readouterr().err


def test_cli_runs_nothing_from_a_file_past_a_limit_of_linux(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "r300.conf"
    conf.write_text(
        "spdadd 10.0.0.1 10.0.0.2 any -P out none;\nadd 10.0.0.1 10.0.0.2 esp 0x1000 -r 300 -E null;\nspddump;\n"
    )
    mistake = (
        f"pfmigrate: {conf}:2:37: a replay window size (PF_KEY's field is one byte) must be at most 255, not 300\n"
    )
    assert cli(["-f", str(conf)], capsys) == (1, "", mistake)
    assert cli(["-n", "-f", str(conf)], capsys) == (1, "", mistake)


class Terminal(io.StringIO):
    """Standard input at a terminal: ``-c`` runs each statement as its line ends."""

    def isatty(self) -> bool:
        return True


def test_cli_at_a_terminal_reports_a_statement_left_unfinished(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", Terminal("spdadd ::1 ::2 any -P out discard;\nspddump\n"))
    assert cli(["-c"], capsys) == (1, "", f"pfmigrate: {UNFINISHED}\n")


class ClosedPipe(io.StringIO):
    """Standard output whose reader has gone, as in ``setkey -D | head -1``."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def test_a_reader_that_goes_away_is_not_a_failed_statement(engine: KeyEngine) -> None:
    session = Session(engine, out=ClosedPipe(), err=io.StringIO())
    with pytest.raises(BrokenPipeError):
        session.run(parse("dump;"))
    assert session.failures == 0


def test_cli_ends_quietly_when_its_reader_goes_away(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["setkey", "--backend", "inprocess", "-D"]) == 0
    assert capsys.readouterr().err == ""


def test_setkey_piped_into_head(tmp_path: Path) -> None:
    conf = tmp_path / "many.conf"  # a dump larger than a pipe holds, so the writer meets the closed end
    sas = (f"add 10.0.{i // 250}.{i % 250 + 1} 10.1.0.1 esp {0x1000 + i} -E null;\n" for i in range(300))
    conf.write_text("".join(sas) + "dump;\n")
    argv = [sys.executable, "-m", "pfmigrate", "setkey", "--backend", "inprocess", "-f", str(conf)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as setkey:
        assert setkey.stdout is not None
        assert setkey.stderr is not None
        first = setkey.stdout.readline()
        setkey.stdout.close()
        err = setkey.stderr.read()
        status = setkey.wait(timeout=60)
    assert first.endswith(b" 10.1.0.1\n")
    assert (status, err) == (0, b"")


class Interrupted:
    """Standard input that Ctrl-C interrupts, piped (read whole) or at a terminal (line by line)."""

    def __init__(self, at_terminal: bool) -> None:
        self.at_terminal = at_terminal

    def isatty(self) -> bool:
        return self.at_terminal

    def read(self) -> str:
        raise KeyboardInterrupt

    def __iter__(self) -> Interrupted:
        return self

    def __next__(self) -> str:
        raise KeyboardInterrupt


@pytest.mark.parametrize("at_terminal", [False, True])
def test_ctrl_c_ends_the_command_with_status_130_and_no_traceback(
    at_terminal: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", Interrupted(at_terminal))
    try:
        status = main(["setkey", "--backend", "inprocess", "-c"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C went through main(): Python prints a traceback and exits with status 2")
    assert status == 130
    assert capsys.readouterr() == ("", "pfmigrate: interrupted\n")
