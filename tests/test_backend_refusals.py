"""What a backend refuses before asking, it refuses saying why and what would do: an
AEAD cipher on the backends that speak PF_KEY (Linux's af_key has none), a REGISTER
keyd turns down."""

from __future__ import annotations

import errno
import os
from ipaddress import ip_address
from pathlib import Path

import pytest

from pfmigrate.backends.inprocess import Hub, open_inprocess
from pfmigrate.backends.keyd import open_keyd
from pfmigrate.backends.pfkey_ops import PfKeyOperations
from pfmigrate.cli import main
from pfmigrate.engine import KeyEngine, KeyEngineError
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
