"""Typed events handed out by the IKE state machine (`IkeEndpoint.next_event()`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .payloads import TrafficSelector

Address = tuple[str, int]


@dataclass(frozen=True)
class Event:
    ike_sa: int  # the IKE SA's unique id in its endpoint


@dataclass(frozen=True)
class IkeSaUp(Event):
    name: str
    local: Address
    remote: Address
    spi_i: bytes
    spi_r: bytes
    local_id: str
    remote_id: str
    algorithms: str
    local_behind_nat: bool
    remote_behind_nat: bool
    virtual_ip: str | None = None  # the first of virtual_ips
    mobike: bool = False  # both sides announced MOBIKE_SUPPORTED (RFC 4555 §3.2)
    virtual_ips: tuple[str, ...] = ()  # every one the peer gave us: IPv4, IPv6 or both


@dataclass(frozen=True)
class IkeSaRekeyed(Event):
    new_ike_sa: int
    spi_i: bytes
    spi_r: bytes


@dataclass(frozen=True)
class PeerAddressChanged(Event):
    """The peer's address or port changed under a NAT (RFC 7296 §2.23): its authenticated
    messages now come from `new`, and everything for it must go there."""

    old: Address
    new: Address


@dataclass(frozen=True)
class AddressesUpdated(Event):
    """MOBIKE (RFC 4555 §3.5): the IPsec SAs of this IKE SA now run between `local` and
    `remote`, UDP-encapsulated when `encap` (a NAT on the new path, RFC 7296 §2.23). `spis_in`
    names the CHILD SAs moved; `local_behind_nat` says whether NAT keepalives are ours to send."""

    old_local: Address
    old_remote: Address
    local: Address
    remote: Address
    encap: bool
    local_behind_nat: bool
    spis_in: tuple[bytes, ...]
    reason: str = ""


@dataclass(frozen=True)
class IkeSaDeleted(Event):
    name: str
    reason: str


@dataclass(frozen=True)
class ChildKeys:
    """Keys of one direction of an ESP/AH SA. Never printed (repr hides them)."""

    encr: bytes = field(repr=False)
    integ: bytes = field(repr=False)


@dataclass(frozen=True)
class ChildSaUp(Event):
    """A CHILD_SA pair ready to be installed in the data plane."""

    name: str
    unique_id: int
    protocol: int
    spi_in: bytes
    spi_out: bytes
    encr_id: int | None
    encr_key_length: int | None
    integ_id: int
    esn: bool
    keys_in: ChildKeys
    keys_out: ChildKeys
    mode: str
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    local: Address
    remote: Address
    encap: bool
    replay_window: int
    algorithms: str
    rekeyed_from: bytes | None = None  # spi_in of the SA this one replaces
    initiator: bool = True  # we started the exchange that made it (RFC 7296 §2.17 key order)
    # transport mode across a NAT (RFC 7296 §2.23.1): our and the peer's address as the traffic
    # selectors received named them, i.e. as the peer put them in its TCP/UDP checksums
    original_local: str | None = None
    original_remote: str | None = None


@dataclass(frozen=True)
class ChildSaRekeyed(Event):
    name: str
    old_spi_in: bytes
    old_spi_out: bytes
    new_spi_in: bytes
    new_spi_out: bytes


@dataclass(frozen=True)
class ChildSaDeleted(Event):
    name: str
    spi_in: bytes
    spi_out: bytes
    reason: str


@dataclass(frozen=True)
class RadiusRequest(Event):
    """An Access-Request for the I/O layer to send to RADIUS server `server` (auth = eap-radius):
    the IKE_AUTH response waits until `IkeEndpoint.radius_answer` gives the server's answer
    (or `radius_failed` says none came). A retransmission sends the same octets (RFC 2865 §2.5)."""

    server: str
    packet: bytes = field(repr=False)


@dataclass(frozen=True)
class AuthFailed(Event):
    """Authentication failed, on our side (`by_peer=False`) or the peer's."""

    name: str
    reason: str
    by_peer: bool


@dataclass(frozen=True)
class NegotiationFailed(Event):
    """An exchange failed: no proposal chosen, TS unacceptable, timeout, ..."""

    name: str
    exchange: str
    reason: str


@dataclass(frozen=True)
class PeerUnreachable(Event):
    """Retransmissions exhausted (RFC 7296 §2.4); includes a failed DPD."""

    name: str
    exchange: str
    tries: int
