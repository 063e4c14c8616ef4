"""The Mobile IPv6 Mobility Header (RFC 6275, with RFC 3963's NEMO option). No I/O here.

``decode(data, src, dst)`` turns one Mobility Header into a message object and
``encode(msg, src, dst)`` turns it back, the checksum over the IPv6 pseudo-header
checked and filled in; ``checksum_ok`` checks bytes alone.
"""

from pfmigrate._wire import DecodeError
from pfmigrate.mip6.checksum import Address, checksum, checksum_ok
from pfmigrate.mip6.codec import decode, encode
from pfmigrate.mip6.constants import (
    IPPROTO_MH,
    IPPROTO_NONE,
    MAX_MH_LEN,
    BAFlags,
    BAStatus,
    BEStatus,
    BUFlags,
    MHType,
    OptType,
)
from pfmigrate.mip6.messages import (
    BindingAck,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    CareOfTest,
    CareOfTestInit,
    HomeTest,
    HomeTestInit,
    KnownMessage,
    Message,
    UnknownMessage,
)
from pfmigrate.mip6.options import (
    AlternateCareOfAddress,
    BindingAuthorizationData,
    BindingRefreshAdvice,
    MobileNetworkPrefix,
    NonceIndices,
    Option,
    UnknownOption,
)

__all__ = [
    "decode", "encode", "checksum", "checksum_ok", "Address", "DecodeError",
    "Message", "KnownMessage", "BindingRefreshRequest", "HomeTestInit", "CareOfTestInit", "HomeTest",
    "CareOfTest", "BindingUpdate", "BindingAck", "BindingError", "UnknownMessage",
    "Option", "BindingRefreshAdvice", "AlternateCareOfAddress", "NonceIndices", "BindingAuthorizationData",
    "MobileNetworkPrefix", "UnknownOption",
    "MHType", "OptType", "BAStatus", "BEStatus", "BUFlags", "BAFlags", "IPPROTO_MH", "IPPROTO_NONE", "MAX_MH_LEN",
]  # fmt: skip
