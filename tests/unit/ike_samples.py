"""Hand-built IKEv2 messages that together hold every payload type with plausible content."""
from __future__ import annotations

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab.ike import payloads as p
from lab.ike.const import (AuthMethod, CertEncoding, CfgAttr, CfgType, DhGroup, EncrId, ExchangeType, IdType,
                           IntegId, NotifyType, PayloadType, PrfId, ProtocolId, TransformAttr, TransformType)
from lab.ike.message import Message

SPI_I = bytes.fromhex("0011223344556677")
SPI_R = bytes.fromhex("8899aabbccddeeff")
# RFC 7427 Appendix A.3.1: AlgorithmIdentifier of ecdsa-with-SHA256
ECDSA_SHA256_ALGID = bytes.fromhex("300a06082a8648ce3d040302")


def _certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gwa.lab")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def _ike_proposals() -> list[p.Proposal]:
    return [
        p.Proposal(1, ProtocolId.IKE, b"", [
            p.Transform(TransformType.ENCR, EncrId.AES_GCM_16, [p.TransformAttribute(TransformAttr.KEY_LENGTH, 128)]),
            p.Transform(TransformType.PRF, PrfId.HMAC_SHA2_256),
            p.Transform(TransformType.DH, DhGroup.CURVE25519)]),
        p.Proposal(2, ProtocolId.IKE, b"", [
            p.Transform(TransformType.ENCR, EncrId.AES_CBC, [p.TransformAttribute(TransformAttr.KEY_LENGTH, 128)]),
            p.Transform(TransformType.PRF, PrfId.HMAC_SHA2_256),
            p.Transform(TransformType.INTEG, IntegId.HMAC_SHA2_256_128),
            p.Transform(TransformType.DH, DhGroup.MODP_2048)]),
    ]


def _esp_proposal() -> p.Proposal:
    return p.Proposal(1, ProtocolId.ESP, bytes.fromhex("c1a2b3d4"), [
        p.Transform(TransformType.ENCR, EncrId.AES_GCM_16, [p.TransformAttribute(TransformAttr.KEY_LENGTH, 128)]),
        p.Transform(TransformType.ESN, 0)])


def _ts(net: str) -> p.TrafficSelector:
    n = ipaddress.ip_network(net)
    return p.TrafficSelector(n.network_address, n.broadcast_address)


def sample_messages() -> list[Message]:
    """IKE_SA_INIT request/response, a plaintext IKE_AUTH with every IKE_AUTH payload, an
    EAP round, an encrypted message, two fragments, and a Delete."""
    nat = bytes(range(20))
    init = Message(SPI_I, bytes(8), ExchangeType.IKE_SA_INIT, 0, True, False, [
        p.SA(proposals=_ike_proposals()),
        p.KE(dh_group=DhGroup.CURVE25519, data=os.urandom(32)),
        p.Nonce(data=os.urandom(32)),
        p.Notify(notify_type=NotifyType.NAT_DETECTION_SOURCE_IP, data=nat),
        p.Notify(notify_type=NotifyType.NAT_DETECTION_DESTINATION_IP, data=nat),
        p.Notify(notify_type=NotifyType.IKEV2_FRAGMENTATION_SUPPORTED),
        p.Notify(notify_type=NotifyType.SIGNATURE_HASH_ALGORITHMS, data=bytes.fromhex("0002000300040005")),
        p.VendorID(data=bytes.fromhex("882fe56d6fd20dbc2251613b2ebe5beb")),
    ])
    init_reply = Message(SPI_I, SPI_R, ExchangeType.IKE_SA_INIT, 0, False, True, [
        p.SA(proposals=[_ike_proposals()[0]]),
        p.KE(dh_group=DhGroup.CURVE25519, data=os.urandom(32)),
        p.Nonce(data=os.urandom(32)),
        p.CERTREQ(encoding=CertEncoding.X509_SIGNATURE, data=os.urandom(20)),
    ])
    auth = Message(SPI_I, SPI_R, ExchangeType.IKE_AUTH, 1, True, False, [
        p.IDi(id_type=IdType.ID_FQDN, data=b"gwa.lab"),
        p.CERT(encoding=CertEncoding.X509_SIGNATURE, data=_certificate()),
        p.CERTREQ(encoding=CertEncoding.X509_SIGNATURE, data=os.urandom(20)),
        p.IDr(id_type=IdType.ID_IPV4_ADDR, data=bytes([203, 0, 113, 2])),
        p.AUTH(method=AuthMethod.DIGITAL_SIGNATURE,
               data=bytes([len(ECDSA_SHA256_ALGID)]) + ECDSA_SHA256_ALGID + os.urandom(70)),
        p.CP(cfg_type=CfgType.CFG_REQUEST, attributes=[p.CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS),
                                                       p.CfgAttribute(CfgAttr.INTERNAL_IP4_DNS)]),
        p.Notify(notify_type=NotifyType.INITIAL_CONTACT),
        p.SA(proposals=[_esp_proposal()]),
        p.TSi(selectors=[_ts("10.1.0.0/24")]),
        p.TSr(selectors=[_ts("10.2.0.0/24"), _ts("2001:db8::/64")]),
        p.Notify(notify_type=NotifyType.USE_TRANSPORT_MODE),
    ])
    auth_reply = Message(SPI_I, SPI_R, ExchangeType.IKE_AUTH, 1, False, True, [
        p.IDr(id_type=IdType.ID_FQDN, data=b"gwb.lab"),
        p.AUTH(method=AuthMethod.SHARED_KEY_MIC, data=os.urandom(32)),
        p.CP(cfg_type=CfgType.CFG_REPLY, attributes=[
            p.CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, bytes([10, 3, 0, 1])),
            p.CfgAttribute(CfgAttr.INTERNAL_IP4_DNS, bytes([10, 3, 0, 53]))]),
        p.SA(proposals=[_esp_proposal()]),
        p.TSi(selectors=[_ts("10.1.0.0/24")]),
        p.TSr(selectors=[_ts("10.2.0.0/24")]),
    ])
    eap = Message(SPI_I, SPI_R, ExchangeType.IKE_AUTH, 2, True, False, [
        p.EAP(message=bytes([2, 7, 0, 12, 1]) + b"trainee"),  # EAP Response/Identity, RFC 3748 §5.1
    ])
    encrypted = Message(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, 3, True, False, [
        p.SK(inner_first=PayloadType.NONE, data=os.urandom(8 + 16 + 16)),
    ])
    fragment_1 = Message(SPI_I, SPI_R, ExchangeType.IKE_AUTH, 1, True, False, [
        p.SKF(fragment_number=1, total_fragments=2, inner_first=PayloadType.IDi, data=os.urandom(8 + 64 + 16)),
    ])
    fragment_2 = Message(SPI_I, SPI_R, ExchangeType.IKE_AUTH, 1, True, False, [
        p.SKF(fragment_number=2, total_fragments=2, inner_first=PayloadType.NONE, data=os.urandom(8 + 32 + 16)),
    ])
    delete = Message(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, 4, True, False, [
        p.Delete(protocol_id=ProtocolId.ESP, spis=[bytes.fromhex("c1a2b3d4"), bytes.fromhex("c5a6b7d8")]),
        p.Delete(protocol_id=ProtocolId.IKE),
    ])
    return [init, init_reply, auth, auth_reply, eap, encrypted, fragment_1, fragment_2, delete]
