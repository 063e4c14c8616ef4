"""The algorithms the engine knows, as Linux 6.1's ``xfrm_algo.c`` lists them for PF_KEY.

Each entry: the PF_KEY number, the Linux name, the IV length and the advisory key sizes
that REGISTER reports, the ICV truncation for authentication, and which key lengths the
crypto code accepts (Linux leaves that to the cipher: a wrong length fails SA set-up
with EINVAL). AEAD numbers are absent on purpose: Linux's PF_KEY never consults its
AEAD table, so adding an AEAD SA through PF_KEY answers ENOSYS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Algorithm:
    id: int
    name: str
    ivlen: int
    minbits: int
    maxbits: int
    trunc_bits: int = 0
    # Which key lengths (bytes) the Linux crypto code accepts; HMAC takes any.
    accepts: Callable[[int], bool] = lambda nbytes: True


def _sizes(*allowed: int) -> Callable[[int], bool]:
    return lambda nbytes: nbytes in allowed


def _between(low: int, high: int) -> Callable[[int], bool]:
    return lambda nbytes: low <= nbytes <= high


#: Authentication, in Linux's table order (REGISTER lists them so).
AUTH: tuple[Algorithm, ...] = (
    Algorithm(251, "digest_null", 0, 0, 0, 0),
    Algorithm(2, "hmac(md5)", 0, 128, 128, 96),
    Algorithm(3, "hmac(sha1)", 0, 160, 160, 96),
    Algorithm(5, "hmac(sha256)", 0, 256, 256, 96),
    Algorithm(6, "hmac(sha384)", 0, 384, 384, 192),
    Algorithm(7, "hmac(sha512)", 0, 512, 512, 256),
    Algorithm(8, "hmac(rmd160)", 0, 160, 160, 96),
    Algorithm(9, "xcbc(aes)", 0, 128, 128, 96, _sizes(16, 24, 32)),
)
#: Encryption, in Linux's table order.
ENCRYPT: tuple[Algorithm, ...] = (
    Algorithm(11, "ecb(cipher_null)", 0, 0, 0, accepts=_sizes(0)),
    Algorithm(2, "cbc(des)", 8, 64, 64, accepts=_sizes(8)),
    Algorithm(3, "cbc(des3_ede)", 8, 192, 192, accepts=_sizes(24)),
    Algorithm(6, "cbc(cast5)", 8, 40, 128, accepts=_between(5, 16)),
    Algorithm(7, "cbc(blowfish)", 8, 40, 448, accepts=_between(4, 56)),
    Algorithm(12, "cbc(aes)", 8, 128, 256, accepts=_sizes(16, 24, 32)),
    Algorithm(252, "cbc(serpent)", 8, 128, 256, accepts=_between(0, 32)),
    Algorithm(22, "cbc(camellia)", 8, 128, 256, accepts=_sizes(16, 24, 32)),
    Algorithm(253, "cbc(twofish)", 8, 128, 256, accepts=_sizes(16, 24, 32)),
    Algorithm(13, "rfc3686(ctr(aes))", 8, 160, 288, accepts=_sizes(20, 28, 36)),
)
#: Compression (only deflate exists as a Linux crypto algorithm).
COMPRESS: tuple[Algorithm, ...] = (Algorithm(2, "deflate", 0, 0, 0),)

AUTH_BY_ID = {a.id: a for a in AUTH}
ENCRYPT_BY_ID = {a.id: a for a in ENCRYPT}
COMPRESS_BY_ID = {a.id: a for a in COMPRESS}
