"""Protecting whole IKE messages: the SK payload (RFC 7296 §3.14) and IKE fragmentation
with SKF payloads (RFC 7383). The cipher object comes from lab.ike.crypto (`SkCipher`):
it knows `iv_size`, `encrypted_length(n)`, `seal(...)` and `open(...)`."""
from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .const import PayloadType
from .errors import IntegrityError, ParseError
from .message import HEADER_LENGTH, Header, Message
from .payloads import SK, SKF, Payload, parse_chain, serialize_chain


class Cipher(Protocol):
    iv_size: int

    def encrypted_length(self, inner_len: int) -> int: ...

    def seal(self, key_e: bytes, key_a: bytes, iv: bytes, aad: bytes, inner: bytes) -> bytes: ...

    def open(self, key_e: bytes, key_a: bytes, aad: bytes, data: bytes) -> bytes: ...


@dataclass
class DirectionKeys:
    """SK_e and SK_a of one direction."""

    encr: bytes = field(repr=False)
    integ: bytes = field(repr=False)


def encrypt(template: Message, inner: Sequence[Payload], cipher: Cipher, keys: DirectionKeys,
            random: Callable[[int], bytes]) -> bytes:
    """Serialize `template` (header fields; its payloads are ignored) with one SK payload
    holding `inner`. §3.14: the ICV covers the header and the SK payload up to the ICV."""
    inner_first, plaintext = serialize_chain(list(inner))
    encrypted_length = cipher.encrypted_length(len(plaintext))
    total = HEADER_LENGTH + 4 + encrypted_length
    header = template.header(PayloadType.SK, total).serialize()
    aad = header + struct.pack("!BBH", inner_first, 0, 4 + encrypted_length)
    return aad + cipher.seal(keys.encr, keys.integ, random(cipher.iv_size), aad, plaintext)


def encrypt_fragments(template: Message, inner: Sequence[Payload], cipher: Cipher, keys: DirectionKeys,
                      random: Callable[[int], bytes], max_message: int) -> list[bytes]:
    """RFC 7383 §2.5: the plaintext of the SK payload split over SKF payloads so that each
    IKE message is at most `max_message` octets (the caller subtracts IP/UDP/marker overhead)."""
    inner_first, plaintext = serialize_chain(list(inner))
    overhead = HEADER_LENGTH + 8 + cipher.encrypted_length(0)
    room = max_message - overhead
    # grow the chunk while it still fits: padding makes encrypted_length a step function
    chunk = max(room, 1)
    while chunk > 1 and overhead - cipher.encrypted_length(0) + cipher.encrypted_length(chunk) > max_message:
        chunk -= 1
    pieces = [plaintext[i:i + chunk] for i in range(0, len(plaintext), chunk)] or [b""]
    if len(pieces) > 0xFFFF:
        raise ValueError("message too large to fragment")
    out = []
    for number, piece in enumerate(pieces, start=1):
        encrypted_length = cipher.encrypted_length(len(piece))
        total = HEADER_LENGTH + 8 + encrypted_length
        header = template.header(PayloadType.SKF, total).serialize()
        # RFC 7383 §2.5: only the first fragment names the first inner payload
        aad = header + struct.pack("!BBHHH", inner_first if number == 1 else 0, 0, 8 + encrypted_length,
                                   number, len(pieces))
        out.append(aad + cipher.seal(keys.encr, keys.integ, random(cipher.iv_size), aad, piece))
    return out


def decrypt(data: bytes, message: Message, cipher: Cipher, keys: DirectionKeys) -> list[Payload]:
    """The inner payloads of a parsed message whose last payload is SK.
    Raises IntegrityError (ICV) or ParseError (the decrypted chain; offsets count from the
    start of the plaintext)."""
    first, plaintext = decrypt_plain(data, message, cipher, keys)
    return parse_chain(plaintext, first, 0)


def decrypt_plain(data: bytes, message: Message, cipher: Cipher, keys: DirectionKeys) -> tuple[int, bytes]:
    """The first inner payload's type and the inner payloads as octets (no padding) of a parsed
    message whose last payload is SK."""
    sk = message.encrypted
    if not isinstance(sk, SK):
        raise ParseError(HEADER_LENGTH, "message has no Encrypted payload")
    aad = data[:len(data) - len(sk.data)]
    return sk.inner_first, cipher.open(keys.encr, keys.integ, aad, sk.data)


def int_auth_data(template: Message, inner_first: int, plaintext: bytes) -> bytes:
    """IntAuth_A | IntAuth_P of an IKE_INTERMEDIATE message (RFC 9242 §3.3.2): the IKE header and
    the Encrypted payload header of the whole (unfragmented) message, their Length fields counting
    only the headers and the inner payloads (no IV, padding or ICV, as strongSwan's
    message.c get_plain), then the inner payloads in cleartext."""
    header = template.header(PayloadType.SK, HEADER_LENGTH + 4 + len(plaintext)).serialize()
    return header + struct.pack("!BBH", inner_first, 0, 4 + len(plaintext)) + plaintext


def decrypt_fragment(data: bytes, message: Message, cipher: Cipher, keys: DirectionKeys) -> bytes:
    """The plaintext piece carried by one SKF fragment (RFC 7383 §2.6: each is verified alone)."""
    skf = message.encrypted
    if not isinstance(skf, SKF):
        raise ParseError(HEADER_LENGTH, "message has no Encrypted Fragment payload")
    aad = data[:len(data) - len(skf.data)]
    return cipher.open(keys.encr, keys.integ, aad, skf.data)


class ReassemblyError(ValueError):
    """Fragments that cannot form a message (RFC 7383 §2.6): counted and dropped. `fatal`: the
    whole message is given up (else only this fragment is)."""

    def __init__(self, reason: str, fatal: bool = True) -> None:
        super().__init__(reason)
        self.fatal = fatal


class Reassembly:
    """Collects the SKF fragments of one message ID (RFC 7383 §2.6), with limits on the
    number of fragments and on the total size."""

    def __init__(self, message_id: int, max_fragments: int = 64, max_size: int = 64 * 1024) -> None:
        self.message_id = message_id
        self.max_fragments = max_fragments
        self.max_size = max_size
        self.total: int | None = None
        self.first_type: int | None = None
        self.pieces: dict[int, bytes] = {}
        self.size = 0
        self.plaintext = b""

    def add(self, skf: SKF, piece: bytes) -> list[Payload] | None:
        """Add a verified fragment; returns the inner payloads once all have arrived."""
        if skf.fragment_number == 0 or skf.total_fragments == 0 or skf.fragment_number > skf.total_fragments:
            raise ReassemblyError(f"fragment {skf.fragment_number} of {skf.total_fragments} is invalid")
        if skf.total_fragments > self.max_fragments:
            raise ReassemblyError(f"{skf.total_fragments} fragments exceed the limit of {self.max_fragments}")
        if self.total is not None and skf.total_fragments != self.total:
            if skf.total_fragments < self.total:
                # RFC 7383 §2.6.1: a set with more fragments (smaller PMTU) replaces the earlier one
                raise ReassemblyError("fragment of an earlier, coarser fragmentation of this message", fatal=False)
            self.pieces.clear()
            self.size = 0
            self.first_type = None
        self.total = skf.total_fragments
        if skf.fragment_number in self.pieces:
            return None
        self.size += len(piece)
        if self.size > self.max_size:
            raise ReassemblyError(f"reassembled message exceeds {self.max_size} octets")
        self.pieces[skf.fragment_number] = piece
        if skf.fragment_number == 1:
            self.first_type = skf.inner_first
        if len(self.pieces) < self.total:
            return None
        plaintext = b"".join(self.pieces[i] for i in range(1, self.total + 1))
        self.plaintext = plaintext  # RFC 9242 §3.3.2: IntAuth covers the reassembled message
        return parse_chain(plaintext, self.first_type or 0, 0)


__all__ = ["Cipher", "DirectionKeys", "Reassembly", "ReassemblyError", "decrypt", "decrypt_fragment", "encrypt",
           "encrypt_fragments", "IntegrityError", "Header", "decrypt_plain", "int_auth_data"]
