"""Transport mode with the initiator behind a NAT (RFC 7296 §2.23.1), in memory.

The client (a) proposes its own addresses, IP1 and IP3; the NAT box maps IP1 to IP2. The
server (b) substitutes IP2 for IP1 before its lookup and answers with what it uses; the
client substitutes back before checking the narrowing. Both keep the selectors as received:
they are the addresses the peer's TCP/UDP checksums cover, and the data plane fixes the
checksums up with them (RFC 3948 §3.1.2). The last test runs TCP through lab.esp SAs made
from the events, the NAT box rewriting the outer header, and asks scapy about the checksums.
"""
from __future__ import annotations

import ipaddress

from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Raw

from lab.esp import InboundSA, Mode, OutboundSA, UdpEncap
from lab.ike import events as ev
from lab.ike.config import ChildMode, parse_traffic_selectors
from lab.ike.endpoint import OutDatagram
from lab.ike.memnet import GW_A, GW_B, make_net, pair_configs

PUBLIC = "192.0.2.77"  # the NAT box's outside address: IP2


def transport_configs(**options):
    a, b = pair_configs(b_remote_addrs="%any", **options)
    for config in (a, b):
        child = config.connections["s2s"].children["net"]
        child.mode = ChildMode.TRANSPORT
        child.local_ts = parse_traffic_selectors("dynamic")
        child.remote_ts = parse_traffic_selectors("dynamic")
    return a, b


def natted_net(nat: bool = True, **options):
    net = make_net(*transport_configs(**options))
    net.addresses[PUBLIC] = "a"

    def box(name, d):
        # a sits behind a NAT box that maps GW_A:port to PUBLIC:(port+10000)
        if name == "a":
            return OutDatagram(d.data, (PUBLIC, d.src[1] + 10000), d.dst)
        if d.dst[0] == PUBLIC:
            return OutDatagram(d.data, d.src, (GW_A, d.dst[1] - 10000))
        return d

    if nat:
        net.rewrite = box
    return net


def child_ups(net, side):
    return [e for e in net.events(side) if isinstance(e, ev.ChildSaUp)]


def addresses(selectors):
    return [(str(ts.start_addr), str(ts.end_addr)) for ts in selectors]


def test_client_behind_nat_negotiates_transport_mode():
    net = natted_net()
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    (up_a,), (up_b,) = child_ups(net, "a"), child_ups(net, "b")
    assert up_a.mode == up_b.mode == "transport"
    # each side's selectors name the addresses its own packets carry
    assert addresses(up_a.local_ts) == [(GW_A, GW_A)] and addresses(up_a.remote_ts) == [(GW_B, GW_B)]
    assert addresses(up_b.local_ts) == [(GW_B, GW_B)] and addresses(up_b.remote_ts) == [(PUBLIC, PUBLIC)]
    # the selectors as received: the server got the client's IP1, the client got IP2 back
    assert (up_b.original_remote, up_b.original_local) == (GW_A, GW_B)
    assert (up_a.original_remote, up_a.original_local) == (GW_B, PUBLIC)


def test_without_nat_nothing_is_substituted():
    net = natted_net(nat=False)
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    (up_a,), (up_b,) = child_ups(net, "a"), child_ups(net, "b")
    assert addresses(up_b.remote_ts) == [(GW_A, GW_A)]
    assert up_a.original_local is up_b.original_remote is None


def test_tunnel_mode_selectors_are_not_substituted():
    a, b = pair_configs(b_remote_addrs="%any")
    net = make_net(a, b)
    net.addresses[PUBLIC] = "a"
    net.rewrite = lambda name, d: (OutDatagram(d.data, (PUBLIC, d.src[1]), d.dst) if name == "a" else
                                   OutDatagram(d.data, d.src, (GW_A, d.dst[1])) if d.dst[0] == PUBLIC else d)
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    (up_b,) = child_ups(net, "b")
    assert addresses(up_b.remote_ts) == [("10.1.0.0", "10.1.0.255")] and up_b.original_remote is None


def test_rekeys_by_either_side_keep_the_substitution():
    net = natted_net()
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    child_ups(net, "a"), child_ups(net, "b")
    for side in ("b", "a"):
        assert net.endpoints[side].rekey_child(net.now, "net") == 1
        net.settle()
        (up_a,), (up_b,) = child_ups(net, "a"), child_ups(net, "b")
        assert up_a.rekeyed_from and up_b.rekeyed_from
        assert addresses(up_a.local_ts) == [(GW_A, GW_A)] and addresses(up_b.remote_ts) == [(PUBLIC, PUBLIC)]
        assert (up_b.original_remote, up_b.original_local) == (GW_A, GW_B), side
        assert (up_a.original_remote, up_a.original_local) == (GW_B, PUBLIC), side


def _sas(up: ev.ChildSaUp, fixup: bool = True) -> tuple[InboundSA, OutboundSA]:
    """The two SAs as the daemon's data plane makes them from a ChildSaUp."""
    encap = UdpEncap(up.local[1], up.remote[1])
    common = dict(mode=Mode.TRANSPORT, encr_id=up.encr_id, integ_id=up.integ_id, esn=up.esn, encap=encap,
                  local=up.local[0], remote=up.remote[0])
    inbound = InboundSA(int.from_bytes(up.spi_in, "big"), encr_key=up.keys_in.encr, integ_key=up.keys_in.integ,
                        real_src=up.original_remote if fixup else None,
                        real_dst=up.original_local if fixup else None, **common)
    outbound = OutboundSA(int.from_bytes(up.spi_out, "big"), encr_key=up.keys_out.encr,
                          integ_key=up.keys_out.integ, **common)
    return inbound, outbound


def _checksum_ok(raw: bytes) -> bool:
    pkt = IP(raw)
    layer = pkt.getlayer(TCP) or pkt.getlayer(UDP)
    sent = layer.chksum
    del layer.chksum
    return IP(bytes(pkt)).getlayer(type(layer)).chksum == sent


def _box_outbound(datagram: bytes) -> bytes:
    """The NAT box on a datagram from a: source address and port rewritten, ESP untouched."""
    pkt = IP(datagram)
    pkt.src, pkt[UDP].sport = PUBLIC, pkt[UDP].sport + 10000
    del pkt.chksum
    pkt[UDP].chksum = 0
    return bytes(pkt)


def _box_inbound(datagram: bytes) -> bytes:
    pkt = IP(datagram)
    pkt.dst, pkt[UDP].dport = GW_A, pkt[UDP].dport - 10000
    del pkt.chksum
    pkt[UDP].chksum = 0
    return bytes(pkt)


def test_tcp_both_ways_through_the_negotiated_sas():
    net = natted_net()
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    (up_a,), (up_b,) = child_ups(net, "a"), child_ups(net, "b")
    for fixup in (True, False):
        a_in, a_out = _sas(up_a, fixup)
        b_in, b_out = _sas(up_b, fixup)
        # a's TCP stack sends from IP1 to IP3, as its selectors say
        syn = bytes(IP(src=GW_A, dst=GW_B) / TCP(sport=40000, dport=5201, flags="S", seq=1))
        got = b_in.unprotect_datagram(_box_outbound(a_out.protect(syn)))
        assert IP(got).src == PUBLIC and IP(got).dst == GW_B
        assert _checksum_ok(got) is fixup
        # b's TCP stack answers the address it saw, IP2
        synack = bytes(IP(src=GW_B, dst=PUBLIC) / TCP(sport=5201, dport=40000, flags="SA", seq=7, ack=2)
                       / Raw(b"hello" * 30))
        got = a_in.unprotect_datagram(_box_inbound(b_out.protect(synack)))
        assert IP(got).dst == GW_A and IP(got)[Raw].load == b"hello" * 30
        assert _checksum_ok(got) is fixup
        assert ipaddress.ip_address(IP(got).src) == ipaddress.ip_address(GW_B)
