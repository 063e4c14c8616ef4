"""What a deployment installs: the systemd units (checked by systemd-analyze and read
here: the binary, the user, the capabilities, the groups the guides create), the wheel
`make dist` builds (its files), the man pages (rendered by groff without a warning),
the bash completion (what the generator writes now) and the licence."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pfmigrate.cli import build_parser
from pfmigrate.mobility.config import DEFAULT_HA_CONTROL, DEFAULT_MN_CONTROL

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
UNITS = sorted(PACKAGING.glob("*.service"))
BINARY = "/usr/local/bin/pfmigrate"  # where docs/deploy.md installs it


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections, each key with its values in order (continuations joined)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(" ".join(value.split()))
    return sections


def service(name: str) -> dict[str, list[str]]:
    return unit(PACKAGING / f"pfmigrate-{name}.service")["Service"]


def test_there_is_a_unit_for_each_daemon_and_none_for_ike() -> None:
    assert [path.name for path in UNITS] == ["pfmigrate-ha.service", "pfmigrate-keyd.service", "pfmigrate-mn.service"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze (apt package systemd)")
def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path: Path) -> None:
    """systemd-analyze verify checks that ExecStart's binary exists: the copies checked
    here run this environment's pfmigrate instead of /usr/local/bin's (checked below)."""
    here = shutil.which("pfmigrate", path=str(Path(sys.executable).parent))
    assert here is not None
    for path in UNITS:
        (tmp_path / path.name).write_text(path.read_text().replace(BINARY, here))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("role", ["mn", "ha"])
def test_an_agents_unit_runs_the_installed_agent_with_net_admin_and_net_raw_only(role: str) -> None:
    conf = service(role)
    (command,) = conf["ExecStart"]
    argv = command.split()
    assert argv[0] == BINARY
    args = build_parser().parse_args([a.replace("${CREDENTIALS_DIRECTORY}", "/run/credentials/x") for a in argv[1:]])
    assert args.command == role
    assert str(args.config) == f"/run/credentials/x/{role}.toml"
    assert conf["LoadCredential"] == [f"{role}.toml:/etc/pfmigrate/{role}.toml"]
    assert conf["User"] == ["pfmigrate"]
    assert conf["SupplementaryGroups"] == ["ipsec"]
    for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
        assert set(conf[key][0].split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}, key
    assert set(conf["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET6", "AF_NETLINK", "AF_KEY"}
    # the runtime directory systemd makes is where the agent's control socket is by default
    default = DEFAULT_MN_CONTROL if role == "mn" else DEFAULT_HA_CONTROL
    assert conf["RuntimeDirectory"] == ["pfmigrate"]
    assert default.parent == Path("/run/pfmigrate")
    assert conf["RuntimeDirectoryPreserve"] == ["yes"]


def test_keyds_unit_runs_as_its_user_without_capabilities() -> None:
    conf = service("keyd")
    argv = conf["ExecStart"][0].split()
    assert argv[0] == BINARY
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.admin_group, args.read_group) == ("keyd", "ipsec", "ipsec-read")
    assert conf["User"] == ["pfmigrate"]
    assert conf["CapabilityBoundingSet"] == [""]
    assert conf["AmbientCapabilities"] == [""]
    assert conf["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert conf["RuntimeDirectoryPreserve"] == ["yes"]


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_every_unit_is_hardened(path: Path) -> None:
    conf = unit(path)["Service"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RestrictSUIDSGID": "yes",
    }.items():
        assert conf.get(key) == [value], (path.name, key)
    assert "/usr/bin/env" not in conf["ExecStart"][0]


@pytest.mark.parametrize("document", ["README.md", "docs/deploy.md"])
def test_the_users_and_groups_the_units_name_are_created_in_the_guides(document: str) -> None:
    text = (ROOT / document).read_text()
    groups: set[str] = set()
    users: set[str] = set()
    for path in UNITS:
        conf = unit(path)["Service"]
        users |= set(conf.get("User", []))
        groups |= {g for value in conf.get("SupplementaryGroups", []) for g in value.split()}
        groups |= set(re.findall(r"--(?:admin|read)-group (\S+)", conf["ExecStart"][0]))
    assert users == {"pfmigrate"}
    assert groups == {"ipsec", "ipsec-read"}
    for group in groups:
        assert re.search(rf"^groupadd --system {group}( |$)", text, re.MULTILINE), (document, group)
    for user in users:
        assert re.search(rf"^useradd --system --user-group [^\n]* {user}( |$)", text, re.MULTILINE), (document, user)


def test_the_licence_is_mit_as_pyproject_says() -> None:
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License\n\nCopyright (c) 2026 pfmigrate developers\n")
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()


# --- the man pages --------------------------------------------------------------------------------

MAN = {"pfmigrate.8": ("PFMIGRATE", "8"), "pfmigrate-mobility.toml.5": ("PFMIGRATE-MOBILITY.TOML", "5")}


@pytest.mark.parametrize("name", sorted(MAN))
def test_a_man_page_has_its_sections(name: str) -> None:
    text = (ROOT / "docs" / "man" / name).read_text()
    title, section = MAN[name]
    assert text.startswith(f".TH {title} {section} ")
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
        assert f"\n.SH {heading}\n" in text, heading


@pytest.mark.skipif(shutil.which("groff") is None, reason="no groff (apt package groff-base)")
@pytest.mark.parametrize("name", sorted(MAN))
def test_a_man_page_renders_without_a_warning(name: str) -> None:
    done = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(ROOT / "docs" / "man" / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_pfmigrate8_names_every_command() -> None:
    text = (ROOT / "docs" / "man" / "pfmigrate.8").read_text()
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(commands.choices) >= 9
    for name in commands.choices:
        assert f"\n.TP\n.B {name}\n" in text, name


def test_the_configuration_page_names_every_key_of_the_configuration_guide() -> None:
    page = (ROOT / "docs" / "man" / "pfmigrate-mobility.toml.5").read_text().replace("\\-", "-")
    table_rows = re.findall(
        r"^\| `([a-z_.\[\]N]+)` \|", (ROOT / "docs" / "mobility-config.md").read_text(), re.MULTILINE
    )
    keys = [key for key in table_rows if not key.startswith("pfmigrate_")]  # (the metrics' table is no configuration)
    assert len(keys) > 20
    missing = [key for key in keys if key not in page and key.rsplit(".", 1)[-1] not in page]
    assert missing == []


# --- the bash completion --------------------------------------------------------------------------

COMPLETION = PACKAGING / "completion" / "pfmigrate.bash"


def test_the_committed_completion_is_what_the_generator_writes_now() -> None:
    """`make completion` writes it; a command or option added since makes this fail."""
    done = subprocess.run(
        [sys.executable, str(PACKAGING / "completion.py")], capture_output=True, text=True, timeout=60, check=True
    )
    assert COMPLETION.read_text() == done.stdout, "run `make completion` and commit the file"


def complete(line: str) -> list[str]:
    """What bash completes for ``line`` (the last word being typed)."""
    words = line.split(" ")
    script = (
        f"source {COMPLETION}\nCOMP_WORDS=({' '.join(repr(w) for w in words)})\nCOMP_CWORD={len(words) - 1}\n"
        "_pfmigrate\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=True)
    return [w for w in done.stdout.splitlines() if w]


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_the_completion_completes_commands_options_choices_and_files(tmp_path: Path) -> None:
    assert complete("pfmigrate d") == ["demo"]
    assert set(complete("pfmigrate ")) >= {"mn", "ha", "keyd", "setkey", "demo"}
    assert complete("pfmigrate mn --log-level w") == ["warning"]
    assert complete("pfmigrate keyd --semantics ") == ["pfmigrate", "linux"]
    assert "--no-route-optimisation" in complete("pfmigrate mn --")
    assert "status" in complete("pfmigrate mn --config x.toml ")
    assert complete("pfmigrate pfkey decode --j") == ["--json"]
    (tmp_path / "here.toml").write_text("")
    assert complete(f"pfmigrate mn --config {tmp_path}/he") == [f"{tmp_path}/here.toml"]


# --- the wheel -------------------------------------------------------------------------------------


def test_the_wheel_carries_the_docs_examples_man_pages_units_and_completion(tmp_path: Path) -> None:
    """`make dist` as a test: the sdist, and the wheel built from it, from a copy of the
    tree (so that nothing is written into the working tree). Without build isolation: the
    test extras put `build` and setuptools in the environment, no network needed."""
    tree = tmp_path / "tree"
    for name in ("src", "docs", "examples", "packaging"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "Makefile"):
        shutil.copy(ROOT / name, tree / name)
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (tmp_path / "dist").glob("pfmigrate-*-py3-none-any.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    share = {
        "doc": ["README.md", "LICENSE", *(p.name for p in (ROOT / "docs").glob("*.md"))],
        "examples": [p.name for p in (ROOT / "examples").glob("*.toml")],
        "man": ["pfmigrate.8", "pfmigrate-mobility.toml.5"],
        "systemd": [p.name for p in UNITS],
        "completion": ["pfmigrate.bash"],
    }
    expected = {f"pfmigrate/share/{kind}/{name}" for kind, files in share.items() for name in files}
    assert "doc/deploy.md" in {n.removeprefix("pfmigrate/share/") for n in expected}
    assert {n for n in names if n.startswith("pfmigrate/share/")} == expected
    assert {"pfmigrate/__init__.py", "pfmigrate/cli/__init__.py", "pfmigrate/py.typed"} <= names
    dist_info = {n.split("/", 1)[1] for n in names if ".dist-info/" in n}
    assert {"entry_points.txt", "licenses/LICENSE"} <= dist_info
    # installed, `pfmigrate demo --files` lists those files where the wheel put them
    installed = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(installed)
    listed = subprocess.run(
        [sys.executable, "-c", "import sys; from pfmigrate.cli import main; sys.exit(main(['demo', '--files']))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": str(installed)},
        cwd=tmp_path,
    ).stdout.split()
    assert sorted(listed) == sorted(str(installed / name) for name in expected)
    (sdist,) = (tmp_path / "dist").glob("pfmigrate-*.tar.gz")
    assert sdist.stat().st_size > 0
