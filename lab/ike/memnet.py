"""Two (or more) IkeEndpoints joined by an in-memory network with a fake clock, that can
drop, duplicate, reorder and rewrite (NAT) datagrams. Pure: no sockets, no clock, no root;
the unit tests and the notebooks step IKE exchanges with it.

    a, b = pair_configs()
    net = make_net(a, b)
    net.endpoints["a"].initiate("s2s", net.now)
    sender, receiver, datagram = net.deliver_one()   # IKE_SA_INIT request, from a to b
    net.settle()                                     # the rest of the exchange
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from .config import (
    AuthClass,
    AuthConfig,
    ChildConfig,
    Config,
    IkeConfig,
    PrivateKey,
    Secrets,
    SharedKey,
    parse_addrs,
    parse_traffic_selectors,
)
from .endpoint import IkeEndpoint, OutDatagram
from .events import Event
from .identity import Identity
from .proposals import parse_esp_proposals, parse_ike_proposals
from .settings import Settings

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

GW_A = "198.51.100.1"
GW_B = "203.0.113.2"


def s2s_config(local: str, remote: str, local_id: str, remote_id: str, local_ts: str, remote_ts: str, *,
               proposals: str = "aes128gcm16-prfsha256-x25519", esp: str = "aes128gcm16",
               psk: str = "a-lab-only-psk", remote_addrs: str | None = None, **ike_options: Any) -> Config:
    child_options = {k[6:]: ike_options.pop(k) for k in list(ike_options) if k.startswith("child_")}
    child = ChildConfig("net", parse_traffic_selectors(local_ts), parse_traffic_selectors(remote_ts),
                        parse_esp_proposals(esp), **child_options)
    conn = IkeConfig("s2s", local_addrs=parse_addrs(local), remote_addrs=parse_addrs(remote_addrs or remote),
                     proposals=parse_ike_proposals(proposals),
                     local=AuthConfig(AuthClass.PSK, Identity.parse(local_id)),
                     remote=AuthConfig(AuthClass.PSK, Identity.parse(remote_id)), children={"net": child}, **ike_options)
    secrets = Secrets(ike=[SharedKey("ike-s2s", psk.encode(), [Identity.parse(local_id), Identity.parse(remote_id)])])
    return Config(connections={"s2s": conn}, secrets=secrets)


def pair_configs(**options: Any) -> tuple[Config, Config]:
    a_opts = {k[2:]: v for k, v in options.items() if k.startswith("a_")}
    b_opts = {k[2:]: v for k, v in options.items() if k.startswith("b_")}
    common = {k: v for k, v in options.items() if not k.startswith(("a_", "b_"))}
    a = s2s_config(GW_A, GW_B, "gwa.lab", "gwb.lab", "10.1.0.0/24", "10.2.0.0/24", **{**common, **a_opts})
    b = s2s_config(GW_B, GW_A, "gwb.lab", "gwa.lab", "10.2.0.0/24", "10.1.0.0/24", **{**common, **b_opts})
    return a, b


@dataclass
class Net:
    endpoints: dict[str, IkeEndpoint]
    now: float = 0.0
    in_flight: list[tuple[float, str, OutDatagram]] = field(default_factory=list)
    log: list[tuple[float, str, OutDatagram]] = field(default_factory=list)
    drop: Callable[[str, OutDatagram], bool] = lambda name, d: False
    duplicate: Callable[[str, OutDatagram], bool] = lambda name, d: False
    rewrite: Callable[[str, OutDatagram], OutDatagram] = lambda name, d: d
    latency: float = 0.01
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    reorder: bool = False
    addresses: dict[str, str] = field(default_factory=dict)
    delivered: list[tuple[float, str, str, OutDatagram]] = field(default_factory=list)
    after_step: Callable[[], None] = lambda: None  # called after each step (tests watch SAs come and go)

    def owner(self, address: str) -> str:
        return self.addresses[address]

    def collect(self) -> None:
        for name, endpoint in self.endpoints.items():
            for datagram in endpoint.datagrams_to_send():
                self.log.append((self.now, name, datagram))
                if self.drop(name, datagram):
                    continue
                datagram = self.rewrite(name, datagram)
                copies = 2 if self.duplicate(name, datagram) else 1
                for _ in range(copies):
                    delay = self.latency * (1 + (self.rng.random() * 3 if self.reorder else 0))
                    self.in_flight.append((self.now + delay, name, datagram))

    def deliver_one(self, horizon: float = 5.0, max_steps: int = 1000) -> tuple[str, str, OutDatagram] | None:
        """Run until one datagram has been delivered; (sender, receiver, datagram), or None
        when nothing is in flight and no timer is due within `horizon` seconds."""
        until = self.now + horizon
        for _ in range(max_steps):
            self.collect()
            timers = [t for e in self.endpoints.values() if (t := e.get_timer()) is not None]
            nxt = min([d[0] for d in self.in_flight] + timers, default=None)
            if nxt is None or nxt > until:
                return None
            before = len(self.delivered)
            if not self.step():
                return None
            if len(self.delivered) > before:
                return self.delivered[-1][1:]
        raise AssertionError("no datagram was delivered")

    def step(self) -> bool:
        """Advance to the next delivery or timer; False when nothing is left to happen."""
        self.collect()
        timers = [(t, n) for n, e in self.endpoints.items() if (t := e.get_timer()) is not None]
        next_delivery = min((d[0] for d in self.in_flight), default=None)
        next_timer = min(timers, default=None)
        if next_delivery is None and next_timer is None:
            return False
        if next_delivery is not None and (next_timer is None or next_delivery <= next_timer[0]):
            self.in_flight.sort(key=lambda d: d[0])
            at, sender, datagram = self.in_flight.pop(0)
            self.now = max(self.now, at)
            receiver = self.owner(datagram.dst[0])
            self.delivered.append((self.now, sender, receiver, datagram))
            self.endpoints[receiver].receive_datagram(datagram.data, datagram.src, datagram.dst, self.now)
        else:
            assert next_timer is not None  # there is something to do, and it is no delivery
            self.now = max(self.now, next_timer[0])
            self.endpoints[next_timer[1]].handle_timer(self.now)
        self.collect()
        self.after_step()
        return True

    def run(self, until: float | None = None, max_steps: int = 10000) -> None:
        for _ in range(max_steps):
            if until is not None:
                self.collect()  # what the endpoints queued since the last step is in flight too
                timers = [t for e in self.endpoints.values() if (t := e.get_timer()) is not None]
                nxt = min([d[0] for d in self.in_flight] + timers, default=None)
                if nxt is None or nxt > until:
                    self.now = max(self.now, until)
                    return
            if not self.step():
                return
        raise AssertionError("network did not settle")

    def settle(self, horizon: float = 5.0) -> None:
        """Run until nothing is in flight and no timer is due within `horizon` seconds."""
        self.run(until=self.now + horizon)

    def events(self, name: str) -> list[Event]:
        out = []
        while (event := self.endpoints[name].next_event()) is not None:
            out.append(event)
        return out


def make_net(a: Config, b: Config, settings: Settings | None = None, seed: int = 1) -> Net:
    """Two endpoints from one seed. Without `settings` they hand their IKE keys out (export_keys,
    as the daemon's --export-keys), so that what a notebook steps through can be decrypted."""
    settings = settings or Settings(export_keys=True)
    rng_a, rng_b = random.Random(seed), random.Random(seed + 1000)
    ea = IkeEndpoint(a, settings, random=lambda n: rng_a.randbytes(n), jitter=False)
    eb = IkeEndpoint(b, settings, random=lambda n: rng_b.randbytes(n), jitter=False)
    return Net({"a": ea, "b": eb}, addresses={GW_A: "a", GW_B: "b"})


# ---------------------------------------------------------------- certificates


Pki = TypedDict("Pki", {"ca": "x509.Certificate", "intermediate": "x509.Certificate", "intermediate_key": "Key",
                       "gwa.lab": "tuple[x509.Certificate, Key]", "gwb.lab": "tuple[x509.Certificate, Key]"})


def make_pki(kind: str = "ecdsa", chain_padding: int = 0) -> Pki:
    """A CA, an intermediate and two end-entity certificates (gwa.lab, gwb.lab) with keys.
    `chain_padding` adds a dummy extension of that many octets to the intermediate, to make
    IKE_AUTH large enough to need fragmentation."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID, ObjectIdentifier

    def key() -> Key:
        return ec.generate_private_key(ec.SECP256R1()) if kind == "ecdsa" else rsa.generate_private_key(65537, 2048)

    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def cert(subject: str, issuer_name: str, public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey, signer: Key,
             ca: bool, sans: tuple[str, ...] = (), extra: int = 0) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
                   .public_key(public).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]),
                                            critical=False)
        if extra:
            builder = builder.add_extension(x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"),
                                                                        b"\x04\x82" + extra.to_bytes(2, "big")
                                                                        + bytes(extra)), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, int_key = key(), key()
    ca = cert("Lab Root CA", "Lab Root CA", ca_key.public_key(), ca_key, True)
    intermediate = cert("Lab Intermediate CA", "Lab Root CA", int_key.public_key(), ca_key, True, extra=chain_padding)
    key_a, key_b = key(), key()
    return {"ca": ca, "intermediate": intermediate, "intermediate_key": int_key,
            "gwa.lab": (cert("gwa.lab", "Lab Intermediate CA", key_a.public_key(), int_key, False, sans=("gwa.lab",)),
                        key_a),
            "gwb.lab": (cert("gwb.lab", "Lab Intermediate CA", key_b.public_key(), int_key, False, sans=("gwb.lab",)),
                        key_b)}


def cert_configs(kind: str = "ecdsa", chain_padding: int = 0, **options: Any) -> tuple[Config, Config]:
    pki = make_pki(kind, chain_padding)
    a, b = pair_configs(**options)
    for config, me, (certificate, private) in ((a, "gwa.lab", pki["gwa.lab"]), (b, "gwb.lab", pki["gwb.lab"])):
        conn = config.connections["s2s"]
        conn.local = AuthConfig(AuthClass.PUBKEY, Identity.parse(me), certs=[certificate, pki["intermediate"]])
        conn.remote = AuthConfig(AuthClass.PUBKEY, conn.remote.id, cacerts=[pki["ca"]])
        config.secrets = Secrets(private_keys=[PrivateKey(f"{me}.key", private)])
    return a, b


# ---------------------------------------------------------------- EAP (RFC 7296 §2.16) and two rounds (RFC 4739)

EAP_USER = "carol"
EAP_PASSWORD = "carol-lab-only-password"


def make_user_cert(pki: Pki, name: str = EAP_USER) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for an EAP user (subjectAltName `name`), issued by make_pki's intermediate."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    issuer_key = pki["intermediate_key"]
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(pki["intermediate"].subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(issuer_key, hashes.SHA256()))
    return cert, key


def eap_configs(method: str = "mschapv2", *, rounds: int = 1, ask_identity: bool = True, kind: str = "ecdsa",
                client_password: str = EAP_PASSWORD, gateway_password: str = EAP_PASSWORD,
                **options: Any) -> tuple[Config, Config]:
    """a: a road warrior authenticating with EAP-`method` (md5, mschapv2, tls, ttls) as user carol;
    b: the gateway gwb.lab, authenticated by its certificate, the EAP server. With rounds=2, a
    first authenticates with its certificate (gwa.lab), then with EAP (RFC 4739)."""
    pki = make_pki(kind)
    a, b = pair_configs(**options)
    conn_a, conn_b = a.connections["s2s"], b.connections["s2s"]
    user = Identity.parse(EAP_USER)
    gw_cert, gw_key = pki["gwb.lab"]
    conn_b.local = AuthConfig(AuthClass.PUBKEY, Identity.parse("gwb.lab"), certs=[gw_cert, pki["intermediate"]])
    conn_a.remote = AuthConfig(AuthClass.PUBKEY, Identity.parse("gwb.lab"), cacerts=[pki["ca"]])
    eap_round_a = AuthConfig(AuthClass(f"eap-{method}"), user)
    eap_round_b = AuthConfig(AuthClass(f"eap-{method}"), eap_id=Identity.any() if ask_identity else None)
    keys_a = []
    if method == "tls":
        cert, key = make_user_cert(pki)
        eap_round_a.certs = [cert, pki["intermediate"]]
        keys_a.append(PrivateKey("carol.key", key))
        eap_round_b.cacerts = [pki["ca"]]
    if rounds == 1:
        conn_a.local, conn_b.remote = eap_round_a, eap_round_b
    else:
        a_cert, a_key = pki["gwa.lab"]
        conn_a.local = AuthConfig(AuthClass.PUBKEY, Identity.parse("gwa.lab"), certs=[a_cert, pki["intermediate"]])
        conn_a.extra_local = [eap_round_a]
        conn_b.remote = AuthConfig(AuthClass.PUBKEY, Identity.parse("gwa.lab"), cacerts=[pki["ca"]])
        conn_b.extra_remote = [eap_round_b]
        keys_a.append(PrivateKey("gwa.key", a_key))
    a.secrets = Secrets(private_keys=keys_a, eap=[SharedKey("eap-carol", client_password.encode(), [user])])
    b.secrets = Secrets(private_keys=[PrivateKey("gwb.key", gw_key)],
                        eap=[SharedKey("eap-carol", gateway_password.encode(), [user])])
    a.cacerts = b.cacerts = [pki["ca"]]
    return a, b
