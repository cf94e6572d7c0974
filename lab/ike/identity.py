"""IKE identities (RFC 7296 §3.5) written, read, printed and matched the way strongSwan does.

`Identity.parse("gwa.lab")` understands strongSwan's id syntax from swanctl.conf (`id = ...`):
IPv4/IPv6 addresses, `user@domain`, `@fqdn`, DNs like `C=CH, O=Lab, CN=gwa.lab`, `%any`,
`@#hex` key ids and the explicit type prefixes `fqdn:`, `email:`, `keyid:`, `asn1dn:#...`.
`to_payload()` / `from_payload()` convert to and from IDi/IDr payloads, `matches()` applies
strongSwan's wildcard rules, `str()` prints like strongSwan's `%Y`. Pure: no I/O.
"""
from __future__ import annotations

import ipaddress
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier

from .const import IdType
from .crypto.der import oid_content
from .payloads import Identification, IDi, IDr

__all__ = [
    "ID_ANY",
    "IdMatch",
    "Identity",
    "IdentityError",
    "best_match",
    "certificate_identities",
    "certificate_matches",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# strongSwan identification.h: ID_ANY is type 0, never sent on the wire
ID_ANY = 0


class IdMatch(IntEnum):
    """How well an identity matches a (possibly wildcard) pattern; strongSwan identification.h id_match_t."""

    NONE = 0
    ANY = 1
    MAX_WILDCARDS = 2
    ONE_WILDCARD = 19
    PERFECT = 20


class IdentityError(ValueError):
    """An identity string or ID payload that is not a valid identity."""


_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*\Z")  # X.680 §41.4 PrintableString


@dataclass(frozen=True)
class _Rdn:
    keys: tuple[str, ...]
    oid: ObjectIdentifier
    asn1: _ASN1Type


# strongSwan identification.c x501rdns: keys (case-insensitive), first one is printed; string types
_RDNS = (
    _Rdn(("C",), NameOID.COUNTRY_NAME, _ASN1Type.PrintableString),
    _Rdn(("ST",), NameOID.STATE_OR_PROVINCE_NAME, _ASN1Type.PrintableString),
    _Rdn(("L",), NameOID.LOCALITY_NAME, _ASN1Type.PrintableString),
    _Rdn(("O",), NameOID.ORGANIZATION_NAME, _ASN1Type.PrintableString),
    _Rdn(("OU",), NameOID.ORGANIZATIONAL_UNIT_NAME, _ASN1Type.PrintableString),
    _Rdn(("CN",), NameOID.COMMON_NAME, _ASN1Type.PrintableString),
    _Rdn(("serialNumber", "SN"), NameOID.SERIAL_NUMBER, _ASN1Type.PrintableString),
    _Rdn(("E", "Email", "emailAddress"), NameOID.EMAIL_ADDRESS, _ASN1Type.IA5String),
    _Rdn(("DC",), NameOID.DOMAIN_COMPONENT, _ASN1Type.PrintableString),
    _Rdn(("UID",), NameOID.USER_ID, _ASN1Type.PrintableString),
    _Rdn(("S",), NameOID.SURNAME, _ASN1Type.PrintableString),
    _Rdn(("G",), NameOID.GIVEN_NAME, _ASN1Type.PrintableString),
    _Rdn(("T",), NameOID.TITLE, _ASN1Type.PrintableString),
    _Rdn(("dnQualifier",), NameOID.DN_QUALIFIER, _ASN1Type.PrintableString),
)
_RDN_BY_KEY = {key.lower(): rdn for rdn in _RDNS for key in rdn.keys}
_RDN_BY_OID = {rdn.oid: rdn for rdn in _RDNS}
_RDN_KEYS = ", ".join(key for rdn in _RDNS for key in rdn.keys)

# strongSwan identification.c create_from_string_with_prefix_type
_PREFIXES = {
    "ipv4": IdType.ID_IPV4_ADDR,
    "ipv6": IdType.ID_IPV6_ADDR,
    "rfc822": IdType.ID_RFC822_ADDR,
    "email": IdType.ID_RFC822_ADDR,
    "userfqdn": IdType.ID_RFC822_ADDR,
    "fqdn": IdType.ID_FQDN,
    "dns": IdType.ID_FQDN,
    "asn1dn": IdType.ID_DER_ASN1_DN,
    "asn1gn": IdType.ID_DER_ASN1_GN,
    "keyid": IdType.ID_KEY_ID,
}
_BINARY_TYPES: dict[int, str] = {IdType.ID_IPV4_ADDR: "10.0.0.1 or ipv4:#0a000001", IdType.ID_IPV6_ADDR: "2001:db8::1",
                 IdType.ID_DER_ASN1_DN: "C=CH, O=Lab, CN=gwa.lab",
                 IdType.ID_DER_ASN1_GN: "asn1gn:#<hex of the DER GeneralName>"}

# strongSwan identification_create_from_string: strings that mean "any identity"
_ANY_STRINGS = {"", "%any", "%any6", "0.0.0.0", "*", "::", "0::0"}

_SHA1_SIZE = 20


def _printable(data: bytes) -> str:
    # strongSwan chunk_printable: non-printable octets become '?'
    return "".join(chr(b) if 0x20 <= b < 0x7F else "?" for b in data)


def _from_hex(text: str, whole: str) -> bytes:
    digits = text.replace(":", "").replace(" ", "")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise IdentityError(f"identity '{whole}': '{text}' after '#' is not hex") from None


def _split_dn(text: str) -> list[str]:
    # strongSwan identification.c atodn: '/' separates RDNs if the string starts with one, ',' otherwise
    sep = "/" if text.lstrip().startswith("/") else ","
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    if sep == "/":
        parts = parts[1:]
    return parts


def _parse_dn(text: str) -> x509.Name:
    attributes = []
    for part in _split_dn(text):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise IdentityError(f"DN '{text}': '{part.strip()}' is not of the form KEY=value")
        # strongSwan identification.c atodn: blanks and '=' before a value are skipped
        value = value.lstrip(" =").rstrip(" ")
        rdn = _RDN_BY_KEY.get(key.lower())
        if rdn is not None:
            oid, asn1 = rdn.oid, rdn.asn1
        elif re.fullmatch(r"[012](\.\d+)+", key):
            oid, asn1 = ObjectIdentifier(key), _ASN1Type.PrintableString
        else:
            raise IdentityError(f"DN '{text}': unknown RDN key '{key}' (known: {_RDN_KEYS}, or a dotted OID)")
        if asn1 == _ASN1Type.PrintableString and not _PRINTABLE.match(value):
            asn1 = _ASN1Type.UTF8String
        if oid == NameOID.COUNTRY_NAME and len(value) not in (0, 2) and value != "*":
            raise IdentityError(f"DN '{text}': C={value} must be a two-letter country code such as CH")
        try:
            with warnings.catch_warnings():
                # strongSwan test_identification.c: an empty C= is a valid DN
                warnings.simplefilter("ignore", UserWarning)
                attributes.append(x509.NameAttribute(oid, value, asn1, _validate=False))
        except (TypeError, ValueError) as exc:
            raise IdentityError(f"DN '{text}': {key}={value}: {exc}") from None
    if not attributes:
        raise IdentityError(f"DN '{text}' holds no RDN")
    return x509.Name(attributes)


def _name_from_der(data: bytes) -> x509.Name:
    # cryptography's own DER reader (x509.Name.from_bytes, cryptography >= 50); ValueError when malformed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return x509.Name.from_bytes(data)


_RdnEntry = tuple[ObjectIdentifier, _ASN1Type | None, str]  # OID, string type, value


def _rdn_entries(name: x509.Name) -> list[_RdnEntry]:
    return [(a.oid, a._type, a.value if isinstance(a.value, str) else a.value.hex())
            for rdn in name.rdns for a in rdn]


def _format_dn(name: x509.Name) -> str:
    # strongSwan identification.c dntoa: "KEY=value" joined by ", " in encoding order, unknown OIDs as hex
    parts = []
    for oid, _, value in _rdn_entries(name):
        rdn = _RDN_BY_OID.get(oid)
        key = rdn.keys[0] if rdn else ":".join(f"{b:02x}" for b in oid_content(oid.dotted_string))
        parts.append(f"{key}={_printable(value.encode('utf-8'))}")
    return ", ".join(parts)


def _values_equal(oid: ObjectIdentifier, this: _RdnEntry, other: _RdnEntry) -> bool:
    # strongSwan identification.c compare_dn: case-insensitive for printableStrings and email RDNs
    _, t_type, t_value = this
    _, o_type, o_value = other
    if t_type == o_type and (t_type == _ASN1Type.PrintableString or
                             (t_type == _ASN1Type.IA5String and oid == NameOID.EMAIL_ADDRESS)):
        return t_value.lower() == o_value.lower()
    return t_value == o_value


@dataclass(frozen=True)
class Identity:
    """An IKE identity: an ID type (RFC 7296 §3.5, or `ID_ANY` = 0 for `%any`) and its data.

    Equality is by type and octets; use `matches` for strongSwan's comparison rules.
    """

    id_type: int
    data: bytes = b""

    # ------------------------------------------------------------ constructors

    @classmethod
    def any(cls) -> Identity:
        """`%any`: matches every identity; never sent on the wire."""
        return cls(ID_ANY, b"")

    @classmethod
    def from_address(cls, address: str | IPAddress) -> Identity:
        """ID_IPV4_ADDR or ID_IPV6_ADDR for an IP address."""
        ip = ipaddress.ip_address(address)
        return cls(IdType.ID_IPV4_ADDR if ip.version == 4 else IdType.ID_IPV6_ADDR, ip.packed)

    @classmethod
    def from_dn(cls, name: x509.Name) -> Identity:
        """ID_DER_ASN1_DN holding the DER encoding of `name`."""
        return cls(IdType.ID_DER_ASN1_DN, name.public_bytes())

    @classmethod
    def parse(cls, text: str) -> Identity:
        """An identity in strongSwan's syntax (swanctl.conf(5), `local.id`); raises IdentityError.

        Differs from strongSwan where it would silently fall back to an ID_KEY_ID holding the
        text (an unparsable DN, an unknown `prefix:`): here those are errors. `ipv4:`, `ipv6:`
        and `asn1dn:` take only `#hex`, since strongSwan would send their text unconverted.
        """
        if not isinstance(text, str):
            raise IdentityError(f"identity must be a string, not {type(text).__name__}")
        text = text.strip()
        prefixed = cls._parse_prefixed(text)
        if prefixed is not None:
            return prefixed
        if "=" in text:
            return cls.from_dn(_parse_dn(text))
        if "@" not in text:
            if text in _ANY_STRINGS:
                return cls.any()
            try:
                return cls.from_address(text)
            except ValueError:
                pass
            if ":" in text:
                head = text.split(":", 1)[0]
                raise IdentityError(
                    f"identity '{text}' is neither an IPv6 address nor a known type prefix "
                    f"('{head}:' is not one of {', '.join(p + ':' for p in _PREFIXES)})")
            if "/" in text:
                try:
                    ipaddress.ip_network(text, strict=False)
                except ValueError:
                    pass
                else:
                    raise IdentityError(f"identity '{text}' is a subnet; subnet identities are not "
                                        f"supported, write a single address")
            return cls(IdType.ID_FQDN, text.encode("utf-8"))
        if text.startswith("@"):
            rest = text[1:]
            if rest.startswith("#"):
                return cls(IdType.ID_KEY_ID, _from_hex(rest[1:], text))
            if rest.startswith("@"):
                return cls(IdType.ID_RFC822_ADDR, rest[1:].encode("utf-8"))
            return cls(IdType.ID_FQDN, rest.encode("utf-8"))
        return cls(IdType.ID_RFC822_ADDR, text.encode("utf-8"))

    @classmethod
    def _parse_prefixed(cls, text: str) -> Identity | None:
        numeric = re.match(r"\{(0[xX][0-9a-fA-F]+|\d+)\}:", text)
        if numeric:
            id_type, rest = int(numeric.group(1), 0), text[numeric.end():]
        else:
            head, colon, rest = text.partition(":")
            if not colon or head.lower() not in _PREFIXES:
                return None
            id_type = _PREFIXES[head.lower()]
        if rest.startswith("#"):
            data = _from_hex(rest[1:], text)
        elif id_type in _BINARY_TYPES:
            raise IdentityError(f"identity '{text}': strongSwan would send '{rest}' as text, not as an "
                                f"{IdType(id_type).name}; write {_BINARY_TYPES[id_type]}")
        else:
            data = rest.encode("utf-8")
        identity = cls(id_type, data)
        identity._check()
        return identity

    @classmethod
    def from_payload(cls, payload: Identification) -> Identity:
        """The identity an IDi or IDr payload carries; raises IdentityError if it is malformed."""
        return cls.from_id_payload(int(payload.id_type), payload.data)

    @classmethod
    def from_id_payload(cls, id_type: int, data: bytes) -> Identity:
        """The identity for an ID payload's (type, data); raises IdentityError if it is malformed."""
        if id_type == ID_ANY:
            raise IdentityError("ID type 0 is reserved (RFC 7296 §3.5)")
        identity = cls(int(id_type), bytes(data))
        identity._check()
        return identity

    def _check(self) -> None:
        if self.id_type == IdType.ID_IPV4_ADDR and len(self.data) != 4:
            raise IdentityError(f"ID_IPV4_ADDR must hold 4 octets, not {len(self.data)}")
        if self.id_type == IdType.ID_IPV6_ADDR and len(self.data) != 16:
            raise IdentityError(f"ID_IPV6_ADDR must hold 16 octets, not {len(self.data)}")
        if self.id_type == IdType.ID_DER_ASN1_DN:
            try:
                _name_from_der(self.data)
            except (ValueError, IndexError, UnicodeDecodeError) as exc:
                raise IdentityError(f"ID_DER_ASN1_DN is not a DER-encoded X.501 Name: {exc}") from None

    # ------------------------------------------------------------ conversions

    def to_payload(self, payload_class: type[Identification] = IDi) -> Identification:
        """An IDi (default) or IDr payload for this identity. `%any` cannot be sent."""
        if self.is_any:
            raise IdentityError("%any cannot be sent in an ID payload; configure an id or use the IP address")
        if payload_class not in (IDi, IDr, Identification):
            raise TypeError("payload_class must be IDi or IDr")
        return payload_class(id_type=self.id_type, data=self.data)

    @property
    def is_any(self) -> bool:
        return self.id_type == ID_ANY

    @property
    def type_name(self) -> str:
        if self.is_any:
            return "ID_ANY"
        try:
            return IdType(self.id_type).name
        except ValueError:
            return f"ID_TYPE({self.id_type})"

    @property
    def dn(self) -> x509.Name | None:
        """The X.501 Name of an ID_DER_ASN1_DN identity, else None."""
        if self.id_type != IdType.ID_DER_ASN1_DN:
            return None
        return _name_from_der(self.data)

    @property
    def address(self) -> IPAddress | None:
        """The address of an ID_IPV4_ADDR / ID_IPV6_ADDR identity, else None."""
        if self.id_type == IdType.ID_IPV4_ADDR and len(self.data) == 4:
            return ipaddress.IPv4Address(self.data)
        if self.id_type == IdType.ID_IPV6_ADDR and len(self.data) == 16:
            return ipaddress.IPv6Address(self.data)
        return None

    @property
    def has_wildcards(self) -> bool:
        """strongSwan contains_wildcards: `%any`, a `*` in an FQDN/email, or an RDN value `*`."""
        if self.is_any:
            return True
        if self.id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
            return b"*" in self.data
        if self.id_type == IdType.ID_DER_ASN1_DN:
            try:
                return any(value == "*" for _, _, value in _rdn_entries(_name_from_der(self.data)))
            except (ValueError, IndexError, UnicodeDecodeError):
                return False
        return False

    def __str__(self) -> str:
        # strongSwan identification.c identification_printf_hook
        if self.is_any:
            return "%any"
        if self.id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
            address = self.address
            return str(address) if address else f"(invalid {self.type_name})"
        if self.id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
            return _printable(self.data)
        if self.id_type == IdType.ID_DER_ASN1_DN:
            if not self.data:
                return ""
            try:
                return _format_dn(_name_from_der(self.data))
            except (ValueError, IndexError, UnicodeDecodeError):
                return "(invalid ID_DER_ASN1_DN)"
        if self.id_type == IdType.ID_KEY_ID:
            if all(0x20 <= b < 0x7F for b in self.data) and len(self.data) != _SHA1_SIZE:
                return self.data.decode("ascii")
            return ":".join(f"{b:02x}" for b in self.data)
        if self.id_type == IdType.ID_DER_ASN1_GN:
            return "(ASN.1 general name)"
        return f"(unknown ID type: {self.id_type})"

    # ------------------------------------------------------------ matching

    def matches(self, pattern: Identity) -> IdMatch:
        """How well this (concrete) identity matches `pattern`, which may hold wildcards.

        strongSwan identification.c matches_*: `%any` gives ANY; equal identities PERFECT (FQDN
        and email case-insensitively); a pattern `*.lab` / `*@lab` matching the tail gives
        ONE_WILDCARD, a bare `*` ANY; a DN pattern with n RDN values `*` gives PERFECT - n
        (not below MAX_WILDCARDS); anything else NONE. Not symmetric: `gwa.lab` matches
        `*.lab`, but `*.lab` does not match `gwa.lab`.
        """
        if pattern.is_any:
            return IdMatch.ANY
        if self.is_any or self.id_type != pattern.id_type:
            return IdMatch.NONE
        if self.id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
            return self._match_string(pattern)
        if self.id_type == IdType.ID_DER_ASN1_DN:
            return self._match_dn(pattern)
        return IdMatch.PERFECT if self.data == pattern.data else IdMatch.NONE

    def _match_string(self, pattern: Identity) -> IdMatch:
        mine, theirs = self.data.lower(), pattern.data.lower()
        if mine == theirs and b"\x00" not in mine:
            return IdMatch.PERFECT
        if not theirs or len(mine) < len(theirs) or not theirs.startswith(b"*"):
            return IdMatch.NONE
        if theirs == b"*":
            return IdMatch.ANY
        return IdMatch.ONE_WILDCARD if mine.endswith(theirs[1:]) else IdMatch.NONE

    def _match_dn(self, pattern: Identity) -> IdMatch:
        if self.data == pattern.data:
            return IdMatch.PERFECT
        try:
            mine, theirs = _rdn_entries(_name_from_der(self.data)), _rdn_entries(_name_from_der(pattern.data))
        except (ValueError, IndexError, UnicodeDecodeError):
            return IdMatch.NONE
        if len(mine) != len(theirs):
            return IdMatch.NONE
        wildcards = 0
        for this, other in zip(mine, theirs):
            if this[0] != other[0]:
                return IdMatch.NONE
            if other[2] == "*":
                wildcards += 1
            elif not _values_equal(this[0], this, other):
                return IdMatch.NONE
        wildcards = min(wildcards, IdMatch.ONE_WILDCARD - IdMatch.MAX_WILDCARDS)
        return _as_match(IdMatch.PERFECT - wildcards)


def _as_match(value: int) -> IdMatch:
    """IdMatch names only strongSwan's named levels; DN matches with 2..17 wildcards stay plain ints."""
    try:
        return IdMatch(value)
    except ValueError:
        return value  # type: ignore[return-value]


def certificate_identities(certificate: x509.Certificate) -> list[Identity]:
    """The identities a certificate vouches for: its subject DN, then its subjectAltNames
    (dNSName -> ID_FQDN, rfc822Name -> ID_RFC822_ADDR, iPAddress -> ID_IPV4/6_ADDR,
    directoryName -> ID_DER_ASN1_DN), as strongSwan's x509 plugin lists them."""
    identities = [Identity.from_dn(certificate.subject)]
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return identities
    for name in san:
        if isinstance(name, x509.DNSName):
            identities.append(Identity(IdType.ID_FQDN, name.value.encode("utf-8")))
        elif isinstance(name, x509.RFC822Name):
            identities.append(Identity(IdType.ID_RFC822_ADDR, name.value.encode("utf-8")))
        elif isinstance(name, x509.IPAddress) and not isinstance(name.value, (ipaddress.IPv4Network,
                                                                             ipaddress.IPv6Network)):
            identities.append(Identity.from_address(name.value))
        elif isinstance(name, x509.DirectoryName):
            identities.append(Identity.from_dn(name.value))
    return identities


def certificate_matches(certificate: x509.Certificate, identity: Identity) -> IdMatch:
    """How well a certificate's subject or subjectAltNames match `identity` (which may hold
    wildcards): the best `matches` over `certificate_identities` (strongSwan x509_cert has_subject).
    A peer whose ID payload does not match its certificate (NONE) must not be authenticated."""
    return max((own.matches(identity) for own in certificate_identities(certificate)), default=IdMatch.NONE)


def best_match(identity: Identity, patterns: Iterable[Identity]) -> IdMatch:
    """The best `identity.matches(p)` over `patterns` (NONE when there are none)."""
    return max((identity.matches(p) for p in patterns), default=IdMatch.NONE)
