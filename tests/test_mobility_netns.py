"""The agents' daemon shells on this machine's kernel, in a network namespace of their own.

The Mobility Header socket: the daemons poll it with a timeout that reaches 0 when a
timer is already due; a timeout of 0 makes a Python socket non-blocking, and an empty
queue must then read as "nothing yet", not as an exception that ends the daemon. The
interface's addresses: as Linux lists them, with a home address flagged ``home`` left out.
"""

from __future__ import annotations

import subprocess
import time
from ipaddress import IPv6Address

import pytest
from testbed.netns import in_new_netns

from pfmigrate.mip6 import BindingRefreshRequest, decode, encode
from pfmigrate.mobility.daemon import addresses
from pfmigrate.mobility.mhsocket import MHSocket

pytestmark = pytest.mark.usefixtures("netns")

LOOPBACK = IPv6Address("::1")


def test_an_empty_queue_reads_as_nothing_whatever_the_timeout() -> None:
    def poll() -> list[bool]:
        with MHSocket() as mh:
            return [mh.receive(timeout) is None for timeout in (0.0, 0.01, 0.0)]

    assert in_new_netns(poll) == [True, True, True]


def test_a_zero_timeout_still_reads_what_is_queued() -> None:
    def loop() -> tuple[str, str, bool]:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        with MHSocket() as mh:
            mh.send(encode(BindingRefreshRequest(), LOOPBACK, LOOPBACK), LOOPBACK)
            deadline = time.monotonic() + 2.0
            received = None
            while received is None and time.monotonic() < deadline:
                received = mh.receive(0.0)
            assert received is not None, "the BRR sent to ::1 never arrived"
            message = decode(received.data, received.source, received.destination)
            return type(message).__name__, str(received.source), mh.receive(0.0) is None

    assert in_new_netns(loop) == ("BindingRefreshRequest", "::1", True)


def test_the_interfaces_addresses_leave_out_link_local_and_home_flagged_ones() -> None:
    def listed() -> list[IPv6Address]:
        for command in (
            "link add mn0 type veth peer name ar0", "link set mn0 up", "link set ar0 up",
            "addr add 3ffe:501:ffff:100:1:2:3:4/64 dev mn0 home nodad",  # the home address, for use away
            "addr add 3ffe:501:ffff:500:1:2:3:4/64 dev mn0 nodad",  # the care-of address
        ):  # fmt: skip
            subprocess.run(["ip", *command.split()], check=True)
        return addresses("mn0")

    assert in_new_netns(listed) == [IPv6Address("3ffe:501:ffff:500:1:2:3:4")]
