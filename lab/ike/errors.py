"""Errors raised by the protocol cores."""
from __future__ import annotations


class ParseError(ValueError):
    """Bytes that are not a well-formed IKEv2 structure.

    `offset` is the byte offset in the outermost buffer handed to the parser where the
    problem was found; `reason` says what was wrong there.
    """

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason


class IntegrityError(ValueError):
    """An encrypted payload whose ICV or AEAD tag did not verify."""


class CryptoError(ValueError):
    """A cryptographic operation that cannot be done with the given inputs
    (unsupported algorithm, invalid peer public value, wrong key size, ...)."""


class ExchangeFailed(Exception):
    """An exchange that cannot go on; `notify` is what to answer a request with."""

    def __init__(self, reason: str, notify: int | None = None, data: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.notify = notify
        self.data = data
