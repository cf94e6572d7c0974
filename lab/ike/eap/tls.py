"""EAP-TLS (RFC 5216): a TLS 1.2 handshake carried in EAP, certificates on both sides, the
MSK exported from the TLS master secret (§2.3).

TLS itself is OpenSSL's, through pyOpenSSL with memory BIOs: no socket, records in and out
as octets (OpenSSL draws its own randomness). Who the certificates name and whether they
chain to our CAs is checked by lab.ike.certs at the time the caller passes, as for IKE
certificates; OpenSSL checks the signatures of the handshake (CertificateVerify, key exchange).

Type-Data (§3.1): Flags (L length included, M more fragments, S start), the TLS Message
Length when L, then TLS data. A fragment is acknowledged by an empty packet (§2.1.5).
"""
from __future__ import annotations

import datetime
import struct
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from .. import payloads as pl
from ..certs import verify_peer_certificate
from ..const import CertEncoding, EapType
from ..crypto.auth import AuthenticationFailed
from ..identity import Identity
from . import EapError, PeerMethod, ServerMethod

FLAG_L, FLAG_M, FLAG_S = 0x80, 0x40, 0x20
FRAGMENT_SIZE = 1014  # TLS data per EAP packet: 1024 octets with the EAP and EAP-TLS headers (strongSwan's size)
MSK_LABEL = b"client EAP encryption"  # RFC 5216 §2.3
MAX_MESSAGE = 64 * 1024


def _context(server: bool, certificate: x509.Certificate | None, chain: Sequence[x509.Certificate], key: Any,
             request_cert: bool = True) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    # strongSwan's libtls speaks TLS 1.2 in EAP (TLS 1.3 for EAP is RFC 9190, another MSK)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_TICKET)
    if not server:
        # RFC 5746: strongSwan's libtls sends no renegotiation_info; nothing renegotiates inside EAP-TLS
        ctx.set_options(getattr(SSL, "OP_LEGACY_SERVER_CONNECT", 0x4))
    if certificate is not None:
        ctx.use_certificate(certificate)
        ctx.use_privatekey(key)
        for extra in chain:
            ctx.add_extra_chain_cert(extra)
        ctx.check_privatekey()
    if server and not request_cert:
        return ctx  # EAP-TTLS: the server asks for no client certificate (RFC 5281 §7.1)
    # the chain is judged by lab.ike.certs once the handshake is done: OpenSSL only asks for it
    mode = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if server else 0)
    ctx.set_verify(mode, lambda connection, cert, errno, depth, ok: True)
    return ctx


class _TlsEndpoint:
    """One side's TLS connection and the EAP-TLS framing around it (EAP-TTLS frames the same
    way, RFC 5281 §9.1, its Version bits 0 like EAP-TLS's reserved ones). `msk_label` names the
    keying material the MSK is exported with; `request_cert` (a server) asks for the peer's
    certificate; a peer may have none (`certificate` None)."""

    def __init__(self, server: bool, certificate: x509.Certificate | None, chain: Sequence[x509.Certificate],
                 key: Any, check_peer: Callable[[list[x509.Certificate]], None] | None,
                 msk_label: bytes = MSK_LABEL, request_cert: bool = True, method: str = "EAP-TLS") -> None:
        self.method = method
        try:
            self.connection = SSL.Connection(_context(server, certificate, chain, key, request_cert), None)
        except SSL.Error as err:
            raise EapError(f"{method} cannot use our certificate and key: {_ssl_text(err)}") from None
        if server:
            self.connection.set_accept_state()
        else:
            self.connection.set_connect_state()
        self.check_peer = check_peer
        self.msk_label = msk_label
        self.incoming = b""
        self.expected_length: int | None = None
        self.outgoing = b""
        self.first_out = True  # the next fragment starts a flight (it carries the L flag)
        self.finished = False
        self.peer_checked = False
        self.msk: bytes | None = None

    def receive(self, type_data: bytes) -> bool:
        """Take in one EAP-TLS packet; True when a whole TLS message has arrived (and was fed)."""
        if not type_data:
            raise EapError(f"{self.method} packet without its Flags octet")
        flags, data = type_data[0], type_data[1:]
        if flags & FLAG_L:
            if len(data) < 4:
                raise EapError(f"{self.method} L flag without the 4-octet TLS Message Length")
            length = struct.unpack("!I", data[:4])[0]
            data = data[4:]
            if self.expected_length is None:
                if length > MAX_MESSAGE:
                    raise EapError(f"{self.method} message of {length} octets is larger than {MAX_MESSAGE}")
                self.expected_length = length
        self.incoming += data
        if len(self.incoming) > MAX_MESSAGE:
            raise EapError(f"{self.method} message grew past its announced length")
        if flags & FLAG_M:
            return False  # RFC 5216 §2.1.5: more fragments follow; acknowledge this one
        whole, self.incoming, self.expected_length = self.incoming, b"", None
        if whole:
            self._feed(whole)
        self.first_out = True  # what we send next answers it: a new flight
        return True

    def _feed(self, records: bytes) -> None:
        self.connection.bio_write(records)
        self._step()

    def _step(self) -> None:
        if not self.finished:
            try:
                self.connection.do_handshake()
                self.finished = True
            except SSL.WantReadError:
                pass
            except SSL.Error as err:
                self._drain()
                raise EapError(f"TLS handshake failed: {_ssl_text(err)}") from None
        self._drain()
        if self.finished and not self.peer_checked:
            self.peer_checked = True
            if self.check_peer is not None:
                # OpenSSL's peer chain holds the leaf on a client, not on a server
                leaf = self.connection.get_peer_certificate(as_cryptography=True)
                chain = list(self.connection.get_peer_cert_chain(as_cryptography=True) or [])
                if leaf is not None and (not chain or chain[0] != leaf):
                    chain.insert(0, leaf)
                self.check_peer(chain)
            # RFC 5216 §2.3: MSK = TLS-PRF-64(master secret, "client EAP encryption", client.random | server.random);
            # RFC 5281 §8 the same with "ttls keying material"
            self.msk = self.connection.export_keying_material(self.msk_label, 64)

    def read_application(self) -> bytes:
        """The application data TLS has decrypted so far (EAP-TTLS: the AVPs)."""
        data = b""
        while True:
            try:
                chunk = self.connection.recv(65536)
            except SSL.WantReadError:
                return data
            except SSL.ZeroReturnError:
                raise EapError(f"the {self.method} peer closed its TLS connection") from None
            except SSL.Error as err:
                raise EapError(f"TLS record refused: {_ssl_text(err)}") from None
            if not chunk:
                return data
            data += chunk

    def write_application(self, data: bytes) -> None:
        """`data` sent as TLS application data (encrypted under the handshake's keys)."""
        self.connection.sendall(data)
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                chunk = self.connection.bio_read(65536)
            except SSL.WantReadError:
                return
            if not chunk:
                return
            self.outgoing += chunk

    def next_fragment(self) -> bytes:
        """The next EAP-TLS packet of what TLS has to send (empty data: an acknowledgement)."""
        if not self.outgoing:
            return bytes([0])
        first, self.first_out = self.first_out, False
        total = len(self.outgoing)
        piece, self.outgoing = self.outgoing[:FRAGMENT_SIZE], self.outgoing[FRAGMENT_SIZE:]
        flags = FLAG_M if self.outgoing else 0
        if first:
            # RFC 5216 §3.1: the L flag and length on the first fragment (strongSwan includes it always)
            return bytes([flags | FLAG_L]) + struct.pack("!I", total) + piece
        return bytes([flags]) + piece

    def start(self) -> None:
        self._step()


def _ssl_text(err: Exception) -> str:
    parts = []
    for item in getattr(err, "args", [[]])[0] or []:
        if isinstance(item, tuple):
            parts.append(":".join(str(x) for x in item if x))
    return "; ".join(parts) or str(err) or type(err).__name__


def peer_checker(anchors: Sequence[x509.Certificate], identity: Identity, now: datetime.datetime | None,
                 pinned: Sequence[x509.Certificate] = ()) -> Callable[[list[x509.Certificate]], None]:
    """A check of the other side's TLS chain: it names `identity` and chains to `anchors`."""

    def check(chain: list[x509.Certificate]) -> None:
        if not chain:
            raise EapError("the TLS peer sent no certificate")
        if now is None:
            raise EapError("no wall clock given to the endpoint: certificate validity cannot be checked")
        payloads = [pl.CERT(encoding=CertEncoding.X509_SIGNATURE, data=c.public_bytes(Encoding.DER)) for c in chain]
        try:
            verify_peer_certificate(payloads, SimpleNamespace(remote=SimpleNamespace(certs=list(pinned))),
                                    list(anchors), identity, now)
        except AuthenticationFailed as err:
            raise EapError(f"TLS certificate refused: {err}") from None
    return check


class TlsPeer(PeerMethod):
    type = EapType.TLS

    def __init__(self, certificate: x509.Certificate, chain: Sequence[x509.Certificate], key: Any,
                 check_server: Callable[[list[x509.Certificate]], None]) -> None:
        self.tls = _TlsEndpoint(False, certificate, chain, key, check_server)
        self.started = False

    def process(self, identifier: int, type_data: bytes) -> bytes:
        if not type_data:
            raise EapError("EAP-TLS Request without its Flags octet")
        if type_data[0] & FLAG_S and not self.started:
            self.started = True
            self.tls.start()  # RFC 5216 §2.1.1: the Start packet; our ClientHello answers it
            return self._send()
        if len(type_data) == 1 and not type_data[0] & (FLAG_L | FLAG_M):
            return self._send()  # an acknowledgement of our fragment: the next one
        if not self.tls.receive(type_data):
            return bytes([0])
        return self._send()

    def _send(self) -> bytes:
        packet = self.tls.next_fragment()
        self.msk = self.tls.msk
        return packet

    @property
    def success_allowed(self) -> bool:
        return self.tls.finished and self.tls.msk is not None and not self.tls.outgoing


class TlsServer(ServerMethod):
    type = EapType.TLS

    def __init__(self, certificate: x509.Certificate, chain: Sequence[x509.Certificate], key: Any,
                 check_peer: Callable[[list[x509.Certificate]], None]) -> None:
        self.tls = _TlsEndpoint(True, certificate, chain, key, check_peer)

    def initiate(self, identifier: int) -> bytes:
        return bytes([FLAG_S])  # RFC 5216 §2.1.1: EAP-TLS Start, no data

    def process(self, identifier: int, type_data: bytes) -> bytes | None:
        if not type_data:
            raise EapError("EAP-TLS Response without its Flags octet")
        if len(type_data) == 1 and not type_data[0] & (FLAG_L | FLAG_M):
            if self.tls.outgoing:
                return self.tls.next_fragment()  # the peer acknowledged our fragment
            if self.tls.finished:
                self.msk = self.tls.msk
                return None  # RFC 5216 §2.1.3: the peer acknowledged our Finished: Success
            raise EapError("EAP-TLS peer acknowledged when nothing was sent")
        if not self.tls.receive(type_data):
            return bytes([0])
        return self.tls.next_fragment()
