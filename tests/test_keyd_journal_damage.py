"""A write-ahead log damaged after ``kill -9``: one bit flipped, or its tail cut, anywhere
in a real ``keyd.db-wal``. Whatever the damage, keyd's journal either loads everything
that was acknowledged (the damage fell where SQLite does not look: frames of a log it
had started over) or is refused as behind its commit mark; never loaded with less.

SQLite's own checksums stop the log at the damaged frame and drop it with every later
one, without a word; the commit mark is what tells. The seed is printed;
``PFMIGRATE_WAL_DAMAGE_SEED`` and ``PFMIGRATE_WAL_DAMAGE_ROUNDS`` replay or extend a run.
"""

from __future__ import annotations

import os
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest

from pfmigrate.backends.keyd import open_keyd
from pfmigrate.keyd.journal import Journal, JournalError
from pfmigrate.model import ESP, Dir, MigrateBundle, MigrateRequest
from tests import soak
from tests.keyd_harness import HA, NEW, OLD, OUT_SELECTOR, KeydProcess, out_policy, tunnel_sa

SEED = int(os.environ.get("PFMIGRATE_WAL_DAMAGE_SEED", "20261208"))
ROUNDS = soak.rounds("PFMIGRATE_WAL_DAMAGE_ROUNDS", 20, 300)
FILES = ("keyd.db", "keyd.db-wal", "keyd.db-shm", "keyd.db-acked")
REFUSED = "the journal is behind what keyd acknowledged"

Loaded = tuple[list[str], list[str], dict[str, int]]


def load(path: Path) -> Loaded:
    journal = Journal(path)
    try:
        sas, policies, counters = journal.load()
    finally:
        journal.close()
    return sorted(map(repr, sas)), sorted(map(repr, policies)), counters


def killed_with_a_log(directory: Path) -> int:
    """Leave in ``directory`` the journal of a keyd killed after acknowledged changes, with
    a log SQLite has started over once (so that it ends in frames it no longer reads); the
    number of changes."""
    keyd = KeydProcess(directory)
    keyd.start()
    try:
        client = open_keyd(keyd.socket)
        client.add_policy(out_policy(OLD))
        changes = 1
        for n in range(400):  # (about 1,500 pages of log: past SQLite's checkpoint at 1,000)
            client.add_sa(tunnel_sa(0x1000 + n, OLD, HA))
            changes += 1
            if n % 5 == 4:
                client.delete_sa(HA, 0x1000 + n - 2, ESP)
                changes += 1
            if n % 50 == 49:  # back and forth: the policy and its SAs move
                old, new = (OLD, NEW) if n % 100 == 49 else (NEW, OLD)
                client.migrate(MigrateRequest(OUT_SELECTOR, Dir.OUT, (MigrateBundle(old, HA, new, HA),)))
                changes += 1
        client.add_sa(tunnel_sa(0x9000, NEW, HA))  # (the last change: its frames end the log)
        client.close()
        keyd.kill()
    finally:
        keyd.stop()
    return changes + 1


@pytest.mark.soak
def test_a_damaged_write_ahead_log_is_loaded_whole_or_refused_never_short(tmp_path: Path) -> None:
    print(f"WAL damage seed {SEED}, {ROUNDS} rounds (PFMIGRATE_WAL_DAMAGE_SEED to replay)")
    rng = random.Random(SEED)
    killed = tmp_path / "killed"
    killed.mkdir()
    changes = killed_with_a_log(killed)
    wal = (killed / "keyd.db-wal").read_bytes()
    assert len(wal) > 1000 * 4096, "the log was not started over: the test would not reach the frames SQLite ignores"
    whole = load(_copy(killed, tmp_path / "undamaged") / "keyd.db")  # what was acknowledged
    assert len(whole[0]) > 300
    counts: Counter[str] = Counter()
    for case in range(ROUNDS):
        where = _copy(killed, tmp_path / f"case-{case}")
        damaged = bytearray(wal)
        if rng.random() < 0.8:
            bit = rng.randrange(len(wal) * 8)
            damaged[bit // 8] ^= 1 << (bit % 8)
            how = f"bit {bit % 8} of byte {bit // 8} flipped"
        else:
            cut = rng.randrange(len(wal))
            del damaged[cut:]
            how = f"cut to {cut} bytes"
        (where / "keyd.db-wal").write_bytes(damaged)
        kind = how.split()[-1]  # ("flipped" or "bytes")
        refusal = ""
        try:
            loaded = load(where / "keyd.db")
        except JournalError as exc:
            refusal = str(exc)
        if refusal:
            assert REFUSED in refusal, f"case {case} ({how}): refused, but not as a journal behind its mark: {refusal}"
            counts[f"{kind}: refused"] += 1
        else:
            assert loaded == whole, f"case {case} ({how}): loaded with less than was acknowledged, without a word"
            counts[f"{kind}: loaded whole"] += 1
        shutil.rmtree(where)
    print(
        f"WAL damage: {ROUNDS} damaged logs of {changes} acknowledged changes ({len(wal):,} bytes); "
        f"bits flipped: {counts['flipped: refused']} refused, {counts['flipped: loaded whole']} loaded whole; "
        f"tails cut: {counts['bytes: refused']} refused, {counts['bytes: loaded whole']} loaded whole; "
        "loaded short: 0"
    )
    assert counts["flipped: refused"] + counts["bytes: refused"] > 0  # (else nothing here needed the mark)


def _copy(source: Path, directory: Path) -> Path:
    directory.mkdir()
    for name in FILES:
        if (source / name).exists():
            shutil.copy2(source / name, directory / name)
    return directory
