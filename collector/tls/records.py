"""TLS record protection from key-log secrets: TLS 1.2 AEAD suites and TLS 1.3 (AES-GCM, ChaCha20-Poly1305).

    keys = tls13_keys(secret, suite)          # TLS 1.3: one traffic secret -> RecordKey
    c, s = tls12_keys(master, suite, client_random, server_random)
    plaintext = key.open(header, fragment)    # None when the tag does not verify

The TLS 1.3 key schedule is HKDF-Expand-Label (RFC 8446 7.1/7.3; `traffic upd` for KeyUpdate); TLS 1.2
keys come from the PRF's key block (RFC 5246 6.3, RFC 5288 GCM explicit nonce, RFC 7905 ChaCha20).
Everything else (CBC, CCM, export, NULL, SSLv3-TLS 1.1, RSA pre-master keys) is left to tshark:
`suite_info` returns None for it and the caller falls back.
"""

from __future__ import annotations

import hmac
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

AES, CHACHA = "aes-gcm", "chacha20-poly1305"
# suite -> (AEAD, key length, hash of the PRF / HKDF)
TLS13_SUITES = {0x1301: (AES, 16, "sha256"), 0x1302: (AES, 32, "sha384"), 0x1303: (CHACHA, 32, "sha256")}
TLS12_SUITES = {
    0x009C: (AES, 16, "sha256"), 0x009D: (AES, 32, "sha384"),  # RSA
    0x009E: (AES, 16, "sha256"), 0x009F: (AES, 32, "sha384"),  # DHE_RSA
    0x00A2: (AES, 16, "sha256"), 0x00A3: (AES, 32, "sha384"),  # DHE_DSS
    0xC02B: (AES, 16, "sha256"), 0xC02C: (AES, 32, "sha384"),  # ECDHE_ECDSA
    0xC02F: (AES, 16, "sha256"), 0xC030: (AES, 32, "sha384"),  # ECDHE_RSA
    0xCCA8: (CHACHA, 32, "sha256"), 0xCCA9: (CHACHA, 32, "sha256"), 0xCCAA: (CHACHA, 32, "sha256"),
}  # fmt: skip
TLS12, TLS13 = 0x0303, 0x0304


def suite_info(version: int, suite: int) -> tuple[str, int, str] | None:
    """(AEAD, key length, hash) when this decryptor handles the suite at that version, else None."""
    if version == TLS13:
        return TLS13_SUITES.get(suite)
    if version == TLS12:
        return TLS12_SUITES.get(suite)
    return None


def hkdf_expand_label(secret: bytes, label: bytes, context: bytes, length: int, hash_name: str) -> bytes:
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + bytes([len(context)]) + context
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.digest(secret, t + info + bytes([i]), hash_name)  # one-shot: ~4x cheaper than hmac.new
        out += t
        i += 1
    return out[:length]


def prf12(secret: bytes, label: bytes, seed: bytes, length: int, hash_name: str) -> bytes:
    """TLS 1.2 PRF (P_hash)."""
    seed = label + seed
    a, out = seed, b""
    while len(out) < length:
        a = hmac.digest(secret, a, hash_name)
        out += hmac.digest(secret, a + seed, hash_name)
    return out[:length]


class RecordKey:
    """One direction's record protection under one key; `seq` counts records opened with it."""

    __slots__ = ("aead", "iv", "explicit", "tls13", "seq", "secret", "info")

    def __init__(self, aead_name: str, key: bytes, iv: bytes, *, explicit: bool, tls13: bool,
                 secret: bytes = b"", info: tuple[str, int, str] | None = None):
        self.aead = AESGCM(key) if aead_name == AES else ChaCha20Poly1305(key)
        self.iv = int.from_bytes(iv, "big")
        self.explicit = explicit  # TLS 1.2 GCM: 4-byte salt (`iv`) + 8-byte nonce in each record
        self.tls13 = tls13
        self.seq = 0
        self.secret = secret  # TLS 1.3 traffic secret (for KeyUpdate)
        self.info = info

    def open(self, header: bytes, fragment: bytes) -> bytes | None:
        """Decrypt one record (`header` = its 5 bytes); None when the tag fails (seq not advanced)."""
        try:
            if self.tls13:
                nonce = (self.iv ^ self.seq).to_bytes(12, "big")
                pt = self.aead.decrypt(nonce, fragment, header)
            elif self.explicit:
                if len(fragment) < 24:
                    return None
                nonce = self.iv.to_bytes(4, "big") + fragment[:8]
                aad = struct.pack("!Q3sH", self.seq, header[:3], len(fragment) - 24)
                pt = self.aead.decrypt(nonce, fragment[8:], aad)
            else:
                if len(fragment) < 16:
                    return None
                nonce = (self.iv ^ self.seq).to_bytes(12, "big")
                aad = struct.pack("!Q3sH", self.seq, header[:3], len(fragment) - 16)
                pt = self.aead.decrypt(nonce, fragment, aad)
        except (InvalidTag, ValueError):
            return None
        self.seq += 1
        return pt

    def updated(self) -> RecordKey:
        """The key after a TLS 1.3 KeyUpdate (RFC 8446 7.2)."""
        assert self.info is not None
        return tls13_key(hkdf_expand_label(self.secret, b"traffic upd", b"", len(self.secret), self.info[2]), self.info)


def tls13_key(secret: bytes, info: tuple[str, int, str]) -> RecordKey:
    aead_name, klen, h = info
    key = hkdf_expand_label(secret, b"key", b"", klen, h)
    iv = hkdf_expand_label(secret, b"iv", b"", 12, h)
    return RecordKey(aead_name, key, iv, explicit=False, tls13=True, secret=secret, info=info)


def tls12_keys(master: bytes, info: tuple[str, int, str], client_random: bytes,
               server_random: bytes) -> tuple[RecordKey, RecordKey]:
    """(client write key, server write key) from the master secret."""
    aead_name, klen, h = info
    ivlen = 4 if aead_name == AES else 12
    block = prf12(master, b"key expansion", server_random + client_random, 2 * (klen + ivlen), h)
    ck, sk = block[:klen], block[klen : 2 * klen]
    civ, siv = block[2 * klen : 2 * klen + ivlen], block[2 * klen + ivlen :]
    explicit = aead_name == AES
    return (RecordKey(aead_name, ck, civ, explicit=explicit, tls13=False),
            RecordKey(aead_name, sk, siv, explicit=explicit, tls13=False))
