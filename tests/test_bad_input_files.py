"""Files a person hands ``pfmigrate setkey -f`` and ``pfmigrate pfkey encode``: a device
such as /dev/zero, a directory, or a file past the limit is one clear line, at once and
without a traceback; a pipe (``-f <(...)``, a named FIFO, standard input) is read as
before, and bounded too."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pfmigrate.cli import main
from pfmigrate.cli.setkey.reading import MAX_SETKEY_BYTES
from pfmigrate.pfkey.constants import MsgType, SAType
from pfmigrate.pfkey.jsonform import to_json
from pfmigrate.pfkey.message import Message

STATEMENTS = b"flush ;\nspdflush ;\n"
CHECKED = "flush;\nspdflush;\n"  # what setkey -n prints of them
MESSAGE = Message(type=MsgType.FLUSH, satype=SAType.ESP)
SIXTEEN_MIB = "16777216 bytes (16 MiB)"
NOT_A_FILE = "give a file, a pipe, or - for standard input"


def _no_more_than_a_gibibyte() -> None:
    # Without a bound, reading /dev/zero grows until memory runs out: here that is a
    # MemoryError within seconds, not a machine swapping.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def _command(*args: str, stdin: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``pfmigrate ARGS`` as a person runs it; a hang fails the test after 20 s."""
    with open(stdin or os.devnull, "rb") as given:
        return subprocess.run(
            [sys.executable, "-m", "pfmigrate", *args],
            stdin=given,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
            preexec_fn=_no_more_than_a_gibibyte,
        )


def _one_line(done: subprocess.CompletedProcess[str], said: str) -> None:
    assert done.returncode == 1
    assert done.stderr == f"pfmigrate: {said}\n"  # one line, no traceback


@pytest.fixture
def pipe() -> Iterator[tuple[str, int]]:
    """A pipe's read end as a path (``/dev/fd/N``, what ``-f <(...)`` gives), and its write end."""
    read, write = os.pipe()
    yield f"/dev/fd/{read}", write
    os.close(read)


def _fill(write: int, data: bytes) -> None:
    with os.fdopen(write, "wb") as writer:
        writer.write(data)


# --- a device, a directory ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [(["setkey", "-n", "-f"], "a file of statements"), (["pfkey", "encode"], "a JSON file")],
    ids=["setkey", "pfkey-encode"],
)
def test_dev_zero_is_refused_at_once(argv: list[str], wanted: str) -> None:
    done = _command(*argv, "/dev/zero")
    _one_line(done, f"cannot read /dev/zero: it is a character device, not {wanted}: {NOT_A_FILE}")


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [(["setkey", "-n", "-f"], "a file of statements"), (["pfkey", "encode"], "a JSON file")],
    ids=["setkey", "pfkey-encode"],
)
def test_a_directory_is_refused(
    tmp_path: Path, argv: list[str], wanted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, str(tmp_path)]) == 1
    said = f"cannot read {tmp_path}: it is a directory, not {wanted}: {NOT_A_FILE}"
    assert capsys.readouterr().err == f"pfmigrate: {said}\n"


@pytest.mark.parametrize(
    ("argv", "reader"),
    [
        (["setkey", "-n", "-c"], "setkey"),
        (["setkey", "-n", "-f", "-"], "setkey"),
        (["pfkey", "encode"], "pfkey encode"),
    ],
    ids=["setkey-c", "setkey-f-", "pfkey-encode"],
)
def test_standard_input_from_dev_zero_ends_at_the_limit(argv: list[str], reader: str) -> None:
    source = "<stdin>" if reader == "setkey" else "stdin"
    done = _command(*argv, stdin=Path("/dev/zero"))
    _one_line(done, f"cannot read {source}: it is larger than {SIXTEEN_MIB}, the most {reader} reads")


def test_pfkey_decode_of_standard_input_from_dev_zero_ends_at_the_limit() -> None:
    done = _command("pfkey", "decode", "-", stdin=Path("/dev/zero"))
    _one_line(done, f"cannot read stdin: it is larger than {SIXTEEN_MIB}, the most pfkey decode reads")


# --- too large ----------------------------------------------------------------------------------------


def test_a_setkey_file_past_16_mib_is_refused_naming_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "huge.conf"
    with path.open("wb") as file:  # (sparse: no 16 MiB written to disk)
        file.truncate(MAX_SETKEY_BYTES + 1)
    assert main(["setkey", "-n", "-f", str(path)]) == 1
    said = f"cannot read {path}: it is larger than {SIXTEEN_MIB}, the most setkey reads"
    assert capsys.readouterr().err == f"pfmigrate: {said}\n"


@pytest.mark.parametrize(("extra", "status"), [(0, 0), (1, 1)], ids=["at-the-limit", "one-more"])
def test_the_setkey_limit_is_exact(
    tmp_path: Path, extra: int, status: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    limit = 64
    monkeypatch.setattr("pfmigrate.cli.setkey.MAX_SETKEY_BYTES", limit)
    path = tmp_path / "setkey.conf"
    path.write_bytes(STATEMENTS + b"#" * (limit - len(STATEMENTS) - 1 + extra) + b"\n")
    assert main(["setkey", "-n", "-f", str(path)]) == status
    out, err = capsys.readouterr()
    if status:
        assert err == f"pfmigrate: cannot read {path}: it is larger than 64 bytes, the most setkey reads\n"
    else:
        assert (out, err) == (CHECKED, "")


def test_a_pfkey_file_past_16_mib_is_refused_naming_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as file:
        file.truncate(16 * 1024 * 1024 + 1)
    assert main(["pfkey", "encode", str(path)]) == 1
    said = f"cannot read {path}: it is larger than {SIXTEEN_MIB}, the most pfkey encode reads"
    assert capsys.readouterr().err == f"pfmigrate: {said}\n"


# --- pipes still work --------------------------------------------------------------------------------


def test_setkey_reads_a_process_substitution(pipe: tuple[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    path, write = pipe
    _fill(write, STATEMENTS)
    assert main(["setkey", "-n", "-f", path]) == 0
    assert capsys.readouterr() == (CHECKED, "")


def test_setkey_waits_for_a_named_fifos_writer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "statements"
    os.mkfifo(path)
    writer = threading.Thread(target=path.write_bytes, args=(STATEMENTS,))
    writer.start()
    try:
        assert main(["setkey", "-n", "-f", str(path)]) == 0
    finally:
        writer.join(timeout=10)
    assert capsys.readouterr() == (CHECKED, "")


def test_setkey_bounds_a_pipe_too(
    pipe: tuple[str, int], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("pfmigrate.cli.setkey.MAX_SETKEY_BYTES", 64)
    path, write = pipe
    _fill(write, STATEMENTS + b"#" * 64)  # (fits the pipe's buffer: no writer thread)
    assert main(["setkey", "-n", "-f", path]) == 1
    assert (
        capsys.readouterr().err == f"pfmigrate: cannot read {path}: it is larger than 64 bytes, the most setkey reads\n"
    )


def test_setkey_reads_standard_input(tmp_path: Path) -> None:
    given = tmp_path / "statements"
    given.write_bytes(STATEMENTS)
    for argv in (["-n", "-c"], ["-n", "-f", "-"]):
        done = _command("setkey", *argv, stdin=given)
        assert (done.returncode, done.stdout, done.stderr) == (0, CHECKED, "")


def test_pfkey_encode_reads_a_process_substitution(pipe: tuple[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    path, write = pipe
    _fill(write, json.dumps(to_json(MESSAGE)).encode())
    assert main(["pfkey", "encode", path]) == 0
    assert capsys.readouterr() == (MESSAGE.encode().hex() + "\n", "")
