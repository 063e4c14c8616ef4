"""setkey's algorithm names, what Linux calls them, and the key lengths Linux takes.

The key lengths are those Linux's crypto code accepts (``pfmigrate.sadb.algorithms``),
so a wrong key is refused while reading the file, with its position, instead of by the
kernel with a bare EINVAL. An authentication algorithm gets the ICV truncation Linux
applies to SAs added through PF_KEY (HMAC-SHA-256: 96 bits), so an SA is the same
whichever backend adds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pfmigrate import algorithms
from pfmigrate.model import Algorithm


@dataclass(frozen=True, slots=True)
class Transform:
    name: str  # setkey's name
    linux: str  # Linux's crypto name
    key_bits: tuple[int, ...]  # the key lengths allowed; () takes no key at all
    icv_bits: int = 0
    aead: bool = False

    @property
    def takes_key(self) -> bool:
        return bool(self.key_bits)

    def lengths(self) -> str:
        """The allowed key lengths, for an error message."""
        bits = self.key_bits
        if len(bits) == 1:
            return f"a {bits[0]}-bit key"
        if len(bits) <= 3:
            return "a " + ", ".join(f"{b}-" for b in bits[:-1]) + f" or {bits[-1]}-bit key"
        return f"a key of {bits[0]} to {bits[-1]} bits in whole bytes"

    def algorithm(self, key: bytes) -> Algorithm:
        return Algorithm(self.linux, key, self.icv_bits)


def _auth(name: str, linux: str, bits: int) -> Transform:
    return Transform(name, linux, (bits,), algorithms.AUTH_BY_NAME[linux][1])


# The first name of each Linux algorithm is the one dumps print.
AUTHENTICATION = {
    t.name: t
    for t in (
        _auth("hmac-md5", "hmac(md5)", 128),
        _auth("hmac-sha1", "hmac(sha1)", 160),
        _auth("hmac-sha256", "hmac(sha256)", 256),
        _auth("hmac-sha2-256", "hmac(sha256)", 256),
        _auth("hmac-sha384", "hmac(sha384)", 384),
        _auth("hmac-sha2-384", "hmac(sha384)", 384),
        _auth("hmac-sha512", "hmac(sha512)", 512),
        _auth("hmac-sha2-512", "hmac(sha512)", 512),
        _auth("hmac-ripemd160", "hmac(rmd160)", 160),
        _auth("aes-xcbc-mac", "xcbc(aes)", 128),
        Transform("null", "digest_null", ()),
    )
}
_AES = (128, 192, 256)
_AES_NONCE = (160, 224, 288)  # an AES key and a 32-bit nonce
ENCRYPTION = {
    t.name: t
    for t in (
        Transform("des-cbc", "cbc(des)", (64,)),
        Transform("3des-cbc", "cbc(des3_ede)", (192,)),
        Transform("null", "ecb(cipher_null)", ()),
        Transform("blowfish-cbc", "cbc(blowfish)", tuple(range(40, 449, 8))),
        Transform("cast128-cbc", "cbc(cast5)", tuple(range(40, 129, 8))),
        Transform("aes-cbc", "cbc(aes)", _AES),
        Transform("rijndael-cbc", "cbc(aes)", _AES),
        Transform("twofish-cbc", "cbc(twofish)", _AES),
        Transform("camellia-cbc", "cbc(camellia)", _AES),
        Transform("aes-ctr", "rfc3686(ctr(aes))", _AES_NONCE),
        Transform("aes-gcm-16", "rfc4106(gcm(aes))", _AES_NONCE, 128, aead=True),
    )
}
COMPRESSION = {"deflate": Transform("deflate", "deflate", ())}

#: Names setkey knows from KAME or BSD that Linux has no algorithm for.
NOT_ON_LINUX = frozenset(
    {"keyed-md5", "keyed-sha1", "tcp-md5", "des-deriv", "des-32iv", "simple", "rc5-cbc", "oui", "lzs"}
)

_DUMP_NAMES: dict[tuple[str, int], str] = {}
for _table in (AUTHENTICATION, ENCRYPTION, COMPRESSION):
    for _t in _table.values():
        _DUMP_NAMES.setdefault((_t.linux, _t.icv_bits if _t.aead else 0), _t.name)


def dump_name(algorithm: Algorithm, *, aead: bool = False) -> str:
    """setkey's name for a model algorithm; Linux's name when setkey has none."""
    return _DUMP_NAMES.get((algorithm.name, algorithm.icv_bits if aead else 0), algorithm.name)


def choices(table: dict[str, Transform]) -> str:
    return ", ".join(table)
