"""keyd's journal never loses acknowledged changes without a word: a journal behind its
commit mark is refused, one emptied under keyd is written anew, its files are kept
private, and a full disk is named as such."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pfmigrate.backends.keyd import open_keyd
from pfmigrate.keyd import journal as journal_module
from pfmigrate.keyd.journal import Journal, JournalError
from pfmigrate.keyd.service import AccessRules, Peer, Service
from pfmigrate.sadb import Engine
from tests.keyd_harness import HA, OLD, KeydProcess, journal_with_two_sas, tunnel_sa, wait_until
from tests.sadb_box import esp_sa

NOW = 1_800_000_000.0
REPOSITORY = Path(__file__).resolve().parent.parent


@contextmanager
def served(path: Path) -> Iterator[Service]:
    """keyd's core on the journal at ``path``, loaded as keyd loads it."""
    journal = Journal(path)
    try:
        engine = Engine()
        engine.restore(*journal.load())
        yield Service(engine, journal, AccessRules(0))
    finally:
        journal.close()


def add(service: Service, *spis: int) -> None:
    """Each SA added and acknowledged (one commit each)."""
    session = service.open(Peer(1, 0, 0))
    for spi in spis:
        service.request(session, esp_sa(spi).encode(), NOW)
        service.commit()
        assert session.outbox.pop()[2] == 0, f"SA {spi:#x} refused"


def spis(path: Path) -> list[int]:
    journal = Journal(path)
    try:
        return sorted(sa.spi for sa in journal.load()[0])
    finally:
        journal.close()


def mark_of(path: Path) -> Path:
    return Path(f"{path}-acked")


def as_format_2(path: Path) -> None:
    """Make the journal at ``path`` what a keyd from before the count wrote: format 2, no
    count, the counters' CRC-32 over the engine's counters alone."""
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta WHERE name IN ('commits', 'counters_crc')")
    db.execute("UPDATE meta SET value = 2 WHERE name = 'format'")
    counters = sorted(db.execute("SELECT name, value FROM meta WHERE name != 'format'").fetchall())
    db.execute("INSERT INTO meta VALUES ('counters_crc', ?)", (zlib.crc32(json.dumps(counters).encode()),))
    db.commit()
    db.close()


# --- a journal behind what was acknowledged ------------------------------------------------------


def test_a_journal_put_back_from_an_older_copy_is_refused_with_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "keyd.db"
    with served(path) as service:
        add(service, 0x1000)
    older = path.read_bytes()  # (closed: all of it is in the file, no log beside it)
    with served(path) as service:
        add(service, 0x1001, 0x1002)
    path.write_bytes(older)
    with pytest.raises(JournalError) as refused:
        Journal(path)
    said = str(refused.value)
    assert said.startswith(f"{path}: the journal is behind what keyd acknowledged: it holds 1 commits")
    assert "the last 2 are missing" in said
    assert f"delete {mark_of(path)} and start keyd again" in said
    mark_of(path).unlink()  # the way out it names: start from what the journal holds
    assert spis(path) == [0x1000]


def test_a_journal_removed_while_keyd_was_stopped_is_not_started_afresh(tmp_path: Path) -> None:
    path = tmp_path / "keyd.db"
    with served(path) as service:
        add(service, 0x1000, 0x1001)
    path.unlink()
    with pytest.raises(JournalError, match=r"it holds 0 commits, .* counts 2, so the last 2 are missing"):
        Journal(path)


@pytest.mark.parametrize("damage", ["a bit flipped", "emptied"])
def test_a_damaged_commit_mark_is_refused_with_what_to_do(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "keyd.db"
    with served(path) as service:
        add(service, 0x1000)
    mark = mark_of(path)
    record = bytearray(mark.read_bytes())
    if damage == "emptied":
        record.clear()
    else:
        record[8] ^= 0x04  # (in the count: 1 becomes 5)
    mark.write_bytes(record)
    with pytest.raises(JournalError) as refused:
        Journal(path)
    said = str(refused.value)
    assert said.startswith(f"{mark}: the journal's commit mark is damaged")
    assert f"cannot tell whether {path} holds every acknowledged change" in said
    assert said.endswith(f"delete {mark} and start keyd again")


def test_a_journal_whose_mark_was_deleted_loads_with_a_warning_and_is_checked_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keyd.db"
    with served(path) as service:
        add(service, 0x1000, 0x1001)
    mark_of(path).unlink()
    with caplog.at_level(logging.INFO, "pfmigrate.keyd"), served(path) as service:
        assert sorted(sa.spi for sa in service.engine.sad.values()) == [0x1000, 0x1001]
    assert "commit mark is missing" in caplog.text
    older = path.read_bytes()
    with served(path) as service:
        add(service, 0x1002)
    path.write_bytes(older)  # counted on from 2, not from 0: one commit short is seen
    with pytest.raises(JournalError, match=r"it holds 2 commits, .* counts 3, so the last 1 are missing"):
        Journal(path)


def test_a_journal_from_before_the_count_is_loaded_and_counted_from_then_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = journal_with_two_sas(tmp_path)
    as_format_2(path)
    mark_of(path).unlink()
    with caplog.at_level(logging.INFO, "pfmigrate.keyd"), served(path) as service:
        assert len(service.engine.sad) == 2
    assert "a journal without a commit count: counting from now" in caplog.text
    assert "commit mark is missing" not in caplog.text  # (nothing to warn about: it was never counted)
    older = path.read_bytes()
    with served(path) as service:
        add(service, 0x2000)
    path.write_bytes(older)
    with pytest.raises(JournalError, match=r"it holds 0 commits, .* counts 1, so the last 1 are missing"):
        Journal(path)


def test_a_journal_rewritten_after_its_deletion_but_not_yet_written_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keyd dying between making the new file and writing into it leaves a journal without
    anything acknowledged: that is found at the next start, not served as empty."""
    path = tmp_path / "keyd.db"
    journal = Journal(path)
    service = Service(Engine(), journal, AccessRules(0))
    add(service, 0x1000, 0x1001)
    path.unlink()
    real, calls = journal.flush, []

    def flush(counters: dict[str, int]) -> int:
        calls.append(1)
        if len(calls) > 1:  # (the one of ``recreate``: keyd dies before it)
            raise SystemExit("killed")
        return real(counters)

    monkeypatch.setattr(journal, "flush", flush)
    service.request(service.open(Peer(1, 0, 0)), esp_sa(0x1002).encode(), NOW)
    with pytest.raises(SystemExit):
        service.commit()
    journal.close()
    with pytest.raises(JournalError, match=r"it holds 0 commits, .* counts 2"):
        Journal(path)


def test_a_commit_mark_deleted_while_keyd_runs_is_written_anew(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "CHECK_EVERY", 0.0)  # (the mark is looked at once a second)
    path = tmp_path / "keyd.db"
    with caplog.at_level(logging.INFO, "pfmigrate.keyd"), served(path) as service:
        add(service, 0x1000)
        mark_of(path).unlink()
        add(service, 0x1001)
        assert mark_of(path).exists()
    assert "commit mark was deleted or replaced: written anew" in caplog.text
    caplog.clear()
    older = path.read_bytes()
    with served(path) as service:
        add(service, 0x1002)
    path.write_bytes(older)
    with pytest.raises(JournalError, match=r"it holds 2 commits, .* counts 3"):
        Journal(path)


# --- a journal emptied in place while keyd runs ---------------------------------------------------


@pytest.mark.parametrize("then", ["a change", "nothing"])
@pytest.mark.parametrize("cut", [0, 4096], ids=["emptied", "cut to its first page"])
def test_a_journal_emptied_under_keyd_is_written_anew_and_survives_a_crash(tmp_path: Path, cut: int, then: str) -> None:
    """``: > keyd.db`` (or logrotate's copytruncate) while keyd runs, then ``kill -9``:
    every acknowledged SA is there after the restart, the ones before the cut included."""
    path = tmp_path / "keyd.db"
    with served(path) as service:  # (closed: SAs in pages of the file that later changes leave alone)
        add(service, *range(0x1000, 0x1000 + 200))
    assert path.stat().st_size > cut + 16 * 4096
    keyd = KeydProcess(tmp_path)
    keyd.start()
    try:
        client = open_keyd(keyd.socket)
        for i in range(64):
            client.add_sa(tunnel_sa(0x2000 + i, OLD, HA))
        os.truncate(path, cut)
        if then == "a change":
            client.add_sa(tunnel_sa(0x3000, OLD, HA))
        else:  # the check keyd makes once a second when idle
            log = tmp_path / "keyd.log"
            wait_until(lambda: "journal-recreated" in log.read_text(), "keyd rewriting its emptied journal")
        client.close()
        keyd.kill()
        keyd.start()
        reader = open_keyd(keyd.socket)
        found = sorted(sa.spi for sa in reader.dump_sas())
        reader.close()
    finally:
        keyd.stop()
    wanted = [*range(0x1000, 0x1000 + 200), *range(0x2000, 0x2040), *([0x3000] if then == "a change" else [])]
    assert found == wanted
    assert "the journal was emptied or cut short while keyd ran" in (tmp_path / "keyd.log").read_text()


# --- who may read it ---------------------------------------------------------------------------


@pytest.mark.parametrize("left", ["closed", "killed"], ids=["closed", "killed-with-its-log"])
def test_a_journal_open_to_others_is_made_private_with_its_log_files(
    tmp_path: Path, left: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keyd.db"
    if left == "closed":
        journal_with_two_sas(tmp_path)
    else:
        keyd = KeydProcess(tmp_path)
        keyd.start()
        try:
            client = open_keyd(keyd.socket)
            client.add_sa(tunnel_sa(0x1000, OLD, HA))
            client.close()
            keyd.kill()
        finally:
            keyd.stop()
    names = ["keyd.db", "keyd.db-wal", "keyd.db-shm"]
    assert [(tmp_path / name).exists() for name in names] == [True, left == "killed", left == "killed"]
    for name in names:
        if (tmp_path / name).exists():
            (tmp_path / name).chmod(0o644)
    with caplog.at_level(logging.WARNING, "pfmigrate.keyd"), served(path) as service:
        add(service, 0x2000)  # (so that SQLite has its -wal and -shm)
        modes = {name: f"{stat.S_IMODE((tmp_path / name).stat().st_mode):04o}" for name in names}
    assert modes == dict.fromkeys(names, "0600")
    assert "journal file was open to others: made 0600" in caplog.text


# --- a full disk ---------------------------------------------------------------------------------


def on_a_full_disk(directory: str) -> str:
    """What the journal says, as JSON, when its disk fills while it writes, and when it is
    opened on a disk that is full. Run in a child with a small file system at ``directory``."""
    writing, opening = Path(directory) / "writing", Path(directory) / "opening"
    writing.mkdir()
    opening.mkdir()
    said: dict[str, str] = {"writing-path": str(writing / "keyd.db"), "opening-path": str(opening / "keyd.db")}
    with served(writing / "keyd.db") as service:
        try:
            add(service, *range(0x1000, 0x1000 + 100_000))
        except JournalError as exc:
            said["writing"] = str(exc)
    shutil.rmtree(writing)
    with served(opening / "keyd.db") as service:  # (closed whole: no -wal or -shm left, SQLite makes them anew)
        add(service, 0x1000, 0x1001)
    fd = os.open(Path(directory) / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError as exc:
        said["filler"] = exc.strerror or ""
    finally:
        os.close(fd)
    try:
        Journal(opening / "keyd.db").close()
    except JournalError as exc:
        said["opening"] = str(exc)
    return json.dumps(said)


def _in_a_mount_namespace(script: str) -> subprocess.CompletedProcess[str]:
    """``sh -c script`` where it may mount (root, or a user namespace mapped to root)."""
    unshare = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        unshare[1:1] = ["--user", "--map-root-user"]
    try:
        return subprocess.run([*unshare, "sh", "-c", script], capture_output=True, text=True, cwd=REPOSITORY)
    except FileNotFoundError as exc:  # (no unshare(1))
        return subprocess.CompletedProcess(unshare, 127, "", str(exc))


def test_a_full_disk_is_named_with_the_journal(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mount = f"mount -t tmpfs -o size=1m tmpfs {small}"
    probe = _in_a_mount_namespace(mount)
    if probe.returncode != 0:
        reason = f"cannot mount a small tmpfs here (needs root or user namespaces): {probe.stderr.strip()}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"under CI: {reason}")
        pytest.skip(reason)
    code = "import sys; from tests.test_keyd_journal import on_a_full_disk; print(on_a_full_disk(sys.argv[1]))"
    run = _in_a_mount_namespace(f"{mount} && exec {sys.executable} -c '{code}' {small}")
    assert run.returncode == 0, run.stderr
    said = json.loads(run.stdout)
    assert said["filler"] == "No space left on device"
    assert said.get("writing", "").startswith(f"{said['writing-path']}: cannot write: the disk is full ("), said
    assert said.get("opening", "").startswith(f"{said['opening-path']}: cannot open the journal: the disk is full ("), (
        said
    )
    for what in ("writing", "opening"):
        assert said[what].endswith("free some space there and start keyd again")
