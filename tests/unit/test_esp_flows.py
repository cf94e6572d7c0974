"""ReturnFlows: replies leave through the SA their flow arrived on (two transport-mode clients
behind one NAT share one policy). Packets built by scapy."""
from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6

from lab.esp.flows import ReturnFlows, flow_key

NAT, SERVER = "198.51.100.1", "198.51.100.10"


def b(pkt) -> bytes:
    return bytes(pkt)


def test_two_clients_behind_one_address_are_told_apart_by_ports():
    flows = ReturnFlows()
    flows.learn(b(IP(src=NAT, dst=SERVER) / TCP(sport=40001, dport=5201)), "client1")
    flows.learn(b(IP(src=NAT, dst=SERVER) / TCP(sport=40002, dport=5201)), "client2")
    assert flows.lookup(b(IP(src=SERVER, dst=NAT) / TCP(sport=5201, dport=40002))) == "client2"
    assert flows.lookup(b(IP(src=SERVER, dst=NAT) / TCP(sport=5201, dport=40001))) == "client1"
    assert flows.lookup(b(IP(src=SERVER, dst=NAT) / TCP(sport=5201, dport=40003))) is None
    assert flows.lookup(b(IP(src=SERVER, dst=NAT) / UDP(sport=5201, dport=40001))) is None


def test_echo_replies_follow_the_request_identifier():
    flows = ReturnFlows()
    flows.learn(b(IP(src=NAT, dst=SERVER) / ICMP(type=8, id=77, seq=1)), "client1")
    flows.learn(b(IP(src=NAT, dst=SERVER) / ICMP(type=8, id=78, seq=1)), "client2")
    assert flows.lookup(b(IP(src=SERVER, dst=NAT) / ICMP(type=0, id=77, seq=1))) == "client1"
    assert flows.lookup(b(IP(src=SERVER, dst=NAT) / ICMP(type=0, id=78, seq=1))) == "client2"
    # not an echo: no flow
    assert flow_key(b(IP(src=SERVER, dst=NAT) / ICMP(type=3, code=3)), inbound=False) is None
    flows.learn(b(IPv6(src="2001:db8::1", dst="2001:db8::10") / ICMPv6EchoRequest(id=9)), "v6")
    assert flows.lookup(b(IPv6(src="2001:db8::10", dst="2001:db8::1") / ICMPv6EchoReply(id=9))) == "v6"


def test_latest_arrival_wins_rekey_and_forget():
    flows = ReturnFlows(capacity=2)
    syn = b(IP(src=NAT, dst=SERVER) / TCP(sport=1, dport=2))
    reply = b(IP(src=SERVER, dst=NAT) / TCP(sport=2, dport=1))
    flows.learn(syn, "old")
    assert flows.replace("old", "new") == 1 and flows.lookup(reply) == "new"
    flows.learn(syn, "other")
    assert flows.lookup(reply) == "other"
    flows.forget("other")
    assert flows.lookup(reply) is None
    for port in (10, 11, 12):
        flows.learn(b(IP(src=NAT, dst=SERVER) / UDP(sport=port, dport=53)), port)
    assert len(flows) == 2
    assert flows.lookup(b(IP(src=SERVER, dst=NAT) / UDP(sport=53, dport=10))) is None  # the oldest went


def test_fragments_and_garbage_have_no_flow():
    frag = IP(src=NAT, dst=SERVER, frag=10) / TCP(sport=1, dport=2)  # not the first fragment: no ports
    assert flow_key(b(frag), inbound=True) is None
    assert flow_key(b"\x45" + b"\x00" * 10, inbound=True) is None
    assert flow_key(b"\x00" * 40, inbound=True) is None
