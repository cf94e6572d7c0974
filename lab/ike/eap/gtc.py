"""EAP-GTC, the Generic Token Card (RFC 3748 §5.6), as a road warrior answers it: the server's
Request carries a prompt to show the user, the Response what the user typed, in clear inside
the IKE SA (and inside RADIUS's EAP-Message beyond the gateway: RFC 3748 §5.6 warns that GTC
offers no protection of its own). No MSK: IKEv2 keys both AUTH payloads with SK_pi/SK_pr
(RFC 7296 §2.16).

Here the user types the password followed by the current one-time code of their
authenticator app (TOTP, RFC 6238), the way many token-card setups take "PIN + code" in one
field. The code comes from `code()`, which the caller builds (lab.ike reads no clock).
"""
from __future__ import annotations

import datetime
from collections.abc import Callable

from ..const import EapType
from . import EapError, PeerMethod

CODE_DIGITS = 6  # RFC 6238 §5.3 (and FreeRADIUS's totp module): six digits, 30-second steps
TIME_STEP = 30


def totp_code(base32_secret: str, when: datetime.datetime) -> str:
    """The RFC 6238 code of `base32_secret` (as an authenticator app is given it) at `when`."""
    import pyotp

    return pyotp.TOTP(base32_secret, digits=CODE_DIGITS, interval=TIME_STEP).at(when)


def check_base32(secret: str) -> str:
    """A TOTP secret as a person writes it (RFC 4648 base32, spaces allowed); ValueError otherwise."""
    import base64
    import binascii

    text = secret.replace(" ", "").upper()
    try:
        if not text or len(base64.b32decode(text + "=" * (-len(text) % 8))) < 10:
            raise ValueError
    except (binascii.Error, ValueError):
        raise ValueError(f"'{secret}' is not a TOTP secret: base32 (A-Z, 2-7) of at least 10 octets, "
                         f"as an authenticator app is given it") from None
    return text


class GtcPeer(PeerMethod):
    """Answers the GTC prompt with the password, followed by `code()` when one is given."""

    type = EapType.GTC

    def __init__(self, password: bytes, code: Callable[[], str] | None = None) -> None:
        self.password = password
        self.code = code
        self.prompt = b""
        self.answered = False

    def process(self, identifier: int, type_data: bytes) -> bytes:
        self.prompt = type_data  # RFC 3748 §5.6: a displayable message
        answer = self.password + (self.code().encode() if self.code is not None else b"")
        if not answer:
            raise EapError("EAP-GTC: nothing to answer the prompt with (no password)")
        self.answered = True
        return answer

    @property
    def success_allowed(self) -> bool:
        return self.answered
