"""IKE_AUTH (RFC 7296 §1.2, §2.15): identities, AUTH (PSK or signatures), certificates, the
first CHILD SA (or none, RFC 6023) and a virtual IP from a pool (§3.15). A rejected AUTH is
answered AUTHENTICATION_FAILED, or told to the responder in an INFORMATIONAL (§2.21.2).

With EAP (§2.16) the initiator leaves AUTH out of its first request; the responder answers
with its own IDr, CERT and AUTH and an EAP Request, the EAP conversation runs over as many
IKE_AUTH round trips as the method needs, and both sides end with an AUTH keyed with the MSK.
With several rounds (RFC 4739) the initiator says ANOTHER_AUTH_FOLLOWS and authenticates
again with a new IDi (certificate, then EAP). The child's SA, TSi and TSr ride in the first
request and are answered in the last response.

One task on each side spans all those round trips: the initiator's queues itself again
after each response; the responder's lives in `IkeSA.auth_responder` and every later request
is handed to it. The proofs themselves (AUTH payloads, certificates, the EAP conversation) are
the authenticators' (lab.ike.authenticators), one per method and round.
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from .. import payloads as pl
from .. import ppk
from ..authenticators import EapAuthenticator, builder, cert_payloads, certreq_payloads, identity_from_eap, verifier
from ..authenticators.radius import RadiusAuthenticator
from ..config import AuthClass, AuthConfig, ChildConfig, ChildMode
from ..const import CfgAttr, CfgType, ExchangeType, NotifyType, name_of
from ..crypto import AuthenticationFailed
from ..eap import EapError, EapPacket, describe
from ..errors import CryptoError, ExchangeFailed
from ..events import AuthFailed, RadiusRequest
from ..identity import Identity
from ..profiles import check_server_certificate, server_name, windows_error
from . import ike_mobike as mobike
from .base import CHILD_ERRORS, Task, error_notify, find_notify, first, notify
from .child_create import new_child_as_responder

if TYPE_CHECKING:
    from ..sa import IkeSA


class IkeAuth(Task):
    exchange = ExchangeType.IKE_AUTH
    name = "IKE_AUTH"

    def __init__(self, child: ChildConfig | None = None) -> None:
        self.child = child
        self.spi_in = b""
        self.reply: list[pl.Payload] = []
        self.failure: str | None = None
        # both halves: which authentication round, and where in it
        self.round = 0
        self.phase = "first"   # first | eap | eap_auth | next_round
        self.eap: EapAuthenticator | None = None  # the EAP round's (RFC 7296 §2.16)
        self.eap_out: EapPacket | None = None
        self.told_refusal = False
        self.round_id: pl.Identification | None = None  # the IDi of the current round
        self.peer_id_payload: pl.Identification | None = None  # the responder's IDr (initiator side)
        self.request: list[pl.Payload] = []  # responder: the first request (SA, TSi, TSr, CP)
        self.established = False
        self.held_prefix: list[pl.Payload] = []  # responder: what goes before the EAP RADIUS sends back

    # ---------------------------------------------------------------- initiator

    def _round(self, ike: IkeSA) -> AuthConfig:
        return ike.config.local_rounds[self.round]

    def _more_rounds(self, ike: IkeSA) -> bool:
        return self.round + 1 < len(ike.config.local_rounds)

    def _another(self, ike: IkeSA) -> list[pl.Payload]:
        if not self._more_rounds(ike):
            return []
        if not ike.peer_multiple_auth:
            raise ExchangeFailed(f"connection {ike.config.name} has {len(ike.config.local_rounds)} authentication "
                                 f"rounds but the peer did not announce MULTIPLE_AUTH_SUPPORTED (RFC 4739)")
        return [notify(NotifyType.ANOTHER_AUTH_FOLLOWS)]

    def _round_identity(self, ike: IkeSA) -> Identity:
        if self.round == 0:
            return ike.local_id
        return self._round(ike).identity_for(ike.local[0])

    def build_i(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        if self.phase == "eap":
            assert self.eap_out is not None
            return [pl.EAP(message=self.eap_out.serialize())]
        if self.phase == "eap_auth":
            assert self.round_id is not None and self.eap is not None
            # RFC 7296 §2.16: the initiator's AUTH over the MSK (or SK_pi) closes the EAP round
            return [self.eap.build(self.round_id), *self._another(ike)]
        auth = self._round(ike)
        identity = self._round_identity(ike)
        id_payload = identity.to_payload(pl.IDi)
        self.round_id = id_payload
        out: list[pl.Payload] = [id_payload]
        out += cert_payloads(ike, auth)
        if AuthClass(auth.method).is_eap:
            self.eap = EapAuthenticator.client(ike, auth, identity)
        if self.phase == "next_round":
            # RFC 4739 §3: a later round is IDi, [CERT], AUTH (none for EAP), [ANOTHER_AUTH_FOLLOWS]
            if not AuthClass(auth.method).is_eap:
                out.append(builder(ike, auth, identity).build(id_payload))
            return out + self._another(ike)
        if ike.config.send_certreq and ike.config.remote.method == "pubkey":
            out += certreq_payloads(ike)
        profile = ike.config.client_profile
        send_idr = profile is None or profile.send_idr  # Windows sends no IDr (RFC 7296 §2.5: IDr is optional)
        if send_idr and not ike.config.remote_identity.is_any and not ike.config.remote_identity.has_wildcards:
            out.append(ike.config.remote_identity.to_payload(pl.IDr))
        if not AuthClass(auth.method).is_eap:  # RFC 7296 §2.16: left out to ask for EAP
            # RFC 8784 §3: with a PPK, AUTH over SK_pi', N(PPK_IDENTITY), N(NO_PPK_AUTH)
            out += ppk.initiator_auth(ike, lambda: builder(ike, auth, identity).build(id_payload))
        if profile is None or profile.send_initial_contact:
            out.append(pl.Notify(notify_type=NotifyType.INITIAL_CONTACT))
        out += mobike.supported_payloads(ike)
        out += self._another(ike)
        if self.child is not None:
            if profile is not None:
                # the client's own configuration request (lab.ike.profiles), sent whatever vips says
                out.append(pl.CP(cfg_type=CfgType.CFG_REQUEST,
                                 attributes=[pl.CfgAttribute(a) for a in profile.cp_request]))
            elif ike.config.vips:
                out.append(pl.CP(cfg_type=CfgType.CFG_REQUEST, attributes=_cp_request(ike.config.vips)))
            if self.child.mode == ChildMode.TRANSPORT:
                out.append(pl.Notify(notify_type=NotifyType.USE_TRANSPORT_MODE))
            self.spi_in = ike.endpoint.new_child_spi()
            out.append(pl.SA(proposals=ike.child_proposals(self.child, self.spi_in, pfs=False)))
            out.append(pl.TSi(selectors=ike.child_local_ts(self.child)))
            out.append(pl.TSr(selectors=ike.child_remote_ts(self.child)))
        return out

    def process_i(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        if find_notify(payloads, NotifyType.AUTHENTICATION_FAILED) is not None:
            _auth_failed(ike, "peer answered AUTHENTICATION_FAILED", by_peer=True, now=now)
            return
        error = error_notify(payloads)
        if error is not None and error.notify_type not in CHILD_ERRORS:
            raise ExchangeFailed(f"peer answered {name_of(NotifyType, error.notify_type)}")
        if self.peer_id_payload is None and not self._responder_authenticated(ike, payloads, now):
            return
        eap = first(payloads, pl.EAP)
        if eap is not None:
            self._eap_request(ike, eap, now)
            return
        if self.phase == "eap_auth":
            auth = first(payloads, pl.AUTH)
            if auth is None:
                raise ExchangeFailed("the response to our AUTH after EAP lacks the responder's AUTH (RFC 7296 §2.16)")
            assert self.eap is not None and self.peer_id_payload is not None
            try:
                self.eap.verify(self.peer_id_payload, auth)
            except AuthenticationFailed as err:
                _auth_failed(ike, str(err), by_peer=False, now=now, tell_peer=True)
                return
        elif AuthClass(self._round(ike).method).is_eap:
            raise ExchangeFailed(f"we asked for EAP ({self._round(ike).method}) but the responder sent no EAP "
                                 f"request")
        if self._more_rounds(ike):
            self.round += 1
            self.phase = "next_round"
            ike.trace_note(now, "auth_round", round=self.round + 1, method=str(self._round(ike).method))
            ike.tm.queue(self, now, front=True)
            return
        self._established_i(ike, payloads, error, now)

    def _responder_authenticated(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> bool:
        id_r, auth = first(payloads, pl.IDr), first(payloads, pl.AUTH)
        if id_r is None or auth is None:
            raise ExchangeFailed("IKE_AUTH response lacks IDr or AUTH")
        try:
            ppk.initiator_response(ike, payloads)  # RFC 8784 §3: the PPK used, or the fallback
        except ExchangeFailed as err:
            _auth_failed(ike, err.reason, by_peer=False, now=now, tell_peer=True)
            return False
        peer_id = Identity.from_payload(id_r)
        if not peer_id.matches(ike.config.remote_identity):
            _auth_failed(ike, f"responder identity {peer_id} does not match the expected {ike.config.remote_identity}",
                        by_peer=False, now=now, tell_peer=True)
            return False
        profile = ike.config.client_profile
        try:
            checker = verifier(ike, ike.config.remote)
            checker.verify(id_r, auth, payloads)
            end_entity = getattr(checker, "end_entity", None)
            if profile is not None and profile.check_server_cert and end_entity is not None:
                check_server_certificate(end_entity, server_name(ike.config))
        except (AuthenticationFailed, CryptoError) as err:
            reason = str(err)
            if profile is not None and profile.windows_errors and not reason.startswith("Windows error"):
                reason = windows_error(13801, reason)
            _auth_failed(ike, reason, by_peer=False, now=now, tell_peer=True)
            return False
        ike.remote_id = peer_id
        self.peer_id_payload = id_r
        return True

    def _eap_request(self, ike: IkeSA, eap: pl.EAP, now: float) -> None:
        if self.eap is None:
            _auth_failed(ike, f"responder asked for EAP, our round {self.round + 1} is "
                        f"{self._round(ike).method}", by_peer=False, now=now, tell_peer=True)
            return
        try:
            packet = EapPacket.parse(eap.message)
            ike.trace_note(now, "eap", dir="in", packet=describe(packet))
            answer = self.eap.receive(packet)
        except EapError as err:
            _auth_failed(ike, f"EAP: {err}", by_peer=False, now=now, tell_peer=True)
            return
        if answer is not None:
            self.eap_out = answer
            self.phase = "eap"
            ike.trace_note(now, "eap", dir="out", packet=describe(answer))
            ike.tm.queue(self, now, front=True)
            return
        if not self.eap.succeeded:
            _auth_failed(ike, f"EAP: {self.eap.failed}", by_peer=True, now=now)
            return
        ike.trace_note(now, "eap_success", method=str(self._round(ike).method), msk=self.eap.msk is not None)
        self.phase = "eap_auth"
        ike.tm.queue(self, now, front=True)

    def _established_i(self, ike: IkeSA, payloads: list[pl.Payload], error: pl.Notify | None, now: float) -> None:
        mobike.agreed_by_initiator(ike, payloads, now)
        cp = first(payloads, pl.CP)
        if isinstance(cp, pl.CP):
            _take_virtual_ip(ike, cp)  # before IkeSaUp, which carries it (RFC 7296 §3.15)
        ike.established(now)
        if self.child is None:
            return
        if error is not None:
            self.negotiation_failed(ike, f"CHILD_SA {self.child.name} not created: peer answered "
                                         f"{name_of(NotifyType, error.notify_type)}")
            return
        try:
            ike.install_child_from_response(self.child, self.spi_in, payloads, ike.nonce_i, ike.nonce_r, None, now,
                                            we_initiated=True, rekeyed=None)
        except ExchangeFailed as err:
            self.negotiation_failed(ike, err.reason)

    # ---------------------------------------------------------------- responder

    def _target(self, ike: IkeSA) -> IkeAuth:
        held = ike.auth_responder
        return held if isinstance(held, IkeAuth) else self

    def process_r(self, ike: IkeSA, inner: list[pl.Payload], now: float) -> None:
        target = self._target(ike)
        if target is not self:
            return target.process_r(ike, inner, now)
        self.reply, self.failure = [], None
        if self.phase == "first":
            return self._first_request(ike, inner, now)
        if self.phase == "eap":
            return self._eap_response(ike, inner, now)
        if self.phase == "eap_auth":
            return self._eap_auth(ike, inner, now)
        return self._next_round(ike, inner, now)

    def _remote_round(self, ike: IkeSA) -> AuthConfig:
        return ike.config.remote_rounds[self.round]

    def _first_request(self, ike: IkeSA, inner: list[pl.Payload], now: float) -> None:
        endpoint = ike.endpoint
        id_i, auth = first(inner, pl.IDi), first(inner, pl.AUTH)
        if id_i is None:
            return self._fail(ike, "IKE_AUTH request lacks IDi")
        peer_id = Identity.from_payload(id_i)
        id_r = first(inner, pl.IDr)
        wanted_local = Identity.from_payload(id_r) if id_r is not None else None
        config = endpoint.config.find_connection_for(ike.local[0], ike.remote[0], remote_id=peer_id,
                                                     local_id=wanted_local)
        if config is None:
            return self._fail(ike, f"no connection for peer identity {peer_id}"
                              + (f" asking for {wanted_local}" if wanted_local is not None else ""))
        if config is not ike.config:
            ike.config = config
            ike.local_id = config.local_identity(ike.local[0])
        first_round = config.remote
        if auth is None and not AuthClass(first_round.method).is_eap:
            return self._fail(ike, f"IKE_AUTH request lacks AUTH; connection {config.name} expects "
                                   f"{first_round.method} (without AUTH the initiator asks for EAP, RFC 7296 §2.16)")
        try:
            auth, ppk_reply = ppk.responder_auth(ike, config, inner, auth)  # RFC 8784 §3
        except ExchangeFailed as err:
            return self._fail(ike, err.reason)
        if auth is not None:
            try:
                verifier(ike, first_round).verify(id_i, auth, inner)
            except (AuthenticationFailed, CryptoError) as err:
                return self._fail(ike, str(err))
        ike.remote_id = peer_id
        ike.peer_certreq = ike.peer_certreq or first(inner, pl.CERTREQ) is not None
        mobike.peer_offers(ike, inner)
        id_payload = ike.local_id.to_payload(pl.IDr)
        try:
            ours: list[pl.Payload] = [id_payload, *cert_payloads(ike, config.local),
                                      builder(ike, config.local).build(id_payload), *ppk_reply]
        except ExchangeFailed as err:
            return self._fail(ike, err.reason)
        self.peer_id_payload = id_payload  # our IDr, signed again by the AUTH after EAP
        self.request = inner
        self.round_id = id_i
        another = find_notify(inner, NotifyType.ANOTHER_AUTH_FOLLOWS) is not None
        if auth is None:
            ike.auth_responder = self
            if first_round.method == AuthClass.EAP_RADIUS:
                return self._start_radius(ike, peer_id, ours, now)
            start = self._start_eap(ike, first_round, peer_id, now)
            if start is None:
                ike.auth_responder = None
                return
            self.reply = ours + [start]
            return
        if another:
            if len(config.remote_rounds) < 2:
                return self._fail(ike, f"peer announces another authentication round (RFC 4739), connection "
                                       f"{config.name} has one")
            ike.auth_responder = self
            self.round, self.phase = 1, "next_round"
            self.reply = ours
            return
        if len(config.remote_rounds) > 1:
            return self._fail(ike, f"connection {config.name} wants {len(config.remote_rounds)} authentication "
                                   f"rounds (RFC 4739), the peer finished after one")
        self._finish_r(ike, ours, now)

    def _finish_r(self, ike: IkeSA, reply: list[pl.Payload], now: float) -> None:
        reply = reply + mobike.agreed_by_responder(ike, self.request, now)
        ike.established(now)
        self.established = True
        self.reply = reply + self._first_child(ike, self.request, now)

    def _start_eap(self, ike: IkeSA, auth: AuthConfig, peer_id: Identity, now: float) -> pl.EAP | None:
        try:
            self.eap = EapAuthenticator.serving(ike, auth, peer_id)
            assert self.eap.server is not None
            packet = self.eap.server.start()
        except EapError as err:
            self._fail(ike, f"EAP: {err}")
            return None
        self.phase = "eap"
        ike.trace_note(now, "eap", dir="out", packet=describe(packet))
        return pl.EAP(message=packet.serialize())

    def _start_radius(self, ike: IkeSA, peer_id: Identity, prefix: list[pl.Payload], now: float) -> None:
        """auth = eap-radius: the peer's IKE identity goes to the RADIUS server as its
        EAP-Response/Identity (strongSwan's eap-radius without eap_start); the response waits
        for the server's first challenge."""
        server = ike.endpoint.radius_server()
        if server is None:
            return self._fail(ike, "auth = eap-radius but no RADIUS server is configured")
        self.eap = RadiusAuthenticator(ike, server, peer_id)
        ike.remote_eap_id = peer_id
        self.phase = "eap"
        self._ask_radius(ike, self.eap.relay.start(), prefix, now)

    def _ask_radius(self, ike: IkeSA, packet: bytes, prefix: list[pl.Payload], now: float) -> None:
        assert isinstance(self.eap, RadiusAuthenticator)
        self.held_prefix = prefix
        ike.trace_note(now, "radius", dir="out", server=self.eap.server_config.name, length=len(packet))
        ike.endpoint.emit(RadiusRequest(ike.unique_id, self.eap.server_config.name, packet))
        ike.tm.hold()

    def radius_answer(self, ike: IkeSA, raw: bytes, now: float) -> None:
        """The RADIUS server's answer to the held request; raises RadiusError (and changes
        nothing) when it is not to be believed (RFC 2865 §3, RFC 3579 §3.2: silently discarded)."""
        assert isinstance(self.eap, RadiusAuthenticator)
        outcome = self.eap.relay.answer(raw)
        self.eap.take(outcome)
        code = "Access-Accept" if outcome.accepted else "Access-Reject" if outcome.done else "Access-Challenge"
        ike.trace_note(now, "radius", dir="in", server=self.eap.server_config.name, code=code)
        self.failure = None
        ike.trace_note(now, "eap", dir="out", packet=describe(outcome.eap))
        self.reply = self.held_prefix + [pl.EAP(message=outcome.eap.serialize())]
        self.held_prefix = []
        if self.eap.succeeded:
            ike.radius_framed_ip = outcome.framed_ip
            ike.radius_classes = list(outcome.classes)
            ike.radius_server = self.eap.server_config.name
            ike.trace_note(now, "eap_success", method=str(self._remote_round(ike).method),
                           msk=self.eap.msk is not None, identity=str(ike.remote_eap_id))
            self.phase = "eap_auth"
        elif self.eap.failed:
            # RFC 3579 §2.6.3: Access-Reject ends the conversation with EAP Failure, then the SA
            self.failure = f"EAP: {self.eap.failed}"
            _alert(ike, self.failure, by_peer=False)
        ike.tm.release(now)

    def radius_failed(self, ike: IkeSA, reason: str, now: float) -> None:
        """No RADIUS server answered: the peer is refused (strongSwan answers AUTHENTICATION_FAILED)."""
        self.held_prefix = []
        self._fail(ike, f"EAP-RADIUS: {reason}")
        ike.tm.release(now)

    def _eap_response(self, ike: IkeSA, inner: list[pl.Payload], now: float) -> None:
        eap = first(inner, pl.EAP)
        if isinstance(self.eap, RadiusAuthenticator):
            if eap is None:
                return self._fail(ike, "IKE_AUTH request during EAP lacks the EAP payload")
            try:
                packet = EapPacket.parse(eap.message)
                ike.trace_note(now, "eap", dir="in", packet=describe(packet))
                request = self.eap.relay.respond(eap.message)
            except EapError as err:
                return self._fail(ike, f"EAP: {err}")
            return self._ask_radius(ike, request, [], now)
        assert self.eap is not None and self.eap.server is not None
        server = self.eap.server
        if eap is None:
            return self._fail(ike, "IKE_AUTH request during EAP lacks the EAP payload")
        try:
            packet = EapPacket.parse(eap.message)
            ike.trace_note(now, "eap", dir="in", packet=describe(packet))
            answer = self.eap.receive(packet)
        except EapError as err:
            return self._fail(ike, f"EAP: {err}")
        assert answer is not None
        ike.trace_note(now, "eap", dir="out", packet=describe(answer))
        self.reply = [pl.EAP(message=answer.serialize())]
        method = server.method
        if method is not None and method.refusal is not None and not self.told_refusal:
            self.told_refusal = True
            _alert(ike, f"EAP: {method.refusal}", by_peer=False)
        if server.failed:
            # RFC 7296 §2.16 with RFC 3748 §4.2: EAP Failure ends the exchange, then the SA
            self.failure = f"EAP: {server.failed}"
            _alert(ike, self.failure, by_peer=False)
        elif server.succeeded:
            ike.remote_eap_id = identity_from_eap(server.identity)
            ike.trace_note(now, "eap_success", method=str(self._remote_round(ike).method),
                           msk=self.eap.msk is not None, identity=str(ike.remote_eap_id))
            self.phase = "eap_auth"

    def _eap_auth(self, ike: IkeSA, inner: list[pl.Payload], now: float) -> None:
        auth = first(inner, pl.AUTH)
        if auth is None:
            return self._fail(ike, "IKE_AUTH request after EAP Success lacks AUTH (RFC 7296 §2.16)")
        assert self.round_id is not None and self.peer_id_payload is not None and self.eap is not None
        try:
            self.eap.verify(self.round_id, auth)
        except AuthenticationFailed as err:
            return self._fail(ike, str(err))
        ours = self.eap.build(self.peer_id_payload)
        if find_notify(inner, NotifyType.ANOTHER_AUTH_FOLLOWS) is not None:
            if self.round + 1 >= len(ike.config.remote_rounds):
                return self._fail(ike, "peer announces another authentication round (RFC 4739) the connection "
                                       "does not have")
            self.round, self.phase = self.round + 1, "next_round"
            self.reply = [ours]
            return
        if self.round + 1 < len(ike.config.remote_rounds):
            return self._fail(ike, f"connection {ike.config.name} wants {len(ike.config.remote_rounds)} "
                                   f"authentication rounds (RFC 4739), the peer finished after {self.round + 1}")
        self._finish_r(ike, [ours], now)

    def _next_round(self, ike: IkeSA, inner: list[pl.Payload], now: float) -> None:
        # RFC 4739 §3: the next round starts with a new IDi
        id_i, auth = first(inner, pl.IDi), first(inner, pl.AUTH)
        if id_i is None:
            return self._fail(ike, f"IKE_AUTH request of round {self.round + 1} lacks IDi (RFC 4739)")
        round_auth = self._remote_round(ike)
        peer_id = Identity.from_payload(id_i)
        if not round_auth.match_identity(peer_id):
            return self._fail(ike, f"identity {peer_id} of round {self.round + 1} does not match {round_auth.id}")
        self.round_id = id_i
        ike.trace_note(now, "auth_round", round=self.round + 1, method=str(round_auth.method))
        if auth is None:
            if not AuthClass(round_auth.method).is_eap:
                return self._fail(ike, f"round {self.round + 1} request lacks AUTH; connection expects "
                                       f"{round_auth.method}")
            if round_auth.method == AuthClass.EAP_RADIUS:
                return self._start_radius(ike, peer_id, [], now)
            start = self._start_eap(ike, round_auth, peer_id, now)
            if start is not None:
                self.reply = [start]
            return
        try:
            verifier(ike, round_auth).verify(id_i, auth, inner)
        except (AuthenticationFailed, CryptoError) as err:
            return self._fail(ike, str(err))
        if find_notify(inner, NotifyType.ANOTHER_AUTH_FOLLOWS) is not None and \
                self.round + 1 < len(ike.config.remote_rounds):
            self.round += 1
            self.reply = []
            return
        if self.round + 1 < len(ike.config.remote_rounds):
            return self._fail(ike, f"connection {ike.config.name} wants {len(ike.config.remote_rounds)} "
                                   f"authentication rounds (RFC 4739), the peer finished after {self.round + 1}")
        self._finish_r(ike, [], now)

    def _fail(self, ike: IkeSA, reason: str) -> None:
        _alert(ike, reason, by_peer=False)
        # RFC 7296 §2.21.2: answer AUTHENTICATION_FAILED, then forget the SA
        self.failure = reason
        self.reply = [notify(NotifyType.AUTHENTICATION_FAILED)]

    def _first_child(self, ike: IkeSA, inner: list[pl.Payload], now: float) -> list[pl.Payload]:
        sa, tsi, tsr = first(inner, pl.SA), first(inner, pl.TSi), first(inner, pl.TSr)
        if sa is None or tsi is None or tsr is None:
            return []  # RFC 6023 childless; nothing to set up
        try:
            cp_reply = _assign_virtual_ip(ike, first(inner, pl.CP))
            payloads, _ = new_child_as_responder(ike, inner, sa, tsi, tsr, ike.nonce_i, ike.nonce_r, None, now,
                                                 pfs=False)
        except ExchangeFailed as err:
            self.negotiation_failed(ike, f"no CHILD_SA: {err.reason}")
            return [notify(err.notify or NotifyType.NO_PROPOSAL_CHOSEN, err.data)]
        return cp_reply + payloads

    def build_r(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        return self._target(ike).reply

    def responded(self, ike: IkeSA, now: float) -> None:
        target = self._target(ike)
        if target.failure is not None:
            ike.destroy(f"authentication failed: {target.failure}", now, quiet=True)
        elif target.established:
            ike.auth_responder = None


class AuthRejected(Task):
    """The initiator tells us it did not accept our AUTH (RFC 7296 §2.21.2): an INFORMATIONAL
    with AUTHENTICATION_FAILED; we answer and forget the SA."""

    name = "INFORMATIONAL"

    def process_r(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        _alert(ike, "peer rejected our authentication", by_peer=True)

    def build_r(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        return []

    def responded(self, ike: IkeSA, now: float) -> None:
        ike.destroy("peer rejected our authentication", now, quiet=True)


def _alert(ike: IkeSA, reason: str, by_peer: bool) -> None:
    """An authentication failed, ours (`by_peer`: the peer refused us) or the peer's."""
    ike.endpoint.emit(AuthFailed(ike.unique_id, ike.config.name, reason, by_peer))


def _auth_failed(ike: IkeSA, reason: str, by_peer: bool, now: float, tell_peer: bool = False) -> None:
    _alert(ike, reason, by_peer)
    if tell_peer and ike.keys is not None:
        # RFC 7296 §2.21.2: tell the responder, then forget the SA
        ike.tm.send_request_once([pl.Notify(notify_type=NotifyType.AUTHENTICATION_FAILED)], now)
    ike.destroy(f"authentication failed: {reason}", now, quiet=True)


# RFC 7296 §3.15.1: the address attribute and the DNS attribute of each family
_ADDRESS = {4: CfgAttr.INTERNAL_IP4_ADDRESS, 6: CfgAttr.INTERNAL_IP6_ADDRESS}
_DNS = {4: CfgAttr.INTERNAL_IP4_DNS, 6: CfgAttr.INTERNAL_IP6_DNS}
# the prefix length sent with an INTERNAL_IP6_ADDRESS: 64, as strongSwan's ike_config.c sends it
# (and RFC 7296 §3.15.3's example); the client installs the address alone either way
IP6_PREFIX = 64


def _cp_request(vips: list[str]) -> list[pl.CfgAttribute]:
    """A CFG_REQUEST for `vips` (swanctl.conf): per family, the address attribute, empty for any
    address (0.0.0.0, ::) as strongSwan sends it, and the DNS attribute."""
    out = []
    for vip in vips:
        address = ipaddress.ip_address(vip)
        out.append(pl.CfgAttribute(_ADDRESS[address.version], b"" if not int(address) else _cp_address(address)))
        out.append(pl.CfgAttribute(_DNS[address.version]))
    return out


def _cp_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """The value of INTERNAL_IP4_ADDRESS (4 octets) or INTERNAL_IP6_ADDRESS (RFC 7296 §3.15.1:
    17 octets, the address and a prefix length)."""
    return address.packed if address.version == 4 else address.packed + bytes([IP6_PREFIX])


def _take_virtual_ip(ike: IkeSA, cp: pl.CP) -> None:
    """The virtual IPs of a CFG_REPLY, in its order (an IPv6 one's prefix length is not used: the
    address alone goes on the TUN device, as /128, as strongSwan ignores it too)."""
    vips = []
    for attr in cp.attributes:
        if attr.attr_type == CfgAttr.INTERNAL_IP4_ADDRESS and len(attr.value) == 4:
            vips.append(str(ipaddress.IPv4Address(attr.value)))
        elif attr.attr_type == CfgAttr.INTERNAL_IP6_ADDRESS and len(attr.value) == 17 and attr.value[16] <= 128:
            vips.append(str(ipaddress.IPv6Address(attr.value[:16])))  # RFC 7296 §3.15.1: address, prefix length
    ike.virtual_ips = list(dict.fromkeys(vips))


def _assign_virtual_ip(ike: IkeSA, cp: pl.CP | None) -> list[pl.Payload]:
    """Our CFG_REPLY to a CFG_REQUEST: an address of each family it asks for, from the
    connection's pools; INTERNAL_ADDRESS_FAILURE only when none can be given (strongSwan's
    ike_config: a family without a pool is left out)."""
    if cp is None or cp.cfg_type != CfgType.CFG_REQUEST:
        return []
    families = list(dict.fromkeys(version for version, attr_type in ((4, CfgAttr.INTERNAL_IP4_ADDRESS),
                                                                      (6, CfgAttr.INTERNAL_IP6_ADDRESS))
                                  for a in cp.attributes if a.attr_type == attr_type))
    if not families:
        return []
    requested = {a.attr_type for a in cp.attributes}
    attributes: list[pl.CfgAttribute] = []
    assigned: list[str] = []
    for version in sorted(families):
        address: ipaddress.IPv4Address | ipaddress.IPv6Address
        dns: list[ipaddress.IPv4Address | ipaddress.IPv6Address]
        if version == 4 and ike.radius_framed_ip is not None:
            # the Access-Accept's Framed-IP-Address (RFC 2865 §5.8) is the peer's, as strongSwan's
            # eap-radius hands it out (there with pools = radius)
            address, dns = ipaddress.IPv4Address(ike.radius_framed_ip), []
        else:
            lease = ike.endpoint.lease_address(ike.config, ike.remote_eap_id or ike.remote_id, version)
            if lease is None:
                continue
            address, dns = lease
        assigned.append(str(address))
        attributes.append(pl.CfgAttribute(_ADDRESS[version], _cp_address(address)))
        if _DNS[version] in requested:
            attributes += [pl.CfgAttribute(_DNS[version], d.packed) for d in dns if d.version == version]
    if not assigned:
        raise ExchangeFailed("no virtual IP to give (no pool or pool exhausted)", NotifyType.INTERNAL_ADDRESS_FAILURE)
    ike.assigned_ips = assigned
    return [pl.CP(cfg_type=CfgType.CFG_REPLY, attributes=attributes)]
