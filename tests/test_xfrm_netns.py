"""The XFRM backend on this machine's own kernel, in network namespaces the tests create.

This kernel has XFRM policies but no ESP and no AF_KEY, so these tests cover policies,
MIGRATE of policy templates, the MIGRATE announcement and lost-event reporting without
User-Mode Linux.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import socket
import subprocess
import sys
import time
from ipaddress import ip_address, ip_network

import pytest
from testbed.netns import in_new_netns

from pfmigrate.backends.linux import open_xfrm, open_xfrm_async, probe_pfkey, probe_xfrm, xfrm_socket
from pfmigrate.engine import Capabilities, KeyEngineError
from pfmigrate.model import (
    ESP,
    MH,
    Action,
    Dir,
    Event,
    EventsLost,
    IPAddress,
    KMAddress,
    MigrateBundle,
    MigrateEvent,
    MigrateRequest,
    Mode,
    Policy,
    Selector,
    Template,
)
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA
from pfmigrate.xfrm import Mode as XfrmMode
from pfmigrate.xfrm import (
    MsgType,
    NetlinkError,
    NlFlags,
    PolicyAction,
    PolicyDir,
    Templates,
    UserpolicyInfo,
    UserTmpl,
    XfrmId,
    XfrmMessage,
    decode,
)
from pfmigrate.xfrm import Selector as XfrmSelector
from pfmigrate.xfrm.constants import AF_INET

HOA, HA, OLD, NEW = (ip_address(a) for a in (HOME_ADDRESS, HOME_AGENT, OLD_COA, NEW_COA))

pytestmark = pytest.mark.usefixtures("netns")

OUT = Selector.host(HOME_ADDRESS, HOME_AGENT, MH)


def tunnel_policy(coa: IPAddress, reqid: int = 0) -> Policy:
    return Policy(OUT, Dir.OUT, (Template(ESP, Mode.TUNNEL, coa, HA, reqid),))


def seed_request(reqid: int = 0) -> MigrateRequest:
    bundle = MigrateBundle(OLD, HA, NEW, HA, reqid=reqid)
    return MigrateRequest(OUT, Dir.OUT, (bundle,), KMAddress(NEW, HA))


def test_probes_say_what_this_kernel_has() -> None:
    def probe() -> tuple[Capabilities, Capabilities]:
        return probe_xfrm(), probe_pfkey()

    xfrm, pfkey = in_new_netns(probe)
    assert xfrm.available
    assert xfrm.migrate
    if not pfkey.available:  # the build machines' kernel has no af_key
        assert "no AF_KEY sockets in this kernel" in pfkey.notes[0]


def test_policies_add_get_update_delete_dump_flush() -> None:
    def scenario() -> list[object]:
        with open_xfrm() as engine:
            added = engine.add_policy(tunnel_policy(OLD))
            bypass = engine.add_policy(Policy(Selector.host("2001:db8::1", "2001:db8::2"), Dir.IN, action=Action.NONE))
            ssh = Selector(ip_network("10.0.0.0/8"), ip_network("10.1.0.0/16"), 6, 0, 22)
            drop = engine.add_policy(Policy(ssh, Dir.FWD, action=Action.DISCARD))
            try:
                engine.add_policy(tunnel_policy(OLD))
            except KeyEngineError as exc:
                duplicate = exc.errno
            updated = engine.update_policy(Policy(OUT, Dir.OUT, added.templates, priority=9))
            got = engine.get_policy(OUT, Dir.OUT)
            dumped = sorted(engine.dump_policies(), key=lambda p: p.index)
            engine.delete_policy(bypass.selector, Dir.IN)
            after_delete = len(engine.dump_policies())
            engine.flush()
            return [added, bypass, drop, duplicate, updated, got, dumped, after_delete, engine.dump_policies()]

    added, bypass, drop, duplicate, updated, got, dumped, after_delete, flushed = in_new_netns(scenario)
    assert isinstance(added, Policy)
    assert added.index != 0
    assert added.templates == tunnel_policy(OLD).templates
    assert isinstance(bypass, Policy)
    assert (bypass.action, bypass.templates) == (Action.NONE, ())
    assert isinstance(drop, Policy)
    assert (drop.action, drop.selector.dport, drop.selector.proto) == (Action.DISCARD, 22, 6)
    assert duplicate == 17  # EEXIST
    assert updated == got
    assert isinstance(got, Policy)
    assert (got.priority, got.index) == (9, added.index)
    assert dumped == sorted([got, bypass, drop], key=lambda p: p.index)
    assert after_delete == 2
    assert flushed == []


@pytest.mark.parametrize("reqid", [0, 7])
def test_seed_migrate_moves_the_template(reqid: int) -> None:
    def scenario() -> Policy:
        with open_xfrm() as engine:
            engine.add_policy(tunnel_policy(OLD, reqid))
            engine.migrate(seed_request(reqid))
            return engine.get_policy(OUT, Dir.OUT)

    moved = in_new_netns(scenario)
    assert moved.templates == tunnel_policy(NEW, reqid).templates


def test_migrate_errors_are_the_kernels() -> None:
    def scenario() -> list[tuple[int, str]]:
        errors = []
        with open_xfrm() as engine:
            for setup in (None, tunnel_policy(NEW)):  # no policy, then a stale request
                if setup is not None:
                    engine.add_policy(setup)
                try:
                    engine.migrate(seed_request())
                except KeyEngineError as exc:
                    errors.append((exc.errno or 0, exc.detail))
        return errors

    (no_policy, no_policy_text), (stale, _) = in_new_netns(scenario)
    assert no_policy == 2  # ENOENT
    assert no_policy_text == "Target policy not found"  # the kernel's own extended-ACK text
    assert stale == 61  # ENODATA


def test_monitor_shows_a_migrate_sent_by_another_process() -> None:
    def scenario() -> list[str]:
        monitor = subprocess.Popen(
            [sys.executable, "-m", "pfmigrate", "monitor", "--backend", "linux-xfrm", "--json", "--count", "1",
             "--timeout", "20"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert monitor.stderr is not None
        assert "listening on linux-xfrm" in monitor.stderr.readline()
        with open_xfrm() as engine:
            engine.add_policy(tunnel_policy(OLD))
            engine.migrate(seed_request())
        out, _ = monitor.communicate(timeout=20)
        return out.splitlines()

    [line] = in_new_netns(scenario)
    event = json.loads(line)
    assert event["event"] == "migrate"
    assert event["request"]["dir"] == {"name": "OUTBOUND", "value": 2}  # (docs/json.md: PF_KEY's names)
    assert event["request"]["selector"] == {
        "src": f"{HOME_ADDRESS}/128", "dst": f"{HOME_AGENT}/128", "proto": {"name": "MH", "value": MH},
        "sport": 0, "dport": 0,
    }  # fmt: skip
    assert "time" in event
    assert event["request"]["bundles"][0]["new_src"] == NEW_COA
    assert event["request"]["kmaddress"] == {"local": NEW_COA, "remote": HOME_AGENT}


def test_a_dump_longer_than_one_datagram_comes_whole() -> None:
    """600 policies are many netlink datagrams (a dump answers about 16 KiB at a time)."""

    def scenario() -> tuple[int, list[int]]:
        added = [
            Policy(Selector.host(f"2001:db8::{i:x}", "2001:db8:1::1", 17), Dir.OUT, (Template(ESP, Mode.TRANSPORT),))
            for i in range(1, 601)
        ]
        with open_xfrm() as engine:
            for policy in added:
                engine.add_policy(policy)
            dumped = engine.dump_policies()
        sources = sorted(int(p.selector.src.network_address) & 0xFFFF for p in dumped)
        return len(dumped), sources

    count, sources = in_new_netns(scenario)
    assert count == 600
    assert sources == list(range(1, 601))


@pytest.mark.parametrize("form", ["text", "json"])
def test_monitor_shows_an_acquire_for_a_packet_without_its_sa(form: str) -> None:
    """This kernel has no ESP, but a policy that asks for it and a packet it matches are
    enough for Linux to ACQUIRE."""

    def scenario() -> list[str]:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        monitor = subprocess.Popen(
            [sys.executable, "-m", "pfmigrate", "monitor", "--backend", "linux-xfrm", "--count", "1",
             "--timeout", "20", *(["--json"] if form == "json" else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert monitor.stderr is not None
        assert "listening on linux-xfrm" in monitor.stderr.readline()
        with open_xfrm() as engine:
            engine.add_policy(Policy(Selector.host("::1", "::1", 17), Dir.OUT, (Template(ESP, Mode.TRANSPORT),)))
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp, contextlib.suppress(OSError):
                udp.sendto(b"x", ("::1", 5000))  # held back (EAGAIN) while the key manager is asked
        out, _ = monitor.communicate(timeout=20)
        return out.splitlines()

    [line] = in_new_netns(scenario)
    if form == "json":
        event = json.loads(line)
        assert (event["event"], event["proto"], event["mode"], event["src"], event["dst"]) == (
            "acquire",
            {"name": "ESP", "value": ESP},
            {"name": "TRANSPORT", "value": 1},
            "::1",
            "::1",
        )
        assert (event["selector"]["proto"]["value"], event["selector"]["dport"]) == (17, 5000)
    else:
        stamp, said = line.split(" ", 1)  # as ip xfrm monitor -timestamp: the time first
        assert stamp.endswith("Z")
        assert said.startswith("ACQUIRE proto 50 transport ::1 -> ::1 for ::1/128 -> ::1/128 proto 17 ")
        assert "dport 5000" in line


def test_a_listener_that_falls_behind_is_told_it_lost_events() -> None:
    def scenario() -> tuple[list[Event], list[Event]]:
        with open_xfrm() as engine, open_xfrm(event_buffer=4096) as listener:  # room for a few events only
            listener.subscribe()
            engine.add_policy(tunnel_policy(OLD))
            back = MigrateRequest(OUT, Dir.OUT, (MigrateBundle(NEW, HA, OLD, HA),))
            for _ in range(100):
                engine.migrate(seed_request())
                engine.migrate(back)
            first = listener.next_events(1.0)
            time.sleep(0.01)
            then = listener.next_events(1.0)
            return first, then

    first, then = in_new_netns(scenario)
    assert first == [EventsLost("the kernel dropped messages for this socket (ENOBUFS)")]
    assert then
    assert isinstance(then[0], MigrateEvent)


def test_asyncio_use_with_events() -> None:
    """The asyncio engine: every operation, a refusal, the MIGRATE heard by an asyncio
    listener, and lost events told as such."""

    def scenario() -> tuple[list[Policy], int, list[Event], list[Event]]:
        async def run() -> tuple[list[Policy], int, list[Event], list[Event]]:
            async with open_xfrm_async() as engine, open_xfrm_async() as listener:
                listener.subscribe()
                await engine.add_policy(tunnel_policy(OLD))
                await engine.migrate(seed_request())
                heard: list[Event] = []
                while not any(isinstance(event, MigrateEvent) for event in heard):
                    got = await listener.next_events(2.0)
                    assert got, "no MIGRATE event within 2 s"
                    heard += got
                policies = await engine.dump_policies()
                refused = 0
                try:
                    await engine.get_policy(OUT, Dir.IN)
                except KeyEngineError as exc:
                    refused = exc.errno or 0
                await engine.flush()
                async with open_xfrm_async(event_buffer=4096) as slow:
                    slow.subscribe()
                    await engine.add_policy(tunnel_policy(OLD))
                    back = MigrateRequest(OUT, Dir.OUT, (MigrateBundle(NEW, HA, OLD, HA),))
                    for _ in range(100):
                        await engine.migrate(seed_request())
                        await engine.migrate(back)
                    lost = await slow.next_events(1.0)
                return policies, refused, [e for e in heard if isinstance(e, MigrateEvent)], lost

        return asyncio.run(run())

    policies, refused, heard, lost = in_new_netns(scenario)
    assert [p.templates[0].src for p in policies] == [NEW]
    assert refused == errno.ENOENT
    assert [event.request.bundles[0].new_src for event in heard if isinstance(event, MigrateEvent)] == [NEW]
    assert lost == [EventsLost("the kernel dropped messages for this socket (ENOBUFS)")]


# --- what the kernel holds beyond the model -----------------------------------------------------

IP_XFRM_POLICY = 17  # (the socket option that gives one socket a policy of its own)


def _raw_policy(template_mode: XfrmMode) -> None:
    """A policy added with a template in ``template_mode``, past the backend."""
    sock = xfrm_socket()
    info = UserpolicyInfo(XfrmSelector.of("10.1.0.0/16", "10.2.0.0/16"), dir=PolicyDir.OUT)
    tmpl = UserTmpl(XfrmId(ip_address("10.0.0.2"), 0, ESP), AF_INET, ip_address("10.0.0.1"), 3, template_mode)
    request = XfrmMessage(MsgType.NEWPOLICY, NlFlags.REQUEST | NlFlags.ACK, 1, 0, info, (Templates((tmpl,)),))
    sock.send(request.encode())
    [ack] = decode(sock.recv(65536))
    assert isinstance(ack, NetlinkError)
    assert ack.error == 0, ack
    sock.close()


def test_dumps_leave_out_socket_policies_and_modes_the_model_has_no_name_for() -> None:
    """An IKE daemon's socket bypass policy (Linux dumps it with direction 3 or 4) and an
    IP-TFS template are not policies of the SPD the model can hold; the rest still comes."""

    def scenario() -> tuple[list[Policy], str]:
        with open_xfrm() as engine:
            engine.add_policy(tunnel_policy(OLD))
            ike = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            bypass = UserpolicyInfo(XfrmSelector(family=AF_INET), dir=PolicyDir.OUT, action=PolicyAction.ALLOW)
            ike.setsockopt(socket.IPPROTO_IP, IP_XFRM_POLICY, bypass.pack())
            _raw_policy(XfrmMode.IPTFS)
            listed = subprocess.run(["ip", "xfrm", "policy"], capture_output=True, text=True, check=True).stdout
            dumped = engine.dump_policies()
            ike.close()
            return dumped, listed

    dumped, listed = in_new_netns(scenario)
    assert "socket out" in listed
    assert "mode 5" in listed  # (both are there)
    assert dumped == [Policy(OUT, Dir.OUT, tunnel_policy(OLD).templates, index=dumped[0].index)]


def test_a_block_policy_with_templates_reads_as_discard() -> None:
    """Linux keeps the templates given to a block policy and never uses them."""

    def scenario() -> list[Policy]:
        subprocess.run(
            "ip xfrm policy add src 10.1.0.0/16 dst 10.2.0.0/16 dir out action block"
            " tmpl src 10.0.0.1 dst 10.0.0.2 proto esp mode tunnel",
            shell=True,
            check=True,
        )
        with open_xfrm() as engine:
            return engine.dump_policies()

    [policy] = in_new_netns(scenario)
    assert (policy.action, policy.templates, policy.dir) == (Action.DISCARD, (), Dir.OUT)


def test_a_policy_in_a_mode_the_model_has_no_name_for_is_an_error_not_a_transport_one() -> None:
    def scenario() -> tuple[int, str]:
        _raw_policy(XfrmMode.IPTFS)
        with open_xfrm() as engine:
            try:
                engine.get_policy(Selector(ip_network("10.1.0.0/16"), ip_network("10.2.0.0/16")), Dir.OUT)
            except KeyEngineError as exc:
                return exc.errno or 0, str(exc)
        return 0, "no error"

    code, said = in_new_netns(scenario)
    assert code == errno.EOPNOTSUPP
    assert "XFRM mode 5" in said
