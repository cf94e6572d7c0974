"""EAP-TTLS version 0 (RFC 5281): a TLS 1.2 tunnel in which only the server shows a
certificate, then inside it the user's credentials as Diameter-style AVPs (§10), the MSK
exported from the TLS master secret with the label "ttls keying material" (§8).

The TLS tunnel and its EAP framing (Flags L M S and the Version bits, §9.1) are EAP-TLS's
(lab.ike.eap.tls). Inside the tunnel, phase 2 (§11.2) carries one of:
- `eap`: an EAP conversation in EAP-Message AVPs (§11.2.1): the client's EAP-Response/Identity,
  then the method the server asks for (EAP-MD5 or EAP-MSCHAPv2). This is what strongSwan's
  eap-ttls plugin does on both sides (its server asks for charon.plugins.eap-ttls.phase2_method).
- `pap`: User-Name and User-Password (§11.2.5): the password itself, protected only by TLS.
- `mschapv2`: User-Name, MS-CHAP-Challenge and MS-CHAP2-Response (RFC 2548 vendor AVPs), the
  challenge derived from the TLS keys (§11.2.4); the server proves it knew the password with
  MS-CHAP2-Success. strongSwan has neither PAP nor this; FreeRADIUS and Windows do.

Our server takes any of the three (the inner EAP method is `phase2_method`, md5 by default as
strongSwan's); our client sends the one it is configured with.
"""
from __future__ import annotations

import hmac
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from cryptography import x509

from ..const import EapCode, EapType, name_of
from . import EapError, EapPacket, EapPeer, PeerMethod, ServerMethod
from .md5 import Md5Peer, Md5Server
from .mschapv2 import MsChapV2Peer, MsChapV2Server
from .mschapv2_crypto import generate_authenticator_response, generate_nt_response
from .tls import FLAG_L, FLAG_M, FLAG_S, _TlsEndpoint

MSK_LABEL = b"ttls keying material"  # RFC 5281 §8
CHALLENGE_LABEL = b"ttls challenge"  # RFC 5281 §11.1
VERSION = 0  # RFC 5281 §9.1: the low three bits of Flags
VERSION_BITS = 0x07
FLAG_V, FLAG_MANDATORY = 0x80, 0x40  # RFC 5281 §10.1: AVP Flags
VENDOR_MICROSOFT = 311  # RFC 2548 §2
PHASE2 = ("eap", "pap", "mschapv2")
INNER_EAP_METHODS = ("md5", "mschapv2")


class Avp(IntEnum):
    # RFC 5281 §10 / RFC 2865 §5 (RADIUS attribute numbers are AVP codes), RFC 3579 §3.1
    USER_NAME = 1
    USER_PASSWORD = 2
    REPLY_MESSAGE = 18
    EAP_MESSAGE = 79


class MsAvp(IntEnum):
    # RFC 2548 §2.3, Vendor-Id 311
    MS_CHAP_ERROR = 2
    MS_CHAP_CHALLENGE = 11
    MS_CHAP2_RESPONSE = 25
    MS_CHAP2_SUCCESS = 26


@dataclass(frozen=True)
class Attribute:
    """One AVP (RFC 5281 §10.1): Code, Flags (V vendor, M mandatory), Length, Vendor-ID, Data."""

    code: int
    data: bytes
    vendor: int | None = None
    mandatory: bool = True

    def serialize(self) -> bytes:
        flags = (FLAG_V if self.vendor is not None else 0) | (FLAG_MANDATORY if self.mandatory else 0)
        header = 12 if self.vendor is not None else 8
        length = header + len(self.data)  # §10.1: the AVP Length excludes the padding
        out = struct.pack("!IB", self.code, flags) + length.to_bytes(3, "big")
        if self.vendor is not None:
            out += struct.pack("!I", self.vendor)
        return out + self.data + bytes(-len(self.data) % 4)  # §10.2: padded to a 4-octet boundary

    def __str__(self) -> str:
        if self.vendor == VENDOR_MICROSOFT:
            return name_of(MsAvp, self.code)
        if self.vendor is None:
            return name_of(Avp, self.code)
        return f"vendor {self.vendor} AVP {self.code}"


def encode_avps(avps: Sequence[Attribute]) -> bytes:
    return b"".join(a.serialize() for a in avps)


def parse_avps(data: bytes) -> list[Attribute]:
    """The AVPs of one TLS application data message; raises EapError on bad octets."""
    avps, offset = [], 0
    while offset < len(data):
        if len(data) - offset < 8:
            raise EapError(f"EAP-TTLS AVP header cut short at octet {offset}")
        code, flags = struct.unpack("!IB", data[offset:offset + 5])
        length = int.from_bytes(data[offset + 5:offset + 8], "big")
        header = 12 if flags & FLAG_V else 8
        if length < header or offset + length > len(data):
            raise EapError(f"EAP-TTLS AVP {code} at octet {offset} says {length} octets, which does not fit")
        vendor = struct.unpack("!I", data[offset + 8:offset + 12])[0] if flags & FLAG_V else None
        avps.append(Attribute(code, bytes(data[offset + header:offset + length]), vendor, bool(flags & FLAG_MANDATORY)))
        offset += length + (-length % 4)
    return avps


def _find(avps: Sequence[Attribute], code: int, vendor: int | None = None) -> bytes | None:
    return next((a.data for a in avps if a.code == code and a.vendor == vendor), None)


def _eap_message(avps: Sequence[Attribute]) -> bytes | None:
    """The EAP packet of the EAP-Message AVPs, joined: a RADIUS server (FreeRADIUS) cuts a long
    one into 253-octet AVPs as it would RADIUS attributes (RFC 3579 §3.1), strongSwan joins them."""
    pieces = [a.data for a in avps if a.code == Avp.EAP_MESSAGE and a.vendor is None]
    return b"".join(pieces) if pieces else None


def _eap_avps(packet: EapPacket) -> list[Attribute]:
    return [Attribute(Avp.EAP_MESSAGE, packet.serialize())]


def _check_version(type_data: bytes, side: str) -> None:
    if not type_data:
        raise EapError(f"EAP-TTLS {side} without its Flags octet")
    if type_data[0] & VERSION_BITS != VERSION:
        # RFC 5281 §9.2: a version we do not speak; strongSwan refuses it the same way
        raise EapError(f"EAP-TTLS version {type_data[0] & VERSION_BITS}: only version 0 is spoken here")


def _is_ack(type_data: bytes) -> bool:
    return len(type_data) == 1 and not type_data[0] & (FLAG_L | FLAG_M | FLAG_S)


def pap_password(password: bytes) -> bytes:
    """RFC 5281 §11.2.5: the password, padded with NULs to a multiple of 16 octets (RFC 2865 §5.2's
    hiding is not applied: TLS protects it)."""
    return password + bytes(-len(password) % 16)


def _unpad(password: bytes) -> bytes:
    return password.rstrip(b"\x00")


class TtlsPeer(PeerMethod):
    """The client: `phase2` is eap, pap or mschapv2; `user_name` and `password` the inner
    credentials; `check_server` judges the server's certificate chain (it must, RFC 5281 §7.2:
    the tunnel is only as good as the server it was made with)."""

    type = EapType.TTLS

    def __init__(self, user_name: bytes, password: bytes, phase2: str, random: Callable[[int], bytes],
                 check_server: Callable[[list[x509.Certificate]], None]) -> None:
        if phase2 not in PHASE2:
            raise EapError(f"unknown EAP-TTLS phase 2 '{phase2}' (one of {', '.join(PHASE2)})")
        self.tls = _TlsEndpoint(False, None, (), None, check_server, msk_label=MSK_LABEL, method="EAP-TTLS")
        self.user_name = user_name
        self.password = password
        self.phase2 = phase2
        self.random = random
        self.started = False
        self.phase2_sent = False
        self.phase2_done = False
        self.expected_success: bytes | None = None
        self.inner = EapPeer(user_name, {EapType.MD5_CHALLENGE: lambda: Md5Peer(password),
                                         EapType.MSCHAPV2: lambda: MsChapV2Peer(user_name, password, random)})

    def process(self, identifier: int, type_data: bytes) -> bytes:
        _check_version(type_data, "Request")
        if type_data[0] & FLAG_S and not self.started:
            self.started = True
            self.tls.start()  # RFC 5281 §9.2.1: the Start packet; our ClientHello answers it
            return self.tls.next_fragment()
        if _is_ack(type_data) and self.tls.outgoing:
            return self.tls.next_fragment()  # an acknowledgement of our fragment: the next one
        if not self.tls.receive(type_data):
            return bytes([VERSION])
        if self.tls.finished:
            self._phase2(self.tls.read_application())
        return self.tls.next_fragment()

    def _phase2(self, incoming: bytes) -> None:
        avps = parse_avps(incoming) if incoming else []
        if not self.phase2_sent:
            self.phase2_sent = True
            if self.phase2 == "pap":
                # RFC 5281 §11.2.5
                self.tls.write_application(encode_avps([Attribute(Avp.USER_NAME, self.user_name),
                                                        Attribute(Avp.USER_PASSWORD, pap_password(self.password))]))
                self.phase2_done = True
                return
            if self.phase2 == "mschapv2":
                self.tls.write_application(encode_avps(self._mschapv2_response()))
                return
            if not avps:
                # as strongSwan's eap_ttls_peer: an unasked EAP-Response/Identity opens phase 2
                self.tls.write_application(encode_avps(_eap_avps(
                    EapPacket(EapCode.RESPONSE, 0, EapType.IDENTITY, self.user_name))))
                return
        if not avps:
            return
        for avp in avps:
            if avp.mandatory and not self._understood(avp):
                raise EapError(f"the EAP-TTLS server sent an AVP we do not know, marked mandatory ({avp}); "
                               f"RFC 5281 §10.1 says to fail")
        reply = _find(avps, Avp.REPLY_MESSAGE)
        if self.phase2 == "mschapv2":
            self._mschapv2_success(avps)
            return
        eap = _eap_message(avps)
        if self.phase2 == "eap" and eap is not None:
            answer = self.inner.receive(EapPacket.parse(eap))
            if self.inner.failed:
                raise EapError("the EAP-TTLS server's inner EAP said Failure")
            if answer is not None:
                self.tls.write_application(encode_avps(_eap_avps(answer)))
            method = self.inner.method
            self.phase2_done = self.inner.succeeded or (method is not None and method.success_allowed)
            return
        text = f": {reply.decode('utf-8', 'replace')}" if reply else ""
        raise EapError(f"the EAP-TTLS server answered our {self.phase2.upper()} with something else{text}")

    def _understood(self, avp: Attribute) -> bool:
        if avp.vendor == VENDOR_MICROSOFT:
            return avp.code in (MsAvp.MS_CHAP2_SUCCESS, MsAvp.MS_CHAP_ERROR)
        return avp.vendor is None and avp.code in (Avp.EAP_MESSAGE, Avp.REPLY_MESSAGE)

    def _mschapv2_response(self) -> list[Attribute]:
        # RFC 5281 §11.2.4: challenge and Ident from the TLS keys, so no one outside the tunnel chose them
        material = self.tls.connection.export_keying_material(CHALLENGE_LABEL, 17)
        challenge, ident = material[:16], material[16]
        peer_challenge = self.random(16)
        nt_response = generate_nt_response(challenge, peer_challenge, self.user_name, self.password)
        self.ident = ident
        self.expected_success = generate_authenticator_response(self.password, nt_response, peer_challenge,
                                                                challenge, self.user_name)
        # RFC 2548 §2.3.2: Ident, Flags, Peer-Challenge, Reserved (8 zero octets), Response
        response = bytes([ident, 0]) + peer_challenge + bytes(8) + nt_response
        return [Attribute(Avp.USER_NAME, self.user_name),
                Attribute(MsAvp.MS_CHAP_CHALLENGE, challenge, VENDOR_MICROSOFT),
                Attribute(MsAvp.MS_CHAP2_RESPONSE, response, VENDOR_MICROSOFT)]

    def _mschapv2_success(self, avps: Sequence[Attribute]) -> None:
        error = _find(avps, MsAvp.MS_CHAP_ERROR, VENDOR_MICROSOFT)
        if error is not None:
            raise EapError(f"the EAP-TTLS server refused our MS-CHAPv2 response ({_text(error[1:])}): wrong password?")
        success = _find(avps, MsAvp.MS_CHAP2_SUCCESS, VENDOR_MICROSOFT)
        if success is None or self.expected_success is None:
            raise EapError("the EAP-TTLS server answered our MS-CHAPv2 response without MS-CHAP2-Success")
        # RFC 2548 §2.3.3: Ident, then "S=" and 40 hex digits; RFC 2759 §5: the server knew the password
        if success[0] != self.ident or not hmac.compare_digest(success[1:43].upper(), self.expected_success):
            raise EapError("the EAP-TTLS server's MS-CHAP2-Success is wrong: it does not know our password")
        self.phase2_done = True  # §11.2.4: our answer is an EAP-TTLS packet with no data

    @property
    def success_allowed(self) -> bool:
        # RFC 3748 §4.2: Success only once the tunnel stands, its MSK exists and phase 2 is over
        return self.tls.finished and self.tls.msk is not None and not self.tls.outgoing and self.phase2_done

    @property
    def msk(self) -> bytes | None:  # type: ignore[override]
        return self.tls.msk if self.success_allowed else None


class TtlsServer(ServerMethod):
    """The server: our certificate for the tunnel, `lookup` (user name -> password) for phase 2,
    `phase2_method` the inner EAP method asked for when the client opens phase 2 with EAP."""

    type = EapType.TTLS

    def __init__(self, certificate: x509.Certificate, chain: Sequence[x509.Certificate], key: Any,
                 lookup: Callable[[bytes], bytes | None], random: Callable[[int], bytes],
                 phase2_method: str = "md5") -> None:
        if phase2_method not in INNER_EAP_METHODS:
            raise EapError(f"unknown EAP-TTLS phase2_method '{phase2_method}' (one of {', '.join(INNER_EAP_METHODS)})")
        # RFC 5281 §7.1: the client may stay without a certificate (strongSwan: request_peer_auth = no)
        self.tls = _TlsEndpoint(True, certificate, chain, key, None, msk_label=MSK_LABEL, request_cert=False,
                                method="EAP-TTLS")
        self.lookup = lookup
        self.random = random
        self.phase2_method = phase2_method
        self.inner: ServerMethod | None = None
        self.inner_identifier = 0
        self.inner_name: bytes | None = None
        self.awaiting_ack = False  # MS-CHAP2-Success sent, the client's empty answer ends phase 2
        self.phase2: str | None = None  # which phase 2 the client chose

    def initiate(self, identifier: int) -> bytes:
        return bytes([FLAG_S | VERSION])  # RFC 5281 §9.2.1: EAP-TTLS Start

    def process(self, identifier: int, type_data: bytes) -> bytes | None:
        _check_version(type_data, "Response")
        if _is_ack(type_data):
            if self.tls.outgoing:
                return self.tls.next_fragment()  # the peer acknowledged our fragment
            if self.awaiting_ack:
                self._succeed()
                return None  # RFC 5281 §11.2.4: the client accepted MS-CHAP2-Success
            raise EapError("EAP-TTLS peer sent nothing where phase 2 was due")
        if not self.tls.receive(type_data):
            return bytes([VERSION])
        if self.tls.finished:
            incoming = self.tls.read_application()
            if incoming and self._phase2(parse_avps(incoming)):
                self._succeed()
                return None
        return self.tls.next_fragment()

    def _succeed(self) -> None:
        self.msk = self.tls.msk
        self.identity = self.inner_name

    def _phase2(self, avps: list[Attribute]) -> bool:
        """True: the client is authenticated. Raises EapError when it is not."""
        for avp in avps:
            if avp.mandatory and not self._understood(avp):
                # RFC 5281 §10.1: an unknown AVP marked mandatory fails the negotiation
                raise EapError(f"EAP-TTLS client sent an AVP we do not know, marked mandatory ({avp})")
        eap = _eap_message(avps)
        if eap is not None:
            self.phase2 = "eap"
            return self._inner_eap(EapPacket.parse(eap))
        name = _find(avps, Avp.USER_NAME)
        if name is None:
            raise EapError("EAP-TTLS phase 2 without a User-Name AVP (RFC 5281 §11.2)")
        self.inner_name = name
        password = _find(avps, Avp.USER_PASSWORD)
        if password is not None:
            self.phase2 = "pap"
            secret = self.lookup(name)
            if secret is None:
                return self._refuse(f"no EAP secret for '{_text(name)}' in the secrets section")
            if not hmac.compare_digest(_unpad(password), secret):
                return self._refuse(f"EAP-TTLS PAP password of '{_text(name)}' does not match (wrong password)")
            return True
        challenge = _find(avps, MsAvp.MS_CHAP_CHALLENGE, VENDOR_MICROSOFT)
        response = _find(avps, MsAvp.MS_CHAP2_RESPONSE, VENDOR_MICROSOFT)
        if challenge is not None and response is not None:
            self.phase2 = "mschapv2"
            self._mschapv2(name, challenge, response)
            return False
        raise EapError("EAP-TTLS phase 2 carried neither EAP, nor a PAP password, nor an MS-CHAPv2 response")

    def _understood(self, avp: Attribute) -> bool:
        if avp.vendor == VENDOR_MICROSOFT:
            return avp.code in (MsAvp.MS_CHAP_CHALLENGE, MsAvp.MS_CHAP2_RESPONSE)
        return avp.vendor is None and avp.code in (Avp.USER_NAME, Avp.USER_PASSWORD, Avp.EAP_MESSAGE)

    def _refuse(self, reason: str) -> bool:
        self.refusal = reason
        raise EapError(reason)

    def _mschapv2(self, name: bytes, challenge: bytes, response: bytes) -> None:
        material = self.tls.connection.export_keying_material(CHALLENGE_LABEL, 17)
        # RFC 5281 §11.2.4: the challenge and Ident must be the ones the TLS keys give
        if len(response) != 50 or not hmac.compare_digest(challenge, material[:16]) or response[0] != material[16]:
            raise EapError("EAP-TTLS MS-CHAPv2 challenge is not the one derived from the tunnel (RFC 5281 §11.2.4)")
        peer_challenge, nt_response = response[2:18], response[26:50]
        secret = self.lookup(name)
        if secret is None:
            self._refuse(f"no EAP secret for '{_text(name)}' in the secrets section")
        assert secret is not None
        if not hmac.compare_digest(generate_nt_response(challenge, peer_challenge, name, secret), nt_response):
            self._refuse(f"EAP-TTLS MS-CHAPv2 response of '{_text(name)}' does not match (wrong password)")
        auth = generate_authenticator_response(secret, nt_response, peer_challenge, challenge, name)
        self.tls.write_application(encode_avps([Attribute(MsAvp.MS_CHAP2_SUCCESS, bytes([response[0]]) + auth,
                                                          VENDOR_MICROSOFT)]))
        self.awaiting_ack = True

    def _inner_eap(self, packet: EapPacket) -> bool:
        if packet.code != EapCode.RESPONSE:
            raise EapError(f"EAP-TTLS client tunneled an EAP {name_of(EapCode, packet.code)}, not a Response")
        if self.inner is None:
            if packet.type != EapType.IDENTITY:
                raise EapError(f"EAP-TTLS client opened phase 2 with {name_of(EapType, packet.type or 0)}, "
                               f"not EAP-Identity")
            self.inner_name = packet.type_data  # RFC 3748 §5.1
            who = packet.type_data
            self.inner = (Md5Server(self.lookup(who), self.random, who) if self.phase2_method == "md5"
                          else MsChapV2Server(self.lookup, self.random, who))
            self.inner_identifier = self.random(1)[0]
            request = EapPacket(EapCode.REQUEST, self.inner_identifier, self.inner.type,
                                self.inner.initiate(self.inner_identifier))
            self.tls.write_application(encode_avps(_eap_avps(request)))
            return False
        if packet.identifier != self.inner_identifier:
            raise EapError(f"EAP-TTLS inner Response id {packet.identifier:#04x} answers no Request")
        if packet.type != self.inner.type:
            wanted = name_of(EapType, packet.type or 0)
            raise EapError(f"EAP-TTLS client answered inner {name_of(EapType, self.inner.type)} with {wanted}")
        try:
            following = self.inner.process(packet.identifier, packet.type_data)
        except EapError:
            if self.inner.refusal:
                self.refusal = self.inner.refusal
            raise
        if following is None:
            return True  # as strongSwan's eap_ttls_server: the inner method done, the outer EAP-Success follows
        if self.inner.refusal:
            self.refusal = self.inner.refusal
        self.inner_identifier = (self.inner_identifier + 1) & 0xFF
        request = EapPacket(EapCode.REQUEST, self.inner_identifier, self.inner.type, following)
        self.tls.write_application(encode_avps(_eap_avps(request)))
        return False


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")

