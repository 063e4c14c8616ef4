"""Bad input from outside, through the commands a person runs: a socket path too long
for a Unix socket is said to be so, on both of keyd's sides."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pfmigrate.backends.keyd import KeydUnreachable, connect, probe_keyd
from pfmigrate.cli import main
from pfmigrate.keyd.server import Server, ServerError
from pfmigrate.keyd.service import AccessRules, Service
from pfmigrate.sadb import Engine


def _command(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """``pfmigrate ARGS`` run as a person runs it (a hang fails the test after ``timeout`` s)."""
    command = [sys.executable, "-m", "pfmigrate", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


# --- socket paths longer than a Unix socket takes -------------------------------------------------


def _long(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "s"
    path = tmp_path / ("s" * (size - len(os.fsencode(path)) + 1))
    assert len(os.fsencode(path)) == size
    return path


def _server(path: Path) -> Server:
    return Server(Service(Engine(), None, AccessRules(os.getuid())), path)


def test_keyd_says_its_socket_path_is_too_long(tmp_path: Path) -> None:
    path = _long(tmp_path, 108)
    with pytest.raises(ServerError) as caught:
        _server(path)
    assert str(caught.value) == (
        f"{path}: the path is 108 bytes long, and a Unix socket's address (sun_path) holds at most 107: "
        "give a shorter path"
    )
    done = _command("keyd", "--socket", str(path), "--journal", str(tmp_path / "keyd.db"))
    assert done.returncode == 1
    assert done.stderr == f"pfmigrate: {caught.value}\n"


def test_a_socket_path_of_the_longest_length_is_served(tmp_path: Path) -> None:
    path = _long(tmp_path, 107)  # (Linux: 108 bytes of sun_path, with its NUL)
    server = _server(path)
    try:
        connect(path).close()
    finally:
        server.close()


def test_a_client_says_the_socket_path_is_too_long(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _long(tmp_path, 200)
    with pytest.raises(KeydUnreachable) as caught:
        connect(path)
    assert caught.value.errno == errno.ENAMETOOLONG
    reason = "the path is 200 bytes long, and a Unix socket's address (sun_path) holds at most 107"
    assert str(caught.value).startswith(f"cannot reach keyd at {path}: {reason}")
    assert reason in probe_keyd(path).notes[0]
    assert main(["setkey", "--backend", "keyd", "--keyd-socket", str(path), "-D"]) == 1
    err = capsys.readouterr().err
    assert reason in err
    assert "Success" not in err
