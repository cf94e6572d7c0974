"""EAP (RFC 3748) as IKEv2 carries it in IKE_AUTH (RFC 7296 §2.16): the packet, the peer
(the IKE initiator, the road warrior) and the authenticator (the gateway, the EAP server
inside it: no RADIUS here), and the methods EAP-Identity, EAP-MD5 (§5.4), EAP-MSCHAPv2
(RFC 2759 inside draft-kamath-pppext-eap-mschapv2), EAP-TLS (RFC 5216) and EAP-TTLS (RFC 5281).

Pure and sans-I/O like the rest of lab.ike: packets in, packets out. Randomness comes from
the caller (the endpoint's RandomSource), except inside TLS, which OpenSSL draws itself; no
clock is read (certificates are checked against the time the caller passes).

    peer = EapPeer(identity=b"carol", methods={EapType.MSCHAPV2: lambda: MsChapV2Peer(b"carol", b"secret", rng)})
    server = EapServer(EapType.MSCHAPV2, lambda who: MsChapV2Server(lookup, rng, who), identifier=7,
                       ask_identity=True)
    request = server.start()
    while True:
        response = peer.receive(request)          # None once Success or Failure arrived
        if response is None: break
        request = server.receive(response)
    peer.succeeded and server.succeeded and peer.msk == server.msk
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..const import EapCode, EapType, coerce, name_of

__all__ = ["EapError", "EapPacket", "EapPeer", "EapServer", "PeerMethod", "ServerMethod", "describe"]


class EapError(Exception):
    """An EAP conversation that cannot go on; the message says why in a person's words."""


@dataclass(frozen=True)
class EapPacket:
    """One EAP packet (RFC 3748 §4): Request and Response carry a Type and its data; Success
    and Failure are the 4-octet header alone (§4.2)."""

    code: int
    identifier: int
    type: int | None = None
    type_data: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> EapPacket:
        if len(data) < 4:
            raise EapError(f"EAP packet of {len(data)} octets is shorter than its 4-octet header")
        code, identifier, length = struct.unpack("!BBH", data[:4])
        if length != len(data) or length < 4:
            raise EapError(f"EAP length field says {length}, the packet has {len(data)} octets")
        if code in (EapCode.REQUEST, EapCode.RESPONSE):
            if length < 5:
                raise EapError(f"EAP {name_of(EapCode, code)} without a Type")
            return cls(code, identifier, data[4], bytes(data[5:]))
        if code in (EapCode.SUCCESS, EapCode.FAILURE):
            return cls(code, identifier)  # RFC 3748 §4.2: no data
        raise EapError(f"unknown EAP code {code}")  # §4: silently discarded; here a clear error

    def serialize(self) -> bytes:
        if self.type is None:
            return struct.pack("!BBH", self.code, self.identifier, 4)
        return struct.pack("!BBHB", self.code, self.identifier, 5 + len(self.type_data), self.type) + self.type_data

    def __str__(self) -> str:
        return describe(self)


def describe(packet: EapPacket) -> str:
    """`Request/MSCHAPV2 id 0x12` as a trace shows it."""
    text = name_of(EapCode, packet.code).capitalize()
    if packet.type is not None:
        text += "/" + name_of(EapType, packet.type)
    return f"{text} id {packet.identifier:#04x}"


class PeerMethod:
    """A method on the peer's side: answer each Request's Type-Data, say when Success may come."""

    type: int = 0
    msk: bytes | None = None  # RFC 3748 §7.10: the Master Session Key, if the method makes one

    def process(self, identifier: int, type_data: bytes) -> bytes:
        raise NotImplementedError

    @property
    def success_allowed(self) -> bool:
        """RFC 3748 §4.2: Success before the method has finished is not to be believed."""
        return False


class ServerMethod:
    """A method on the authenticator's side: the first Request, then each Response in turn."""

    type: int = 0
    msk: bytes | None = None
    identity: bytes | None = None  # the user the method authenticated, if it names one
    refusal: str | None = None  # set when the method refused the peer inside its own packets (MS-CHAPv2 Failure)

    def initiate(self, identifier: int) -> bytes:
        raise NotImplementedError

    def process(self, identifier: int, type_data: bytes) -> bytes | None:
        """The next Request's Type-Data, or None: the method succeeded. Raises EapError."""
        raise NotImplementedError


class EapServer:
    """The authenticator of one conversation (RFC 3748 §2): an optional Identity round, then
    `method_type`; each Request gets a new Identifier (§4.1), a Response must echo it."""

    def __init__(self, method_type: int, make_method: Callable[[bytes], ServerMethod], identifier: int,
                 ask_identity: bool, identity: bytes = b"",
                 accept_identity: Callable[[bytes], bool] = lambda identity: True) -> None:
        self.method_type = method_type
        self.make_method = make_method
        self.identifier = identifier & 0xFF
        self.ask_identity = ask_identity
        self.identity = identity  # the peer's EAP identity (the IKE identity until Identity says otherwise)
        self.accept_identity = accept_identity
        self.method: ServerMethod | None = None
        self.succeeded = False
        self.failed: str | None = None
        self.msk: bytes | None = None

    def start(self) -> EapPacket:
        if self.ask_identity:
            return EapPacket(EapCode.REQUEST, self.identifier, EapType.IDENTITY)
        return self._start_method()

    def _start_method(self) -> EapPacket:
        self.method = self.make_method(self.identity)
        self.identifier = (self.identifier + 1) & 0xFF
        return EapPacket(EapCode.REQUEST, self.identifier, self.method.type, self.method.initiate(self.identifier))

    def _fail(self, reason: str, identifier: int) -> EapPacket:
        self.failed = reason
        return EapPacket(EapCode.FAILURE, identifier)

    def receive(self, packet: EapPacket) -> EapPacket:
        """The answer to the peer's Response: the next Request, Success or Failure."""
        if self.succeeded or self.failed:
            raise EapError("the EAP conversation is over")
        if packet.code != EapCode.RESPONSE:
            return self._fail(f"peer sent an EAP {name_of(EapCode, packet.code)}, not a Response", packet.identifier)
        if packet.identifier != self.identifier:
            # RFC 3748 §4.1: a Response answers the Request with the same Identifier
            return self._fail(f"EAP Response id {packet.identifier:#04x} answers no Request "
                              f"(expected {self.identifier:#04x})", packet.identifier)
        if self.method is None:
            if packet.type != EapType.IDENTITY:
                return self._fail(f"peer answered the Identity request with {name_of(EapType, packet.type or 0)}",
                                  packet.identifier)
            self.identity = packet.type_data  # RFC 3748 §5.1
            if not self.accept_identity(self.identity):
                return self._fail(f"EAP identity '{_text(self.identity)}' is not accepted here", packet.identifier)
            try:
                return self._start_method()
            except EapError as err:
                return self._fail(str(err), packet.identifier)
        if packet.type == EapType.NAK:
            wanted = ", ".join(name_of(EapType, t) for t in packet.type_data) or "none"
            # RFC 3748 §5.3.1: the peer refuses the method; this server has no other to offer
            return self._fail(f"peer refused {name_of(EapType, self.method.type)} (Nak, it wants {wanted})",
                              packet.identifier)
        if packet.type != self.method.type:
            return self._fail(f"peer answered {name_of(EapType, self.method.type)} with "
                              f"{name_of(EapType, packet.type or 0)}", packet.identifier)
        try:
            following = self.method.process(packet.identifier, packet.type_data)
        except EapError as err:
            return self._fail(str(err), packet.identifier)
        if following is None:
            self.succeeded = True
            self.msk = self.method.msk
            if self.method.identity is not None:
                self.identity = self.method.identity
            return EapPacket(EapCode.SUCCESS, packet.identifier)  # RFC 3748 §4.2: the Response's Identifier
        self.identifier = (self.identifier + 1) & 0xFF
        return EapPacket(EapCode.REQUEST, self.identifier, self.method.type, following)


class EapPeer:
    """The peer of one conversation: answers Identity with `identity`, runs the method the
    server asks for if it has one in `methods` (type -> factory), else answers Nak (§5.3)."""

    def __init__(self, identity: bytes, methods: Mapping[int, Callable[[], PeerMethod]]) -> None:
        self.identity = identity
        self.methods = dict(methods)
        self.method: PeerMethod | None = None
        self.succeeded = False
        self.failed: str | None = None
        self.last_identifier: int | None = None

    @property
    def msk(self) -> bytes | None:
        return self.method.msk if self.method is not None else None

    def receive(self, packet: EapPacket) -> EapPacket | None:
        """The Response to a Request; None after Success or Failure (see `succeeded`, `failed`).
        Raises EapError when the method cannot go on."""
        if packet.code == EapCode.SUCCESS:
            if self.method is None or not self.method.success_allowed:
                # RFC 3748 §4.2: a Success before the method is done does not authenticate anyone
                raise EapError("EAP Success arrived before the method had finished")
            self.succeeded = True
            return None
        if packet.code == EapCode.FAILURE:
            self.failed = "the server answered EAP Failure"
            return None
        if packet.code != EapCode.REQUEST:
            raise EapError(f"server sent an EAP {name_of(EapCode, packet.code)}")
        self.last_identifier = packet.identifier
        if packet.type == EapType.IDENTITY:
            return EapPacket(EapCode.RESPONSE, packet.identifier, EapType.IDENTITY, self.identity)
        if packet.type == EapType.NOTIFICATION:
            return EapPacket(EapCode.RESPONSE, packet.identifier, EapType.NOTIFICATION)  # RFC 3748 §5.2
        if self.method is None or self.method.type != packet.type:
            factory = self.methods.get(packet.type or 0)
            if factory is None:
                # RFC 3748 §5.3.1: refuse, naming the methods we would take
                return EapPacket(EapCode.RESPONSE, packet.identifier, EapType.NAK,
                                 bytes(t for t in self.methods) or b"\x00")
            self.method = factory()
        return EapPacket(EapCode.RESPONSE, packet.identifier, self.method.type,
                         self.method.process(packet.identifier, packet.type_data))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def eap_type_of(name: str) -> int:
    """EapType for a swanctl.conf method name (`md5`, `mschapv2`, `tls`, `ttls`)."""
    return {"md5": EapType.MD5_CHALLENGE, "mschapv2": EapType.MSCHAPV2, "tls": EapType.TLS, "ttls": EapType.TTLS,
            "identity": EapType.IDENTITY}[name]


def type_name(value: int) -> str:
    return name_of(EapType, coerce(EapType, value))
