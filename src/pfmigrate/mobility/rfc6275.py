"""The numbers of Mobile IPv6 home registration that the binding state machines use.

Timers are in seconds, as ``now`` is. The wire counts lifetimes in units of four
seconds; here a lifetime is always seconds and always a multiple of four, so it converts
to the wire without rounding. Sources: RFC 6275 §6.1.7, §6.1.8, §9.5.1, §11.7.3, §11.8,
§12 (constants) and §13 (configuration variables); RFC 3963 §4.2 (NEMO statuses).
"""

from __future__ import annotations

from typing import Final

from pfmigrate._enum import OpenIntEnum

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


class BAStatus(OpenIntEnum):
    """Binding Acknowledgement status (RFC 6275 §6.1.8; 140 to 143 from RFC 3963 §4.2).

    Below 128 the Binding Update was accepted; from 128 on it was rejected.
    """

    ACCEPTED = 0
    ACCEPTED_PREFIX_DISCOVERY_NECESSARY = 1
    REASON_UNSPECIFIED = 128
    ADMINISTRATIVELY_PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130
    HOME_REGISTRATION_NOT_SUPPORTED = 131
    NOT_HOME_SUBNET = 132
    NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE = 133
    DUPLICATE_ADDRESS_DETECTION_FAILED = 134
    SEQUENCE_NUMBER_OUT_OF_WINDOW = 135
    EXPIRED_HOME_NONCE_INDEX = 136
    EXPIRED_CARE_OF_NONCE_INDEX = 137
    EXPIRED_NONCES = 138
    REGISTRATION_TYPE_CHANGE_DISALLOWED = 139
    MOBILE_ROUTER_OPERATION_NOT_PERMITTED = 140
    INVALID_PREFIX = 141
    NOT_AUTHORIZED_FOR_PREFIX = 142
    FORWARDING_SETUP_FAILED = 143


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
