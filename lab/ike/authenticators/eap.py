"""EAP inside IKE_AUTH (RFC 7296 §2.16): the EAP conversation of one authentication round,
run by our EapPeer (initiator) or EapServer (responder) with the methods of lab.ike.eap, then
the AUTH payloads of both sides, keyed with the MSK the method made; a method without one
(EAP-MD5) keys the initiator's AUTH with SK_pi and the responder's with SK_pr."""
from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .. import payloads as pl
from ..config import AuthClass, AuthConfig
from ..const import AuthMethod, EapType, IdType, name_of
from ..crypto import AuthenticationFailed, psk_auth_data
from ..eap import EapError, EapPacket, EapPeer, EapServer, PeerMethod, ServerMethod, eap_type_of
from ..eap.gtc import GtcPeer, totp_code
from ..eap.md5 import Md5Peer, Md5Server
from ..eap.mschapv2 import MsChapV2Peer, MsChapV2Server
from ..eap.tls import TlsPeer, TlsServer, peer_checker
from ..eap.ttls import TtlsPeer, TtlsServer
from ..identity import Identity, IdentityError
from .base import Authenticator, auth_octets

if TYPE_CHECKING:
    from cryptography import x509

    from ..sa import IkeSA

EAP_METHODS = ("md5", "mschapv2", "tls", "ttls")  # what plain `eap` offers; eap-gtc only when named


def eap_identity_octets(identity: Identity) -> bytes:
    # strongSwan sends an identity's encoding (its ID data), e.g. b"carol" for carol
    return identity.data


def identity_from_eap(data: bytes) -> Identity:
    """An EAP identity as an IKE identity (strongSwan identification_create_from_data)."""
    try:
        return Identity.parse(data.decode("utf-8"))
    except (IdentityError, UnicodeDecodeError, ValueError):
        return Identity(IdType.ID_KEY_ID, bytes(data))  # opaque octets


class EapAuthenticator(Authenticator):
    """One EAP round: `peer` (we initiated the IKE SA) or `server` runs the conversation;
    `msk` is kept once it succeeded."""

    def __init__(self, ike: IkeSA, peer: EapPeer | None = None, server: EapServer | None = None) -> None:
        super().__init__(ike)
        self.peer = peer
        self.server = server
        self.msk: bytes | None = None

    @classmethod
    def client(cls, ike: IkeSA, auth: AuthConfig, identity: Identity) -> EapAuthenticator:
        """The initiator's side of a round of `auth` (eap or eap-<method>) as `identity`."""
        eap_id = auth.eap_id if auth.eap_id is not None and not auth.eap_id.is_any else identity
        ike.local_eap_id = eap_id
        name = eap_identity_octets(eap_id)
        endpoint = ike.endpoint
        named = AuthClass(auth.method).eap_method
        wanted = [named] if named else list(EAP_METHODS)

        def secret() -> bytes:
            found = endpoint.config.find_eap(eap_id, ike.remote_id or ike.config.remote_identity)
            if found is None:
                raise EapError(f"no EAP secret for {eap_id} in the secrets section (secrets {{ eap-x {{ id = "
                               f"{eap_id}  secret = ... }} }})")
            return found

        def md5() -> PeerMethod:
            return Md5Peer(secret())

        def mschapv2() -> PeerMethod:
            return MsChapV2Peer(name, secret(), endpoint.random)

        def tls() -> PeerMethod:
            if not auth.certs:
                raise EapError(f"EAP-TLS needs our certificate: add certs = ... to the local round of "
                               f"{ike.config.name}")
            key = endpoint.config.secrets.private_key_for(auth.certs[0])
            if key is None:
                raise EapError("no private key for our EAP-TLS certificate")
            return TlsPeer(auth.certs[0], auth.certs[1:], key.key, server_check())

        def server_check() -> Callable[[list[x509.Certificate]], None]:
            # swanctl.conf local.aaa_id: the name the EAP server's certificate must carry, when the
            # server is not the IKE peer itself (an AAA server behind an eap-radius gateway)
            anchors = list(ike.config.remote.cacerts) or list(endpoint.config.cacerts)
            clock = endpoint.wall_clock() if endpoint.wall_clock else None
            return peer_checker(anchors, auth.aaa_id or ike.remote_id or ike.config.remote_identity, clock)

        def ttls() -> PeerMethod:
            # RFC 5281 §7.2: the client must check the server's certificate before phase 2 reveals anything
            return TtlsPeer(name, secret(), endpoint.config.ttls.phase2_client, endpoint.random, server_check())

        def gtc() -> PeerMethod:
            found = endpoint.config.secrets.find_eap_key(eap_id, ike.remote_id or ike.config.remote_identity)
            if found is None:
                raise EapError(f"no EAP secret for {eap_id} in the secrets section (secrets {{ eap-x {{ id = "
                               f"{eap_id}  secret = ...  totp = ... }} }})")
            if found.totp is None:
                return GtcPeer(found.secret)
            if endpoint.wall_clock is None:
                raise EapError("EAP-GTC with a one-time code needs the time of day")
            clock, totp = endpoint.wall_clock, found.totp
            return GtcPeer(found.secret, lambda: totp_code(totp, clock()))

        if auth.method == AuthClass.EAP_GTC:
            return cls(ike, peer=EapPeer(name, {EapType.GTC: gtc}))
        factories: dict[int, Callable[[], PeerMethod]] = {}
        for method in wanted:
            if method == "tls" and not auth.certs:
                continue
            if method in ("md5", "mschapv2") and auth.method == AuthClass.EAP and auth.certs and \
                    endpoint.config.find_eap(eap_id, ike.config.remote_identity) is None:
                continue
            if method == "ttls" and auth.method == AuthClass.EAP and \
                    endpoint.config.find_eap(eap_id, ike.config.remote_identity) is None:
                continue
            kind = {"md5": EapType.MD5_CHALLENGE, "mschapv2": EapType.MSCHAPV2, "tls": EapType.TLS,
                    "ttls": EapType.TTLS}[method]
            factories[kind] = {"md5": md5, "mschapv2": mschapv2, "tls": tls, "ttls": ttls}[method]
        return cls(ike, peer=EapPeer(name, factories))

    @classmethod
    def serving(cls, ike: IkeSA, auth: AuthConfig, peer_id: Identity) -> EapAuthenticator:
        """The responder's side of a remote round of `auth` (eap-<method>) for the peer `peer_id`;
        raises EapError when the round names no method."""
        endpoint = ike.endpoint
        method = AuthClass(auth.method).eap_method
        if method is None:
            raise EapError(f"remote auth = {auth.method} names no method to ask for")
        ask = auth.eap_id is not None
        pattern = auth.eap_id

        def accept(data: bytes) -> bool:
            return pattern is None or pattern.is_any or bool(identity_from_eap(data).matches(pattern))

        def lookup(name: bytes) -> bytes | None:
            return endpoint.config.find_eap(ike.local_id, identity_from_eap(name))

        def make(who: bytes) -> ServerMethod:
            ike.remote_eap_id = identity_from_eap(who)
            if method == "md5":
                return Md5Server(lookup(who), endpoint.random, who)
            if method == "mschapv2":
                return MsChapV2Server(lookup, endpoint.random, who)
            certs = ike.config.local.certs
            kind = method.upper()
            if not certs:
                raise EapError(f"EAP-{kind} needs our certificate: connection {ike.config.name} has none")
            key = endpoint.config.secrets.private_key_for(certs[0])
            if key is None:
                raise EapError(f"no private key for our EAP-{kind} certificate")
            if method == "ttls":
                # the inner user's password: the secret between us and the name phase 2 gives
                return TtlsServer(certs[0], certs[1:], key.key, lookup, endpoint.random,
                                  endpoint.config.ttls.phase2_method)
            anchors = list(auth.cacerts) or list(endpoint.config.cacerts)
            clock = endpoint.wall_clock() if endpoint.wall_clock else None
            return TlsServer(certs[0], certs[1:], key.key, peer_checker(anchors, identity_from_eap(who), clock,
                                                                        auth.certs))
        server = EapServer(eap_type_of(method), make, endpoint.random(1)[0], ask_identity=ask,
                           identity=eap_identity_octets(peer_id), accept_identity=accept)
        return cls(ike, server=server)

    def receive(self, packet: EapPacket) -> EapPacket | None:
        """Our answer to the other side's EAP packet (the peer's: None once the conversation
        ended); raises EapError. The MSK is kept when the conversation succeeded."""
        if self.peer is not None:
            answer = self.peer.receive(packet)
            if self.peer.succeeded:
                self.msk = self.peer.msk
            return answer
        assert self.server is not None
        reply = self.server.receive(packet)
        if self.server.succeeded:
            self.msk = self.server.msk
        return reply

    @property
    def succeeded(self) -> bool:
        conversation = self.peer if self.peer is not None else self.server
        return conversation is not None and conversation.succeeded

    @property
    def failed(self) -> str | None:
        conversation = self.peer if self.peer is not None else self.server
        return conversation.failed if conversation is not None else None

    def auth_data(self, ours: bool, id_body: bytes) -> bytes:
        """RFC 7296 §2.16: the shared-key MIC over the signed octets, keyed with the MSK, or
        without one with the sender's SK_p."""
        ike = self.ike
        assert ike.algorithms is not None and ike.keys is not None
        octets = auth_octets(ike, ours, id_body)
        if self.msk:
            key = self.msk
        else:
            sender_is_initiator = ike.is_initiator == ours
            key = ike.keys.sk_pi if sender_is_initiator else ike.keys.sk_pr
        return psk_auth_data(ike.prf_id, key, octets)

    def build(self, id_payload: pl.Identification) -> pl.AUTH:
        return pl.AUTH(method=AuthMethod.SHARED_KEY_MIC, data=self.auth_data(True, id_payload.body()))

    def verify(self, id_payload: pl.Identification, auth: pl.AUTH, payloads: Sequence[pl.Payload] = ()) -> None:
        if auth.method != AuthMethod.SHARED_KEY_MIC:
            raise AuthenticationFailed(f"peer's AUTH after EAP is {name_of(AuthMethod, auth.method)}, not a "
                                       f"shared key MIC (RFC 7296 §2.16)")
        expected = self.auth_data(False, id_payload.body())
        if not hmac.compare_digest(expected, bytes(auth.data)):
            raise AuthenticationFailed("AUTH over the EAP " + ("MSK" if self.msk else "SK_p keys") + " does not match "
                                       "(the EAP run was not with this IKE SA's peer)")
