"""The numbers of Mobile IPv6 home registration that the binding state machines use.

Timers are in seconds, as ``now`` is. The wire counts lifetimes in units of four
seconds; here a lifetime is always seconds and always a multiple of four, so it converts
to the wire without rounding. Sources: RFC 6275 §6.1.7, §6.1.8, §9.5.1, §11.7.3, §11.8,
§12 (constants) and §13 (configuration variables); RFC 3963 §4.2 (NEMO statuses).
"""

from __future__ import annotations

from typing import Final

from pfmigrate.mip6.constants import BAStatus  # one enum for the wire and the machines

#: §12: the first wait for a Binding Acknowledgement when the home agent already holds a binding.
INITIAL_BINDACK_TIMEOUT: Final = 1.0
#: §13 InitialBindackTimeoutFirstReg (default 1.5 s): the first wait when it holds none,
#: since the home agent runs Duplicate Address Detection before answering (§11.8).
INITIAL_BINDACK_TIMEOUT_FIRST_REG: Final = 1.5
#: §12: the wait doubles on each retransmission up to this (§11.8).
MAX_BINDACK_TIMEOUT: Final = 32.0
#: §12: at most this many Binding Updates a second to one destination. Not enforced by
#: the machines (their own sends are spaced by the back-off); a shell may enforce it.
MAX_UPDATE_RATE: Final = 3

#: §6.1.7, §6.1.8: one lifetime unit is four seconds, in a 16-bit field.
LIFETIME_UNIT: Final = 4
MAX_LIFETIME: Final = 0xFFFF * LIFETIME_UNIT

#: §9.5.1: sequence numbers are a free-running 16-bit counter compared modulo 2**16.
SEQUENCE_MODULUS: Final = 1 << 16


#: Rejections a mobile node answers by trying again on its back-off schedule.
#:
#: §11.7.3 lets the mobile node "take steps to correct the cause of the error" and send
#: a new Binding Update, and otherwise record that no more should be sent. Only a cause
#: that can pass without the mobile node doing anything is worth another try: an
#: unspecified reason (128), the home agent's resources (130, also what it answers
#: when moving the IPsec SAs failed) and NEMO forwarding that could not be set up (143).
#: 135 is not here: it is answered at once with a corrected sequence number (§11.7.1).
#: Every other rejection, and any status this code does not know, ends the attempt:
#: they say this home agent will not serve this home address (129, 131, 132, 133, 139,
#: 140 to 142), the home address is taken (134), or the message was for a
#: correspondent node (136 to 138).
RETRYABLE: Final = frozenset(
    {BAStatus.REASON_UNSPECIFIED, BAStatus.INSUFFICIENT_RESOURCES, BAStatus.FORWARDING_SETUP_FAILED}
)


def accepted(status: int) -> bool:
    """§6.1.8: a status below 128 means the Binding Update was accepted."""
    return status < 128


__all__ = [
    "INITIAL_BINDACK_TIMEOUT", "INITIAL_BINDACK_TIMEOUT_FIRST_REG", "LIFETIME_UNIT", "MAX_BINDACK_TIMEOUT",
    "MAX_LIFETIME", "MAX_UPDATE_RATE", "RETRYABLE", "SEQUENCE_MODULUS", "BAStatus", "accepted",
]  # fmt: skip
