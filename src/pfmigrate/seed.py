"""The seed's own example: the mobile node's MIGRATE after it moves to a new care-of address.

From the slide deck: the MN's outbound SP entry protecting Mobility Header traffic from
its home address to the home agent, with its ESP tunnel moving from the old CoA to the
new one. With KMADDRESS the message also tells the IKE daemon its new local address.
"""

from __future__ import annotations

from pfmigrate.pfkey import (
    AddressDst,
    AddressSrc,
    Direction,
    IPProto,
    IPsecRequest,
    KMAddress,
    Level,
    Message,
    Mode,
    MsgType,
    Policy,
    PolicyType,
    SAType,
    SockAddr,
)

HOME_ADDRESS = "3ffe:501:ffff:100:1:2:3:4"
OLD_COA = "3ffe:501:ffff:500:1:2:3:4"
NEW_COA = "3ffe:501:ffff:400:1:2:3:4"
HOME_AGENT = "3ffe:501:ffff:100::1"


def tunnel_request(src: str, dst: str, reqid: int = 0) -> IPsecRequest:
    level = Level.UNIQUE if reqid else Level.REQUIRE
    return IPsecRequest(IPProto.ESP, Mode.TUNNEL, level, reqid, SockAddr.of(src), SockAddr.of(dst))


def seed_migrate(*, kmaddress: bool = True, seq: int = 0, pid: int = 0, reqid: int = 0) -> Message:
    """``SADB_X_MIGRATE`` for the MN's outbound MH policy: old CoA → new CoA (320 bytes
    with KMADDRESS, 256 without)."""
    extensions = [
        AddressSrc.of(f"{HOME_ADDRESS}/128", IPProto.MH),
        AddressDst.of(f"{HOME_AGENT}/128", IPProto.MH),
        Policy(
            PolicyType.IPSEC,
            Direction.OUTBOUND,
            requests=(tunnel_request(OLD_COA, HOME_AGENT, reqid), tunnel_request(NEW_COA, HOME_AGENT, reqid)),
        ),
    ]
    if kmaddress:
        extensions.append(KMAddress(SockAddr.of(NEW_COA), SockAddr.of(HOME_AGENT)))
    return Message(MsgType.X_MIGRATE, SAType.ESP, seq=seq, pid=pid, extensions=tuple(extensions))
