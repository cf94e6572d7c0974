"""Published ESP test vectors, as printed in their sources (hex with spaces).

- RFC 7634 Appendix A: an ESP packet with ChaCha20-Poly1305 (tunnel mode, IPv4 ICMP).
- draft-mcgrew-gcm-test-01 §4 (D. McGrew, "Test Cases for the use of Galois/Counter
  Mode (GCM) and Galois Message Authentication Code (GMAC) in IPsec ESP", March 2009):
  "packet" is the ESP packet from the SPI onwards; "plaintext" is what GCM encrypts,
  i.e. payload || padding || pad length || next header; an 8-octet "seq" is an ESN.
- RFC 3602 §4, cases #5 (transport) and #7 (tunnel): AES-CBC-128, no integrity.
"""
from __future__ import annotations

from dataclasses import dataclass


def hx(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


@dataclass(frozen=True)
class AeadCase:
    """`encr` is "aes-gcm", "chacha20-poly1305" or "aes-gmac"; `keymat` is key || 4-octet salt;
    `seq` is 64-bit when `esn`; `plaintext` is payload || pad || pad length || next header;
    `packet` is the ESP header onwards."""

    source: str
    encr: str
    keymat: bytes
    spi: int
    seq: int
    esn: bool
    iv: bytes
    plaintext: bytes
    packet: bytes


def _gcm(page: int, key: str, salt: str, spi: str, seq: str, iv: str, plaintext: str, packet: str, encr: str = "aes-gcm") -> AeadCase:
    seq_b = hx(seq)
    return AeadCase(
        f"draft-mcgrew-gcm-test-01 §4, page {page}",
        encr,
        hx(key) + hx(salt),
        int(spi, 16),
        int.from_bytes(seq_b, "big"),
        len(seq_b) == 8,
        hx(iv),
        hx(plaintext),
        hx(packet),
    )


RFC7634_A = AeadCase(
    "RFC 7634 Appendix A",
    "chacha20-poly1305",
    hx(
        """80 81 82 83 84 85 86 87 88 89 8a 8b 8c 8d 8e 8f
           90 91 92 93 94 95 96 97 98 99 9a 9b 9c 9d 9e 9f
           a0 a1 a2 a3"""
    ),
    0x01020304,
    5,
    False,
    hx("10 11 12 13 14 15 16 17"),
    hx(
        """45 00 00 54 a6 f2 00 00 40 01 e7 78 c6 33 64 05
           c0 00 02 05 08 00 5b 7a 3a 08 00 00 55 3b ec 10
           00 07 36 27 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13
           14 15 16 17 18 19 1a 1b 1c 1d 1e 1f 20 21 22 23
           24 25 26 27 28 29 2a 2b 2c 2d 2e 2f 30 31 32 33
           34 35 36 37 01 02 02 04"""
    ),
    hx(
        """01 02 03 04 00 00 00 05 10 11 12 13 14 15 16 17
           24 03 94 28 b9 7f 41 7e 3c 13 75 3a 4f 05 08 7b
           67 c3 52 e6 a7 fa b1 b9 82 d4 66 ef 40 7a e5 c6
           14 ee 80 99 d5 28 44 eb 61 aa 95 df ab 4c 02 f7
           2a a7 1e 7c 4c 4f 64 c9 be fe 2f ac c6 38 e8 f3
           cb ec 16 3f ac 46 9b 50 27 73 f6 fb 94 e6 64 da
           91 65 b8 28 29 f6 41 e0 76 aa a8 26 6b 7f b0 f7
           b1 1b 36 99 07 e1 ad 43"""
    ),
)

GCM_CASES = [
    _gcm(
        6, "4c80cdefbb5d10da906ac73c3613a634", "2e443b68", "00004321", "8765432100000000", "4956ed7e3b244cfe",
        """45000048699a000080114db7c0a80102 c0a801010a9bf15638d3010000010000
           00000000045f736970045f7564700373 69700963796265726369747902646b00
           0021000101020201""",
        """00004321000000004956ed7e3b244cfe fecf537e729d5b07dc30df528dd22b76
           8d1b98736696a6fd348509fa13ceac34 cfa2436f14a3f3cf65925bf1f4a13c5d
           15b21e1884f5ff6247aeabb786b93bce 61bc17d768fd9732459018148f6cbe72
           2fd04796562dfdb4""",
    ),
    _gcm(
        7, "feffe9928665731c6d6a8f9467308308", "cafebabe", "0000a5f8", "0000000a", "facedbaddecaf888",
        """4500003e698f000080114dccc0a80102 c0a801010a980035002a2343b2d00100
           00010000000000000373697009637962 65726369747902646b00000100010001""",
        """0000a5f80000000afacedbaddecaf888 deb22cd9b07c72c16e3a65beeb8df304
           a5a5897d33ae530f1ba76d5d114d2a5c 3de81827c10e9a4f51330d0eec416642
           cfbb85a5b47e48a4ec3b9ba95d918bd1 83b70d3aa8bc6ee4c309e9d85a41ad4a""",
    ),
    _gcm(
        8, "abbccddef00112233445566778899aababbccddef00112233445566778899aab", "11223344", "4a2cbfe3",
        "00000002", "0102030405060708",
        """4500003069a6400080062690c0a80102 9389155e0a9e008b2dc57ee000000000
           7002400020bf0000020405b401010402 01020201""",
        """4a2cbfe3000000020102030405060708 ff425c9b724599df7a3bcd510194e00d
           6a78107f1b0b1cbf06efae9d65a5d763 748a637985771d347f0545659f14e99d
           ef842d8eb335f4eecfdbf831824b4c49 15956c96""",
    ),
    _gcm(
        9, "00000000000000000000000000000000", "00000000", "00000000", "00000001", "0000000000000000",
        """4500003c99c500008001cb7a40679318 010101010800075c0200440061626364
           65666768696a6b6c6d6e6f7071727374 75767761626364656667686901020201""",
        """00000000000000010000000000000000 4688daf2f973a392732909c331d56d60
           f694abaa414b5e7ff5fdcdfff5e9a284 456476492719ffb64de7d9dca1e1d894
           bc3bd57873ed4d181d19d4d5c8c18af3 f821d496eeb096e98ad2b69e4799c71d""",
    ),
    _gcm(
        10, "3de09874b388e6491988d0c3607eae1f", "57690e43", "42f67e3f", "1010101010101010", "4e280000a2fca1a3",
        """4500003c99c300008001cb7c40679318 010101010800085c0200430061626364
           65666768696a6b6c6d6e6f7071727374 75767761626364656667686901020201""",
        """42f67e3f101010104e280000a2fca1a3 fba2caa4853cf9f0f22cb10d86dd83b0
           fec75691cf1a04b00d1138ec9c357917 65acbd8701ad79845bf9fe3fba487bc9
           1755e6662b4c8d0d1f5e22739530320a e0d731cc978ecafaeae88f00e80d6e48""",
    ),
    _gcm(
        11, "feffe9928665731c6d6a8f9467308308feffe9928665731c", "cafebabe", "0000a5f8", "0000000a",
        "facedbaddecaf888",
        """45000028a4ad4000400678800a01038f 0a010612802306b8cb712602dd6bb03e
           501016d075680001""",
        """0000a5f80000000afacedbaddecaf888 a5b1f8066029aea40e598b8122de0242
           0938b3ab33f828e687b8858b5bfbdbd0 315b27452144cc7795457b9652037f53
           18027b5b4cd7a636""",
    ),
    _gcm(
        13, "abbccddef00112233445566778899aababbccddef00112233445566778899aab", "73616c74", "17405e67",
        "156f3126dd0db99b", "616e640169766563",
        """45080028732c00004006e9f90a010612 0a01038f06b88023dd6bafbecb712602
           50101f646d540001""",
        """17405e67dd0db99b616e640169766563 f2d69ecdbd5a0d5b8d5ef38bad4da58d
           1f278fde98ef67549d524a3018d9a57f f4d3a31ce673119e451626c2415771e3
           b7eebca614c89b35""",
    ),
    _gcm(
        16, "7d773d00c144c525ac619d18c84a3f47", "d9664267", "335467ae", "ffffffff", "43457e9182443bc6",
        "01020201",
        """335467aeffffffff43457e9182443bc6 437f866bcb3f699fe9b0822bac961c45
           04bef270""",
    ),
    _gcm(
        17, "6c6567616c697a656d6172696a75616e61616e64646f69746265666f72656961", "7475726e", "796b6963",
        "ffffffffffffffff", "333021696765746d",
        """45000030da3a00008001df3bc0a80005 c0a800010800c6cd0200070061626364
           65666768696a6b6c6d6e6f7071727374 01020201""",
        """796b6963ffffffff333021696765746d f97ab2aa356d8edce17644ac8c78e25d
           d24dedbb29ebf1b64a274b39b49c3a86 4cd3d78ca4ae68a32b42458fb57dbe82
           1dcc63b9d0937ba2945f669368661a32 9fb4c053""",
    ),
    _gcm(
        20, "4c80cdefbb5d10da906ac73c3613a634", "22433c64", "00004321", "8765432100000007", "4855ec7d3a234bfd",
        """0800c6cd020007006162636465666768 696a6b6c6d6e6f707172737401020201""",
        """00004321000000074855ec7d3a234bfd 74752e8aeb5d873cd7c0f4acc36c4bff
           84b7d7b98f0ca8b6acda6894bc619069 ef9cbc28fe1b56a7c4e0d58c86cd2bc0""",
    ),
]

# draft-mcgrew-gcm-test-01 §4, page 18: AES-GMAC-ESP (ENCR_NULL_AUTH_AES_GMAC), payload in the clear
GMAC_CASE = _gcm(
    18, "4c80cdefbb5d10da906ac73c3613a634", "22433c64", "00004321", "00000007", "0000000000000000",
    """45000030da3a00008001df3bc0a80005 c0a800010800c6cd0200070061626364
       65666768696a6b6c6d6e6f7071727374 01020201""",
    """00004321000000070000000000000000 45000030da3a00008001df3bc0a80005
       c0a800010800c6cd0200070061626364 65666768696a6b6c6d6e6f7071727374
       01020201f2a9a836e155106aa8dcd618 e4099aaa""",
    encr="aes-gmac",
)


@dataclass(frozen=True)
class CbcCase:
    """`original` is the IP packet before ESP (transport) or the inner packet (tunnel);
    `outer` is the IP header of the ESP packet as printed; `esp` is the ESP header onwards."""

    source: str
    key: bytes
    spi: int
    seq: int
    iv: bytes
    original: bytes
    outer: bytes
    esp: bytes


# RFC 3602 §4, case #5: transport mode, ping 192.168.123.100
RFC3602_CASE5 = CbcCase(
    "RFC 3602 §4 case #5",
    hx("90d382b4 10eeba7a d938c46c ec1a82bf"),
    0x4321,
    1,
    hx("e96e8c08 ab465763 fd098d45 dd3ff893"),
    hx(
        """45000054 08f20000 4001f9fe c0a87b03 c0a87b64
           08000ebd a70a0000 8e9c083d b95b0700 08090a0b 0c0d0e0f 10111213 14151617
           18191a1b 1c1d1e1f 20212223 24252627 28292a2b 2c2d2e2f 30313233 34353637"""
    ),
    hx("4500007c 08f20000 4032f9a5 c0a87b03 c0a87b64"),
    hx(
        """00004321 00000001
           e96e8c08 ab465763 fd098d45 dd3ff893
           f663c25d 325c18c6 a9453e19 4e120849 a4870b66 cc6b9965 330013b4 898dc856
           a4699e52 3a55db08 0b59ec3a 8e4b7e52 775b07d1 db34ed9c 538ab50c 551b874a
           a269add0 47ad2d59 13ac19b7 cfbad4a6"""
    ),
)

# RFC 3602 §4, case #7: tunnel mode, ping 192.168.123.200
RFC3602_CASE7 = CbcCase(
    "RFC 3602 §4 case #7",
    hx("01234567 89abcdef 01234567 89abcdef"),
    0x8765,
    2,
    hx("f4e76524 4f6407ad f13dc138 0f673f37"),
    hx(
        """45000054 09040000 4001f988 c0a87b03 c0a87bc8 08009f76 a90a0100 b49c083d
           02a20400 08090a0b 0c0d0e0f 10111213 14151617 18191a1b 1c1d1e1f 20212223
           24252627 28292a2b 2c2d2e2f 30313233 34353637"""
    ),
    hx("4500008c 09050000 4032f91e c0a87b03 c0a87bc8"),
    hx(
        """00008765 00000002
           f4e76524 4f6407ad f13dc138 0f673f37
           773b5241 a4c44922 5e4f3ce5 ed611b0c 237ca96c f74a9301 3c1b0ea1 a0cf70f8
           e4ecaec7 8ac53aad 7a0f022b 859243c6 47752e94 a859352b 8a4d4d2d ecd136e5
           c177f132 ad3fbfb2 201ac990 4c74ee0a 109e0ca1 e4dfe9d5 a100b842 f1c22f0d"""
    ),
)
