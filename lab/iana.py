"""IANA registries of IKEv2 (RFC 7296 §3, the IANA "IKEv2 Parameters" registry) and the one
algorithm registry of the lab.

A leaf: it imports nothing of lab. lab.ike (IKE SAs, key derivation, proposals), lab.esp
(ESP and AH SAs), lab.conf (which swanctl.conf keywords are refused) and lab.daemon (Wireshark
key tables) all read the algorithm facts from `ALGORITHMS` below instead of holding tables of
their own.

Values a peer sends that are not in an enum stay plain ints: `coerce` never raises.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Any, TypeVar

E = TypeVar("E", bound=IntEnum)


def coerce(enum: type[E], value: int) -> E | int:
    """The enum member for `value`, or `value` itself when the registry has no such entry."""
    member = enum._value2member_map_.get(value)
    if member is not None:
        return member  # type: ignore[return-value]
    if not issubclass(enum, IntFlag):
        return value
    try:
        return enum(value)
    except ValueError:
        return value


def name_of(enum: type[IntEnum], value: int) -> str:
    """A registry name for `value`, or e.g. `PayloadType(99)` when unknown."""
    member = enum._value2member_map_.get(value)
    if member is not None:
        return member.name
    try:
        return enum(value).name
    except ValueError:
        return f"{enum.__name__}({value})"


class ExchangeType(IntEnum):
    # RFC 7296 §3.1; IANA IKEv2 Exchange Types
    IKE_SA_INIT = 34
    IKE_AUTH = 35
    CREATE_CHILD_SA = 36
    INFORMATIONAL = 37
    IKE_SESSION_RESUME = 38
    GSA_AUTH = 39
    GSA_REGISTRATION = 40
    GSA_REKEY = 41
    GSA_INBAND_REKEY = 42
    IKE_INTERMEDIATE = 43
    IKE_FOLLOWUP_KE = 44


class HeaderFlag(IntFlag):
    # RFC 7296 §3.1
    INITIATOR = 0x08
    VERSION = 0x10
    RESPONSE = 0x20


class PayloadType(IntEnum):
    # RFC 7296 §3.2; RFC 7383 §2.5 (SKF)
    NONE = 0
    SA = 33
    KE = 34
    IDi = 35
    IDr = 36
    CERT = 37
    CERTREQ = 38
    AUTH = 39
    NONCE = 40
    N = 41
    D = 42
    V = 43
    TSi = 44
    TSr = 45
    SK = 46
    CP = 47
    EAP = 48
    GSPM = 49
    IDg = 50
    GSA = 51
    KD = 52
    SKF = 53
    PS = 54


# Short names used in payload chains, as RFC 7296 §1.2 writes them.
PAYLOAD_SHORT_NAMES: dict[int, str] = {
    PayloadType.SA: "SA",
    PayloadType.KE: "KE",
    PayloadType.IDi: "IDi",
    PayloadType.IDr: "IDr",
    PayloadType.CERT: "CERT",
    PayloadType.CERTREQ: "CERTREQ",
    PayloadType.AUTH: "AUTH",
    PayloadType.NONCE: "Nonce",
    PayloadType.N: "N",
    PayloadType.D: "D",
    PayloadType.V: "V",
    PayloadType.TSi: "TSi",
    PayloadType.TSr: "TSr",
    PayloadType.SK: "SK",
    PayloadType.CP: "CP",
    PayloadType.EAP: "EAP",
    PayloadType.SKF: "SKF",
}


class ProtocolId(IntEnum):
    # RFC 7296 §3.3.1
    IKE = 1
    AH = 2
    ESP = 3


class TransformType(IntEnum):
    # RFC 7296 §3.3.2
    ENCR = 1
    PRF = 2
    INTEG = 3
    DH = 4
    ESN = 5
    # RFC 9370 §2.2.1, IANA Transform Types 6..12: Additional Key Exchange 1..7
    ADDKE1 = 6
    ADDKE2 = 7
    ADDKE3 = 8
    ADDKE4 = 9
    ADDKE5 = 10
    ADDKE6 = 11
    ADDKE7 = 12


class EncrId(IntEnum):
    # RFC 7296 §3.3.2; IANA Transform Type 1
    DES_IV64 = 1
    DES = 2
    TRIPLE_DES = 3
    RC5 = 4
    IDEA = 5
    CAST = 6
    BLOWFISH = 7
    TRIPLE_IDEA = 8
    DES_IV32 = 9
    NULL = 11
    AES_CBC = 12
    AES_CTR = 13
    AES_CCM_8 = 14
    AES_CCM_12 = 15
    AES_CCM_16 = 16
    AES_GCM_8 = 18
    AES_GCM_12 = 19
    AES_GCM_16 = 20
    NULL_AUTH_AES_GMAC = 21
    CAMELLIA_CBC = 23
    CAMELLIA_CTR = 24
    CAMELLIA_CCM_8 = 25
    CAMELLIA_CCM_12 = 26
    CAMELLIA_CCM_16 = 27
    CHACHA20_POLY1305 = 28
    AES_CCM_8_IIV = 29
    AES_GCM_16_IIV = 30
    CHACHA20_POLY1305_IIV = 31


class PrfId(IntEnum):
    # RFC 7296 §3.3.2; IANA Transform Type 2
    HMAC_MD5 = 1
    HMAC_SHA1 = 2
    HMAC_TIGER = 3
    AES128_XCBC = 4
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7
    AES128_CMAC = 8


class IntegId(IntEnum):
    # RFC 7296 §3.3.2; IANA Transform Type 3
    NONE = 0
    HMAC_MD5_96 = 1
    HMAC_SHA1_96 = 2
    DES_MAC = 3
    KPDK_MD5 = 4
    AES_XCBC_96 = 5
    HMAC_MD5_128 = 6
    HMAC_SHA1_160 = 7
    AES_CMAC_96 = 8
    AES_128_GMAC = 9
    AES_192_GMAC = 10
    AES_256_GMAC = 11
    HMAC_SHA2_256_128 = 12
    HMAC_SHA2_384_192 = 13
    HMAC_SHA2_512_256 = 14


class DhGroup(IntEnum):
    # RFC 7296 §3.3.2; IANA Transform Type 4
    NONE = 0
    MODP_768 = 1
    MODP_1024 = 2
    MODP_1536 = 5
    MODP_2048 = 14
    MODP_3072 = 15
    MODP_4096 = 16
    MODP_6144 = 17
    MODP_8192 = 18
    ECP_256 = 19
    ECP_384 = 20
    ECP_521 = 21
    MODP_1024_160 = 22
    MODP_2048_224 = 23
    MODP_2048_256 = 24
    ECP_192 = 25
    ECP_224 = 26
    BRAINPOOL_P224 = 27
    BRAINPOOL_P256 = 28
    BRAINPOOL_P384 = 29
    BRAINPOOL_P512 = 30
    CURVE25519 = 31
    CURVE448 = 32
    # draft-ietf-ipsecme-ikev2-mlkem (FIPS 203 ML-KEM), IANA Transform Type 4 values 35-37
    MLKEM_512 = 35
    MLKEM_768 = 36
    MLKEM_1024 = 37


class EsnId(IntEnum):
    # RFC 7296 §3.3.2; IANA Transform Type 5
    NO_ESN = 0
    ESN = 1


TRANSFORM_ID_ENUMS: dict[int, type[IntEnum]] = {
    TransformType.ENCR: EncrId,
    TransformType.PRF: PrfId,
    TransformType.INTEG: IntegId,
    TransformType.DH: DhGroup,
    TransformType.ESN: EsnId,
    # RFC 9370 §2.2.1: the Additional Key Exchange types take the Key Exchange Method ids
    **{t: DhGroup for t in range(6, 13)},
}


class TransformAttr(IntEnum):
    # RFC 7296 §3.3.5
    KEY_LENGTH = 14


class IdType(IntEnum):
    # RFC 7296 §3.5
    ID_IPV4_ADDR = 1
    ID_FQDN = 2
    ID_RFC822_ADDR = 3
    ID_IPV6_ADDR = 5
    ID_DER_ASN1_DN = 9
    ID_DER_ASN1_GN = 10
    ID_KEY_ID = 11
    ID_FC_NAME = 12
    ID_NULL = 13


class CertEncoding(IntEnum):
    # RFC 7296 §3.6
    PKCS7_X509 = 1
    PGP = 2
    DNS_SIGNED_KEY = 3
    X509_SIGNATURE = 4
    KERBEROS_TOKEN = 6
    CRL = 7
    ARL = 8
    SPKI = 9
    X509_ATTRIBUTE = 10
    RAW_RSA_KEY = 11
    HASH_URL_X509_CERT = 12
    HASH_URL_X509_BUNDLE = 13
    OCSP_CONTENT = 14
    RAW_PUBLIC_KEY = 15


class AuthMethod(IntEnum):
    # RFC 7296 §3.8; RFC 4754; RFC 7427 §3
    RSA_SIG = 1
    SHARED_KEY_MIC = 2
    DSS_SIG = 3
    ECDSA_SHA256_P256 = 9
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11
    GENERIC_SECURE_PASSWORD = 12
    NULL_AUTH = 13
    DIGITAL_SIGNATURE = 14


class NotifyType(IntEnum):
    # RFC 7296 §3.10.1; IANA IKEv2 Notify Message Types
    UNSUPPORTED_CRITICAL_PAYLOAD = 1
    INVALID_IKE_SPI = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_SYNTAX = 7
    INVALID_MESSAGE_ID = 9
    INVALID_SPI = 11
    NO_PROPOSAL_CHOSEN = 14
    INVALID_KE_PAYLOAD = 17
    AUTHENTICATION_FAILED = 24
    SINGLE_PAIR_REQUIRED = 34
    NO_ADDITIONAL_SAS = 35
    INTERNAL_ADDRESS_FAILURE = 36
    FAILED_CP_REQUIRED = 37
    TS_UNACCEPTABLE = 38
    INVALID_SELECTORS = 39
    UNACCEPTABLE_ADDRESSES = 40
    UNEXPECTED_NAT_DETECTED = 41
    USE_ASSIGNED_HoA = 42
    TEMPORARY_FAILURE = 43
    CHILD_SA_NOT_FOUND = 44
    INVALID_GROUP_ID = 45
    AUTHORIZATION_FAILED = 46
    STATE_NOT_FOUND = 47
    INITIAL_CONTACT = 16384
    SET_WINDOW_SIZE = 16385
    ADDITIONAL_TS_POSSIBLE = 16386
    IPCOMP_SUPPORTED = 16387
    NAT_DETECTION_SOURCE_IP = 16388
    NAT_DETECTION_DESTINATION_IP = 16389
    COOKIE = 16390
    USE_TRANSPORT_MODE = 16391
    HTTP_CERT_LOOKUP_SUPPORTED = 16392
    REKEY_SA = 16393
    ESP_TFC_PADDING_NOT_SUPPORTED = 16394
    NON_FIRST_FRAGMENTS_ALSO = 16395
    MOBIKE_SUPPORTED = 16396
    ADDITIONAL_IP4_ADDRESS = 16397
    ADDITIONAL_IP6_ADDRESS = 16398
    NO_ADDITIONAL_ADDRESSES = 16399
    UPDATE_SA_ADDRESSES = 16400
    COOKIE2 = 16401
    NO_NATS_ALLOWED = 16402
    AUTH_LIFETIME = 16403
    MULTIPLE_AUTH_SUPPORTED = 16404
    ANOTHER_AUTH_FOLLOWS = 16405
    REDIRECT_SUPPORTED = 16406
    REDIRECT = 16407
    REDIRECTED_FROM = 16408
    TICKET_LT_OPAQUE = 16409
    TICKET_REQUEST = 16410
    TICKET_ACK = 16411
    TICKET_NACK = 16412
    TICKET_OPAQUE = 16413
    LINK_ID = 16414
    USE_WESP_MODE = 16415
    ROHC_SUPPORTED = 16416
    EAP_ONLY_AUTHENTICATION = 16417
    CHILDLESS_IKEV2_SUPPORTED = 16418
    QUICK_CRASH_DETECTION = 16419
    IKEV2_MESSAGE_ID_SYNC_SUPPORTED = 16420
    IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED = 16421
    IKEV2_MESSAGE_ID_SYNC = 16422
    IPSEC_REPLAY_COUNTER_SYNC = 16423
    SECURE_PASSWORD_METHODS = 16424
    PSK_PERSIST = 16425
    PSK_CONFIRM = 16426
    ERX_SUPPORTED = 16427
    IFOM_CAPABILITY = 16428
    SENDER_REQUEST_ID = 16429
    IKEV2_FRAGMENTATION_SUPPORTED = 16430
    SIGNATURE_HASH_ALGORITHMS = 16431
    CLONE_IKE_SA_SUPPORTED = 16432
    CLONE_IKE_SA = 16433
    PUZZLE = 16434
    USE_PPK = 16435
    PPK_IDENTITY = 16436
    NO_PPK_AUTH = 16437
    INTERMEDIATE_EXCHANGE_SUPPORTED = 16438
    IP4_ALLOWED = 16439
    IP6_ALLOWED = 16440
    ADDITIONAL_KEY_EXCHANGE = 16441
    USE_AGGFRAG = 16442


class TsType(IntEnum):
    # RFC 7296 §3.13.1; RFC 4595
    TS_IPV4_ADDR_RANGE = 7
    TS_IPV6_ADDR_RANGE = 8
    TS_FC_ADDR_RANGE = 9


class CfgType(IntEnum):
    # RFC 7296 §3.15
    CFG_REQUEST = 1
    CFG_REPLY = 2
    CFG_SET = 3
    CFG_ACK = 4


class CfgAttr(IntEnum):
    # RFC 7296 §3.15.1; IANA IKEv2 Configuration Payload Attribute Types
    INTERNAL_IP4_ADDRESS = 1
    INTERNAL_IP4_NETMASK = 2
    INTERNAL_IP4_DNS = 3
    INTERNAL_IP4_NBNS = 4
    INTERNAL_IP4_DHCP = 6
    APPLICATION_VERSION = 7
    INTERNAL_IP6_ADDRESS = 8
    INTERNAL_IP6_DNS = 10
    INTERNAL_IP6_DHCP = 12
    INTERNAL_IP4_SUBNET = 13
    SUPPORTED_ATTRIBUTES = 14
    INTERNAL_IP6_SUBNET = 15
    MIP6_HOME_PREFIX = 16
    INTERNAL_IP6_LINK = 17
    INTERNAL_IP6_PREFIX = 18
    HOME_AGENT_ADDRESS = 19
    P_CSCF_IP4_ADDRESS = 20
    P_CSCF_IP6_ADDRESS = 21
    FTT_KAT = 22
    EXTERNAL_SOURCE_IP4_NAT_INFO = 23
    TIMEOUT_PERIOD_FOR_LIVENESS_CHECK = 24
    INTERNAL_DNS_DOMAIN = 25
    INTERNAL_DNSSEC_TA = 26


class HashAlgorithm(IntEnum):
    # RFC 7427 §7 (IANA IKEv2 Hash Algorithms)
    SHA1 = 1
    SHA2_256 = 2
    SHA2_384 = 3
    SHA2_512 = 4
    IDENTITY = 5


class EapCode(IntEnum):
    # RFC 3748 §4; IANA EAP Registry, Packet Codes
    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class EapType(IntEnum):
    # RFC 3748 §5; IANA EAP Registry, Method Types
    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3
    MD5_CHALLENGE = 4
    OTP = 5
    GTC = 6
    TLS = 13
    TTLS = 21
    PEAP = 25
    MSCHAPV2 = 26
    EXPANDED = 254


IKE_PORT = 500
NAT_T_PORT = 4500


# ---------------------------------------------------------------- the algorithm registry

# strongSwan signer.h: private-use id for the 96-bit truncated HMAC-SHA-256 (Linux kernel variant)
AUTH_HMAC_SHA2_256_96 = 1026


@dataclass(frozen=True)
class Algorithm:
    """One transform (type, IANA id and Key Length attribute) with everything the lab knows of it.

    `key_size` is the octets of keying material it takes from prf+: the cipher key plus salt
    for ENCR, the key for INTEG, the preferred key (SK_d, SK_pi, SK_pr) for PRF.
    `ike`: lab.ike implements it in IKE SAs (SK protection, PRF, key exchange, also as PFS of a
    CHILD_SA); `esp` / `ah`: lab.esp implements it in ESP / AH SAs.
    `wireshark_ike` / `wireshark_esp`: its name in Wireshark's ikev2_decryption_table / esp_sa
    tables (None: Wireshark 4.0 does not know it there).
    """

    type: int
    id: int
    key_bits: int = 0
    keywords: tuple[str, ...] = ()
    parsed: bool = True
    key_size: int = 0
    salt_size: int = 0
    iv_size: int = 0
    block_size: int = 1
    icv_size: int = 0
    aead: bool = False
    hmac_hash: str | None = None
    derived_prf: int | None = None
    ike: bool = False
    esp: bool = False
    ah: bool = False
    wireshark_ike: str | None = None
    wireshark_esp: str | None = None
    # where RFC 8247 says MUST NOT for IKE (and, for key exchange groups, CHILD_SA PFS as well)
    forbidden: str | None = None

    @property
    def keyword(self) -> str | None:
        """strongSwan's canonical keyword (the one it prints), None for a transform without one."""
        return self.keywords[0] if self.keywords else None

    @property
    def name(self) -> str:
        """The IANA name, e.g. `ENCR_AES_GCM_16` or `AUTH_HMAC_SHA2_256_128`, with the key length."""
        enum = TRANSFORM_ID_ENUMS.get(self.type)
        prefixes: dict[int, str] = {TransformType.ENCR: "ENCR", TransformType.PRF: "PRF", TransformType.INTEG: "AUTH",
                                    TransformType.DH: "DH", TransformType.ESN: "ESN"}
        prefix = prefixes.get(self.type, f"TRANSFORM{self.type}")
        base = name_of(enum, self.id) if enum is not None else str(self.id)
        if self.type == TransformType.INTEG and self.id == AUTH_HMAC_SHA2_256_96:
            base = "HMAC_SHA2_256_96"
        return f"{prefix}_{base}" + (f"_{self.key_bits}" if self.key_bits else "")

    def implemented(self, protocol: int) -> bool:
        """Whether an IKE, ESP or AH proposal holding this transform can be carried out by the lab.

        Key exchange is always done by lab.ike (PFS of a CHILD_SA included)."""
        if self.type == TransformType.DH:
            return self.ike
        if protocol == ProtocolId.IKE:
            return self.ike and self.type != TransformType.ESN
        if protocol == ProtocolId.ESP:
            return self.esp and self.type != TransformType.PRF
        if protocol == ProtocolId.AH:
            return self.ah and self.type in (TransformType.INTEG, TransformType.ESN)
        return False


def _registry() -> tuple[Algorithm, ...]:
    out: list[Algorithm] = []
    add = out.append
    T = TransformType
    # -- encryption. RFC 2410: NULL; RFC 8221 §5 lists what ESP and IKE may still use
    add(Algorithm(T.ENCR, EncrId.NULL, 0, ("null",), esp=True, wireshark_ike="NULL [RFC2410]",
                  wireshark_esp="NULL"))
    # RFC 2405
    add(Algorithm(T.ENCR, EncrId.DES, 0, ("des",), key_size=8, iv_size=8, block_size=8, forbidden="RFC 8247 §2.1",
                  wireshark_esp="DES-CBC [RFC2405]"))
    # RFC 2451; RFC 8247 §2.1: SHOULD NOT in IKE. Implemented for SK protection only, for what the Windows
    # client offers (profile = windows); no default proposal holds it, a gateway takes it only when named
    add(Algorithm(T.ENCR, EncrId.TRIPLE_DES, 0, ("3des",), key_size=24, iv_size=8, block_size=8, ike=True,
                  wireshark_ike="3DES [RFC2451]", wireshark_esp="TripleDES-CBC [RFC2451]"))
    # RFC 2144, RFC 2451
    add(Algorithm(T.ENCR, EncrId.CAST, 128, ("cast128",), key_size=16, iv_size=8, block_size=8,
                  wireshark_esp="CAST5-CBC [RFC2144]"))
    for bits in (128, 192, 256):
        # RFC 2451
        add(Algorithm(T.ENCR, EncrId.BLOWFISH, bits, (f"blowfish{bits}", *(["blowfish"] if bits == 128 else [])),
                      key_size=bits // 8, iv_size=8, block_size=8, wireshark_esp="BLOWFISH-CBC [RFC2451]"))
    for bits in (128, 192, 256):
        # RFC 3602 §2.1, §3; RFC 7296 §3.3.5 (key length attribute)
        add(Algorithm(T.ENCR, EncrId.AES_CBC, bits, (f"aes{bits}", *(["aes"] if bits == 128 else [])),
                      key_size=bits // 8, iv_size=16, block_size=16, ike=True, esp=True,
                      wireshark_ike=f"AES-CBC-{bits} [RFC3602]", wireshark_esp="AES-CBC [RFC3602]"))
        # RFC 3686 §5.1 (4-octet nonce after the key), RFC 5930
        add(Algorithm(T.ENCR, EncrId.AES_CTR, bits, (f"aes{bits}ctr",), key_size=bits // 8 + 4, salt_size=4,
                      iv_size=8, ike=True, esp=True, wireshark_ike=f"AES-CTR-{bits} [RFC5930]",
                      wireshark_esp="AES-CTR [RFC3686]"))
        for icv, ccm, gcm in ((8, EncrId.AES_CCM_8, EncrId.AES_GCM_8), (12, EncrId.AES_CCM_12, EncrId.AES_GCM_12),
                              (16, EncrId.AES_CCM_16, EncrId.AES_GCM_16)):
            bare = [f"aes{bits}ccm"] if icv == 16 else []
            # RFC 4309 §7.1 (3-octet salt), RFC 5282 §7.1
            add(Algorithm(T.ENCR, ccm, bits, (f"aes{bits}ccm{icv}", f"aes{bits}ccm{icv * 8}", *bare),
                          key_size=bits // 8 + 3, salt_size=3, iv_size=8, icv_size=icv, aead=True, ike=True,
                          esp=True, wireshark_ike=f"AES-CCM-{bits} with {icv} octet ICV [RFC5282]"))
            bare = [f"aes{bits}gcm"] if icv == 16 else []
            # RFC 4106 §3.1, §8.1 (4-octet salt); RFC 5282 §7.1
            add(Algorithm(T.ENCR, gcm, bits, (f"aes{bits}gcm{icv}", f"aes{bits}gcm{icv * 8}", *bare),
                          key_size=bits // 8 + 4, salt_size=4, iv_size=8, icv_size=icv, aead=True, ike=True,
                          esp=True, wireshark_ike=f"AES-GCM-{bits} with {icv} octet ICV [RFC5282]",
                          wireshark_esp=f"AES-GCM with {icv} octet ICV [RFC4106]"))
        # RFC 4543 §3.1, §8 (ESP only: integrity without confidentiality)
        add(Algorithm(T.ENCR, EncrId.NULL_AUTH_AES_GMAC, bits, (f"aes{bits}gmac",), key_size=bits // 8 + 4,
                      salt_size=4, iv_size=8, icv_size=16, aead=True, esp=True))
    for bits in (128, 192, 256):
        # RFC 5529 (IKE), RFC 4312 (ESP)
        add(Algorithm(T.ENCR, EncrId.CAMELLIA_CBC, bits, (f"camellia{bits}", *(["camellia"] if bits == 128 else [])),
                      key_size=bits // 8, iv_size=16, block_size=16))
        add(Algorithm(T.ENCR, EncrId.CAMELLIA_CTR, bits, (f"camellia{bits}ctr",), key_size=bits // 8 + 4,
                      salt_size=4, iv_size=8))
        for icv, ccm in ((8, EncrId.CAMELLIA_CCM_8), (12, EncrId.CAMELLIA_CCM_12), (16, EncrId.CAMELLIA_CCM_16)):
            add(Algorithm(T.ENCR, ccm, bits, (f"camellia{bits}ccm{icv}", f"camellia{bits}ccm{icv * 8}"),
                          key_size=bits // 8 + 3, salt_size=3, iv_size=8, icv_size=icv, aead=True))
    # RFC 7634 §2, §4: a fixed 256-bit key plus a 4-octet salt; strongSwan's "compat" sends the Key Length
    for bits, keyword in ((0, "chacha20poly1305"), (256, "chacha20poly1305compat")):
        add(Algorithm(T.ENCR, EncrId.CHACHA20_POLY1305, bits, (keyword,), key_size=36, salt_size=4, iv_size=8,
                      icv_size=16, aead=True, ike=True, esp=True))

    # -- integrity. NONE is what an AEAD proposal carries (RFC 7296 §3.3)
    add(Algorithm(T.INTEG, IntegId.NONE, ike=True, esp=True, wireshark_ike="NONE [RFC4306]", wireshark_esp="NULL"))
    # RFC 2403
    add(Algorithm(T.INTEG, IntegId.HMAC_MD5_96, 0, ("md5",), key_size=16, icv_size=12, hmac_hash="md5",
                  forbidden="RFC 8247 §2.2",
                  derived_prf=PrfId.HMAC_MD5, wireshark_ike="HMAC_MD5_96 [RFC2403]",
                  wireshark_esp="HMAC-MD5-96 [RFC2403]"))
    # RFC 4595
    add(Algorithm(T.INTEG, IntegId.HMAC_MD5_128, 0, ("md5_128",), key_size=16, icv_size=16, hmac_hash="md5",
                  derived_prf=PrfId.HMAC_MD5, wireshark_ike="HMAC_MD5_128 [RFC4595]"))
    # RFC 2404 §2, §3
    add(Algorithm(T.INTEG, IntegId.HMAC_SHA1_96, 0, ("sha1", "sha"), key_size=20, icv_size=12, hmac_hash="sha1",
                  derived_prf=PrfId.HMAC_SHA1, ike=True, esp=True, ah=True,
                  wireshark_ike="HMAC_SHA1_96 [RFC2404]", wireshark_esp="HMAC-SHA-1-96 [RFC2404]"))
    # RFC 4595
    add(Algorithm(T.INTEG, IntegId.HMAC_SHA1_160, 0, ("sha1_160",), key_size=20, icv_size=20, hmac_hash="sha1",
                  derived_prf=PrfId.HMAC_SHA1, wireshark_ike="HMAC_SHA1_160 [RFC4595]"))
    # RFC 3566 §2.1, §4
    add(Algorithm(T.INTEG, IntegId.AES_XCBC_96, 0, ("aesxcbc",), key_size=16, icv_size=12,
                  derived_prf=PrfId.AES128_XCBC))
    # RFC 4494 §2
    add(Algorithm(T.INTEG, IntegId.AES_CMAC_96, 0, ("aescmac",), key_size=16, icv_size=12,
                  derived_prf=PrfId.AES128_CMAC))
    # RFC 4868 §2.1.1, §2.6
    for integ, keywords, hash_name, size, prf_id in (
            (IntegId.HMAC_SHA2_256_128, ("sha256", "sha2_256"), "sha256", 32, PrfId.HMAC_SHA2_256),
            (IntegId.HMAC_SHA2_384_192, ("sha384", "sha2_384"), "sha384", 48, PrfId.HMAC_SHA2_384),
            (IntegId.HMAC_SHA2_512_256, ("sha512", "sha2_512"), "sha512", 64, PrfId.HMAC_SHA2_512)):
        label = name_of(IntegId, integ)
        add(Algorithm(T.INTEG, integ, 0, keywords, key_size=size, icv_size=size // 2, hmac_hash=hash_name,
                      derived_prf=prf_id, ike=True, esp=True, ah=True, wireshark_ike=f"{label} [RFC4868]",
                      wireshark_esp=f"HMAC-SHA-{size * 8}-{size * 4} [RFC4868]"))
    # draft-ietf-ipsec-ciph-sha-256-00: the truncation to 96 bits older Linux kernels use
    add(Algorithm(T.INTEG, AUTH_HMAC_SHA2_256_96, 0, ("sha256_96", "sha2_256_96"), key_size=32, icv_size=12,
                  hmac_hash="sha256", wireshark_esp="HMAC-SHA-256-96 [draft-ietf-ipsec-ciph-sha-256-00]"))
    # RFC 4543 §3.2 (AH): strongSwan writes them aes*gmac, parses that as ENCR and maps it (proposal.c)
    for bits, integ in ((128, IntegId.AES_128_GMAC), (192, IntegId.AES_192_GMAC), (256, IntegId.AES_256_GMAC)):
        add(Algorithm(T.INTEG, integ, 0, (f"aes{bits}gmac",), parsed=False, key_size=bits // 8 + 4, salt_size=4,
                      iv_size=8, icv_size=16))

    # -- pseudorandom functions. RFC 7296 §2.13, §2.14: the preferred key is the output size
    add(Algorithm(T.PRF, PrfId.HMAC_MD5, 0, ("prfmd5",), key_size=16, hmac_hash="md5", forbidden="RFC 8247 §2.3"))
    add(Algorithm(T.PRF, PrfId.HMAC_SHA1, 0, ("prfsha1",), key_size=20, hmac_hash="sha1", ike=True))
    # RFC 4434 (XCBC), RFC 4615 (CMAC)
    add(Algorithm(T.PRF, PrfId.AES128_XCBC, 0, ("prfaesxcbc",), key_size=16, ike=True))
    add(Algorithm(T.PRF, PrfId.AES128_CMAC, 0, ("prfaescmac",), key_size=16, ike=True))
    # RFC 4868 §2.1.2
    for prf_id, keyword, hash_name, size in ((PrfId.HMAC_SHA2_256, "prfsha256", "sha256", 32),
                                             (PrfId.HMAC_SHA2_384, "prfsha384", "sha384", 48),
                                             (PrfId.HMAC_SHA2_512, "prfsha512", "sha512", 64)):
        add(Algorithm(T.PRF, prf_id, 0, (keyword,), key_size=size, hmac_hash=hash_name, ike=True))

    # -- key exchange. NONE: no PFS for a CHILD_SA (RFC 7296 §3.3.2)
    add(Algorithm(T.DH, DhGroup.NONE, 0, ("none", "modpnone"), ike=True))
    # RFC 2409 §6 (768, 1024), RFC 3526 (1536..8192)
    for bits, group in ((768, DhGroup.MODP_768), (1024, DhGroup.MODP_1024), (1536, DhGroup.MODP_1536),
                        (2048, DhGroup.MODP_2048), (3072, DhGroup.MODP_3072), (4096, DhGroup.MODP_4096),
                        (6144, DhGroup.MODP_6144), (8192, DhGroup.MODP_8192)):
        # RFC 8247 §2.4: MODP-1024 SHOULD NOT; implemented for the Windows client profile, in no default
        add(Algorithm(T.DH, group, 0, (f"modp{bits}",), ike=bits >= 2048 or group == DhGroup.MODP_1024,
                      forbidden="RFC 8247 §2.4" if bits == 768 else None))
    # RFC 5114 §2.1-2.3
    add(Algorithm(T.DH, DhGroup.MODP_1024_160, 0, ("modp1024s160",)))
    add(Algorithm(T.DH, DhGroup.MODP_2048_224, 0, ("modp2048s224",)))
    add(Algorithm(T.DH, DhGroup.MODP_2048_256, 0, ("modp2048s256",)))
    # RFC 5903 §3 (256, 384, 521), RFC 5114 §2.4-2.5 (192, 224)
    for bits, group in ((192, DhGroup.ECP_192), (224, DhGroup.ECP_224), (256, DhGroup.ECP_256),
                        (384, DhGroup.ECP_384), (521, DhGroup.ECP_521)):
        add(Algorithm(T.DH, group, 0, (f"ecp{bits}",), ike=bits >= 256))
    # RFC 6954
    for bits, group in ((224, DhGroup.BRAINPOOL_P224), (256, DhGroup.BRAINPOOL_P256),
                        (384, DhGroup.BRAINPOOL_P384), (512, DhGroup.BRAINPOOL_P512)):
        add(Algorithm(T.DH, group, 0, (f"ecp{bits}bp",), ike=bits >= 256))
    # RFC 8031
    add(Algorithm(T.DH, DhGroup.CURVE25519, 0, ("x25519", "curve25519"), ike=True))
    add(Algorithm(T.DH, DhGroup.CURVE448, 0, ("x448", "curve448")))
    # FIPS 203 ML-KEM; strongSwan 6 keywords, alone or as an additional key exchange (ke1_mlkem768, RFC 9370)
    for bits, group in ((512, DhGroup.MLKEM_512), (768, DhGroup.MLKEM_768), (1024, DhGroup.MLKEM_1024)):
        add(Algorithm(T.DH, group, 0, (f"mlkem{bits}",), ike=bits != 512))  # cryptography has no ML-KEM-512

    # -- extended sequence numbers, RFC 4303 §2.2.1, RFC 4302 §2.5.1
    add(Algorithm(T.ESN, EsnId.ESN, 0, ("esn",), esp=True, ah=True))
    add(Algorithm(T.ESN, EsnId.NO_ESN, 0, ("noesn",), esp=True, ah=True))
    return tuple(out)


ALGORITHMS: tuple[Algorithm, ...] = _registry()

_BY_TRANSFORM: dict[tuple[int, int, int], Algorithm] = {}
for _algorithm in ALGORITHMS:
    _BY_TRANSFORM.setdefault((int(_algorithm.type), int(_algorithm.id), _algorithm.key_bits), _algorithm)
_BY_KEYWORD: dict[str, Algorithm] = {keyword: a for a in ALGORITHMS if a.parsed for keyword in a.keywords}
_OF_TYPE: dict[Any, list[Algorithm]] = {}
for _algorithm in ALGORITHMS:
    _OF_TYPE.setdefault(int(_algorithm.type), []).append(_algorithm)
    _OF_TYPE.setdefault((int(_algorithm.type), int(_algorithm.id)), []).append(_algorithm)
del _algorithm


def algorithm(transform_type: int, transform_id: int, key_bits: int | None = 0) -> Algorithm | None:
    """The registry entry for a transform (its Key Length attribute in bits, 0 or None for none)."""
    return _BY_TRANSFORM.get((int(transform_type), int(transform_id), key_bits or 0))


def keyword_algorithm(keyword: str) -> Algorithm | None:
    """The transform a strongSwan proposal keyword stands for, None if there is none."""
    return _BY_KEYWORD.get(keyword)


def algorithms_of(transform_type: int, transform_id: int | None = None) -> Iterator[Algorithm]:
    """The registry entries of a transform type (and id), in registry order."""
    key = int(transform_type) if transform_id is None else (int(transform_type), int(transform_id))
    yield from _OF_TYPE.get(key, ())
