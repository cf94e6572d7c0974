"""IKE identities: strongSwan's id syntax, ID payloads, printing and wildcard matching.

Expected encodings, printed forms and match levels marked "strongSwan" are the published
vectors of strongSwan's own test suite (src/libstrongswan/tests/suites/test_identification.c);
DER is checked by parsing it with cryptography's x509.Name, not with lab.ike.identity.
"""
from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from lab.ike.const import IdType
from lab.ike.identity import (
    ID_ANY,
    IdMatch,
    Identity,
    IdentityError,
    certificate_identities,
    certificate_matches,
)
from lab.ike.payloads import IDi, IDr, parse_chain, serialize_chain

P = Identity.parse


# ---------------------------------------------------------------- parsing (strongSwan vectors)

STRONGSWAN_FROM_STRING = [
    ("", ID_ANY, b""),
    ("%any", ID_ANY, b""),
    ("%any6", ID_ANY, b""),
    ("0.0.0.0", ID_ANY, b""),
    ("0::0", ID_ANY, b""),
    ("::", ID_ANY, b""),
    ("*", ID_ANY, b""),
    ("any", IdType.ID_FQDN, b"any"),
    ("0", IdType.ID_FQDN, b"0"),
    ("**", IdType.ID_FQDN, b"**"),
    ("192.168.1.1", IdType.ID_IPV4_ADDR, bytes([0xc0, 0xa8, 0x01, 0x01])),
    ("192.168.", IdType.ID_FQDN, b"192.168."),
    ("fec0::1", IdType.ID_IPV6_ADDR, bytes([0xfe, 0xc0] + [0] * 13 + [1])),
    ("fec0::", IdType.ID_IPV6_ADDR, bytes([0xfe, 0xc0] + [0] * 14)),
    ("alice@strongswan.org", IdType.ID_RFC822_ADDR, b"alice@strongswan.org"),
    ("alice@", IdType.ID_RFC822_ADDR, b"alice@"),
    ("alice", IdType.ID_FQDN, b"alice"),
    ("@", IdType.ID_FQDN, b""),
    ("@strongswan.org", IdType.ID_FQDN, b"strongswan.org"),
    ("@#deadbeef", IdType.ID_KEY_ID, bytes([0xde, 0xad, 0xbe, 0xef])),
    ("C=", IdType.ID_DER_ASN1_DN, bytes([0x30, 0x0b, 0x31, 0x09, 0x30, 0x07, 0x06, 0x03, 0x55, 0x04, 0x06,
                                         0x13, 0x00])),
    ("C=CH", IdType.ID_DER_ASN1_DN, bytes([0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06,
                                           0x13, 0x02, 0x43, 0x48])),
    ("C=CH,", IdType.ID_DER_ASN1_DN, bytes([0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06,
                                            0x13, 0x02, 0x43, 0x48])),
    ("C=CH, ", IdType.ID_DER_ASN1_DN, bytes([0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06,
                                             0x13, 0x02, 0x43, 0x48])),
    ("IPv4:#c0a80101", IdType.ID_IPV4_ADDR, bytes([0xc0, 0xa8, 0x01, 0x01])),
    ("email:tester", IdType.ID_RFC822_ADDR, b"tester"),
    ("{1}:#c0a80101", IdType.ID_IPV4_ADDR, bytes([0xc0, 0xa8, 0x01, 0x01])),
    ("{0x02}:tester", IdType.ID_FQDN, b"tester"),
    ("{99}:somedata", 99, b"somedata"),
]


@pytest.mark.parametrize("text,id_type,data", STRONGSWAN_FROM_STRING)
def test_parse_matches_strongswan_encodings(text, id_type, data):
    identity = P(text)
    assert identity.id_type == id_type
    assert identity.data == data


@pytest.mark.parametrize("text,id_type,data", [
    ("gwa.lab", IdType.ID_FQDN, b"gwa.lab"),
    ("@gwa.lab", IdType.ID_FQDN, b"gwa.lab"),
    ("@192.0.2.1", IdType.ID_FQDN, b"192.0.2.1"),
    ("203.0.113.2", IdType.ID_IPV4_ADDR, bytes([203, 0, 113, 2])),
    ("2001:db8::1", IdType.ID_IPV6_ADDR, bytes.fromhex("20010db8000000000000000000000001")),
    ("fqdn:gwa.lab", IdType.ID_FQDN, b"gwa.lab"),
    ("dns:gwa.lab", IdType.ID_FQDN, b"gwa.lab"),
    ("rfc822:alice@lab", IdType.ID_RFC822_ADDR, b"alice@lab"),
    ("@@alice@lab", IdType.ID_RFC822_ADDR, b"alice@lab"),
    ("keyid:my-key", IdType.ID_KEY_ID, b"my-key"),
    ("keyid:#0102ff", IdType.ID_KEY_ID, b"\x01\x02\xff"),
    ("asn1dn:#300d310b3009060355040613024348", IdType.ID_DER_ASN1_DN, bytes.fromhex("300d310b3009060355040613024348")),
])
def test_parse_lab_identities(text, id_type, data):
    assert P(text) == Identity(id_type, data)


@pytest.mark.parametrize("text,message", [
    ("CNN=gwa.lab", "unknown RDN key 'CNN'"),
    ("C=CH, O", "'O' is not of the form KEY=value"),
    ("C=CHE, CN=x", "two-letter country code"),
    ("fqdm:gwa.lab", "'fqdm:' is not one of"),
    ("ipv4:10.0.0.1", "write 10.0.0.1 or ipv4:#0a000001"),
    ("asn1dn:C=CH", "write C=CH, O=Lab, CN=gwa.lab"),
    ("10.0.0.0/24", "subnet identities are not supported"),
    ("@#xyz", "is not hex"),
    ("keyid:#12g4", "is not hex"),
])
def test_parse_errors_say_what_is_wrong(text, message):
    with pytest.raises(IdentityError, match=message.replace("(", r"\(").replace(".", r"\.")):
        P(text)


# ---------------------------------------------------------------- printing (strongSwan vectors)

@pytest.mark.parametrize("printed,text", [
    ("%any", ""),
    ("%any", "%any"),
    ("%any", "*"),
    ("192.168.1.1", "192.168.1.1"),
    ("fec0::1", "fec0::1"),
    ("fec0::1", "fec0:0:0::1"),
    ("moon@strongswan.org", "moon@strongswan.org"),
    ("MOON@STRONGSWAN.ORG", "MOON@STRONGSWAN.ORG"),
    ("C=", "C="),
    ("C=", "C=,"),
    ("C=", "C=, "),
    ("C=", "C= , "),
    ("C=, O=strongSwan", "C=, O=strongSwan"),
    ("C=CH, O=", "C=CH, O="),
    ("C=CH, O=strongSwan, CN=strongswan.org", "C=CH, O=strongSwan, CN=strongswan.org"),
    ("CN=strongswan.org, O=strongSwan, C=CH", "cn=strongswan.org, o=strongSwan, c=CH"),
    ("C=CH, O=strongSwan, CN=strongswan.org", "C=CH,O=strongSwan,CN=strongswan.org"),
    ("C=CH, O=strongSwan, CN=strongswan.org", "/C=CH/O=strongSwan/CN=strongswan.org"),
    ("CN=strongswan.org, O=strongSwan, C=CH", "CN=strongswan.org,O=strongSwan,C=CH"),
    ("C=CH, E=moon@strongswan.org, CN=moon", "C=CH, email=moon@strongswan.org, CN=moon"),
    ("C=CH, E=moon@strongswan.org, CN=moon", "C=CH, emailAddress=moon@strongswan.org, CN=moon"),
])
def test_str_matches_strongswan(printed, text):
    assert str(P(text)) == printed


@pytest.mark.parametrize("printed,id_type,data", [
    ("(invalid ID_IPV4_ADDR)", IdType.ID_IPV4_ADDR, b""),
    ("(invalid ID_IPV6_ADDR)", IdType.ID_IPV6_ADDR, b""),
    ("(unknown ID type: 255)", 255, b""),
    ("????@strongswan.org", IdType.ID_RFC822_ADDR, bytes([0xfa, 0xfb, 0xfc, 0xfd]) + b"@strongswan.org"),
    ("moon@strongswan.org", IdType.ID_KEY_ID, b"moon@strongswan.org"),
    ("de:ad:be:ef", IdType.ID_KEY_ID, bytes([0xde, 0xad, 0xbe, 0xef])),
    ("ABCDEFGHIJKLMNOPQRS", IdType.ID_KEY_ID, b"ABCDEFGHIJKLMNOPQRS"),
    ("41:42:43:44:45:46:47:48:49:4a:4b:4c:4d:4e:4f:50:51:52:53:54", IdType.ID_KEY_ID, b"ABCDEFGHIJKLMNOPQRST"),
    ("", IdType.ID_DER_ASN1_DN, b""),
    ("C=CH, 55:04:15=123", IdType.ID_DER_ASN1_DN, bytes([
        0x30, 0x19, 0x31, 0x17, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, 0x43, 0x48, 0x30, 0x0a,
        0x06, 0x03, 0x55, 0x04, 0x15, 0x13, 0x03, 0x31, 0x32, 0x33])),
    ("(ASN.1 general name)", IdType.ID_DER_ASN1_GN, bytes([0x81, 0x14]) + b"moon@strongswan.org"),
])
def test_str_of_encodings_matches_strongswan(printed, id_type, data):
    assert str(Identity(id_type, data)) == printed


# ---------------------------------------------------------------- DNs to DER, checked with cryptography

def test_dn_der_parses_with_cryptography_in_written_order():
    identity = P("C=CH, O=Lab, CN=gwa.lab")
    name = x509.Name.from_bytes(identity.data)
    assert [(a.oid, a.value) for a in name] == [
        (NameOID.COUNTRY_NAME, "CH"), (NameOID.ORGANIZATION_NAME, "Lab"), (NameOID.COMMON_NAME, "gwa.lab")]
    # RFC 4514 §2.1: the last RDN is written first
    assert name.rfc4514_string() == "CN=gwa.lab,O=Lab,C=CH"
    assert name == x509.Name.from_rfc4514_string("CN=gwa.lab,O=Lab,C=CH")
    assert identity.dn == name


def test_dn_string_types_follow_strongswan():
    identity = P("C=CH, O=Zürich Lab, OU=R&D, CN=*, E=alice@lab.example, DC=lab, serialNumber=42")
    name = x509.Name.from_bytes(identity.data)
    types = {a.oid: a._type for a in name}
    assert types[NameOID.COUNTRY_NAME] == _ASN1Type.PrintableString
    assert types[NameOID.ORGANIZATION_NAME] == _ASN1Type.UTF8String
    assert types[NameOID.ORGANIZATIONAL_UNIT_NAME] == _ASN1Type.UTF8String
    assert types[NameOID.COMMON_NAME] == _ASN1Type.UTF8String
    assert types[NameOID.EMAIL_ADDRESS] == _ASN1Type.IA5String
    assert types[NameOID.DOMAIN_COMPONENT] == _ASN1Type.PrintableString
    assert types[NameOID.SERIAL_NUMBER] == _ASN1Type.PrintableString
    # strongSwan prints non-ASCII octets as '?' (chunk_printable)
    assert str(identity) == "C=CH, O=Z??rich Lab, OU=R&D, CN=*, E=alice@lab.example, DC=lab, serialNumber=42"
    assert identity.has_wildcards


def test_dn_from_certificate_subject_round_trips():
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lab"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "gwb.lab")])
    from_der = Identity.from_id_payload(IdType.ID_DER_ASN1_DN, subject.public_bytes())
    assert str(from_der) == "C=CH, O=Lab, CN=gwb.lab"
    assert from_der.dn == subject
    # strongSwan identification.c compare_dn: equal octets match whatever the string type
    assert from_der.data != P("C=CH, O=Lab, CN=gwb.lab").data
    assert from_der.matches(P("C=CH, O=Lab, CN=gwb.lab")) == IdMatch.PERFECT
    assert P("C=CH, O=Lab, CN=gwb.lab").matches(from_der) == IdMatch.PERFECT


def test_malformed_dn_from_payload_is_rejected():
    with pytest.raises(IdentityError, match="not a DER-encoded X.501 Name"):
        Identity.from_id_payload(IdType.ID_DER_ASN1_DN, b"\x30\x05\x31\x03")


# ---------------------------------------------------------------- ID payloads

@pytest.mark.parametrize("text", ["gwa.lab", "192.0.2.1", "2001:db8::1", "alice@lab", "C=CH, O=Lab, CN=gwa.lab",
                                  "@#0102"])
def test_payload_round_trip_through_the_codec(text):
    identity = P(text)
    first, octets = serialize_chain([identity.to_payload(IDi), identity.to_payload(IDr)])
    idi, idr = parse_chain(octets, first)
    assert isinstance(idi, IDi) and isinstance(idr, IDr)
    assert Identity.from_payload(idi) == identity
    assert Identity.from_payload(idr) == identity


def test_payload_wire_format_is_rfc7296():
    # RFC 7296 §3.5: ID Type, 3 reserved octets, then the identification data
    assert P("192.0.2.1").to_payload(IDi).body() == bytes([1, 0, 0, 0, 192, 0, 2, 1])
    assert P("gwa.lab").to_payload(IDr).body() == bytes([2, 0, 0, 0]) + b"gwa.lab"


def test_any_cannot_be_sent_and_bad_payloads_are_rejected():
    with pytest.raises(IdentityError, match="%any cannot be sent"):
        Identity.any().to_payload()
    with pytest.raises(IdentityError, match="4 octets"):
        Identity.from_id_payload(IdType.ID_IPV4_ADDR, b"\x01\x02\x03")
    with pytest.raises(IdentityError, match="16 octets"):
        Identity.from_id_payload(IdType.ID_IPV6_ADDR, b"\x01" * 4)
    with pytest.raises(IdentityError, match="reserved"):
        Identity.from_id_payload(0, b"")


# ---------------------------------------------------------------- matching (strongSwan vectors)

MOON_DN = "C=CH, E=moon@strongswan.org, CN=moon"


@pytest.mark.parametrize("pattern,expected", [
    ("C=CH, E=moon@strongswan.org, CN=moon", IdMatch.PERFECT),
    ("C=CH, E=*@strongswan.org, CN=moon", IdMatch.NONE),
    ("C=CH, E=*, CN=moon", IdMatch.ONE_WILDCARD),
    ("C=CH, E=*, CN=*", IdMatch.ONE_WILDCARD - 1),
    ("C=*, E=*, CN=*", IdMatch.ONE_WILDCARD - 2),
    ("C=*, E=*, CN=*, O=BADInc", IdMatch.NONE),
    ("C=*, E=*", IdMatch.NONE),
    ("C=*, E=a@b.c, CN=*", IdMatch.NONE),
    ("%any", IdMatch.ANY),
    # strongSwan test_equals: these equal the DN, i.e. match it perfectly
    ("C==CH , E==moon@strongswan.org , CN==moon", IdMatch.PERFECT),
    ("  C=CH, E=moon@strongswan.org, CN=moon  ", IdMatch.PERFECT),
    ("C=ch, E=moon@STRONGSWAN.ORG, CN=Moon", IdMatch.PERFECT),
    ("/C=CH/E=moon@strongswan.org/CN=moon", IdMatch.PERFECT),
    (" / C=CH / E=moon@strongswan.org / CN=moon", IdMatch.PERFECT),
    ("E=moon@strongswan.org, C=CH, CN=moon", IdMatch.NONE),
])
def test_dn_matches_like_strongswan(pattern, expected):
    assert P(MOON_DN).matches(P(pattern)) == expected


@pytest.mark.parametrize("identity,pattern,expected", [
    ("moon@strongswan.org", "moon@strongswan.org", IdMatch.PERFECT),
    ("moon@strongswan.org", "*@strongswan.org", IdMatch.ONE_WILDCARD),
    ("moon@strongswan.org", "*@*.org", IdMatch.NONE),
    ("moon@strongswan.org", "*@*", IdMatch.NONE),
    ("moon@strongswan.org", "*strongswan.org", IdMatch.NONE),
    ("moon@strongswan.org", "*.org", IdMatch.NONE),
    ("moon@strongswan.org", "moon@*", IdMatch.NONE),
    ("moon@strongswan.org", "**", IdMatch.NONE),
    ("moon@strongswan.org", "*", IdMatch.ANY),
    ("moon@strongswan.org", "%any", IdMatch.ANY),
    ("vpn.strongswan.org", "vpn.strongswan.org", IdMatch.PERFECT),
    ("vpn.strongswan.org", "*.strongswan.org", IdMatch.ONE_WILDCARD),
    ("vpn.strongswan.org", "*strongswan.org", IdMatch.ONE_WILDCARD),
    ("vpn.strongswan.org", "*.org", IdMatch.ONE_WILDCARD),
    ("vpn.strongswan.org", "*.strongswan.*", IdMatch.NONE),
    ("vpn.strongswan.org", "*vpn.strongswan.org", IdMatch.NONE),
    ("vpn.strongswan.org", "vpn.strongswan.*", IdMatch.NONE),
    ("vpn.strongswan.org", "**", IdMatch.NONE),
    ("vpn.strongswan.org", "*", IdMatch.ANY),
    ("vpn.strongswan.org", "%any", IdMatch.ANY),
    ("ipsec.strongswan.org", "IPSEC.strongswan.org", IdMatch.PERFECT),
    ("ipsec.strongswan.org", "ipsec.strongSwan.ORG", IdMatch.PERFECT),
    ("ipsec.strongswan.org", "strongswan.org", IdMatch.NONE),
    ("%any", "%any", IdMatch.ANY),
    ("%any", "", IdMatch.ANY),
    ("%any", "*", IdMatch.ANY),
    ("%any", "moon@strongswan.org", IdMatch.NONE),
    ("%any", "vpn.strongswan.org", IdMatch.NONE),
    ("192.168.1.1", "%any", IdMatch.ANY),
    ("192.168.1.1", "192.168.1.1", IdMatch.PERFECT),
    ("192.168.1.1", "192.168.1.2", IdMatch.NONE),
    ("192.168.1.1", "foo@bar", IdMatch.NONE),
    ("fec0::1", "fec0::1", IdMatch.PERFECT),
    ("fec0::1", "fec0::2", IdMatch.NONE),
])
def test_string_and_address_matches_like_strongswan(identity, pattern, expected):
    assert P(identity).matches(P(pattern)) == expected


def test_matching_is_not_symmetric():
    assert P("gwa.lab").matches(P("*.lab")) == IdMatch.ONE_WILDCARD
    assert P("*.lab").matches(P("gwa.lab")) == IdMatch.NONE
    assert P("*.lab").has_wildcards and not P("gwa.lab").has_wildcards


# ---------------------------------------------------------------- certificates

def _certificate(subject: x509.Name, sans: list[x509.GeneralName]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_certificate_identities_and_matching():
    subject = x509.Name.from_rfc4514_string("CN=gwa.lab,O=Lab,C=CH")
    cert = _certificate(subject, [x509.DNSName("gwa.lab"), x509.RFC822Name("admin@gwa.lab"),
                                  x509.IPAddress(ipaddress.ip_address("203.0.113.1"))])
    ids = certificate_identities(cert)
    assert [str(i) for i in ids] == ["C=CH, O=Lab, CN=gwa.lab", "gwa.lab", "admin@gwa.lab", "203.0.113.1"]
    assert [i.id_type for i in ids] == [IdType.ID_DER_ASN1_DN, IdType.ID_FQDN, IdType.ID_RFC822_ADDR,
                                        IdType.ID_IPV4_ADDR]
    assert certificate_matches(cert, P("C=CH, O=Lab, CN=gwa.lab")) == IdMatch.PERFECT
    assert certificate_matches(cert, P("gwa.lab")) == IdMatch.PERFECT
    assert certificate_matches(cert, P("GWA.LAB")) == IdMatch.PERFECT
    assert certificate_matches(cert, P("203.0.113.1")) == IdMatch.PERFECT
    assert certificate_matches(cert, P("*.lab")) == IdMatch.ONE_WILDCARD
    assert certificate_matches(cert, P("C=CH, O=Lab, CN=*")) == IdMatch.ONE_WILDCARD
    assert certificate_matches(cert, P("gwb.lab")) == IdMatch.NONE
    assert certificate_matches(cert, P("203.0.113.2")) == IdMatch.NONE


def test_certificate_without_san_has_only_its_subject():
    cert = _certificate(x509.Name.from_rfc4514_string("CN=ca"), [])
    assert certificate_identities(cert) == [Identity.from_dn(cert.subject)]
    assert certificate_matches(cert, P("ca")) == IdMatch.NONE
