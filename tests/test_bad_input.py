"""Bad input from outside, through the commands a person runs: a mistyped key never shows
up in an error, a configuration path that is no file (a FIFO, a device, a directory)
or a huge file is refused at once, and a socket path too long for a Unix socket is
said to be so, on both of keyd's sides."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pfmigrate.backends.keyd import KeydUnreachable, connect, probe_keyd
from pfmigrate.cli import main
from pfmigrate.keyd.server import Server, ServerError
from pfmigrate.keyd.service import AccessRules, Service
from pfmigrate.mobility.config import MAX_FILE_BYTES, ConfigError, load_mn
from pfmigrate.sadb import Engine

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MN_TEXT = (EXAMPLES / "mn.toml").read_text()
SECRET = "b0f1f8773a9c9d4bec1084a0ecb1da48"  # examples/mn.toml's first encryption key
KEY_LINE = f'encryption_key = "0x{SECRET}"'
KEY_PATH = "ipsec.sa.bu-ba.to-ha.encryption_key"


def _command(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """``pfmigrate ARGS`` run as a person runs it (a hang fails the test after ``timeout`` s)."""
    command = [sys.executable, "-m", "pfmigrate", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


# --- keys stay out of errors --------------------------------------------------------------------


def _pieces(secret: str, size: int = 8) -> set[str]:
    """Every ``size``-character piece of ``secret``, in any case."""
    return {secret[i : i + size].lower() for i in range(len(secret) - size + 1)}


def _leaks(said: str, secret: str) -> list[str]:
    """The pieces of the key ``secret`` (hex digits) found in ``said`` (spaces or not), as
    hex and as the decimal number TOML reads from a bare 0x... value."""
    digits = re.sub(r"[^0-9a-fA-F]", "", secret)
    pieces = _pieces(digits) | _pieces(str(int(digits, 16)))
    texts = (said.lower(), re.sub(r"\s", "", said.lower()))
    return sorted(piece for piece in pieces if any(piece in text for text in texts))


@pytest.mark.parametrize(
    ("written", "path", "expected"),
    [
        (f'encryption_key = "0x{SECRET[:20]}z{SECRET[21:]}"', KEY_PATH, "not a hex digit at character 23 of 34"),
        (f'encryption_key = "0x{SECRET[:-2]}"', KEY_PATH, "for cbc(aes), found 120 bits"),
        (f'encryption_key = "0x{SECRET[:-1]}"', KEY_PATH, "an even number of hex digits), found 31 digits"),
        (f'encryption_key = "{" ".join(SECRET[i : i + 4] for i in range(0, 32, 4))}"', KEY_PATH,
         "not a hex digit at character 5 of 39"),
        (f"encryption_key = 0x{SECRET}", KEY_PATH, "in hexadecimal, as a string, found a number"),
        (f'encryption_key = ["{SECRET}"]', KEY_PATH, "found an array"),
        (f'spi = 0x{SECRET}\nencryption_key = "0x{SECRET}"', "ipsec.sa.bu-ba.to-ha.spi", "found a number of 128 bits"),
        (f'spi = "{SECRET}"\nencryption_key = "0x{SECRET}"', "ipsec.sa.bu-ba.to-ha.spi",
         "found a string of 32 characters"),
    ],
    ids=["bad-hex", "short", "odd", "spaced", "bare-number", "array", "key-as-spi", "key-as-spi-string"],
)  # fmt: skip
def test_a_mistyped_key_is_named_by_place_never_shown(tmp_path: Path, written: str, path: str, expected: str) -> None:
    text = MN_TEXT.replace("spi = 0x2000\n" + KEY_LINE if "spi" in written else KEY_LINE, written)
    assert text != MN_TEXT
    config = tmp_path / "mn.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_mn(config)
    said = str(caught.value)
    assert _leaks(said, SECRET) == []
    assert (caught.value.source, caught.value.path) == (str(config), path)
    assert expected in caught.value.message


def test_the_mobile_node_command_shows_no_part_of_a_mistyped_key(tmp_path: Path) -> None:
    config = tmp_path / "mn.toml"
    config.write_text(MN_TEXT.replace(KEY_LINE, f'encryption_key = "0x{SECRET[:30]}zz"'))
    done = _command("mn", "--config", str(config))
    assert done.returncode == 1
    assert done.stderr.startswith(f"pfmigrate: {config}: {KEY_PATH}: expected a 128-, 192- or 256-bit key in hex")
    assert _leaks(done.stderr + done.stdout, SECRET) == []


# --- what a configuration path may be -----------------------------------------------------------


def _make(kind: str, where: Path) -> Path:
    if kind == "fifo":
        path = where / "mn.toml"
        os.mkfifo(path)  # nobody ever writes to it: reading it would wait for ever
        return path
    if kind == "device":
        return Path("/dev/zero")  # (never ends)
    if kind == "directory":
        return where
    path = where / "mn.toml"
    path.write_text(MN_TEXT + "#" * MAX_FILE_BYTES + "\n")  # (valid TOML, but far too much of it)
    return path


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("fifo", "is a FIFO (named pipe), not a regular file"),
        ("device", "is a character device, not a regular file"),
        ("directory", "is a directory, not a regular file"),
        ("huge", "is larger than 1048576 bytes (1 MiB)"),
    ],
    ids=["fifo", "device", "directory", "huge"],
)
@pytest.mark.parametrize("role", ["mn", "ha"])
def test_a_configuration_that_is_not_a_small_regular_file_is_refused(
    tmp_path: Path, kind: str, said: str, role: str
) -> None:
    path = _make(kind, tmp_path)
    done = _command(role, "--config", str(path))
    assert done.returncode == 1
    assert done.stderr.startswith(f"pfmigrate: {path}: {said}"), done.stderr
    assert done.stderr.count("\n") == 1  # one line, no traceback


def test_a_configuration_of_exactly_the_bound_is_read(tmp_path: Path) -> None:
    path = tmp_path / "mn.toml"
    padding = MAX_FILE_BYTES - len(MN_TEXT.encode()) - 1
    path.write_text(MN_TEXT + "#" * (padding - 1) + "\n" + "\n")
    assert path.stat().st_size == MAX_FILE_BYTES
    assert load_mn(path).interface == "wlan0"


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


def test_a_configuration_with_a_keyd_socket_path_too_long_is_refused(tmp_path: Path) -> None:
    path = _long(tmp_path, 150)
    config = tmp_path / "mn.toml"
    config.write_text(MN_TEXT.replace('keyd_socket = "/run/pfmigrate/keyd.sock"', f'keyd_socket = "{path}"'))
    with pytest.raises(ConfigError) as caught:
        load_mn(config)
    assert caught.value.path == "backend.keyd_socket"
    assert "the path is 150 bytes long" in caught.value.message
