"""Client profiles: our initiator made to speak as a known client does.

`profile = windows` (an ipsec-lab extension of swanctl.conf, see README.md) makes a connection offer what
Windows' built-in IKEv2 client (Agile VPN / Always On VPN) offers, and check the gateway's
certificate as Windows does. Sources, cited where each value is set:

- strongSwan, "Windows Clients" (docs.strongswan.org/docs/6.0/interop/windowsClients.html): the
  default IKE proposal, the one with NegotiateDH2048_AES256 = 2, the ESP proposal, no multiple
  authentication rounds, MOBIKE.
- strongSwan, "Windows Certificate Requirements" (docs.strongswan.org/docs/5.9/interop/windowsCertRequirements.html):
  the gateway certificate needs the serverAuth extended key usage and the server name in the
  subject or a subjectAltName dNSName, an address in a dNSName only, else error 13801.
- Richard Hicks, "Always On VPN and IKEv2 Fragmentation" (directaccess.richardhicks.com, 2019):
  error 809, "the remote server is not responding", when IKE gets no answer.
- The vendor IDs and notifies of IKE_SA_INIT: a published Zeek IKE log of a Windows client's
  IKE_SA_INIT (vendor IDs "MS NT5 ISAKMPOAKLEY", "MS-Negotiation Discovery Capable",
  "Microsoft Initial-Contact" and 01528bbbc00696121849ab9a1c5b2a5100000002, which Zeek does not
  name; notifies NAT_DETECTION_SOURCE_IP and NAT_DETECTION_DESTINATION_IP only). The first three
  are the MD5 of the names in strongSwan's and Libreswan's vendor ID tables ("MS NT5 ISAKMPOAKLEY",
  "MS-Negotiation Discovery Capable", "Vid-Initial-Contact"), the first followed by a version.

IKEV2_FRAGMENTATION_SUPPORTED follows the connection's `fragmentation` setting (default yes): the
log above does not show it, and the sources here do not settle which Windows builds send it.
The lab sends each published proposal line as one proposal, in strongSwan's notation; a capture of
a real Windows client may show the same transforms spread over several proposals.
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .const import ProtocolId
from .crypto.auth import AuthenticationFailed
from .payloads import Proposal
from .proposals import parse_proposals

__all__ = ["ClientProfile", "PROFILES", "WINDOWS_VENDOR_IDS", "check_server_certificate", "client_profile",
           "profile_names", "server_name", "windows_error"]


def _md5(text: str) -> bytes:
    return hashlib.md5(text.encode(), usedforsecurity=False).digest()


# MS NT5 ISAKMPOAKLEY: MD5("MS NT5 ISAKMPOAKLEY") followed by a 4-octet version (9 as published); the
# last one is sent as seen, its meaning unpublished
WINDOWS_VENDOR_IDS: tuple[tuple[str, bytes], ...] = (
    ("MS NT5 ISAKMPOAKLEY", bytes.fromhex("1e2b516905991c7d7c96fcbfb587e461") + (9).to_bytes(4, "big")),
    ("MS-Negotiation Discovery Capable", _md5("MS-Negotiation Discovery Capable")),
    ("Vid-Initial-Contact", _md5("Vid-Initial-Contact")),
    ("unnamed Microsoft vendor ID", bytes.fromhex("01528bbbc00696121849ab9a1c5b2a5100000002")),
)

# the CP request Windows sends (strongSwan logs it as CPRQ(ADDR DNS NBNS SRV ADDR6 DNS6 SRV6)):
# RFC 7296 §3.15.1 types, and Microsoft's private INTERNAL_IP4_SERVER / INTERNAL_IP6_SERVER (23456, 23457)
INTERNAL_IP4_SERVER = 23456
INTERNAL_IP6_SERVER = 23457
WINDOWS_CP_REQUEST: tuple[int, ...] = (1, 3, 4, INTERNAL_IP4_SERVER, 8, 10, INTERNAL_IP6_SERVER)

# strongSwan "Windows Clients": Windows 7 up to 11 by default, and with NegotiateDH2048_AES256 = 2
WINDOWS_IKE = "3des-aes128-aes192-aes256-sha1-sha256-sha384-modp1024"
WINDOWS_IKE_DH2048 = "aes256-sha1-sha256-sha384-modp2048"
# ... and its ESP proposal, no PFS group unless Set-VpnConnectionIPsecConfiguration -PfsGroup sets one
WINDOWS_ESP = "aes256-aes128-3des-des-null-sha1"

# the Windows error numbers (RAS error codes) the profile reports
WINDOWS_ERRORS = {
    809: "the network connection between your computer and the VPN server could not be established "
         "because the remote server is not responding",
    13801: "IKE authentication credentials are unacceptable",
    13806: "IKE failed to find valid machine certificate",
    13868: "policy match error",
}


def windows_error(number: int, detail: str) -> str:
    """The sentence a Windows user would read (error number and its text), then what the lab saw."""
    return f"Windows error {number}: {WINDOWS_ERRORS[number]} ({detail})"


@dataclass(frozen=True)
class ClientProfile:
    name: str
    ike: str
    esp: str
    vendor_ids: tuple[tuple[str, bytes], ...]
    cp_request: tuple[int, ...]
    send_idr: bool = True
    send_signature_hashes: bool = True
    send_multiple_auth: bool = True
    send_initial_contact: bool = True
    windows_errors: bool = False
    check_server_cert: bool = False
    description: str = ""

    def ike_proposals(self) -> list[Proposal]:
        return parse_proposals(ProtocolId.IKE, self.ike)

    def esp_proposals(self) -> list[Proposal]:
        # offered as Windows offers them: 3DES, DES and NULL are sent although lab.esp carries out
        # none of them (a gateway that picks one ends the CHILD_SA with an error naming it)
        return parse_proposals(ProtocolId.ESP, self.esp)


def _windows(name: str, ike: str, description: str) -> ClientProfile:
    # strongSwan "Windows Clients": no IDr, no multiple authentication rounds (RFC 4739), the
    # Vid-Initial-Contact vendor ID in place of the INITIAL_CONTACT notify
    return ClientProfile(name, ike, WINDOWS_ESP, WINDOWS_VENDOR_IDS, WINDOWS_CP_REQUEST, send_idr=False,
                         send_signature_hashes=False, send_multiple_auth=False, send_initial_contact=False,
                         windows_errors=True, check_server_cert=True, description=description)


PROFILES: dict[str, ClientProfile] = {
    "windows": _windows("windows", WINDOWS_IKE, "Windows' built-in IKEv2 client, default settings"),
    "windows-dh2048": _windows("windows-dh2048", WINDOWS_IKE_DH2048,
                               "Windows' built-in IKEv2 client with NegotiateDH2048_AES256 = 2"),
}


def profile_names() -> tuple[str, ...]:
    return tuple(PROFILES)


def client_profile(name: str) -> ClientProfile | None:
    """The profile `name` stands for (None for "" or "none"); ValueError for an unknown name."""
    if name in ("", "none"):
        return None
    if name not in PROFILES:
        raise ValueError(f"profile '{name}' is unknown (supported: none, {', '.join(PROFILES)})")
    return PROFILES[name]


# ---------------------------------------------------------------- the gateway certificate, as Windows checks it

SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH  # 1.3.6.1.5.5.7.3.1
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}


def server_name(config: Any) -> str:
    """The name a Windows user types as the VPN server: the remote identity when it is a name,
    else the first remote address (the lab's gateways are reached by address)."""
    remote_id = getattr(config.remote, "id", None)
    if remote_id is not None and remote_id.type_name == "ID_FQDN":
        name: str = remote_id.data.decode(errors="replace")
        return name
    return config.remote_addrs[0].text if config.remote_addrs else ""


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def check_server_certificate(cert: x509.Certificate, name: str) -> None:
    """Windows' checks of the gateway certificate, after the chain and signature checks passed.
    strongSwan "Windows Certificate Requirements": the serverAuth EKU; the server name in the
    subject or a subjectAltName dNSName, and an address only as a dNSName (an iPAddress SAN or
    the subject's CN does not do: 13801). Keys: RSA, or ECDSA on P-256 or P-384.
    AuthenticationFailed with the Windows error number when one fails."""
    subject = cert.subject.rfc4514_string()
    try:
        usages = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = []
    if SERVER_AUTH not in usages:
        found = ", ".join(getattr(u, "_name", u.dotted_string) for u in usages) or "no extended key usage"
        raise AuthenticationFailed(windows_error(
            13801, f"the gateway certificate '{subject}' lacks the serverAuth extended key usage "
                   f"(1.3.6.1.5.5.7.3.1); it has {found}"))
    try:
        dns_names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = []
    common_names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    wanted = name.lower()
    in_san = any(d.lower() == wanted for d in dns_names)
    in_cn = not _is_address(name) and any(c.lower() == wanted for c in common_names)
    if not (in_san or in_cn):
        where = "an address must be in a subjectAltName dNSName" if _is_address(name) else \
            "the name must be in a subjectAltName dNSName or the subject"
        raise AuthenticationFailed(windows_error(
            13801, f"the gateway certificate '{subject}' does not name the server '{name}' "
                   f"(dNSName: {', '.join(dns_names) or 'none'}); {where}"))
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            raise AuthenticationFailed(windows_error(
                13801, f"the gateway certificate '{subject}' has an ECDSA key on {key.curve.name}; "
                       f"Windows takes P-256 or P-384"))
    elif not isinstance(key, rsa.RSAPublicKey):
        raise AuthenticationFailed(windows_error(
            13801, f"the gateway certificate '{subject}' has a {type(key).__name__} key; Windows takes RSA or ECDSA"))
