"""Algorithm names: Linux's crypto names (what XFRM and the model use) and PF_KEY numbers.

From Linux ``net/xfrm/xfrm_algo.c``: the PF_KEY number of each algorithm, and the ICV
truncation Linux applies to an authentication algorithm added through PF_KEY, which
cannot say it. Note HMAC-SHA-256: Linux truncates it to 96 bits, not RFC 4868's 128
(seen in the kernel tier); only XFRM's ``ALG_AUTH_TRUNC`` can ask for 128.
"""

from __future__ import annotations

from pfmigrate.pfkey.constants import AuthAlg, CompAlg, EncAlg

#: Authentication: PF_KEY number -> (Linux name, truncated ICV bits).
AUTH: dict[int, tuple[str, int]] = {
    AuthAlg.X_NULL: ("digest_null", 0),
    AuthAlg.MD5HMAC: ("hmac(md5)", 96),
    AuthAlg.SHA1HMAC: ("hmac(sha1)", 96),
    AuthAlg.X_SHA2_256HMAC: ("hmac(sha256)", 96),
    AuthAlg.X_SHA2_384HMAC: ("hmac(sha384)", 192),
    AuthAlg.X_SHA2_512HMAC: ("hmac(sha512)", 256),
    AuthAlg.X_RIPEMD160HMAC: ("hmac(rmd160)", 96),
    AuthAlg.X_AES_XCBC_MAC: ("xcbc(aes)", 96),
}
#: Encryption: PF_KEY number -> Linux name.
ENCRYPT: dict[int, str] = {
    EncAlg.NULL: "ecb(cipher_null)",
    EncAlg.DESCBC: "cbc(des)",
    EncAlg.TRIPLEDESCBC: "cbc(des3_ede)",
    EncAlg.X_CASTCBC: "cbc(cast5)",
    EncAlg.X_BLOWFISHCBC: "cbc(blowfish)",
    EncAlg.X_AESCBC: "cbc(aes)",
    EncAlg.X_AESCTR: "rfc3686(ctr(aes))",
    EncAlg.X_CAMELLIACBC: "cbc(camellia)",
    EncAlg.X_SERPENTCBC: "cbc(serpent)",
    EncAlg.X_TWOFISHCBC: "cbc(twofish)",
}
#: Combined-mode (AEAD): PF_KEY encryption number -> (Linux name, ICV bits).
AEAD: dict[int, tuple[str, int]] = {
    EncAlg.X_AES_CCM_ICV8: ("rfc4309(ccm(aes))", 64),
    EncAlg.X_AES_CCM_ICV12: ("rfc4309(ccm(aes))", 96),
    EncAlg.X_AES_CCM_ICV16: ("rfc4309(ccm(aes))", 128),
    EncAlg.X_AES_GCM_ICV8: ("rfc4106(gcm(aes))", 64),
    EncAlg.X_AES_GCM_ICV12: ("rfc4106(gcm(aes))", 96),
    EncAlg.X_AES_GCM_ICV16: ("rfc4106(gcm(aes))", 128),
    EncAlg.X_NULL_AES_GMAC: ("rfc4543(gcm(aes))", 128),
}
#: Compression: PF_KEY number -> Linux name.
COMPRESS: dict[int, str] = {CompAlg.DEFLATE: "deflate", CompAlg.LZS: "lzs", CompAlg.LZJH: "lzjh"}

AUTH_BY_NAME = {name: (number, bits) for number, (name, bits) in AUTH.items()}
ENCRYPT_BY_NAME = {name: number for number, name in ENCRYPT.items()}
AEAD_BY_NAME = {(name, bits): number for number, (name, bits) in AEAD.items()}
COMPRESS_BY_NAME = {name: number for number, name in COMPRESS.items()}
