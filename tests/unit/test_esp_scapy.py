"""Cross-check with scapy's SecurityAssociation: it decrypts what we protect, we unprotect what it encrypts.

Matrix: every algorithm x tunnel/transport x ESP/AH x plain/UDP-encapsulated (RFC 3948,
ESP only: AH is not defined over UDP) x ESN, with IPv4 and IPv6 inner and outer headers.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import pytest

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrHopByHop
from scapy.layers.ipsec import AH, ESP, SecurityAssociation
from scapy.packet import Raw

from lab.esp import InboundSA, IpsecProto, Mode, OutboundSA, UdpEncap
from lab.iana import IntegId, keyword_algorithm


@dataclass(frozen=True)
class Algo:
    name: str
    proto: IpsecProto
    encr_id: int | None
    encr_len: int
    integ_id: int
    integ_len: int
    scapy_crypt: str | None
    scapy_auth: str | None


# scapy's names (scapy.layers.ipsec CRYPT_ALGOS, AUTH_ALGOS); sizes and ids come from lab.iana
SCAPY_CRYPT = {"aes128gcm16": "AES-GCM", "aes256gcm16": "AES-GCM", "chacha20poly1305": "CHACHA20-POLY1305",
               "aes128gmac": "AES-NULL-GMAC", "aes128": "AES-CBC", "aes256": "AES-CBC", "null": None}
SCAPY_AUTH = {"sha1": "HMAC-SHA1-96", "sha256": "SHA2-256-128", "sha384": "SHA2-384-192", "sha512": "SHA2-512-256"}


def _algo(proto: IpsecProto, encr: str | None, integ: str | None) -> Algo:
    e = keyword_algorithm(encr) if encr else None
    i = keyword_algorithm(integ) if integ else None
    auth = SCAPY_AUTH.get(integ or "")
    name = "-".join(filter(None, (encr, auth))) if proto is IpsecProto.ESP else f"ah-{auth}"
    return Algo(name, proto, e.id if e else None, e.key_size if e else 0, i.id if i else IntegId.NONE,
                i.key_size if i else 0, SCAPY_CRYPT[encr] if encr else None, SCAPY_AUTH.get(integ or ""))


ESP_ALGOS = [
    *[_algo(IpsecProto.ESP, encr, None) for encr in ("aes128gcm16", "aes256gcm16", "chacha20poly1305", "aes128gmac")],
    *[_algo(IpsecProto.ESP, encr, integ) for encr in ("aes128", "aes256") for integ in SCAPY_AUTH],
    *[_algo(IpsecProto.ESP, "null", integ) for integ in SCAPY_AUTH],
]
AH_ALGOS = [_algo(IpsecProto.AH, None, integ) for integ in SCAPY_AUTH]

FAMILIES = {Mode.TUNNEL: [(4, 4), (6, 6), (4, 6), (6, 4)], Mode.TRANSPORT: [(4, 4), (6, 6)]}

ADDR = {4: ("192.0.2.1", "198.51.100.1"), 6: ("2001:db8::1", "2001:db8:1::1")}
INNER = {4: ("10.1.0.5", "10.2.0.7"), 6: ("fd00:1::5", "fd00:2::7")}


@dataclass(frozen=True)
class Case:
    algo: Algo
    mode: Mode
    encap: bool
    esn: bool
    inner_v: int
    outer_v: int

    @property
    def id(self) -> str:
        return (
            f"{self.algo.name}-{self.mode.value}-{'udp' if self.encap else 'plain'}-"
            f"{'esn' if self.esn else 'seq32'}-v{self.inner_v}in{self.outer_v}"
        )


def _cases() -> list[Case]:
    out = []
    for algo, mode, encap, esn in itertools.product(ESP_ALGOS + AH_ALGOS, Mode, (False, True), (False, True)):
        if encap and algo.proto is IpsecProto.AH:
            continue
        for inner_v, outer_v in FAMILIES[mode]:
            out.append(Case(algo, mode, encap, esn, inner_v, outer_v))
    return out


CASES = _cases()

SEQ_HI = 7
SEQ_LO = 0xFFFFFFF0


def _keys(case: Case) -> tuple[bytes, bytes]:
    rnd = os.urandom(128)
    return rnd[: case.algo.encr_len], rnd[64 : 64 + case.algo.integ_len]


def _inner_packet(case: Case, payload_len: int = 61):
    src, dst = INNER[case.inner_v] if case.mode is Mode.TUNNEL else ADDR[case.inner_v]
    if case.inner_v == 4:
        return IP(src=src, dst=dst, id=0x1234, flags="DF", tos=0x28) / UDP(sport=5353, dport=53) / Raw(b"q" * payload_len)
    return IPv6(src=src, dst=dst, tc=0x28) / TCP(sport=40000, dport=443, flags="PA") / Raw(b"r" * payload_len)


def _scapy_sa(case: Case, spi: int, ekey: bytes, ikey: bytes, seq_num: int) -> SecurityAssociation:
    tunnel = None
    if case.mode is Mode.TUNNEL:
        src, dst = ADDR[case.outer_v]
        tunnel = IP(src=src, dst=dst) if case.outer_v == 4 else IPv6(src=src, dst=dst)
    kwargs = dict(
        spi=spi,
        seq_num=seq_num,
        tunnel_header=tunnel,
        auth_algo=case.algo.scapy_auth,
        auth_key=ikey or None,
        esn_en=case.esn,
        esn=SEQ_HI if case.esn else 0,
    )
    if case.algo.proto is IpsecProto.ESP:
        kwargs.update(crypt_algo=case.algo.scapy_crypt or "NULL", crypt_key=ekey or None)
        if case.encap:
            kwargs["nat_t_header"] = UDP(sport=4500, dport=4500)
        return SecurityAssociation(ESP, **kwargs)
    return SecurityAssociation(AH, **kwargs)


def _ours(case: Case, cls, spi: int, ekey: bytes, ikey: bytes, **kw):
    local, remote = ADDR[case.outer_v]
    if cls is InboundSA:
        local, remote = remote, local
    return cls(
        spi,
        protocol=case.algo.proto,
        mode=case.mode,
        encr_id=case.algo.encr_id,
        encr_key=ekey,
        integ_id=case.algo.integ_id,
        integ_key=ikey,
        local=local,
        remote=remote,
        esn=case.esn,
        encap=UdpEncap(4500, 4500) if case.encap else None,
        **kw,
    )


def _seq() -> tuple[int, int]:
    return SEQ_LO, (SEQ_HI << 32) | SEQ_LO


def _parse(wire: bytes, v: int):
    return IP(wire) if v == 4 else IPv6(wire)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_scapy_decrypts_what_we_protect(case: Case) -> None:
    ekey, ikey = _keys(case)
    seq_lo, seq = _seq()
    ours = _ours(case, OutboundSA, 0xC0DE0001, ekey, ikey, next_seq=seq if case.esn else seq_lo)
    theirs = _scapy_sa(case, 0xC0DE0001, ekey, ikey, seq_lo)
    for size in (0, 1, 61, 1400):
        pkt = _inner_packet(case, size)
        raw = bytes(pkt)
        wire = ours.protect(raw)
        outer = _parse(wire, case.outer_v)
        layer = ESP if case.algo.proto is IpsecProto.ESP else AH
        assert outer.haslayer(layer)
        if case.encap:
            assert outer[UDP].dport == 4500 and outer[UDP].sport == 4500
        decrypted = theirs.decrypt(outer)
        assert bytes(decrypted) == raw
    assert ours.packets == 4


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_we_unprotect_what_scapy_encrypts(case: Case) -> None:
    ekey, ikey = _keys(case)
    seq_lo, seq = _seq()
    theirs = _scapy_sa(case, 0xC0DE0002, ekey, ikey, seq_lo)
    ours = _ours(case, InboundSA, 0xC0DE0002, ekey, ikey, highest_seq=(seq if case.esn else seq_lo) - 1)
    for size in (0, 1, 61, 1400):
        pkt = _inner_packet(case, size)
        raw = bytes(pkt)
        wire = bytes(theirs.encrypt(pkt))
        assert ours.unprotect_datagram(wire) == raw
    assert ours.packets == 4
    assert ours.drops.total == 0


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.algo.proto is IpsecProto.ESP and c.algo.name in ("aes128gcm16", "aes256-SHA2-256-128")],
    ids=lambda c: c.id,
)
def test_we_unprotect_scapy_esp_from_the_esp_header_on(case: Case) -> None:
    """What a UDP 4500 socket or a protocol-50 raw socket without the IP header hands over."""
    ekey, ikey = _keys(case)
    seq_lo, seq = _seq()
    theirs = _scapy_sa(case, 0xC0DE0003, ekey, ikey, seq_lo)
    ours = _ours(case, InboundSA, 0xC0DE0003, ekey, ikey, highest_seq=(seq if case.esn else seq_lo) - 1)
    pkt = _inner_packet(case, 100)
    wire = theirs.encrypt(pkt)
    esp = bytes(wire[ESP])
    got = ours.unprotect(esp)
    if case.mode is Mode.TUNNEL:
        assert got == bytes(pkt)
    else:
        rebuilt = _parse(got, case.inner_v)
        ref = _parse(bytes(pkt), case.inner_v)
        assert bytes(rebuilt.payload) == bytes(ref.payload)
        assert (rebuilt.src, rebuilt.dst) == (ref.src, ref.dst)


def test_udp_encapsulated_ipv6_has_a_valid_udp_checksum() -> None:
    case = Case(ESP_ALGOS[0], Mode.TUNNEL, True, False, 4, 6)
    ekey, ikey = _keys(case)
    ours = _ours(case, OutboundSA, 0x1111, ekey, ikey)
    wire = ours.protect(bytes(_inner_packet(case, 333)))
    pkt = IPv6(wire)
    sent = pkt[UDP].chksum
    del pkt[UDP].chksum
    assert sent != 0
    assert IPv6(bytes(pkt))[UDP].chksum == sent


def test_ipv6_transport_with_hop_by_hop_header() -> None:
    """ESP/AH go after the hop-by-hop header (RFC 4303 §3.1.1), as in scapy and Linux."""
    for proto in (IpsecProto.ESP, IpsecProto.AH):
        algo = ESP_ALGOS[4] if proto is IpsecProto.ESP else AH_ALGOS[1]
        case = Case(algo, Mode.TRANSPORT, False, False, 6, 6)
        ekey, ikey = _keys(case)
        src, dst = ADDR[6]
        pkt = IPv6(src=src, dst=dst) / IPv6ExtHdrHopByHop() / ICMPv6EchoRequest(data=b"hello")
        raw = bytes(pkt)
        out = _ours(case, OutboundSA, 0x2222, ekey, ikey)
        theirs = _scapy_sa(case, 0x2222, ekey, ikey, 1)
        wire = out.protect(raw)
        assert IPv6(wire)[IPv6ExtHdrHopByHop].nh == int(proto)
        assert bytes(theirs.decrypt(IPv6(wire))) == raw
        inb = _ours(case, InboundSA, 0x2222, ekey, ikey)
        assert inb.unprotect_datagram(bytes(theirs.encrypt(pkt))) == raw


def test_ah_with_ipv4_options_and_ipv6_destination_options() -> None:
    """RFC 4302 Appendix A: mutable IPv4 options (Record Route) are zeroed, immutable ones (Router Alert) kept."""
    from scapy.layers.inet import IPOption_Router_Alert, IPOption_RR
    from scapy.layers.inet6 import IPv6ExtHdrDestOpt

    algo = AH_ALGOS[1]
    for v in (4, 6):
        case = Case(algo, Mode.TRANSPORT, False, False, v, v)
        ekey, ikey = _keys(case)
        src, dst = ADDR[v]
        if v == 4:
            pkt = IP(src=src, dst=dst, options=[IPOption_RR(routers=["192.0.2.9"]), IPOption_Router_Alert()]) / UDP() / Raw(b"o" * 9)
        else:
            pkt = IPv6(src=src, dst=dst) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP() / Raw(b"o" * 9)
        raw = bytes(pkt)
        out = _ours(case, OutboundSA, 0x3333, ekey, ikey)
        theirs = _scapy_sa(case, 0x3333, ekey, ikey, 1)
        wire = out.protect(raw)
        assert bytes(theirs.decrypt(_parse(wire, v))) == raw
        inb = _ours(case, InboundSA, 0x3333, ekey, ikey, replay_window=0)
        assert inb.unprotect_datagram(bytes(theirs.encrypt(pkt))) == raw
        if v == 4:
            moved = bytearray(wire)
            moved[23 + 3] ^= 0xFF
            assert inb.unprotect_datagram(bytes(moved))[23 + 3] == wire[23 + 3] ^ 0xFF
