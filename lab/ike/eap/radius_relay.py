"""The gateway's side of EAP-RADIUS (strongSwan's eap-radius plugin), pure: the EAP packets of
the IKE peer carried to a RADIUS server in Access-Requests and the server's EAP packets carried
back (RFC 3579 §2), the State echoed between them (RFC 2865 §5.24), and at the end the outcome
of an Access-Accept: the MSK from the MS-MPPE keys, the virtual IP and the Class values.

No sockets, no clock: `start` and `respond` give the octets to send, `answer` takes the octets
that came back; the daemon sends, retransmits the same octets (RFC 2865 §2.5: a retransmission
keeps its identifier and authenticator) and fails over (lab.daemon.radius)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .. import radius
from ..const import EapCode, EapType
from . import EapError, EapPacket


@dataclass
class RelayOutcome:
    """What the gateway does with the server's answer: send `eap` to the IKE peer; when `done`,
    the conversation ended, `accepted` or not."""
    eap: EapPacket
    done: bool = False
    accepted: bool = False
    msk: bytes | None = None
    framed_ip: str | None = None
    classes: list[bytes] = field(default_factory=list)
    reply_message: str | None = None


class EapRadiusRelay:
    """One IKE peer's EAP conversation relayed to a RADIUS server under `secret`."""

    def __init__(self, identity: bytes, secret: bytes, random: Callable[[int], bytes],
                 nas_identifier: bytes | None = None, nas_ip: str | None = None,
                 calling_station: bytes | None = None, called_station: bytes | None = None) -> None:
        self.identity = identity
        self.secret = secret
        self.random = random
        self.nas = {"nas_identifier": nas_identifier, "nas_ip": nas_ip, "calling_station": calling_station,
                        "called_station": called_station}
        self.identifier = random(1)[0]
        self.state: bytes | None = None
        self.pending: bytes | None = None  # the Access-Request waiting for its answer
        self.outcome: RelayOutcome | None = None

    def start(self) -> bytes:
        """The first Access-Request: the peer's IKE identity as EAP-Response/Identity, as
        strongSwan's eap-radius does unless eap_start is set (RFC 3579 §2.1 lets the NAS
        send the identity it has)."""
        return self.respond(EapPacket(EapCode.RESPONSE, 0, EapType.IDENTITY, self.identity).serialize())

    def respond(self, eap: bytes) -> bytes:
        """The Access-Request carrying the peer's EAP Response `eap`; raises EapError for
        anything but a Response, as the relay has nothing else to carry (RFC 3579 §2)."""
        packet = EapPacket.parse(eap)
        if packet.code != EapCode.RESPONSE:
            raise EapError(f"the IKE peer sent EAP code {packet.code}, not a Response, to relay")
        if self.outcome is not None and self.outcome.done:
            raise EapError("the RADIUS conversation has ended")
        self.identifier = (self.identifier + 1) % 256
        self.pending = radius.access_request(self.secret, self.identifier, self.random(16), self.identity, eap,
                                             self.state, **self.nas)  # type: ignore[arg-type]
        return self.pending

    def answer(self, raw: bytes) -> RelayOutcome:
        """The server's answer to the pending request; raises RadiusError when it is not to be
        believed (the caller counts it and keeps waiting: RFC 2865 §3 and RFC 3579 §3.2 say
        such a packet is silently discarded)."""
        if self.pending is None:
            raise radius.RadiusError("an answer while no request is pending (duplicate or unsolicited)")
        reply = radius.parse_reply(raw, self.pending, self.secret)
        eap = EapPacket.parse(reply.eap) if reply.eap is not None else None
        self.pending = None
        if reply.code == radius.ACCESS_CHALLENGE:
            # RFC 3579 §2.6.3: a challenge carries the next EAP Request
            if eap is None or eap.code != EapCode.REQUEST:
                raise radius.RadiusError("Access-Challenge without an EAP Request (RFC 3579 §2.6.3)")
            self.state = reply.state
            self.outcome = RelayOutcome(eap)
        elif reply.code == radius.ACCESS_ACCEPT:
            if eap is not None and eap.code != EapCode.SUCCESS:
                raise radius.RadiusError(f"Access-Accept with EAP code {eap.code}, not Success (RFC 3579 §2.6.3)")
            self.outcome = RelayOutcome(eap or EapPacket(EapCode.SUCCESS, 0), done=True, accepted=True,
                                        msk=reply.msk, framed_ip=reply.framed_ip, classes=reply.classes,
                                        reply_message=reply.reply_message)
        else:
            # RFC 3579 §2.6.3: Access-Reject ends it with EAP Failure, sent or not
            self.outcome = RelayOutcome(eap if eap is not None and eap.code == EapCode.FAILURE
                                        else EapPacket(EapCode.FAILURE, 0), done=True,
                                        reply_message=reply.reply_message)
        return self.outcome
