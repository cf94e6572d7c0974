"""The Windows client profile (lab.ike.profiles): its IKE_SA_INIT field by field against what is
published for Windows' built-in client, the weak algorithms it needs, and its checks of the
gateway certificate with the Windows error numbers."""
from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.conf.settings import ConfigError
from lab.conf.swanctl import parse_swanctl
from lab.ike import payloads as pl
from lab.ike.config import AuthConfig, Identity, PrivateKey, Secrets
from lab.ike.const import CfgAttr, DhGroup, EncrId, IntegId, NotifyType, PrfId, TransformType
from lab.ike.crypto.dh import new_key_exchange
from lab.ike.crypto.sk import SkCipher
from lab.ike.memnet import make_net, make_pki, pair_configs
from lab.ike.message import Message, classify_udp
from lab.ike.profiles import (PROFILES, WINDOWS_ESP, WINDOWS_IKE, WINDOWS_IKE_DH2048, check_server_certificate)
from lab.ike.proposals import format_proposals
from lab.ike.sa import IkeState

T = TransformType


def _transforms(proposal: pl.Proposal, ttype: int) -> list[tuple[int, int]]:
    return [(t.transform_id, t.key_length or 0) for t in proposal.transforms if t.transform_type == ttype]


def _first_request(net) -> Message:
    _, _, datagram = net.log[0]
    return Message.parse(classify_udp(datagram.dst[1], datagram.data)[1])


def _windows_net(gateway: str, profile: str = "windows", ike: str = WINDOWS_IKE):
    a, b = pair_configs(a_proposals=ike, b_proposals=gateway, esp="aes256-sha1")
    a.connections["s2s"].profile = profile
    return make_net(a, b)


# ---------------------------------------------------------------- the published proposals and vendor IDs

def test_windows_ike_sa_init_field_by_field():
    # strongSwan "Windows Clients": ike = 3des-aes128-aes192-aes256-sha1-sha256-sha384-modp1024
    net = _windows_net("3des-sha1-modp1024")
    net.endpoints["a"].initiate("s2s", net.now)
    net.collect()
    request = _first_request(net)
    sa = next(p for p in request.payloads if isinstance(p, pl.SA))
    assert len(sa.proposals) == 1
    proposal = sa.proposals[0]
    assert _transforms(proposal, T.ENCR) == [(EncrId.TRIPLE_DES, 0), (EncrId.AES_CBC, 128), (EncrId.AES_CBC, 192),
                                             (EncrId.AES_CBC, 256)]
    assert _transforms(proposal, T.INTEG) == [(IntegId.HMAC_SHA1_96, 0), (IntegId.HMAC_SHA2_256_128, 0),
                                              (IntegId.HMAC_SHA2_384_192, 0)]
    assert _transforms(proposal, T.PRF) == [(PrfId.HMAC_SHA1, 0), (PrfId.HMAC_SHA2_256, 0), (PrfId.HMAC_SHA2_384, 0)]
    assert _transforms(proposal, T.DH) == [(DhGroup.MODP_1024, 0)]
    ke = next(p for p in request.payloads if isinstance(p, pl.KE))
    assert ke.dh_group == DhGroup.MODP_1024 and len(ke.data) == 128
    # the vendor IDs, in the order a published Zeek log of a Windows IKE_SA_INIT shows them
    vids = [p.data.hex() for p in request.payloads if isinstance(p, pl.VendorID)]
    assert vids == ["1e2b516905991c7d7c96fcbfb587e46100000009", "fb1de3cdf341b7ea16b7e5be0855f120",
                    "26244d38eddb61b3172a36e3d0cfb819", "01528bbbc00696121849ab9a1c5b2a5100000002"]
    assert vids[1] == hashlib.md5(b"MS-Negotiation Discovery Capable").hexdigest()
    notifies = [p.notify_type for p in request.payloads if isinstance(p, pl.Notify)]
    # no RFC 7427 hashes, no multiple authentication rounds (strongSwan: Windows does not support RFC 4739)
    assert NotifyType.SIGNATURE_HASH_ALGORITHMS not in notifies
    assert NotifyType.MULTIPLE_AUTH_SUPPORTED not in notifies
    assert NotifyType.NAT_DETECTION_SOURCE_IP in notifies and NotifyType.NAT_DETECTION_DESTINATION_IP in notifies


def test_dh2048_setting_offers_aes256_and_modp2048_only():
    # strongSwan "Windows Clients": NegotiateDH2048_AES256 = 2 gives aes256-sha1-sha256-sha384-modp2048
    net = _windows_net("aes256-sha256-modp2048", "windows-dh2048", WINDOWS_IKE_DH2048)
    net.endpoints["a"].initiate("s2s", net.now)
    net.collect()
    proposal = next(p for p in _first_request(net).payloads if isinstance(p, pl.SA)).proposals[0]
    assert _transforms(proposal, T.ENCR) == [(EncrId.AES_CBC, 256)]
    assert _transforms(proposal, T.DH) == [(DhGroup.MODP_2048, 0)]
    net.settle()
    assert net.endpoints["a"].by_id and all(s.state == IkeState.ESTABLISHED
                                            for s in net.endpoints["a"].by_id.values())


def test_profile_strings_are_the_published_ones():
    assert PROFILES["windows"].ike == "3des-aes128-aes192-aes256-sha1-sha256-sha384-modp1024"
    assert PROFILES["windows-dh2048"].ike == "aes256-sha1-sha256-sha384-modp2048"
    assert format_proposals(PROFILES["windows"].esp_proposals()) == WINDOWS_ESP == "aes256-aes128-3des-des-null-sha1"
    assert not any(t.transform_type == T.DH for p in PROFILES["windows"].esp_proposals() for t in p.transforms)


def test_hardened_gateway_refuses_modp1024_and_a_compatibility_proposal_takes_it():
    net = _windows_net("aes256-sha256-ecp256")
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    trace = net.endpoints["b"].pop_trace()
    answers = [r["payloads"] for r in trace if r["kind"] == "message" and r["dir"] == "out"]
    assert answers and answers[0] == ["N(NO_PROPOSAL_CHOSEN)"]
    (note,) = [r for r in trace if r.get("what") == "no_proposal_chosen"]
    assert "only MODP-1024 key exchange, which RFC 8247 §2.4 deprecates" in note["reason"]
    # the client shows what Windows shows
    assert "Windows error 13868: policy match error" in " ".join(str(e) for e in net.events("a"))
    # the gateway names the weak suite explicitly: 3DES, SHA-1 and MODP-1024 then carry the IKE SA
    net = _windows_net("3des-sha1-modp1024")
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    (ike,) = net.endpoints["a"].by_id.values()
    assert ike.state == IkeState.ESTABLISHED
    assert (ike.algorithms.encr, ike.algorithms.dh) == (EncrId.TRIPLE_DES, DhGroup.MODP_1024)
    # Windows always asks for an address (CP request): a gateway without a pool refuses the CHILD_SA
    assert "INTERNAL_ADDRESS_FAILURE" in " ".join(str(e) for e in net.events("a"))


def test_ike_auth_sends_no_idr_and_the_windows_cp_request():
    a, b = pair_configs(a_proposals=WINDOWS_IKE, b_proposals="aes256-sha1-modp1024", esp="aes256-sha1")
    a.connections["s2s"].profile = "windows"
    net = make_net(a, b)
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    auth = [r for r in net.endpoints["a"].pop_trace() if r["kind"] == "message" and r["exchange"] == "IKE_AUTH"
            and r["dir"] == "out"]
    names = auth[0]["payloads"]
    assert "IDr" not in names and "N(INITIAL_CONTACT)" not in names and "CP" in " ".join(names)
    assert PROFILES["windows"].cp_request == (CfgAttr.INTERNAL_IP4_ADDRESS, CfgAttr.INTERNAL_IP4_DNS,
                                              CfgAttr.INTERNAL_IP4_NBNS, 23456, CfgAttr.INTERNAL_IP6_ADDRESS,
                                              CfgAttr.INTERNAL_IP6_DNS, 23457)


# ---------------------------------------------------------------- the weak algorithms, checked independently

def test_modp1024_key_exchange_agrees():
    a, b = new_key_exchange(DhGroup.MODP_1024), new_key_exchange(DhGroup.MODP_1024)
    assert len(a.public_value) == 128
    assert a.shared_secret(b.public_value) == b.shared_secret(a.public_value)


def test_3des_sk_matches_the_library_cipher():
    sk = SkCipher(EncrId.TRIPLE_DES, None, IntegId.HMAC_SHA1_96)
    key_e, key_a, iv = bytes(range(24)), bytes(20), bytes(range(8))
    sealed = sk.seal(key_e, key_a, iv, b"hdr", b"0123456789")
    body = sealed[8:-12]
    # RFC 7296 §3.14: padding then Pad Length; 3DES-CBC (RFC 2451) of that, by the library directly
    plain = Cipher(TripleDES(key_e), modes.CBC(iv)).decryptor()
    clear = plain.update(body) + plain.finalize()
    assert clear[:10] == b"0123456789" and len(body) % 8 == 0
    assert sk.open(key_e, key_a, b"hdr", sealed) == b"0123456789"


# ---------------------------------------------------------------- the profile in swanctl.conf

CONF = """connections {
  win {
    remote_addrs = 192.0.2.1
    profile = %s
    local { auth = psk }
    remote { auth = psk }
    children { net { remote_ts = 0.0.0.0/0 } }
  }
}
secrets { ike-a { secret = 0sc2VjcmV0c2VjcmV0 } }
"""


def test_swanctl_profile_sets_the_proposals_and_names_the_line_of_a_bad_one():
    conn = parse_swanctl(CONF % "windows").connections["win"]
    assert format_proposals(conn.proposals) == WINDOWS_IKE
    assert format_proposals(conn.children["net"].esp_proposals) == WINDOWS_ESP
    with pytest.raises(ConfigError, match=r"swanctl.conf:4: .*profile 'macos' is unknown"):
        parse_swanctl(CONF % "macos")


def test_machine_certificate_authentication_without_a_certificate_is_windows_error_13806():
    text = (CONF % "windows").replace("local { auth = psk }", "local { auth = pubkey }")
    with pytest.raises(ConfigError, match=r"swanctl.conf:5: .*Windows error 13806: IKE failed to find valid machine "
                                          r"certificate \(auth = pubkey needs our certificate"):
        parse_swanctl(text)
    # without the profile the same mistake reads as before, no Windows number
    with pytest.raises(ConfigError) as err:
        parse_swanctl(text.replace("    profile = windows\n", ""))
    assert "13806" not in str(err.value) and "auth = pubkey needs our certificate" in str(err.value)


def test_an_offer_with_a_strong_group_is_not_called_deprecated():
    from lab.ike.proposals import deprecated_only, parse_ike_proposals
    assert deprecated_only(parse_ike_proposals(WINDOWS_IKE_DH2048)) is None
    assert "3DES encryption" in deprecated_only(parse_ike_proposals("3des-sha256-modp2048"))


def test_a_gateway_still_refuses_weak_algorithms_unless_named():
    from lab.ike.proposals import DEFAULT_IKE_PROPOSALS
    assert not any("modp1024" in p.split("-") or "3des" in p.split("-") for p in DEFAULT_IKE_PROPOSALS)


# ---------------------------------------------------------------- the gateway certificate (13801)

def _gateway_cert(pki, *, eku=True, sans=("gwb.lab",), cn="gwb.lab", key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(pki["intermediate"].subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(start)
               .not_valid_after(start + datetime.timedelta(days=365)))
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    return builder.sign(pki["intermediate_key"], hashes.SHA256()), key


def _cert_net(pki, cert, key):
    a, b = pair_configs(a_proposals=WINDOWS_IKE, b_proposals="aes256-sha1-modp1024", esp="aes256-sha1")
    a.connections["s2s"].profile = "windows"
    client_cert, client_key = pki["gwa.lab"]
    a.connections["s2s"].local = AuthConfig("pubkey", Identity.parse("gwa.lab"),
                                            certs=[client_cert, pki["intermediate"]])
    a.connections["s2s"].remote = AuthConfig("pubkey", Identity.parse("gwb.lab"), cacerts=[pki["ca"]])
    a.secrets = Secrets(private_keys=[PrivateKey("gwa.key", client_key)])
    b.connections["s2s"].local = AuthConfig("pubkey", Identity.parse("gwb.lab"), certs=[cert, pki["intermediate"]])
    b.connections["s2s"].remote = AuthConfig("pubkey", Identity.parse("gwa.lab"), cacerts=[pki["ca"]])
    b.secrets = Secrets(private_keys=[PrivateKey("gwb.key", key)])
    net = make_net(a, b)
    clock = lambda: datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)  # noqa: E731
    net.endpoints["a"].wall_clock = net.endpoints["b"].wall_clock = clock
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    return net


def _failure(net) -> str:
    return " ".join(str(getattr(e, "reason", "")) for e in net.events("a") if type(e).__name__ == "AuthFailed")


def test_gateway_certificate_made_right_is_taken():
    pki = make_pki("ecdsa")
    net = _cert_net(pki, *_gateway_cert(pki))
    assert [s.state for s in net.endpoints["a"].by_id.values()] == [IkeState.ESTABLISHED]


@pytest.mark.parametrize("kw, words", [
    ({"eku": False}, "lacks the serverAuth extended key usage"),
    # the identity check of RFC 7296 §3.5 comes first here; still 13801 under the profile
    ({"sans": ()}, "is not in the peer's certificate"),
    ({"sans": ("other.lab",)}, "is not in the peer's certificate"),
])
def test_gateway_certificate_refused_with_13801(kw, words):
    pki = make_pki("ecdsa")
    net = _cert_net(pki, *_gateway_cert(pki, **kw))
    assert not any(s.state == IkeState.ESTABLISHED for s in net.endpoints["a"].by_id.values())
    reason = _failure(net)
    assert "Windows error 13801" in reason and words in reason


def test_name_only_in_cn_is_refused_for_an_address_and_taken_for_a_host_name():
    pki = make_pki("ecdsa")
    cert, _ = _gateway_cert(pki, sans=(), cn="192.0.2.1")
    with pytest.raises(Exception, match="13801.*address must be in a subjectAltName dNSName"):
        check_server_certificate(cert, "192.0.2.1")
    cert, _ = _gateway_cert(pki, sans=(), cn="vpn.example")
    check_server_certificate(cert, "vpn.example")


def test_ecdsa_p521_key_is_refused():
    pki = make_pki("ecdsa")
    cert, _ = _gateway_cert(pki, key=ec.generate_private_key(ec.SECP521R1()))
    with pytest.raises(Exception, match="13801.*secp521r1"):
        check_server_certificate(cert, "gwb.lab")


def test_no_answer_is_windows_error_809():
    net = _windows_net("3des-sha1-modp1024")
    net.drop = lambda name, datagram: name == "b"
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle(600)
    gone = " ".join(str(e) for e in net.events("a") if type(e).__name__ == "IkeSaDeleted")
    assert "Windows error 809" in gone and "did not answer IKE_SA_INIT after 6 tries" in gone
