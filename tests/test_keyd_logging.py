"""What keyd logs about its clients and its start: each connect and disconnect at
debug level with the client's credentials and the rights they gave it, and at start
what it restored from its journal."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pfmigrate.backends.keyd import connect, open_keyd
from pfmigrate.cli.keyd import build
from pfmigrate.keyd.server import DEFAULT_PER_USER
from pfmigrate.keyd.service import DEFAULT_OUTBOX
from tests.keyd_harness import keyd_thread, out_policy, wait_until
from tests.seed_scenario import HA, OLD, tunnel_sa


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, name: str) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "event", None) == name]


def field(record: logging.LogRecord, name: str) -> object:
    """A field the log line carries (``logging``'s ``extra``)."""
    return record.__dict__[name]


@pytest.fixture
def kept() -> Iterator[Kept]:
    logger = logging.getLogger("pfmigrate.keyd")
    handler, level = Kept(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_each_client_is_logged_at_debug_with_its_credentials_and_rights(tmp_path: Path, kept: Kept) -> None:
    with keyd_thread(tmp_path):
        connect(tmp_path / "keyd.sock").close()
        wait_until(lambda: bool(kept.events("disconnect")), "keyd saw the client go")
    [came], [went] = kept.events("connect"), kept.events("disconnect")
    for record in (came, went):
        assert record.levelno == logging.DEBUG
        fields = {key: field(record, key) for key in ("pid", "uid", "gid", "privilege", "rights")}
        assert fields == {
            "pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid(),
            "privilege": "admin", "rights": "change and read",
        }  # fmt: skip
    assert field(came, "session") == field(went, "session")


def _args(tmp_path: Path) -> argparse.Namespace:
    return argparse.Namespace(
        admin_group=None, read_group=None, journal=tmp_path / "keyd.db", socket=tmp_path / "again.sock",
        socket_mode=0o666, semantics="pfmigrate", outbox=DEFAULT_OUTBOX, metrics=None, max_per_user=DEFAULT_PER_USER,
    )  # fmt: skip


def test_at_start_keyd_logs_what_it_restored(tmp_path: Path, kept: Kept) -> None:
    with keyd_thread(tmp_path), open_keyd(tmp_path / "keyd.sock") as engine:
        engine.add_sa(tunnel_sa(0x1000, OLD, HA))
        engine.add_sa(tunnel_sa(0x1001, HA, OLD))
        engine.add_policy(out_policy(OLD))
    server = build(_args(tmp_path))
    server.close()
    [restored] = kept.events("restored")
    assert restored.levelno == logging.INFO
    assert (field(restored, "sas"), field(restored, "policies")) == (2, 1)
    assert field(restored, "journal") == str(tmp_path / "keyd.db")


def test_a_new_journal_restores_nothing(tmp_path: Path, kept: Kept) -> None:
    build(_args(tmp_path)).close()
    [restored] = kept.events("restored")
    assert (field(restored, "sas"), field(restored, "policies")) == (0, 0)
