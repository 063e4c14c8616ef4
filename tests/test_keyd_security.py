"""keyd against the users of its machine: the metrics file cannot be turned on a file of
root's."""

from __future__ import annotations

import os
from pathlib import Path

from pfmigrate.keyd.metrics import Metrics
from pfmigrate.keyd.server import Server
from pfmigrate.keyd.service import AccessRules, Service
from pfmigrate.sadb import Engine

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
