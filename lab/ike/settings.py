"""Endpoint-wide settings of the IKE core."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Settings:
    """Endpoint-wide settings (strongswan.conf `charon.*` where strongSwan has them)."""

    retransmit_timeout: float = 4.0   # charon.retransmit_timeout
    retransmit_base: float = 1.8      # charon.retransmit_base
    retransmit_tries: int = 5         # charon.retransmit_tries
    cookie_threshold: int = 10        # charon.cookie_threshold (half-open SAs)
    half_open_timeout: float = 30.0   # charon.half_open_timeout
    fragment_size: int = 1280         # charon.fragment_size (IP datagram)
    max_fragments: int = 64
    max_reassembly: int = 64 * 1024
    temporary_failure_retry: float = 10.0
    temporary_failure_jitter: float = 5.0  # retries after TEMPORARY_FAILURE spread over [retry - jitter, retry]
    nonce_size: int = 32              # octets of every nonce we make
    export_keys: bool = False         # hand IKE SA keys out through pop_ike_keys() (Wireshark export)
    # RFC 4555 §3.7: a MOBIKE responder checks that the initiator receives at its new address
    # (a COOKIE2 exchange) before moving the IPsec SAs there (strongSwan does not check)
    return_routability: bool = True

    def __post_init__(self) -> None:
        if not 16 <= self.nonce_size <= 256:
            # RFC 7296 §2.10, §3.9: at least 128 bits, at most 256 octets
            raise ValueError(f"nonce_size {self.nonce_size} is outside 16..256 octets")
