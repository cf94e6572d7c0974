"""SA behaviour: lifetimes, sequence exhaustion, tampering, padding, TFC, dummy packets, encapsulation, SAD."""
from __future__ import annotations

import hashlib
import hmac
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.esp import (
    SEQ_MAX_32,
    DropReason,
    EspConfigError,
    EspDrop,
    InboundSA,
    IpsecProto,
    Lifetime,
    Mode,
    OutboundSA,
    SADatabase,
    SaEventKind,
    SaState,
    Selector,
    UdpEncap,
)
from lab.esp.ip import checksum
from lab.iana import EncrId, IntegId

GCM_KEY = bytes(range(1, 21))
CBC_KEY = bytes(range(32))
MAC_KEY = bytes(range(100, 132))
L, R = "192.0.2.1", "198.51.100.1"


def ipv4_udp(src: str = "10.1.0.1", dst: str = "10.2.0.1", payload: bytes = b"x" * 32, sport: int = 1000, dport: int = 53) -> bytes:
    import ipaddress

    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 7, 0x4000, 64, 17, 0,
                                ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed))
    hdr[10:12] = checksum(bytes(hdr)).to_bytes(2, "big")
    return bytes(hdr) + udp


def ipv6_tcp(payload: bytes = b"y" * 40) -> bytes:
    import ipaddress

    tcp = struct.pack("!HHIIBBHHH", 40000, 443, 1, 0, 0x50, 0x18, 1000, 0, 0) + payload
    return struct.pack("!IHBB", 0x60000000, len(tcp), 6, 64) + ipaddress.ip_address("fd00:1::1").packed + \
        ipaddress.ip_address("fd00:2::1").packed + tcp


ALGOS = {
    "gcm": dict(encr_id=EncrId.AES_GCM_16, encr_key=GCM_KEY),
    "chacha": dict(encr_id=EncrId.CHACHA20_POLY1305, encr_key=bytes(36)),
    "gmac": dict(encr_id=EncrId.NULL_AUTH_AES_GMAC, encr_key=GCM_KEY),
    "cbc-sha256": dict(encr_id=EncrId.AES_CBC, encr_key=CBC_KEY, integ_id=IntegId.HMAC_SHA2_256_128, integ_key=MAC_KEY),
    "null-sha1": dict(encr_id=EncrId.NULL, integ_id=IntegId.HMAC_SHA1_96, integ_key=MAC_KEY[:20]),
}


def pair(algo: str = "gcm", **kw):
    out_kw = {k: v for k, v in kw.items() if k not in ("replay_window", "highest_seq")}
    in_kw = {k: v for k, v in kw.items() if k not in ("next_seq", "tfc_pad_to", "iv_source", "seq_rekey_margin", "ttl", "copy_dscp", "df")}
    out = OutboundSA(0x100, local=L, remote=R, **ALGOS[algo], **out_kw)
    inb = InboundSA(0x100, local=R, remote=L, **ALGOS[algo], **in_kw)
    return out, inb


def reason(fn, *args) -> DropReason | None:
    try:
        fn(*args)
    except EspDrop as exc:
        return exc.reason
    return None


def test_soft_then_hard_by_packets_outbound() -> None:
    out, _ = pair(lifetime=Lifetime(soft_packets=3, hard_packets=5))
    pkt = ipv4_udp()
    for _ in range(2):
        out.protect(pkt)
    assert out.events == []
    out.protect(pkt)
    assert [(e.kind, e.trigger, e.direction) for e in out.events] == [(SaEventKind.SOFT_EXPIRED, "packets", "out")]
    assert out.state is SaState.SOFT_EXPIRED
    out.protect(pkt)
    out.protect(pkt)
    assert [e.kind for e in out.events] == [SaEventKind.SOFT_EXPIRED, SaEventKind.HARD_EXPIRED]
    assert out.state is SaState.HARD_EXPIRED
    assert reason(out.protect, pkt) is DropReason.EXPIRED
    assert reason(out.protect_payload, pkt) is DropReason.EXPIRED
    assert out.packets == 5
    assert out.drops[DropReason.EXPIRED] == 2
    assert out.next_event().kind is SaEventKind.SOFT_EXPIRED
    assert out.next_event().kind is SaEventKind.HARD_EXPIRED
    assert out.next_event() is None


def test_soft_then_hard_by_bytes_inbound() -> None:
    pkt = ipv4_udp(payload=b"z" * 72)
    assert len(pkt) == 100
    out, _ = pair()
    _, inb = pair(lifetime=Lifetime(soft_bytes=250, hard_bytes=400))
    esps = [out.protect_payload(pkt) for _ in range(6)]
    inb.unprotect(esps[0])
    inb.unprotect(esps[1])
    assert inb.events == []
    inb.unprotect(esps[2])
    assert [(e.kind, e.trigger) for e in inb.events] == [(SaEventKind.SOFT_EXPIRED, "bytes")]
    inb.unprotect(esps[3])
    assert inb.events[-1].kind is SaEventKind.HARD_EXPIRED and inb.events[-1].trigger == "bytes"
    assert reason(inb.unprotect, esps[4]) is DropReason.EXPIRED
    assert inb.bytes == 400 and inb.packets == 4
    assert out.events == [] and out.bytes == 600


def test_soft_and_hard_reached_by_one_packet() -> None:
    out, _ = pair(lifetime=Lifetime(soft_bytes=10, hard_bytes=10))
    out.protect(ipv4_udp())
    assert [e.kind for e in out.events] == [SaEventKind.SOFT_EXPIRED, SaEventKind.HARD_EXPIRED]


def test_time_lifetimes() -> None:
    out = OutboundSA(1, local=L, remote=R, now=100.0, lifetime=Lifetime(soft_seconds=50, hard_seconds=60), **ALGOS["gcm"])
    assert out.next_deadline() == 150.0
    out.handle_time(149.9)
    assert out.events == []
    out.handle_time(150.0)
    assert out.state is SaState.SOFT_EXPIRED
    assert out.next_deadline() == 160.0
    out.handle_time(200.0)
    assert [(e.kind, e.trigger) for e in out.events] == [
        (SaEventKind.SOFT_EXPIRED, "seconds"), (SaEventKind.HARD_EXPIRED, "seconds")]
    assert out.next_deadline() is None
    assert reason(out.protect, ipv4_udp()) is DropReason.EXPIRED


def test_lifetime_validation() -> None:
    with pytest.raises(ValueError):
        Lifetime(soft_packets=10, hard_packets=5)
    with pytest.raises(ValueError):
        Lifetime(hard_bytes=0)


def test_sequence_exhaustion_without_esn() -> None:
    out, _ = pair(next_seq=SEQ_MAX_32 - 2, seq_rekey_margin=2)
    pkt = ipv4_udp()
    seqs = [int.from_bytes(out.protect_payload(pkt)[4:8], "big") for _ in range(3)]
    assert seqs == [SEQ_MAX_32 - 2, SEQ_MAX_32 - 1, SEQ_MAX_32]
    assert [e.kind for e in out.events] == [SaEventKind.SEQ_REKEY, SaEventKind.SEQ_EXHAUSTED]
    assert out.seq_exhausted
    for _ in range(2):
        assert reason(out.protect, pkt) is DropReason.SEQ_EXHAUSTED
    assert out.drops[DropReason.SEQ_EXHAUSTED] == 2
    assert out.packets == 3


def test_default_rekey_margin_raises_seq_rekey_once() -> None:
    out, _ = pair(next_seq=SEQ_MAX_32 - (1 << 24) - 1)
    pkt = ipv4_udp()
    out.protect(pkt)
    assert out.events == []
    out.protect(pkt)
    out.protect(pkt)
    assert [e.kind for e in out.events] == [SaEventKind.SEQ_REKEY]


def test_esn_continues_past_2_32() -> None:
    out, inb = pair(esn=True, next_seq=SEQ_MAX_32 - 1, highest_seq=SEQ_MAX_32 - 2)
    for _ in range(4):
        inb.unprotect(out.protect_payload(ipv4_udp()))
    assert out.events == []
    assert inb.window.top == (1 << 32) + 1


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_every_flipped_bit_fails_authentication(algo: str) -> None:
    out, inb = pair(algo, next_seq=5)
    pkt = ipv4_udp(payload=b"p" * 13)
    esp = out.protect_payload(pkt)
    flips = 0
    for i in range(len(esp)):
        for bit in range(8):
            bad = bytearray(esp)
            bad[i] ^= 1 << bit
            assert reason(inb.unprotect, bytes(bad)) is DropReason.AUTH_FAILED
            flips += 1
    assert inb.drops[DropReason.AUTH_FAILED] == flips
    assert inb.drops.total == flips
    assert inb.packets == 0
    assert inb.unprotect(esp) == pkt


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_truncated_packets_are_malformed_or_fail(algo: str) -> None:
    out, inb = pair(algo)
    esp = out.protect_payload(ipv4_udp())
    for n in range(0, len(esp)):
        r = reason(inb.unprotect, esp[:n])
        assert r in (DropReason.MALFORMED, DropReason.AUTH_FAILED)
        if n < 8:
            assert r is DropReason.MALFORMED


def _ah_pair(mode: Mode = Mode.TUNNEL, window: int = 0):
    kw = dict(protocol=IpsecProto.AH, mode=mode, integ_id=IntegId.HMAC_SHA2_256_128, integ_key=MAC_KEY)
    return (OutboundSA(0x200, local=L, remote=R, next_seq=5, **kw),
            InboundSA(0x200, local=R, remote=L, replay_window=window, **kw))


def test_ah_ipv4_mutable_fields_are_outside_the_icv() -> None:
    """RFC 4302 §3.3.3.1.1.1: TOS, flags, fragment offset, TTL and checksum are zeroed for the ICV."""
    out, inb = _ah_pair()
    pkt = ipv4_udp()
    wire = out.protect(pkt)
    assert wire[9] == 51
    mutable = {1: 0xFF, 6: 0xC0, 8: 0xFF, 10: 0xFF, 11: 0xFF}
    fragment = {6: 0x3F, 7: 0xFF, 9: 0xFF}
    for i in range(len(wire)):
        for bit in range(8):
            bad = bytearray(wire)
            bad[i] ^= 1 << bit
            r = reason(inb.unprotect, bytes(bad))
            if mutable.get(i, 0) & (1 << bit):
                assert r is None, (i, bit)
            elif fragment.get(i, 0) & (1 << bit):
                assert r is DropReason.MALFORMED, (i, bit)
            else:
                assert r in (DropReason.AUTH_FAILED, DropReason.MALFORMED), (i, bit)
                if i >= 12 and i != 21:
                    assert r is DropReason.AUTH_FAILED, (i, bit)


def test_ah_ipv6_mutable_fields_are_outside_the_icv() -> None:
    """RFC 4302 §3.3.3.1.2: traffic class, flow label and hop limit are zeroed for the ICV."""
    out = OutboundSA(0x201, protocol=IpsecProto.AH, mode=Mode.TUNNEL, integ_id=IntegId.HMAC_SHA2_512_256,
                     integ_key=bytes(64), next_seq=5, local="2001:db8::1", remote="2001:db8::2")
    inb = InboundSA(0x201, protocol=IpsecProto.AH, mode=Mode.TUNNEL, integ_id=IntegId.HMAC_SHA2_512_256,
                    integ_key=bytes(64), replay_window=0, local="2001:db8::2", remote="2001:db8::1")
    pkt = ipv6_tcp()
    wire = out.protect(pkt)
    ah_len = (wire[41] + 2) * 4
    assert ah_len % 8 == 0 and ah_len == 48
    for i in range(len(wire)):
        for bit in range(8):
            bad = bytearray(wire)
            bad[i] ^= 1 << bit
            r = reason(inb.unprotect, bytes(bad))
            if (i == 0 and bit < 4) or i in (1, 2, 3, 7):
                assert r is None, (i, bit)
            elif i >= 8 and not 40 <= i < 42:
                assert r is DropReason.AUTH_FAILED, (i, bit)
            else:
                assert r in (DropReason.AUTH_FAILED, DropReason.MALFORMED), (i, bit)


def test_ah_transport_ipv4_rebuilds_original() -> None:
    out, inb = _ah_pair(Mode.TRANSPORT, window=64)
    pkt = ipv4_udp()
    wire = out.protect(pkt)
    assert len(wire) == len(pkt) + 12 + 16
    assert checksum(wire[:20]) == 0
    assert inb.unprotect(wire) == pkt
    with pytest.raises(EspConfigError):
        out.protect_payload(pkt)
    with pytest.raises(EspConfigError):
        OutboundSA(1, protocol=IpsecProto.AH, integ_id=IntegId.HMAC_SHA1_96, integ_key=bytes(20), local=L, remote=R,
                   encap=UdpEncap())


def _null_sa_packet(plaintext: bytes, seq: int = 1) -> bytes:
    body = struct.pack("!II", 0x100, seq) + plaintext
    return body + hmac.new(MAC_KEY[:20], body, hashlib.sha1).digest()[:12]


@pytest.mark.parametrize(
    "trailer, expected",
    [
        (b"\x01\x02\x03\x03\x04", None),
        (b"\x01\x02\x04\x03\x04", DropReason.BAD_PADDING),
        (b"\x00\x00\x00\x03\x04", DropReason.BAD_PADDING),
        (b"\x01\x02\x03\xff\x04", DropReason.BAD_PADDING),
        (b"\x01\x02\x03\x03\x06", DropReason.BAD_NEXT_HEADER),
        (b"\x01\x02\x03\x03\x29", DropReason.MALFORMED),
        (b"\x01\x02\x03\x03\x3b", DropReason.DUMMY),
    ],
)
def test_padding_and_next_header_are_checked(trailer: bytes, expected: DropReason | None) -> None:
    """RFC 4303 §2.4 (pad bytes 1, 2, 3...) and §2.6 (next header 59)."""
    _, inb = pair("null-sha1")
    pkt = ipv4_udp(payload=b"q" * 31)
    assert reason(inb.unprotect, _null_sa_packet(pkt + trailer)) is expected
    if expected is not None:
        assert inb.drops[expected] == 1


def test_padding_is_minimal_and_monotonic() -> None:
    for size in range(28, 60):
        for algo, align in (("null-sha1", 4), ("cbc-sha256", 16), ("gcm", 4)):
            out, _ = pair(algo)
            pkt = ipv4_udp(payload=b"a" * (size - 28))
            esp = out.protect_payload(pkt)
            iv = {"null-sha1": 0, "cbc-sha256": 16, "gcm": 8}[algo]
            icv = {"null-sha1": 12, "cbc-sha256": 16, "gcm": 16}[algo]
            body = len(esp) - 8 - iv - icv
            assert body % align == 0
            assert body - (size + 2) == -(size + 2) % align
            if algo == "null-sha1":
                padlen = esp[-icv - 2]
                assert esp[-icv - 2 - padlen : -icv - 2] == bytes(range(1, padlen + 1))
                assert esp[-icv - 1] == 4


def test_tfc_padding_hides_the_inner_length() -> None:
    out, inb = pair(tfc_pad_to=1000)
    sizes = {len(out.protect_payload(ipv4_udp(payload=b"s" * n))) for n in (0, 10, 500)}
    assert sizes == {8 + 8 + 1000 + 2 + 2 + 16}
    out, inb = pair(tfc_pad_to=1000)
    for n in (0, 10, 500, 1200):
        pkt = ipv4_udp(payload=b"s" * n)
        assert inb.unprotect(out.protect_payload(pkt)) == pkt
    v6_out, v6_in = pair(tfc_pad_to=700)
    pkt = ipv6_tcp()
    assert v6_in.unprotect(v6_out.protect(pkt)[20:]) == pkt
    with pytest.raises(EspConfigError):
        OutboundSA(1, mode=Mode.TRANSPORT, tfc_pad_to=100, **ALGOS["gcm"])


def test_dummy_packets_are_dropped_silently_and_counted() -> None:
    out, inb = pair()
    dummy = out.dummy_payload(64)
    assert reason(inb.unprotect, dummy) is DropReason.DUMMY
    assert inb.dummy_received == 1 and inb.drops[DropReason.DUMMY] == 1 and inb.packets == 0
    assert reason(inb.unprotect, dummy) is DropReason.REPLAY
    wire = out.dummy(10)
    assert reason(inb.unprotect_datagram, wire) is DropReason.DUMMY
    assert inb.unprotect(out.protect_payload(ipv4_udp())) == ipv4_udp()


def test_tunnel_outer_header() -> None:
    out, inb = pair(ttl=33)
    pkt = bytearray(ipv4_udp())
    pkt[1] = 0xB9
    wire = out.protect(bytes(pkt))
    assert wire[0] == 0x45 and wire[1] == 0xB9 and wire[8] == 33 and wire[9] == 50
    assert wire[6] & 0x40
    assert struct.unpack("!H", wire[2:4])[0] == len(wire)
    assert checksum(wire[:20]) == 0
    assert wire[12:16] == bytes([192, 0, 2, 1]) and wire[16:20] == bytes([198, 51, 100, 1])
    assert inb.unprotect_datagram(wire) == bytes(pkt)
    ids = {struct.unpack("!H", out.protect(bytes(pkt))[4:6])[0] for _ in range(5)}
    assert len(ids) == 5


def test_udp_encapsulation_ipv4() -> None:
    out, inb = pair(encap=UdpEncap(4500, 31000))
    pkt = ipv4_udp()
    wire = out.protect(pkt)
    assert wire[9] == 17
    sport, dport, length, csum = struct.unpack("!HHHH", wire[20:28])
    # RFC 3948 §2.1: the UDP checksum is zero for IPv4
    assert (sport, dport, length, csum) == (4500, 31000, len(wire) - 20, 0)
    assert checksum(wire[:20]) == 0
    assert inb.unprotect_datagram(wire) == pkt
    payload = out.protect_payload(pkt)
    assert payload[:4] == (0x100).to_bytes(4, "big") and len(payload) == len(wire) - 28
    assert inb.unprotect(payload) == pkt


def test_non_esp_marker_is_not_esp() -> None:
    out, inb = pair(encap=UdpEncap())
    wire = bytearray(out.protect(ipv4_udp()))
    wire[28:32] = bytes(4)
    assert reason(inb.unprotect_datagram, bytes(wire)) is DropReason.MALFORMED


def test_transport_mode_from_esp_only_input_uses_sa_addresses() -> None:
    out = OutboundSA(0x300, mode=Mode.TRANSPORT, **ALGOS["gcm"])
    inb = InboundSA(0x300, mode=Mode.TRANSPORT, local="10.2.0.1", remote="10.1.0.1", **ALGOS["gcm"])
    pkt = ipv4_udp()
    got = inb.unprotect(out.protect_payload(pkt))
    assert got[12:20] == pkt[12:20] and got[20:] == pkt[20:] and got[9] == 17
    assert checksum(got[:20]) == 0
    no_addr = InboundSA(0x300, mode=Mode.TRANSPORT, **ALGOS["gcm"])
    with pytest.raises(EspConfigError):
        no_addr.unprotect(out.protect_payload(pkt))


def test_transport_refuses_fragments_and_garbage() -> None:
    out = OutboundSA(0x300, mode=Mode.TRANSPORT, **ALGOS["gcm"])
    frag = bytearray(ipv4_udp())
    frag[6] = 0x20
    assert reason(out.protect, bytes(frag)) is DropReason.MALFORMED
    assert reason(out.protect, b"\x00" * 30) is DropReason.MALFORMED
    tun, _ = pair()
    assert reason(tun.protect, b"\x45" + b"\x00" * 5) is DropReason.MALFORMED
    assert tun.drops[DropReason.MALFORMED] == 1


def test_inbound_datagram_fragments_are_malformed() -> None:
    out, inb = pair()
    wire = bytearray(out.protect(ipv4_udp()))
    wire[6] |= 0x20
    assert reason(inb.unprotect_datagram, bytes(wire)) is DropReason.MALFORMED


def test_custom_iv_source_is_length_checked() -> None:
    out = OutboundSA(1, local=L, remote=R, iv_source=lambda seq: b"\x00" * 4, **ALGOS["gcm"])
    with pytest.raises(EspConfigError):
        out.protect(ipv4_udp())


def test_default_gcm_iv_is_the_sequence_number() -> None:
    out, _ = pair(esn=True, next_seq=0x0102030405)
    esp = out.protect_payload(ipv4_udp())
    assert esp[8:16] == (0x0102030405).to_bytes(8, "big")


def test_selector_mismatch_after_decapsulation() -> None:
    sel = Selector.of(local="10.2.0.0/16", remote="10.1.0.0/16", protocol="udp", local_ports=53)
    out, inb = pair(selectors=[sel])
    assert inb.unprotect(out.protect_payload(ipv4_udp())) == ipv4_udp()
    for bad in (ipv4_udp(src="10.9.0.1"), ipv4_udp(dst="10.3.0.1"), ipv4_udp(dport=54), ipv6_tcp()):
        assert reason(inb.unprotect, out.protect_payload(bad)) is DropReason.SELECTOR_MISMATCH
    assert inb.drops[DropReason.SELECTOR_MISMATCH] == 4
    assert inb.packets == 1
    assert inb.window.top == 5


def test_sad_dispatch_and_shared_counters() -> None:
    sad = SADatabase()
    out_esp, in_esp = pair()
    out_ah, in_ah = _ah_pair(window=64)
    out_udp = OutboundSA(0x400, local=L, remote=R, encap=UdpEncap(), **ALGOS["cbc-sha256"])
    in_udp = InboundSA(0x400, local=R, remote=L, encap=UdpEncap(), **ALGOS["cbc-sha256"])
    for sa in (in_esp, in_ah, in_udp, out_esp):
        sad.add(sa)
    pkt = ipv4_udp()
    assert sad.unprotect(out_esp.protect_payload(pkt)) == pkt
    assert sad.unprotect_datagram(out_esp.protect(pkt)) == pkt
    assert sad.unprotect_datagram(out_ah.protect(pkt)) == pkt
    assert sad.unprotect_datagram(out_udp.protect(pkt)) == pkt
    assert sad.unprotect(out_udp.protect_payload(pkt)) == pkt
    stranger = OutboundSA(0x999, local=L, remote=R, **ALGOS["gcm"])
    assert reason(sad.unprotect, stranger.protect_payload(pkt)) is DropReason.UNKNOWN_SPI
    assert reason(sad.unprotect_datagram, stranger.protect(pkt)) is DropReason.UNKNOWN_SPI
    assert sad.drop_unknown_spi == 2
    esp = out_esp.protect_payload(pkt)
    sad.unprotect(esp)
    assert reason(sad.unprotect, esp) is DropReason.REPLAY
    assert in_esp.drops[DropReason.REPLAY] == 1 and sad.drops[DropReason.REPLAY] == 1
    assert reason(sad.unprotect, b"\x00\x01") is DropReason.MALFORMED
    with pytest.raises(ValueError):
        sad.add(InboundSA(0x100, local=R, remote=L, **ALGOS["gcm"]))
    described = sad.describe()
    json.dumps(described)
    assert described["drops"] == {"unknown_spi": 2, "replay": 1, "malformed": 1}
    assert {d["spi"] for d in described["sas"]} == {"0x00000100", "0x00000200", "0x00000400"}


def test_sad_collects_events_and_time() -> None:
    sad = SADatabase()
    out = OutboundSA(1, local=L, remote=R, lifetime=Lifetime(soft_seconds=10, hard_packets=1), **ALGOS["gcm"])
    sad.add(out)
    assert sad.next_deadline() == 10
    out.protect(ipv4_udp())
    sad.handle_time(11)
    kinds = []
    while (e := sad.next_event()) is not None:
        kinds.append(e.kind)
    assert kinds == [SaEventKind.HARD_EXPIRED]
    sad.remove(out)
    assert len(sad) == 0


def test_describe_shows_no_keys() -> None:
    out, inb = pair("cbc-sha256", name="net-net")
    d = json.dumps([out.describe(), inb.describe()])
    assert CBC_KEY.hex() not in d and MAC_KEY.hex() not in d
    info = inb.describe()
    assert info["encr"] == "AES_CBC" and info["encr_key_bits"] == 256 and info["integ"] == "HMAC_SHA2_256_128"
    assert info["replay_window"] == 64 and info["mode"] == "tunnel" and info["name"] == "net-net"


def _only_drops(fn, data: bytes) -> None:
    try:
        fn(data)
    except EspDrop:
        pass


_GARBAGE_SAD = SADatabase()
for _sa in (
    InboundSA(0x100, local=R, remote=L, **ALGOS["gcm"]),
    InboundSA(0x101, mode=Mode.TRANSPORT, local=R, remote=L, **ALGOS["cbc-sha256"]),
    InboundSA(0x100, protocol=IpsecProto.AH, mode=Mode.TRANSPORT, integ_id=IntegId.HMAC_SHA1_96, integ_key=bytes(20)),
):
    _GARBAGE_SAD.add(_sa)


@given(data=st.binary(max_size=200), prefix=st.sampled_from([b"", b"\x45", b"\x60", b"\x46\x00", b"\x00\x00\x01\x00"]))
@settings(max_examples=400, deadline=None)
def test_garbage_only_ever_raises_espdrop(data: bytes, prefix: bytes) -> None:
    from lab.esp import SPD, Policy

    blob = prefix + data
    spd = SPD([Policy.of("bypass", protocol="udp", local_ports=500)])
    for fn in (_GARBAGE_SAD.unprotect, _GARBAGE_SAD.unprotect_datagram, spd.inbound, spd.outbound,
               *(sa.unprotect for sa in _GARBAGE_SAD.inbound.values()),
               *(sa.unprotect_datagram for sa in _GARBAGE_SAD.inbound.values())):
        _only_drops(fn, blob)


@given(data=st.binary(min_size=0, max_size=120))
@settings(max_examples=200, deadline=None)
def test_outbound_garbage_only_ever_raises_espdrop(data: bytes) -> None:
    for mode in Mode:
        for proto, kw in ((IpsecProto.ESP, ALGOS["gcm"]), (IpsecProto.AH, dict(integ_id=IntegId.HMAC_SHA1_96, integ_key=bytes(20)))):
            out = OutboundSA(1, protocol=proto, mode=mode, local=L, remote=R, **kw)
            for prefix in (b"", b"\x45\x00\x00\x00", b"\x60"):
                _only_drops(out.protect, prefix + data)


# ---------------------------------------------------------------- edges the mutation run found untested

L6, R6 = "2001:db8::1", "2001:db8::2"


def _pair6(**kw):
    out = OutboundSA(0x200, local=L6, remote=R6, **ALGOS["gcm"], **kw)
    inb = InboundSA(0x200, local=R6, remote=L6, **ALGOS["gcm"], **{k: v for k, v in kw.items() if k != "tfc_pad_to"})
    return out, inb


def test_ipv6_inner_traffic_class_is_copied_to_the_outer_header() -> None:
    # RFC 4301 §5.1.2.1: DSCP copied from inner to outer; IPv6 keeps it across bytes 0-1
    pkt = bytearray(ipv6_tcp())
    pkt[0], pkt[1] = 0x6B, 0x80  # traffic class 0xB8
    out, inb = pair()
    wire = out.protect(bytes(pkt))
    assert wire[1] == 0xB8
    out6, inb6 = _pair6()
    wire6 = out6.protect(bytes(pkt))
    assert (wire6[0] & 0x0F) << 4 | wire6[1] >> 4 == 0xB8
    assert inb6.unprotect_datagram(wire6) == bytes(pkt)


def test_header_only_inner_packets_round_trip() -> None:
    import ipaddress
    v4 = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20, 1, 0, 64, 59, 0, ipaddress.ip_address("10.1.0.1").packed,
                               ipaddress.ip_address("10.2.0.1").packed))
    v4[10:12] = checksum(bytes(v4)).to_bytes(2, "big")
    v6 = struct.pack("!IHBB", 0x60000000, 0, 59, 64) + ipaddress.ip_address("fd00:1::1").packed + \
        ipaddress.ip_address("fd00:2::1").packed
    for pkt, nh in ((bytes(v4), 4), (v6, 41)):
        out, inb = pair(tfc_pad_to=200)
        esp = out.protect_payload(pkt)
        assert inb.open_payload(esp)[1] == nh  # RFC 4303 §2.6: IPv4 (4) or IPv6 (41) inside
        out, inb = pair(tfc_pad_to=200)
        assert inb.unprotect(out.protect_payload(pkt)) == pkt  # TFC padding stripped by the inner length


def test_ipv6_outer_datagrams_round_trip_and_trim_trailing_octets() -> None:
    for encap in (None, UdpEncap(4500, 4500)):
        out6, inb6 = _pair6(encap=encap)
        pkt = ipv6_tcp(b"z" * 100)
        wire = out6.protect(pkt)
        assert struct.unpack("!H", wire[4:6])[0] == len(wire) - 40
        assert inb6.unprotect_datagram(wire + b"\x00" * 7) == pkt  # beyond the payload length: not ours


def test_udp_datagram_that_is_not_udp_is_refused() -> None:
    out, inb = pair(encap=UdpEncap(4500, 4500))
    wire = bytearray(out.protect(ipv4_udp()))
    wire[9] = 6  # claims TCP
    wire[10:12] = b"\x00\x00"
    wire[10:12] = checksum(bytes(wire[:20])).to_bytes(2, "big")
    assert reason(inb.unprotect_datagram, bytes(wire)) is not None


def test_ah_transport_headers_carry_sequence_and_lengths() -> None:
    # RFC 4302 §2.5: the AH Sequence Number field is the low 32 bits of the counter
    kw = dict(protocol=IpsecProto.AH, mode=Mode.TRANSPORT, integ_id=IntegId.HMAC_SHA2_256_128, integ_key=MAC_KEY)
    out = OutboundSA(0x300, local="10.1.0.1", remote="10.2.0.1", next_seq=0x1_0000_0005, esn=True, **kw)
    wire = out.protect(ipv4_udp())
    assert struct.unpack("!I", wire[28:32])[0] == 5
    assert struct.unpack("!H", wire[2:4])[0] == len(wire)
    out6 = OutboundSA(0x301, local="fd00:1::1", remote="fd00:2::1", **kw)
    inb6 = InboundSA(0x301, local="fd00:2::1", remote="fd00:1::1", **kw)
    pkt = ipv6_tcp()
    wire6 = out6.protect(pkt)
    assert struct.unpack("!H", wire6[4:6])[0] == len(wire6) - 40
    assert inb6.unprotect_datagram(wire6) == pkt
