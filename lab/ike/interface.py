"""What an IKE SA and its tasks see of the endpoint that holds them: a small interface, so
lab.ike.sa and lab.ike.tasks never import lab.ike.endpoint (IkeEndpoint implements it).

What the endpoint needs of an SA is typed too: for a message it sends, traces or drops, only
which SA it is and its addresses (`SaRef`); the SAs it keeps in its tables (`register`,
`forget`, `initiate`) and whose keys it may export (`ike_keys_ready`) are whole `IkeSA`s."""
from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from .config import Config, IkeConfig, RadiusServer
from .events import Event
from .identity import Identity
from .message import Message
from .randomness import RandomSource
from .settings import Settings

if TYPE_CHECKING:
    from . import payloads as pl
    from .sa import IkeSA

Address = tuple[str, int]


class SaRef(Protocol):
    """What the endpoint reads of an IKE SA whose message it sends, traces or drops: the SA's
    number (in traces and counters) and the addresses its messages use unless told others."""

    @property
    def unique_id(self) -> int: ...

    @property
    def local(self) -> Address: ...

    @property
    def remote(self) -> Address: ...


class Endpoint(Protocol):
    settings: Settings
    config: Config
    random: RandomSource
    wall_clock: Callable[[], datetime.datetime] | None
    jitter: bool  # rekey times spread by rand_time
    local_addresses: list[str]  # our addresses, as the I/O layer last told (MOBIKE, RFC 4555 §3.4)

    def new_ike_spi(self) -> bytes: ...

    def new_child_spi(self) -> bytes: ...

    def new_child_id(self) -> int: ...

    def register(self, ike: IkeSA) -> None:
        """A new IKE SA (made by an IKE rekey) joins the endpoint's tables."""

    def forget(self, ike: IkeSA) -> None: ...

    def emit(self, event: Event) -> None: ...

    def trace(self, now: float | None, kind: str, **fields: Any) -> None: ...

    def trace_message(self, ike: SaRef | None, direction: str, message: Message, inner: Iterable[pl.Payload],
                      src: Address, dst: Address, length: int, now: float, fragments: int = 1) -> None: ...

    def send(self, ike: SaRef, datagrams: list[bytes], stat: str, local: Address | None = None,
             remote: Address | None = None) -> None:
        """Queue datagrams from `local` to `remote` (default ike.local, ike.remote; framed for the
        port), counted under `stat`."""

    def initiate(self, name: str, now: float, child: str | None = None) -> IkeSA: ...

    def drop(self, reason: str, now: float, ike: SaRef | None = None) -> None: ...

    def restart(self, config: IkeConfig, now: float) -> None: ...

    def lease_address(self, config: IkeConfig, peer: Identity | None, version: int = 4
                      ) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address,
                                   list[ipaddress.IPv4Address | ipaddress.IPv6Address]] | None:
        """An address of IP `version` from the connection's pools for `peer` and the pool's DNS servers."""

    def radius_server(self) -> RadiusServer | None:
        """The server a new EAP-RADIUS conversation goes to."""

    def ike_keys_ready(self, ike: IkeSA) -> None: ...

    def reassembly_opened(self) -> bool:
        """A message starts being reassembled; False when every reassembly buffer is taken."""

    def reassembly_closed(self, count: int = 1) -> None: ...
