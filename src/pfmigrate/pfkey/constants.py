"""PF_KEY v2 numbers, as Linux defines them.

Sources: Linux's ``include/uapi/linux/pfkeyv2.h`` and ``include/uapi/linux/ipsec.h``.
Member names are the C names without their common prefix: ``MsgType.X_MIGRATE`` is
``SADB_X_MIGRATE``.
"""

from __future__ import annotations

import enum

from pfmigrate._enum import OpenIntEnum

PF_KEY_V2 = 2
PFKEYV2_REVISION = 199806
AF_KEY = 15

# Address families as Linux numbers them on the wire (not the host's socket module).
AF_INET = 2
AF_INET6 = 10

#: The highest extension type Linux parses; higher types are skipped (``SADB_EXT_MAX``).
SADB_EXT_MAX = 26
#: Linux accepts at most this many old/new request pairs in one MIGRATE.
XFRM_MAX_DEPTH = 6


class MsgType(OpenIntEnum):
    """``sadb_msg_type``."""

    RESERVED = 0
    GETSPI = 1
    UPDATE = 2
    ADD = 3
    DELETE = 4
    GET = 5
    ACQUIRE = 6
    REGISTER = 7
    EXPIRE = 8
    FLUSH = 9
    DUMP = 10
    X_PROMISC = 11
    X_PCHANGE = 12
    X_SPDUPDATE = 13
    X_SPDADD = 14
    X_SPDDELETE = 15
    X_SPDGET = 16
    X_SPDACQUIRE = 17
    X_SPDDUMP = 18
    X_SPDFLUSH = 19
    X_SPDSETIDX = 20
    X_SPDEXPIRE = 21
    X_SPDDELETE2 = 22
    X_NAT_T_NEW_MAPPING = 23
    X_MIGRATE = 24


class ExtType(OpenIntEnum):
    """``sadb_ext_type``."""

    RESERVED = 0
    SA = 1
    LIFETIME_CURRENT = 2
    LIFETIME_HARD = 3
    LIFETIME_SOFT = 4
    ADDRESS_SRC = 5
    ADDRESS_DST = 6
    ADDRESS_PROXY = 7
    KEY_AUTH = 8
    KEY_ENCRYPT = 9
    IDENTITY_SRC = 10
    IDENTITY_DST = 11
    SENSITIVITY = 12
    PROPOSAL = 13
    SUPPORTED_AUTH = 14
    SUPPORTED_ENCRYPT = 15
    SPIRANGE = 16
    X_KMPRIVATE = 17
    X_POLICY = 18
    X_SA2 = 19
    X_NAT_T_TYPE = 20
    X_NAT_T_SPORT = 21
    X_NAT_T_DPORT = 22
    X_NAT_T_OA = 23
    X_SEC_CTX = 24
    X_KMADDRESS = 25
    X_FILTER = 26


class SAType(OpenIntEnum):
    """``sadb_msg_satype``."""

    UNSPEC = 0
    AH = 2
    ESP = 3
    RSVP = 5
    OSPFV2 = 6
    RIPV2 = 7
    MIP = 8
    X_IPCOMP = 9


class SAState(OpenIntEnum):
    """``sadb_sa_state``."""

    LARVAL = 0
    MATURE = 1
    DYING = 2
    DEAD = 3


class AuthAlg(OpenIntEnum):
    """``sadb_sa_auth``: ``SADB_AALG_*`` and ``SADB_X_AALG_*``."""

    NONE = 0
    MD5HMAC = 2
    SHA1HMAC = 3
    X_SHA2_256HMAC = 5
    X_SHA2_384HMAC = 6
    X_SHA2_512HMAC = 7
    X_RIPEMD160HMAC = 8
    X_AES_XCBC_MAC = 9
    X_NULL = 251


class EncAlg(OpenIntEnum):
    """``sadb_sa_encrypt``: ``SADB_EALG_*`` and ``SADB_X_EALG_*``.

    For an IPComp SA the same field holds a ``CompAlg`` number.
    """

    NONE = 0
    DESCBC = 2
    TRIPLEDESCBC = 3  # SADB_EALG_3DESCBC
    X_CASTCBC = 6
    X_BLOWFISHCBC = 7
    NULL = 11
    X_AESCBC = 12
    X_AESCTR = 13
    X_AES_CCM_ICV8 = 14
    X_AES_CCM_ICV12 = 15
    X_AES_CCM_ICV16 = 16
    X_AES_GCM_ICV8 = 18
    X_AES_GCM_ICV12 = 19
    X_AES_GCM_ICV16 = 20
    X_CAMELLIACBC = 22
    X_NULL_AES_GMAC = 23
    X_SERPENTCBC = 252
    X_TWOFISHCBC = 253


class CompAlg(OpenIntEnum):
    """``SADB_X_CALG_*``."""

    NONE = 0
    OUI = 1
    DEFLATE = 2
    LZS = 3
    LZJH = 4


class IdentType(OpenIntEnum):
    """``sadb_ident_type``."""

    RESERVED = 0
    PREFIX = 1
    FQDN = 2
    USERFQDN = 3


class Mode(OpenIntEnum):
    """``IPSEC_MODE_*`` (``sadb_x_sa2_mode``, ``sadb_x_ipsecrequest_mode``)."""

    ANY = 0
    TRANSPORT = 1
    TUNNEL = 2
    BEET = 3
    IPTFS = 4


class Direction(OpenIntEnum):
    """``IPSEC_DIR_*`` (``sadb_x_policy_dir``)."""

    ANY = 0
    INBOUND = 1
    OUTBOUND = 2
    FWD = 3
    MAX = 4
    INVALID = 5


class PolicyType(OpenIntEnum):
    """``IPSEC_POLICY_*`` (``sadb_x_policy_type``)."""

    DISCARD = 0
    NONE = 1
    IPSEC = 2
    ENTRUST = 3
    BYPASS = 4


class Level(OpenIntEnum):
    """``IPSEC_LEVEL_*`` (``sadb_x_ipsecrequest_level``)."""

    DEFAULT = 0
    USE = 1
    REQUIRE = 2
    UNIQUE = 3


class IPProto(OpenIntEnum):
    """IP protocol numbers that appear in selectors and requests.

    0 is left unnamed: in PF_KEY it usually means "any" (Linux writes 0 in SA address
    extensions and in MIGRATE broadcasts), not IPv6 hop-by-hop options.
    """

    ICMP = 1
    IPIP = 4
    TCP = 6
    UDP = 17
    IPV6 = 41
    ROUTING = 43
    GRE = 47
    ESP = 50
    AH = 51
    ICMPV6 = 58
    DSTOPTS = 60
    IPCOMP = 108
    SCTP = 132
    MH = 135
    ANY = 255


class SAFlags(enum.IntFlag, boundary=enum.KEEP):
    """``sadb_sa_flags``; unknown bits are kept."""

    PFS = 0x1
    NOPMTUDISC = 0x20000000
    DECAP_DSCP = 0x40000000
    NOECN = 0x80000000


#: ``pfkey_satype2proto``: the IP protocol an SA type stands for (0: none).
SATYPE_TO_PROTO = {
    SAType.UNSPEC: IPProto.ANY,
    SAType.AH: IPProto.AH,
    SAType.ESP: IPProto.ESP,
    SAType.X_IPCOMP: IPProto.IPCOMP,
}
#: ``pfkey_proto2satype``.
PROTO_TO_SATYPE = {IPProto.AH: SAType.AH, IPProto.ESP: SAType.ESP, IPProto.IPCOMP: SAType.X_IPCOMP}
