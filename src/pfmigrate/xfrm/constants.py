"""Linux XFRM netlink numbers (``include/uapi/linux/xfrm.h``, ``netlink.h``).

Member names are the C names without their prefix: ``MsgType.MIGRATE`` is
``XFRM_MSG_MIGRATE``, ``Attr.KMADDRESS`` is ``XFRMA_KMADDRESS``.
"""

from __future__ import annotations

import enum

from pfmigrate._enum import OpenIntEnum

NETLINK_XFRM = 6
AF_INET = 2
AF_INET6 = 10
XFRM_INF = (1 << 64) - 1  # "no limit" in lifetime configurations
XFRM_MAX_DEPTH = 6


class NlMsgType(OpenIntEnum):
    """Netlink's own message types (``NLMSG_*``)."""

    NOOP = 1
    ERROR = 2
    DONE = 3
    OVERRUN = 4


class NlFlags(enum.IntFlag, boundary=enum.KEEP):
    """``nlmsg_flags``. The high byte means different things for GET, NEW and ACK."""

    REQUEST = 0x1
    MULTI = 0x2
    ACK = 0x4
    ECHO = 0x8
    DUMP_INTR = 0x10
    DUMP_FILTERED = 0x20
    ROOT = 0x100  # GET; REPLACE for NEW; CAPPED for an ACK
    MATCH = 0x200  # GET; EXCL for NEW; ACK_TLVS for an ACK
    ATOMIC = 0x400  # GET; CREATE for NEW
    APPEND = 0x800


DUMP = NlFlags.ROOT | NlFlags.MATCH
REPLACE, EXCL, CREATE = NlFlags.ROOT, NlFlags.MATCH, NlFlags.ATOMIC
CAPPED, ACK_TLVS = NlFlags.ROOT, NlFlags.MATCH


class MsgType(OpenIntEnum):
    """``XFRM_MSG_*``."""

    NEWSA = 0x10
    DELSA = 0x11
    GETSA = 0x12
    NEWPOLICY = 0x13
    DELPOLICY = 0x14
    GETPOLICY = 0x15
    ALLOCSPI = 0x16
    ACQUIRE = 0x17
    EXPIRE = 0x18
    UPDPOLICY = 0x19
    UPDSA = 0x1A
    POLEXPIRE = 0x1B
    FLUSHSA = 0x1C
    FLUSHPOLICY = 0x1D
    NEWAE = 0x1E
    GETAE = 0x1F
    REPORT = 0x20
    MIGRATE = 0x21
    NEWSADINFO = 0x22
    GETSADINFO = 0x23
    NEWSPDINFO = 0x24
    GETSPDINFO = 0x25
    MAPPING = 0x26
    SETDEFAULT = 0x27
    GETDEFAULT = 0x28


class Attr(OpenIntEnum):
    """``XFRMA_*`` attribute types."""

    UNSPEC = 0
    ALG_AUTH = 1
    ALG_CRYPT = 2
    ALG_COMP = 3
    ENCAP = 4
    TMPL = 5
    SA = 6
    POLICY = 7
    SEC_CTX = 8
    LTIME_VAL = 9
    REPLAY_VAL = 10
    REPLAY_THRESH = 11
    ETIMER_THRESH = 12
    SRCADDR = 13
    COADDR = 14
    LASTUSED = 15
    POLICY_TYPE = 16
    MIGRATE = 17
    ALG_AEAD = 18
    KMADDRESS = 19
    ALG_AUTH_TRUNC = 20
    MARK = 21
    TFCPAD = 22
    REPLAY_ESN_VAL = 23
    SA_EXTRA_FLAGS = 24
    PROTO = 25
    ADDRESS_FILTER = 26
    PAD = 27
    OFFLOAD_DEV = 28
    SET_MARK = 29
    SET_MARK_MASK = 30
    IF_ID = 31
    MTIMER_THRESH = 32
    SA_DIR = 33
    NAT_KEEPALIVE_INTERVAL = 34
    SA_PCPU = 35


class Mode(OpenIntEnum):
    """``XFRM_MODE_*``."""

    TRANSPORT = 0
    TUNNEL = 1
    ROUTEOPTIMIZATION = 2
    IN_TRIGGER = 3
    BEET = 4
    IPTFS = 5


class PolicyDir(OpenIntEnum):
    """``XFRM_POLICY_IN/OUT/FWD``."""

    IN = 0
    OUT = 1
    FWD = 2


class PolicyAction(OpenIntEnum):
    ALLOW = 0
    BLOCK = 1


class PolicyType(OpenIntEnum):
    MAIN = 0
    SUB = 1
    ANY = 255


class Share(OpenIntEnum):
    ANY = 0
    SESSION = 1
    USER = 2
    UNIQUE = 3


class Group(OpenIntEnum):
    """``XFRMNLGRP_*`` multicast groups (join with ``NETLINK_ADD_MEMBERSHIP``)."""

    NONE = 0
    ACQUIRE = 1
    EXPIRE = 2
    SA = 3
    POLICY = 4
    AEVENTS = 5
    REPORT = 6
    MIGRATE = 7
    MAPPING = 8


class StateFlags(enum.IntFlag, boundary=enum.KEEP):
    """``xfrm_usersa_info.flags``."""

    NOECN = 1
    DECAP_DSCP = 2
    NOPMTUDISC = 4
    WILDRECV = 8
    ICMP = 16
    AF_UNSPEC = 32
    ALIGN4 = 64
    ESN = 128


class AeFlags(enum.IntFlag, boundary=enum.KEEP):
    """``xfrm_aevent_id.flags`` (``XFRM_AE_*``): in GETAE the thresholds asked for, in
    NEWAE what caused it (a replay or timer threshold, or a change)."""

    RTHR = 1
    RVAL = 2
    LVAL = 4
    ETHR = 8
    CR = 16
    CE = 32
    CU = 64


class PolicyFlags(enum.IntFlag, boundary=enum.KEEP):
    LOCALOK = 1
    ICMP = 2
    CPU_ACQUIRE = 4
