"""MD4 (RFC 1320), the smallest implementation there is room for.

Only MS-CHAPv2's NtPasswordHash needs it (RFC 2759 §8.3). Neither `cryptography` nor Python's
hashlib offers MD4 under OpenSSL 3 (it sits in the legacy provider), so it is written here,
checked against the test suite of RFC 1320 §A.5 in tests/unit/test_eap_crypto.py. MD4 is
broken: never use it for anything but this historical hash.
"""
from __future__ import annotations

import struct

_MASK = 0xFFFFFFFF


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _MASK


def md4(data: bytes) -> bytes:
    """The 16-octet MD4 digest of `data`."""
    # RFC 1320 §3.1-3.2: pad with 0x80, zeros to 56 mod 64, then the bit length, little-endian
    message = bytes(data) + b"\x80" + bytes((55 - len(data)) % 64) + struct.pack("<Q", (len(data) * 8) & (2**64 - 1))
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476  # RFC 1320 §3.3
    for offset in range(0, len(message), 64):
        x = struct.unpack("<16I", message[offset:offset + 64])
        aa, bb, cc, dd = a, b, c, d
        # RFC 1320 §3.4, round 1: F(X,Y,Z) = XY v not(X) Z
        for i in range(16):
            k = i
            s = (3, 7, 11, 19)[i % 4]
            a = _rotl((a + ((b & c) | (~b & d)) + x[k]) & _MASK, s)
            a, b, c, d = d, a, b, c
        # round 2: G(X,Y,Z) = XY v XZ v YZ, constant 0x5A827999
        for i in range(16):
            k = (i % 4) * 4 + i // 4
            s = (3, 5, 9, 13)[i % 4]
            a = _rotl((a + ((b & c) | (b & d) | (c & d)) + x[k] + 0x5A827999) & _MASK, s)
            a, b, c, d = d, a, b, c
        # round 3: H(X,Y,Z) = X xor Y xor Z, constant 0x6ED9EBA1
        for i, k in enumerate((0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)):
            s = (3, 9, 11, 15)[i % 4]
            a = _rotl((a + (b ^ c ^ d) + x[k] + 0x6ED9EBA1) & _MASK, s)
            a, b, c, d = d, a, b, c
        a, b, c, d = (a + aa) & _MASK, (b + bb) & _MASK, (c + cc) & _MASK, (d + dd) & _MASK
    return struct.pack("<4I", a, b, c, d)
