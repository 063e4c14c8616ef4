"""Agents that fail loudly: a home agent never says ``bound`` for a binding whose
acknowledgement it could not send; either agent refuses to start where the kernel lacks
what it needs, naming the module and the build option (on this machine's kernel, in a
network namespace of its own: no ``mip6``, no ``esp6``), or where its interface is
missing."""

from __future__ import annotations

import errno
import logging
import subprocess
import sys
from collections.abc import Callable
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, cast

import pytest
from testbed.netns import _enter_new_netns, in_new_netns

from pfmigrate import mip6
from pfmigrate.backends.inprocess import open_inprocess
from pfmigrate.cli import main
from pfmigrate.engine import Capabilities, KeyEngine, KeyEngineError
from pfmigrate.mobility import kernelcheck
from pfmigrate.mobility.daemon import HomeAgentDaemon
from pfmigrate.mobility.kernelcheck import ESP6, MIP6, SUB_POLICY, XFRM_MIGRATE, MissingFeature, Probes
from pfmigrate.mobility.seedconfig import home_agent_toml, mobile_node_toml, seed_configs
from tests.test_mobility_daemon import HOA, Port, acknowledgements, binding_update


def events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_a_binding_update_whose_acknowledgement_cannot_go_is_not_called_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The socket refuses the BA (EINVAL: a type 2 routing header on a kernel without
    mip6): ``ba-send-failed`` with the errno, neither ``ba-sent`` nor ``bound``; the
    status says the binding was not acknowledged, and the metrics count no BA sent. The
    node's retransmission, once the BA goes, is bound as usual."""
    _, config = seed_configs()
    port = Port()
    with open_inprocess() as engine, caplog.at_level(logging.INFO, logger="pfmigrate.mobility"):
        home_agent = HomeAgentDaemon(config, engine, port, clock=lambda: 100.0)
        port.refuse = errno.EINVAL
        port.incoming.append(binding_update(1))
        home_agent.turn(timeout=0.0)
        said = events(caplog)
        assert "ba-send-failed" in said
        assert "bound" not in said
        assert "ba-sent" not in said
        failed = next(r for r in caplog.records if r.getMessage() == "ba-send-failed")
        assert (failed.__dict__["errno"], failed.__dict__["hoa"], failed.__dict__["status"]) == (
            errno.EINVAL, str(HOA), 0,
        )  # fmt: skip
        assert failed.levelno == logging.WARNING
        (entry,) = home_agent.status().entries
        assert not entry.acknowledged
        metrics = home_agent.render_metrics()
        assert 'pfmigrate_mobility_binding_ack_send_failures_total{role="ha"} 1' in metrics
        assert "pfmigrate_mobility_binding_acks_sent_total{" not in metrics

        caplog.clear()
        port.refuse = None
        port.incoming.append(binding_update(2))
        home_agent.turn(timeout=0.0)
        assert {"ba-sent", "bound"} <= set(events(caplog))
        assert "ba-send-failed" not in events(caplog)
        (entry,) = home_agent.status().entries
        assert entry.acknowledged
    assert [(ack.status, ack.sequence) for ack in acknowledgements(port)] == [(mip6.BAStatus.ACCEPTED, 2)]


def test_a_missing_interface_is_named_at_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mn.toml"
    config.write_text(mobile_node_toml("inprocess", interface="nosuch7"))
    assert main(["mn", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "mobile_node.interface" in err
    assert "'nosuch7'" in err
    assert str(config) in err
    assert "Traceback" not in err


def test_an_interface_is_looked_up_by_name() -> None:
    def absent(name: str) -> int:
        raise OSError(errno.ENODEV, "No such device")

    kernelcheck.check_interface("eth0", "mn.toml", index=lambda name: 2)
    with pytest.raises(kernelcheck.NoSuchInterface, match="no interface 'wlan9'"):
        kernelcheck.check_interface("wlan9", "mn.toml", index=absent)


@pytest.mark.parametrize(
    ("probe", "code", "detail", "feature"),
    [
        ("ro state", errno.EPROTONOSUPPORT, "Requested type not found", MIP6),  # built as a module, not loaded
        ("ro state", errno.EINVAL, "Unsupported protocol", MIP6),  # not built at all
        ("ro policy", errno.EINVAL, "Sub policy not supported", SUB_POLICY),
        ("esp state", errno.EPROTONOSUPPORT, "Requested type not found", ESP6),
        ("ro state", errno.EPERM, "", None),  # no privilege: not a missing feature
        ("esp state", errno.EEXIST, "", None),
    ],
)
def test_an_errno_names_the_feature_it_means(probe: str, code: int, detail: str, feature: object) -> None:
    assert kernelcheck.explain(probe, KeyEngineError(code, "add", detail)) == feature


class Named:
    """Only a name: ``check`` looks no further before a probe has said no."""

    def __init__(self, name: str) -> None:
        self.name = name


def test_a_kernel_without_migrate_is_refused_by_name() -> None:
    probes = Probes(xfrm=lambda: Capabilities("linux-xfrm", True, False, ("MIGRATE is not built in",)))
    with pytest.raises(MissingFeature) as refused:
        kernelcheck.check(cast(KeyEngine, Named("linux-xfrm")), route_optimisation=False, probes=probes)
    assert refused.value.feature == XFRM_MIGRATE
    assert "CONFIG_XFRM_MIGRATE" in str(refused.value)


def _kernel_takes_ro_states() -> bool:
    """iproute2, not pfmigrate, asks this kernel for a route-optimisation state."""
    add = "xfrm state add src 2001:db8::1 dst 2001:db8::2 proto route2 coa 2001:db8::3 mode ro"
    return subprocess.run(["ip", *add.split()], capture_output=True, check=False).returncode == 0


@pytest.mark.usefixtures("netns")
def test_on_this_kernel_route_optimisation_is_checked_before_the_agent_starts() -> None:
    """Whatever engine keeps the IPsec, the ro states go to the kernel: where it does
    not take them (iproute2 says so), the check names mip6; told to go without, it passes."""

    def look() -> tuple[bool, str, bool]:
        with open_inprocess() as engine:
            try:
                kernelcheck.check(engine, route_optimisation=True)
                said = ""
            except MissingFeature as exc:
                said = str(exc)
            kernelcheck.check(engine, route_optimisation=False)  # (raises if it does not pass)
        return _kernel_takes_ro_states(), said, True

    takes, said, without = in_new_netns(look)
    assert without
    if takes:
        assert said == ""
    else:
        assert "module mip6" in said
        assert "CONFIG_IPV6_MIP6" in said
        assert "--no-route-optimisation" in said


@pytest.mark.usefixtures("netns")
def test_on_this_kernel_the_linux_backend_needs_esp() -> None:
    def look() -> tuple[bool, str]:
        from pfmigrate.backends.linux import open_xfrm

        add = "xfrm state add src 2001:db8::1 dst 2001:db8::2 proto esp spi 0x1000 mode transport enc cbc(aes) "
        add += "0x" + "00" * 16 + " auth hmac(sha256) 0x" + "00" * 32
        takes = subprocess.run(["ip", *add.split()], capture_output=True, check=False).returncode == 0
        with open_xfrm() as engine:
            try:
                kernelcheck.check(engine, route_optimisation=False)
            except MissingFeature as exc:
                return takes, str(exc)
            assert all(sa.spi != kernelcheck.esp_probe().spi for sa in engine.dump_sas())  # (removed again)
        return takes, ""

    takes, said = in_new_netns(look)
    assert (said == "") is takes
    if not takes:
        assert "module esp6" in said
        assert "CONFIG_INET6_ESP" in said


def _agent(args: list[str], preexec: Callable[[], None] | None = _enter_new_netns) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pfmigrate", *args], capture_output=True, text=True, timeout=60, preexec_fn=preexec,
        check=False,
    )  # fmt: skip


@pytest.mark.usefixtures("netns")
def test_pfmigrate_ha_refuses_to_start_without_mip6_and_says_which(tmp_path: Path) -> None:
    if in_new_netns(_kernel_takes_ro_states):
        pytest.skip("this kernel takes route-optimisation states: nothing to refuse")
    config = tmp_path / "ha.toml"
    config.write_text(home_agent_toml("inprocess"))
    done = _agent(["ha", "--config", str(config), "--control", str(tmp_path / "ha.sock")])
    assert done.returncode == 1
    assert done.stderr.startswith("pfmigrate: this kernel lacks Mobile IPv6 route-optimisation states")
    assert "module mip6" in done.stderr
    assert "CONFIG_IPV6_MIP6" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "ha.sock").exists()  # refused before it listened


def test_nothing_is_probed_where_the_engine_is_not_the_kernels_and_ro_is_off() -> None:
    called: list[str] = []

    def probe() -> Any:
        called.append("probe")
        raise AssertionError("probed")

    with open_inprocess() as engine:
        kernelcheck.check(engine, route_optimisation=False, probes=Probes(probe, probe, probe))
    assert called == []


def test_an_ro_probe_is_documentation_addresses_only() -> None:
    state, policy = kernelcheck.ro_probe()
    documentation = IPv6Address("2001:db8::").packed[:4]
    addresses: list[object] = [a for s in state.states for a in (s.src, s.dst, s.coa)]
    addresses += [p.selector.src.network_address for p in policy.policies]
    addresses += [p.selector.dst.network_address for p in policy.policies]
    assert all(isinstance(a, IPv6Address) and a.packed[:4] == documentation for a in addresses)
