"""The SPD (RFC 4301 §4.4.1): ordering, actions, selectors, ports, ICMP type/code, OPAQUE ports."""
from __future__ import annotations

import ipaddress
import struct

import pytest

from lab.esp import SPD, Action, DropReason, EspDrop, InboundSA, OutboundSA, Policy, Selector, five_tuple, icmp_range
from lab.esp.ip import checksum
from lab.esp.spd import address_range
from lab.iana import EncrId


def v4(src: str, dst: str, proto: int, l4: bytes, frag: int = 0) -> bytes:
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, frag, 64, proto, 0,
                                ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed))
    hdr[10:12] = checksum(bytes(hdr)).to_bytes(2, "big")
    return bytes(hdr) + l4


def tcp(src: str, dst: str, sport: int, dport: int) -> bytes:
    return v4(src, dst, 6, struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, 2, 0, 0, 0))


def udp(src: str, dst: str, sport: int, dport: int) -> bytes:
    return v4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8, 0))


def icmp(src: str, dst: str, icmp_type: int, code: int = 0) -> bytes:
    return v4(src, dst, 1, struct.pack("!BBHHH", icmp_type, code, 0, 1, 1))


def v6(src: str, dst: str, nh: int, rest: bytes) -> bytes:
    return struct.pack("!IHBB", 0x60000000, len(rest), nh, 64) + ipaddress.ip_address(src).packed + \
        ipaddress.ip_address(dst).packed + rest


LAN, PEER_LAN = "10.1.0.0/16", "10.2.0.0/16"


def test_first_match_wins_and_order_matters() -> None:
    spd = SPD([
        Policy.of("discard", local=LAN, remote=PEER_LAN, protocol="tcp", remote_ports=23, name="no-telnet"),
        Policy.of("protect", local=LAN, remote=PEER_LAN, child="net-net", name="vpn"),
        Policy.of("bypass", name="rest"),
    ])
    assert spd.outbound(tcp("10.1.0.5", "10.2.0.9", 40000, 443)).name == "vpn"
    with pytest.raises(EspDrop) as exc:
        spd.outbound(tcp("10.1.0.5", "10.2.0.9", 40000, 23))
    assert exc.value.reason is DropReason.POLICY_DISCARD
    assert spd.outbound(tcp("10.1.0.5", "8.8.8.8", 40000, 23)).name == "rest"
    spd.policies.reverse()
    assert spd.outbound(tcp("10.1.0.5", "10.2.0.9", 40000, 23)).name == "rest"
    assert spd.drops[DropReason.POLICY_DISCARD] == 1
    assert [p.hits for p in spd.policies] == [2, 1, 1]


def test_no_match_is_discard() -> None:
    spd = SPD([Policy.of("bypass", local=LAN)])
    with pytest.raises(EspDrop) as exc:
        spd.outbound(udp("10.9.0.1", "10.2.0.1", 1, 2))
    assert exc.value.reason is DropReason.POLICY_DISCARD
    with pytest.raises(EspDrop) as exc:
        spd.outbound(b"\x45\x00")
    assert exc.value.reason is DropReason.MALFORMED
    assert spd.drops.nonzero() == {"policy_discard": 1, "malformed": 1}


def test_local_and_remote_swap_with_direction() -> None:
    p = Policy.of("protect", local=LAN, remote=PEER_LAN, protocol="udp", local_ports=(1024, 65535), remote_ports=53)
    spd = SPD([p])
    assert spd.lookup(five_tuple(udp("10.1.0.5", "10.2.0.53", 5000, 53)), outbound=True) is p
    assert spd.lookup(five_tuple(udp("10.2.0.53", "10.1.0.5", 53, 5000)), outbound=False) is p
    assert spd.lookup(five_tuple(udp("10.2.0.53", "10.1.0.5", 53, 5000)), outbound=True) is None
    assert spd.lookup(five_tuple(udp("10.1.0.5", "10.2.0.53", 80, 53)), outbound=True) is None
    assert spd.lookup(five_tuple(tcp("10.1.0.5", "10.2.0.53", 5000, 53)), outbound=True) is None


def test_inbound_plaintext_check() -> None:
    spd = SPD([
        Policy.of("protect", local=LAN, remote=PEER_LAN, child="net-net"),
        Policy.of("bypass", protocol="udp", local_ports=500),
        Policy.of("bypass", protocol="udp", local_ports=4500),
    ])
    with pytest.raises(EspDrop) as exc:
        spd.inbound(tcp("10.2.0.9", "10.1.0.5", 443, 40000))
    assert exc.value.reason is DropReason.UNPROTECTED
    assert spd.inbound(udp("198.51.100.1", "192.0.2.1", 500, 500)).action is Action.BYPASS
    with pytest.raises(EspDrop) as exc:
        spd.inbound(udp("198.51.100.1", "192.0.2.1", 500, 501))
    assert exc.value.reason is DropReason.POLICY_DISCARD


def test_icmp_type_and_code_as_ports() -> None:
    """RFC 4301 §4.4.1.1: type and code form one 16-bit selector."""
    echo = Policy.of("protect", protocol="icmp", local_ports=icmp_range(8), name="echo-request")
    unreach = Policy.of("bypass", protocol="icmp", remote_ports=icmp_range(3, 4), name="frag-needed")
    spd = SPD([echo, unreach])
    assert spd.outbound(icmp("10.1.0.1", "10.2.0.1", 8, 0)) is echo
    assert spd.outbound(icmp("10.1.0.1", "10.2.0.1", 3, 4)) is unreach
    for t, c in ((0, 0), (3, 3), (11, 0)):
        with pytest.raises(EspDrop):
            spd.outbound(icmp("10.1.0.1", "10.2.0.1", t, c))
    assert five_tuple(icmp("10.1.0.1", "10.2.0.1", 3, 4)).sport == 0x0304
    assert icmp_range() == (0, 65535)


def test_non_initial_fragments_have_opaque_ports() -> None:
    first = udp("10.1.0.1", "10.2.0.1", 5000, 53)
    later = v4("10.1.0.1", "10.2.0.1", 17, b"\x13\x88\x00\x35" + bytes(20), frag=0x0003)
    assert five_tuple(later).sport is None
    port_policy = Policy.of("protect", protocol="udp", remote_ports=53)
    any_port = Policy.of("protect", protocol="udp")
    assert port_policy.matches(five_tuple(first), True)
    assert not port_policy.matches(five_tuple(later), True)
    assert any_port.matches(five_tuple(later), True)


def test_ipv6_extension_headers_and_families() -> None:
    hbh = bytes([6, 0, 1, 4, 0, 0, 0, 0])
    tcp_hdr = struct.pack("!HHIIBBHHH", 33000, 22, 0, 0, 0x50, 2, 0, 0, 0)
    pkt = v6("fd00:1::5", "fd00:2::9", 0, hbh + tcp_hdr)
    ft = five_tuple(pkt)
    assert (ft.version, ft.protocol, ft.sport, ft.dport) == (6, 6, 33000, 22)
    p6 = Policy.of("protect", local="fd00:1::/64", remote="fd00:2::/64", protocol="tcp", remote_ports=22)
    p4 = Policy.of("protect", local=LAN, remote=PEER_LAN)
    anyp = Policy.of("bypass")
    assert p6.matches(ft, True)
    assert not p4.matches(ft, True)
    assert anyp.matches(ft, True)
    frag = bytes([17, 0, 0x00, 0x08, 0, 0, 0, 1]) + bytes(16)
    assert five_tuple(v6("fd00:1::5", "fd00:2::9", 44, frag)).sport is None


def test_address_ranges() -> None:
    r = address_range("10.0.0.3-10.0.0.9")
    assert ipaddress.ip_address("10.0.0.3").packed in r
    assert ipaddress.ip_address("10.0.0.10").packed not in r
    assert str(r) == "10.0.0.3-10.0.0.9"
    assert str(address_range("192.0.2.0/24")) == "192.0.2.0/24"
    assert address_range("any") is None
    sel = Selector.of(local="192.0.2.7", remote="any", protocol=17, local_ports="1000-2000")
    assert sel.describe() == {"local": "192.0.2.7", "remote": "any", "protocol": 17, "local_ports": "1000-2000",
                              "remote_ports": "any"}
    with pytest.raises(ValueError):
        Selector.of(protocol="bogus")
    with pytest.raises(ValueError):
        Selector.of(local_ports=(10, 5))


def test_bind_child_and_protect_through_the_spd() -> None:
    key = bytes(20)
    spd = SPD([Policy.of("protect", local=LAN, remote=PEER_LAN, child="net-net", name="vpn")])
    pkt = udp("10.1.0.5", "10.2.0.9", 1000, 2000)
    assert spd.outbound(pkt).sa is None
    out = OutboundSA(0x77, encr_id=EncrId.AES_GCM_16, encr_key=key, local="192.0.2.1", remote="198.51.100.1")
    assert spd.bind("net-net", out) == 1
    policy = spd.outbound(pkt)
    wire = policy.sa.protect(pkt)
    sels = spd.policies[0].selectors
    inb = InboundSA(0x77, encr_id=EncrId.AES_GCM_16, encr_key=key, local="198.51.100.1", remote="192.0.2.1",
                    selectors=[Selector(s.remote, s.local, s.protocol, s.remote_ports, s.local_ports) for s in sels])
    assert inb.unprotect_datagram(wire) == pkt
    stray = udp("10.1.0.5", "10.3.0.9", 1000, 2000)
    with pytest.raises(EspDrop) as exc:
        inb.unprotect_datagram(out.protect(stray))
    assert exc.value.reason is DropReason.SELECTOR_MISMATCH
    assert spd.describe()[0]["sa"] == "0x00000077"
