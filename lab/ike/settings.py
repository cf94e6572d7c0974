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
    # limits on what unauthenticated peers make us hold (0: no limit); an IKE_SA_INIT past one
    # is dropped and counted, as charon's receiver does
    half_open_limit: int = 1000       # charon.init_limit_half_open (half-open SAs in all)
    half_open_per_peer: int = 5       # charon.block_threshold (half-open SAs of one peer IP)
    ike_sas_per_peer: int = 100       # IKE SAs of one peer IP, any state (charon.ikesa_limit counts all peers)
    fragment_size: int = 1280         # charon.fragment_size (IP datagram)
    max_packet: int = 10000           # charon.max_packet: largest IKE datagram, and largest reassembled message
    max_fragments: int = 64           # fragments of one message (RFC 7383 §2.5: Total Fragments)
    reassembly_buffers: int = 100     # messages under reassembly at once, over all IKE SAs
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
        for name in ("half_open_limit", "half_open_per_peer", "ike_sas_per_peer", "max_fragments",
                     "reassembly_buffers", "cookie_threshold"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} {getattr(self, name)} is negative")
        if self.max_packet < 28:
            raise ValueError(f"max_packet {self.max_packet} is shorter than an IKE header")
