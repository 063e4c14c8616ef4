"""keyd against the users of its machine: the metrics file cannot be turned on a file of
root's, and a refused start leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pfmigrate.keyd.metrics import Metrics
from pfmigrate.keyd.server import Server
from pfmigrate.keyd.service import AccessRules, Service
from pfmigrate.sadb import Engine
from tests.keyd_harness import keyd_thread

# --- the metrics file ---------------------------------------------------------------------------


def test_metrics_are_not_written_through_a_symlink_planted_beside_them(tmp_path: Path) -> None:
    """keyd writes its metrics as root, often into a directory others may write
    (a textfile collector's): a symlink at the name of its temporary file once made it
    write over the file the symlink named."""
    victim = tmp_path / "shadow"
    victim.write_text("root's secrets\n")
    target = tmp_path / "keyd.prom"
    planted = tmp_path / "keyd.prom.tmp"  # the name keyd used to write before renaming
    planted.symlink_to(victim)
    metrics = Metrics(sas=3)
    metrics.write(target)
    metrics.write(target)  # (and again, over the first)
    assert victim.read_text() == "root's secrets\n"
    assert not target.is_symlink()
    assert "pfmigrate_keyd_sas 3\n" in target.read_text()
    assert target.stat().st_mode & 0o777 == 0o644  # a node exporter reads it as another user
    assert planted.readlink() == victim  # left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyd.prom", "keyd.prom.tmp", "shadow"]


def test_keyd_writes_its_metrics_past_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root's secrets\n")
    (tmp_path / "keyd.prom.tmp").symlink_to(victim)
    server = Server(Service(Engine(), None, AccessRules(os.getuid())), tmp_path / "keyd.sock",
                    metrics_path=tmp_path / "keyd.prom")  # fmt: skip
    try:
        server.turn(0.0)  # (the metrics are due at once)
    finally:
        server.close()
    assert victim.read_text() == "root's secrets\n"
    assert "pfmigrate_keyd_clients 0" in (tmp_path / "keyd.prom").read_text()


# --- a refused start ----------------------------------------------------------------------------


def _keyd(*args: str) -> subprocess.CompletedProcess[str]:
    """``pfmigrate keyd`` as a user starts it; it must refuse (a started keyd would hang)."""
    command = [sys.executable, "-m", "pfmigrate", "keyd", "--log-level", "warning", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def _journal_files(journal: Path) -> list[str]:
    return sorted(p.name for p in journal.parent.iterdir() if p.name.startswith(journal.name))


@pytest.mark.parametrize("socket_path", ["a-file", "served", "too-long", "parent-is-a-file"])
def test_a_refused_start_creates_no_journal(tmp_path: Path, socket_path: str) -> None:
    journal = tmp_path / "state" / "keyd.db"
    journal.parent.mkdir()
    served = tmp_path / "other"
    served.mkdir()
    path = {
        "a-file": tmp_path / "notes",
        "served": served / "keyd.sock",
        "too-long": tmp_path / ("s" * 120),
        "parent-is-a-file": tmp_path / "notes" / "keyd.sock",
    }[socket_path]
    (tmp_path / "notes").write_text("an operator's notes\n")
    with keyd_thread(served):  # (another keyd, with its own journal)
        done = _keyd("--socket", str(path), "--journal", str(journal))
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"pfmigrate: {path if socket_path != 'parent-is-a-file' else path.parent}")
    assert "Traceback" not in done.stderr
    assert _journal_files(journal) == []  # no keyd.db, keyd.db-wal, keyd.db-shm


def test_a_start_refused_for_its_journal_gives_up_its_socket(tmp_path: Path) -> None:
    """Another keyd holds the journal: this one must not leave a socket nobody serves
    (the next start would take it for one left by a keyd that died, which is right, but
    clients meanwhile are told nobody listens)."""
    with keyd_thread(tmp_path):  # serving tmp_path/keyd.sock with tmp_path/keyd.db
        done = _keyd("--socket", str(tmp_path / "second.sock"), "--journal", str(tmp_path / "keyd.db"))
        assert done.returncode == 1
        assert "the journal is in use by another keyd" in done.stderr
        assert not (tmp_path / "second.sock").exists()
        assert (tmp_path / "keyd.sock").is_socket()  # the first one's is still served


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_journal_that_is_not_a_regular_file_is_refused_before_anything(tmp_path: Path, kind: str) -> None:
    journal = tmp_path / "keyd.db"
    if kind == "fifo":
        os.mkfifo(journal)
    else:
        journal.mkdir()
    done = _keyd("--socket", str(tmp_path / "keyd.sock"), "--journal", str(journal))
    assert done.returncode == 1
    assert done.stderr == f"pfmigrate: {journal}: the journal must be a regular file, and this is not one\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyd.db"]  # no socket, no SQLite files beside it
