"""Mobility Header numbers: RFC 6275 §6.1 and §6.2, with RFC 3963 (NEMO) and the flag
bits later RFCs took from the Binding Update and Acknowledgement's reserved fields.

Member names are the RFC's names in capitals; every enum is open, so a number this code
does not know decodes to a pseudo-member and encodes back unchanged.
"""

from __future__ import annotations

import enum

from pfmigrate._enum import OpenIntEnum

#: The Next Header value of the Mobility Header (RFC 6275 §6.1.1), also the pseudo-header's.
IPPROTO_MH = 135
#: The only Payload Proto a Mobility Header carries today: no next header (RFC 6275 §6.1.1).
IPPROTO_NONE = 59
#: Header Len counts 8-octet units after the first 8, in one octet: at most 2048 octets.
MAX_MH_LEN = 8 * (0xFF + 1)


class MHType(OpenIntEnum):
    """MH Type (RFC 6275 §6.1.2 to §6.1.9)."""

    BINDING_REFRESH_REQUEST = 0
    HOME_TEST_INIT = 1
    CARE_OF_TEST_INIT = 2
    HOME_TEST = 3
    CARE_OF_TEST = 4
    BINDING_UPDATE = 5
    BINDING_ACK = 6
    BINDING_ERROR = 7


class OptType(OpenIntEnum):
    """Mobility option type (RFC 6275 §6.2, RFC 3963 §4.3)."""

    PAD1 = 0
    PADN = 1
    BINDING_REFRESH_ADVICE = 2
    ALTERNATE_CARE_OF_ADDRESS = 3
    NONCE_INDICES = 4
    BINDING_AUTHORIZATION_DATA = 5
    MOBILE_NETWORK_PREFIX = 6


class BAStatus(OpenIntEnum):
    """Binding Acknowledgement status (RFC 6275 §6.1.8, RFC 3963 §4.2).

    Below 128 the Binding Update was accepted; from 128 on it was rejected.
    """

    ACCEPTED = 0
    PREFIX_DISCOVERY_NECESSARY = 1
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

    @property
    def accepted(self) -> bool:
        return self < 128


class BEStatus(OpenIntEnum):
    """Binding Error status (RFC 6275 §6.1.9)."""

    UNKNOWN_BINDING_FOR_HOME_ADDRESS = 1
    UNRECOGNIZED_MH_TYPE = 2


class BUFlags(enum.IntFlag, boundary=enum.KEEP):
    """The Binding Update's 16 bits after the sequence number: RFC 6275's A, H, L, K, then
    M (RFC 4140), R (RFC 3963), P (RFC 5213) and F (RFC 5555); other bits are kept."""

    A = 0x8000  #: acknowledge
    H = 0x4000  #: home registration
    L = 0x2000  #: link-local address compatibility
    K = 0x1000  #: key management mobility capability (the IKE SA survives a move)
    M = 0x0800  #: MAP registration
    R = 0x0400  #: mobile router
    P = 0x0200  #: proxy registration
    F = 0x0100  #: forcing UDP encapsulation


class BAFlags(enum.IntFlag, boundary=enum.KEEP):
    """The Binding Acknowledgement's 8 bits after the status: RFC 6275's K, then R
    (RFC 3963) and P (RFC 5213); other bits are kept."""

    K = 0x80  #: key management mobility capability
    R = 0x40  #: mobile router
    P = 0x20  #: proxy registration
