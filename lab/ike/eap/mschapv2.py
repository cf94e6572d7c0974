"""EAP-MSCHAPv2 (draft-kamath-pppext-eap-mschapv2: MS-CHAP-v2 of RFC 2759 in EAP), the
method Windows and most road warriors use with a user name and password. Its MSK is made
the way strongSwan makes it (lab.ike.eap.mschapv2_crypto.msk).

Type-Data: OpCode, MS-CHAPv2-ID, MS-Length, then per OpCode (RFC 2759 §4-§6):
Challenge (Value-Size 16, Challenge, Name), Response (Value-Size 49, Peer-Challenge,
8 reserved, NT-Response, Flags, Name), Success ("S=<auth> M=<message>"), Failure
("E=691 R=0 C=... V=3 M=..."); the peer's Success and Failure answers are the OpCode alone.
"""
from __future__ import annotations

import hmac
import struct
from collections.abc import Callable
from enum import IntEnum

from ..const import EapType
from . import EapError, PeerMethod, ServerMethod
from .mschapv2_crypto import generate_authenticator_response, generate_nt_response, msk

SERVER_NAME = b"ipsec-lab"
SUCCESS_MESSAGE = b"M=Welcome to ipsec-lab"


class OpCode(IntEnum):
    # draft-kamath-pppext-eap-mschapv2 §2; RFC 2759 §3
    CHALLENGE = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4
    CHANGE_PASSWORD = 7


def _packet(opcode: int, ms_id: int, data: bytes) -> bytes:
    # MS-Length: the length of the EAP packet minus 5, i.e. of the Type-Data
    return struct.pack("!BBH", opcode, ms_id, 4 + len(data)) + data


def _header(type_data: bytes) -> tuple[int, int, bytes]:
    if len(type_data) < 4:
        raise EapError(f"EAP-MSCHAPv2 packet of {len(type_data)} octets is shorter than its header")
    opcode, ms_id, ms_length = struct.unpack("!BBH", type_data[:4])
    if ms_length != len(type_data):
        raise EapError(f"EAP-MSCHAPv2 MS-Length says {ms_length}, the packet has {len(type_data)} octets")
    return opcode, ms_id, type_data[4:]


class MsChapV2Peer(PeerMethod):
    type = EapType.MSCHAPV2

    def __init__(self, user_name: bytes, password: bytes, random: Callable[[int], bytes]) -> None:
        self.user_name = user_name
        self.password = password
        self.random = random
        self.expected: bytes | None = None
        self.done = False
        self.nt_response = b""

    def process(self, identifier: int, type_data: bytes) -> bytes:
        if not type_data:
            raise EapError("empty EAP-MSCHAPv2 Request")
        opcode = type_data[0]
        if opcode == OpCode.SUCCESS and self.expected is not None:
            return self._success(type_data)
        if opcode == OpCode.FAILURE:
            text = type_data[4:].decode("ascii", "replace")
            raise EapError(f"server rejected our MS-CHAPv2 response ({text.strip() or 'Failure'}): wrong password?")
        if opcode != OpCode.CHALLENGE or self.expected is not None:
            raise EapError(f"unexpected EAP-MSCHAPv2 OpCode {opcode}")
        _, ms_id, data = _header(type_data)
        if len(data) < 17 or data[0] != 16:
            raise EapError("EAP-MSCHAPv2 Challenge without a 16-octet challenge")
        authenticator_challenge = data[1:17]
        peer_challenge = self.random(16)
        self.nt_response = generate_nt_response(authenticator_challenge, peer_challenge, self.user_name, self.password)
        self.expected = generate_authenticator_response(self.password, self.nt_response, peer_challenge,
                                                        authenticator_challenge, self.user_name)
        self.msk_candidate = msk(self.password, self.nt_response)
        value = peer_challenge + bytes(8) + self.nt_response + b"\x00"  # RFC 2759 §4: reserved and flags zero
        return _packet(OpCode.RESPONSE, ms_id, bytes([len(value)]) + value + self.user_name)

    def _success(self, type_data: bytes) -> bytes:
        _, _, data = _header(type_data)
        fields = data.rstrip(b"\x00").split(b" ")
        auth = next((f for f in fields if f.startswith(b"S=")), b"")
        # RFC 2759 §5: the peer checks the authenticator response: the server knows the password too
        if not hmac.compare_digest(auth.upper(), self.expected or b""):
            raise EapError("the server's MS-CHAPv2 authenticator response is wrong: it does not know our password")
        self.done = True
        self.msk = self.msk_candidate
        return bytes([OpCode.SUCCESS])  # draft-kamath §2: the Success Response is the OpCode alone

    @property
    def success_allowed(self) -> bool:
        return self.done


class MsChapV2Server(ServerMethod):
    type = EapType.MSCHAPV2

    def __init__(self, lookup: Callable[[bytes], bytes | None], random: Callable[[int], bytes],
                 identity: bytes) -> None:
        self.lookup = lookup  # user name -> password
        self.random = random
        self.eap_identity = identity
        self.challenge = b""
        self.ms_id = 0
        self.state = "challenge"
        self.candidate_msk: bytes | None = None

    def initiate(self, identifier: int) -> bytes:
        self.challenge = self.random(16)
        self.ms_id = identifier
        return _packet(OpCode.CHALLENGE, self.ms_id, bytes([16]) + self.challenge + SERVER_NAME)

    def process(self, identifier: int, type_data: bytes) -> bytes | None:
        if self.state == "success":
            if type_data[:1] == bytes([OpCode.SUCCESS]):
                self.msk = self.candidate_msk
                return None
            raise EapError("peer did not acknowledge our MS-CHAPv2 Success")
        if self.state == "failed":
            raise EapError(self.failure_reason)
        opcode, ms_id, data = _header(type_data)
        if opcode != OpCode.RESPONSE or ms_id != self.ms_id:
            raise EapError(f"expected an MS-CHAPv2 Response to challenge {self.ms_id}, got OpCode {opcode} "
                           f"id {ms_id}")
        if len(data) < 50 or data[0] != 49:
            raise EapError("EAP-MSCHAPv2 Response without its 49-octet value")
        peer_challenge, nt_response, name = data[1:17], data[25:49], data[50:]
        if name != self.eap_identity:
            raise EapError(f"MS-CHAPv2 user '{name.decode('utf-8', 'replace')}' is not the EAP identity "
                           f"'{self.eap_identity.decode('utf-8', 'replace')}'")
        password = self.lookup(name)
        if password is None:
            return self._refuse(f"no EAP secret for '{name.decode('utf-8', 'replace')}' in the secrets section")
        expected = generate_nt_response(self.challenge, peer_challenge, name, password)
        if not hmac.compare_digest(expected, nt_response):
            return self._refuse(f"MS-CHAPv2 response of '{name.decode('utf-8', 'replace')}' does not match "
                                f"(wrong password)")
        self.identity = name
        self.candidate_msk = msk(password, nt_response)
        self.state = "success"
        auth = generate_authenticator_response(password, nt_response, peer_challenge, self.challenge, name)
        return _packet(OpCode.SUCCESS, self.ms_id, auth + b" " + SUCCESS_MESSAGE)

    def _refuse(self, reason: str) -> bytes:
        # RFC 2759 §6: Failure, not retryable (R=0); the peer's answer ends the conversation
        self.state = "failed"
        self.failure_reason = self.refusal = reason
        message = b"E=691 R=0 C=" + self.challenge.hex().upper().encode() + b" V=3 M=Authentication failed"
        return _packet(OpCode.FAILURE, self.ms_id, message)
