"""What a backend refuses before asking, it refuses saying why and what would do: an
AEAD cipher on the backends that speak PF_KEY (Linux's af_key has none), a REGISTER
keyd turns down."""

from __future__ import annotations

import errno
import os
import pwd
from ipaddress import ip_address
from pathlib import Path

import pytest

from pfmigrate.backends.inprocess import Hub, open_inprocess
from pfmigrate.backends.keyd import READER_REGISTERS_PER_SECOND, KeydRefused, open_keyd, semantics_of
from pfmigrate.backends.pfkey_ops import PfKeyOperations
from pfmigrate.cli import main
from pfmigrate.engine import KeyEngine, KeyEngineError
from pfmigrate.keyd import server, service
from pfmigrate.keyd.service import AccessRules, Peer
from pfmigrate.model import ESP, Algorithm, SecurityAssociation
from tests.keyd_harness import keyd_thread

GCM = SecurityAssociation(
    ip_address("10.0.0.1"), ip_address("10.0.0.2"), 0x300, ESP, aead=Algorithm("rfc4106(gcm(aes))", bytes(20), 128)
)


class Recording:
    """A transport that keeps what is sent and never answers."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def recv_ready(self) -> bytes | None:
        return None

    def recv(self, timeout: float | None) -> bytes | None:
        return None

    def drain(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("name", ["linux-pfkey", "keyd", "inprocess"])
@pytest.mark.parametrize("update", [False, True])
def test_an_aead_sa_is_refused_on_pf_key_before_anything_is_sent(name: str, update: bool) -> None:
    transport = Recording()
    engine = KeyEngine(PfKeyOperations(os.getpid(), name=name), transport, timeout=0.01)
    with pytest.raises(KeyEngineError) as refused:
        (engine.update_sa if update else engine.add_sa)(GCM)
    assert transport.sent == []
    assert refused.value.errno == errno.ENOSYS  # what Linux's af_key answers
    assert refused.value.operation == ("update SA" if update else "add SA")
    assert refused.value.detail == (
        f"rfc4106(gcm(aes)) is an AEAD cipher, and PF_KEY, which {name} speaks, has none on Linux "
        "(af_key never looks in the kernel's AEAD table): the linux-xfrm backend can add this SA"
    )


def test_keyd_refuses_an_aead_sa_saying_why(tmp_path: Path) -> None:
    with keyd_thread(tmp_path), open_keyd(tmp_path / "keyd.sock") as engine:
        with pytest.raises(KeyEngineError, match=r"the linux-xfrm backend can add this SA"):
            engine.add_sa(GCM)
        assert engine.dump_sas() == []


def test_setkey_reports_an_aead_sa_on_pf_key_with_the_backend_that_can(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    conf = tmp_path / "gcm.conf"
    conf.write_text("add 10.0.0.1 10.0.0.2 esp 300 -E aes-gcm-16 0x" + "00" * 20 + ";\n")
    hub = Hub()
    monkeypatch.setattr("pfmigrate.backends.inprocess.open_inprocess", lambda timeout=5.0: open_inprocess(hub))
    assert main(["setkey", "--backend", "inprocess", "-f", str(conf)]) == 1
    assert capsys.readouterr().err == (
        f"{conf}:1:1: add: Function not implemented (rfc4106(gcm(aes)) is an AEAD cipher, and PF_KEY, which "
        "inprocess speaks, has none on Linux (af_key never looks in the kernel's AEAD table): the linux-xfrm "
        "backend can add this SA)\n"
    )


# --- keyd refusing a REGISTER: the right that is missing -------------------------------------------------------

NOBODY = 65534
READERS = AccessRules(0, admin_gid=None, read_gid=NOBODY)


@pytest.fixture
def as_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    """keyd sees its clients as uid and gid 65534 (the tests may run as root, whom keyd always lets in)."""
    monkeypatch.setattr(server, "peer_of", lambda sock: Peer(os.getpid(), NOBODY, NOBODY))


def _user() -> str:
    uid = os.getuid()
    return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"


@pytest.mark.usefixtures("as_nobody")
def test_a_register_refused_for_want_of_any_group_names_both(tmp_path: Path) -> None:
    sock = tmp_path / "keyd.sock"
    with keyd_thread(tmp_path, rules=AccessRules(0)), pytest.raises(KeydRefused) as refused:
        open_keyd(sock, timeout=2.0)
    assert refused.value.errno == errno.EPERM
    assert str(refused.value) == (
        f"keyd at {sock} refused a REGISTER: Operation not permitted: {_user()} is in neither keyd's admin "
        "group nor its read group (its --admin-group and --read-group), and is not root or keyd's own user; "
        "a member of either may REGISTER"
    )


@pytest.mark.usefixtures("as_nobody")
def test_a_reader_over_its_registers_is_told_the_bound(tmp_path: Path) -> None:
    sock = tmp_path / "keyd.sock"
    with keyd_thread(tmp_path, rules=READERS, clock=lambda: 1000.0):  # one second that never ends
        for _ in range(READER_REGISTERS_PER_SECOND):
            assert semantics_of(sock) == "pfmigrate"
        with pytest.raises(KeydRefused) as refused:
            semantics_of(sock, timeout=0.3)
    assert refused.value.errno == errno.EAGAIN
    assert str(refused.value) == (
        f"keyd at {sock} refused a REGISTER: Resource temporarily unavailable: {_user()} has only keyd's "
        f"read group, whose members may REGISTER at most {READER_REGISTERS_PER_SECOND} times a second, and "
        "its processes went over that (keyd's admin group has no such bound)"
    )


def test_the_bound_said_is_keyds() -> None:
    assert READER_REGISTERS_PER_SECOND == service.READER_REGISTERS_PER_SECOND


@pytest.mark.usefixtures("as_nobody")
def test_the_monitor_says_which_right_keyd_wants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with keyd_thread(tmp_path, rules=AccessRules(0)):
        status = main(["monitor", "--backend", "keyd", "--keyd-socket", str(tmp_path / "keyd.sock"), "--count", "1"])
    assert status == 1
    assert "is in neither keyd's admin group nor its read group" in capsys.readouterr().err
