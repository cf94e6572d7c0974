"""EAP-MD5-Challenge (RFC 3748 §5.4, the CHAP of RFC 1994 §4.1 inside EAP).

Here for teaching what a weak method looks like: the server is not authenticated, anyone who
sees a Request and its Response can try passwords offline, and there is no MSK, so IKEv2's
AUTH falls back to SK_pi/SK_pr (RFC 7296 §2.16) and nothing binds the EAP run to the IKE SA.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from ..const import EapType
from . import EapError, PeerMethod, ServerMethod

CHALLENGE_SIZE = 16


def md5_response(identifier: int, secret: bytes, challenge: bytes) -> bytes:
    # RFC 1994 §4.1: MD5(Identifier | secret | Challenge)
    return hashlib.md5(bytes([identifier]) + secret + challenge).digest()


class Md5Peer(PeerMethod):
    type = EapType.MD5_CHALLENGE

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.answered = False

    def process(self, identifier: int, type_data: bytes) -> bytes:
        if not type_data or len(type_data) < 1 + type_data[0] or type_data[0] == 0:
            raise EapError("EAP-MD5 Request without a challenge (Value-Size and Value)")
        challenge = type_data[1:1 + type_data[0]]
        self.answered = True
        value = md5_response(identifier, self.secret, challenge)
        return bytes([len(value)]) + value  # RFC 3748 §5.4: Value-Size, Value (no Name)

    @property
    def success_allowed(self) -> bool:
        return self.answered


class Md5Server(ServerMethod):
    type = EapType.MD5_CHALLENGE

    def __init__(self, secret: bytes | None, random: Callable[[int], bytes], identity: bytes) -> None:
        self.secret = secret
        self.random = random
        self.challenge = b""
        self.request_identifier = 0
        self.identity: bytes = identity

    def initiate(self, identifier: int) -> bytes:
        self.challenge = self.random(CHALLENGE_SIZE)
        self.request_identifier = identifier
        return bytes([CHALLENGE_SIZE]) + self.challenge

    def process(self, identifier: int, type_data: bytes) -> bytes | None:
        if not type_data or type_data[0] != 16 or len(type_data) < 17:
            raise EapError("EAP-MD5 Response without a 16-octet value")
        if self.secret is None:
            raise EapError(f"no EAP secret for '{self.identity.decode('utf-8', 'replace')}' in the secrets section")
        expected = md5_response(self.request_identifier, self.secret, self.challenge)
        if not hmac.compare_digest(expected, type_data[1:17]):
            raise EapError("EAP-MD5 response does not match (wrong password)")
        return None
