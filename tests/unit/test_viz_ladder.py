"""The ladder diagram's lanes, arrows, ports and bands checked against the packets of the
capture it was drawn from (tshark-checked captures in tests/data)."""
from __future__ import annotations

import struct
from pathlib import Path

from lab.viz.analysis import analyze_capture
from lab.viz.ladder import draw_ladder

DATA = Path(__file__).resolve().parent.parent / "data"
DEMO = DATA / "demo"


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_ladder_of_strongswan_alone_without_keys(tmp_path):
    capture = analyze_capture(DATA / "strongswan_s2s.pcap")
    figure = draw_ladder([capture], tmp_path / "ladder")
    ladder = figure.model
    assert [lane.addresses for lane in ladder.lanes] == [["203.0.113.1"], ["203.0.113.2"]]
    assert [lane.name for lane in ladder.lanes] == ["initiator", "responder"]
    ike = capture.ike()
    assert len(ladder.arrows) == len(ike) == 14
    for arrow, packet in zip(ladder.arrows, ike):
        assert arrow.frames == [("strongswan_s2s", packet.frame)]
        assert (ladder.lanes[arrow.src].addresses[0], ladder.lanes[arrow.dst].addresses[0]) == (packet.src, packet.dst)
        assert (arrow.sport, arrow.dport) == (packet.sport, packet.dport)
        assert arrow.label.startswith(f"{packet.ike.exchange_name} {'response' if packet.ike.response else 'request'}")
    assert [(a.sport, a.dport) for a in ladder.arrows[:3]] == [(500, 500), (500, 500), (4500, 4500)]
    # without keys only what is in the clear: IKE_SA_INIT's chain, SK's size, ESP SPIs and counts
    assert ladder.arrows[0].chain.startswith("SA KE Ni N(NATD_S_IP)")
    assert all(a.chain.startswith("SK(") and "{" not in a.chain for a in ladder.arrows[2:])
    esp = capture.ipsec()
    assert sum(b.count for b in ladder.bands) == len(esp) == 10
    assert [(b.spi, b.count) for b in ladder.bands] == [("273b4a33", 3), ("c8eefe8c", 3), ("7c62a34e", 2),
                                                        ("9e9315f5", 2)]
    assert all(b.inner == "" for b in ladder.bands)
    assert "no keys" in figure.caption
    assert [p.suffix for p in figure.files[:2]] == [".png", ".svg"] and png_size(figure.files[0])[0] == 1920
    # then its slides: ladder-1.png, ladder-1.svg, ladder-2.png ...
    slides = figure.files[2:]
    assert [p.name for p in slides] == [f"ladder-{n // 2 + 1}.{'svg' if n % 2 else 'png'}" for n in range(len(slides))]
    assert [p for p, _ in figure.pages] == slides[::2] and slides


def test_ladder_across_the_nat_box_with_keys(tmp_path):
    keys = DEMO / "keys"
    inside = analyze_capture(DEMO / "captures" / "nat-inside.pcap", keys)
    outside = analyze_capture(DEMO / "captures" / "nat-outside.pcap", keys)
    ladder = draw_ladder([inside, outside], tmp_path / "ladder").model
    names = [lane.addresses for lane in ladder.lanes]
    assert names == [["172.16.0.2"], ["198.51.100.1"], ["198.51.100.2"]] and ladder.lanes[1].nat
    frames_in = {p.frame: p for p in inside.packets}
    frames_out = {p.frame: p for p in outside.packets}
    assert len(ladder.arrows) == len(inside.ike()) == len(outside.ike()) == 14
    for arrow in ladder.arrows:
        (name_a, frame_a), (name_b, frame_b) = arrow.frames
        near, far = frames_in[frame_a], frames_out[frame_b]
        assert (name_a, name_b) == ("nat-inside", "nat-outside") and arrow.via == 1
        assert near.ike.message_id == far.ike.message_id and near.ike.chain() == far.ike.chain()
        if near.src == "172.16.0.2":   # outbound: inside ports first, then the ports beyond the box
            assert (arrow.src, arrow.dst) == (0, 2)
            assert (arrow.sport, arrow.dport, arrow.far_ports) == (near.sport, near.dport, (far.sport, far.dport))
            assert arrow.note == "NAT: src 172.16.0.2 → 198.51.100.1"
        else:
            assert (arrow.src, arrow.dst) == (2, 0)
            assert (arrow.sport, arrow.dport, arrow.far_ports) == (far.sport, far.dport, (near.sport, near.dport))
            assert arrow.note == "NAT: dst 198.51.100.1 → 172.16.0.2"
        assert "{" in arrow.chain or arrow.chain.startswith("SA KE")  # decrypted inside SK
    assert ladder.arrows[2].chain == "SK{ IDi IDr AUTH N(INIT_CONTACT) SA TSi TSr }"
    esp = inside.ipsec()
    assert sum(b.count for b in ladder.bands) == len(esp) == 16
    for band in ladder.bands:
        spis = {frames_in[f].ipsec.spi_hex for name, f in band.frames if name == "nat-inside"}
        assert spis == {band.spi} and band.inner.startswith("ICMP 10.")
    assert ladder.decrypted


def test_ladder_shows_fragments_and_retransmissions(tmp_path):
    capture = analyze_capture(DATA / "forms" / "fragments-inside.pcap", DATA / "forms" / "fragments.keys")
    ladder = draw_ladder([capture], tmp_path / "ladder").model
    by_frame = {a.frames[0][1]: a for a in ladder.arrows}
    assert by_frame[1].kind == "ip-fragment" and by_frame[1].fragment == "IP fragment 1/2"
    assert "IP fragment 2/2, reassembled" in by_frame[2].label and by_frame[2].chain.startswith("SA KE Ni")
    assert [by_frame[f].fragment for f in (5, 6, 7, 8)] == ["SKF 1/2", "SKF 2/2"] * 2
    assert [by_frame[f].retransmission for f in (5, 6, 7, 8)] == [False, False, True, True]
    assert by_frame[7].note == "retransmission of #5"
    assert by_frame[6].chain.startswith("SKF{ IDi IDr AUTH")


def test_port_rewrite_shows_on_the_far_side(tmp_path):
    """A NAT box that maps 4500 to another port (as most do when 4500 is taken): the outside
    capture of the demo with gwa's public port 4500 rewritten to 31000, as such a box would."""
    from scapy.layers.inet import IP, UDP
    from scapy.utils import rdpcap, wrpcap

    frames = rdpcap(str(DEMO / "captures" / "nat-outside.pcap"))
    for frame in frames:
        ip, udp = frame.getlayer(IP), frame.getlayer(UDP)
        if ip is None or udp is None:
            continue
        if ip.src == "198.51.100.1" and udp.sport == 4500:
            udp.sport = 31000
        if ip.dst == "198.51.100.1" and udp.dport == 4500:
            udp.dport = 31000
        del udp.chksum
    wrpcap(str(tmp_path / "nat-outside.pcap"), frames)
    keys = DEMO / "keys"
    inside = analyze_capture(DEMO / "captures" / "nat-inside.pcap", keys)
    outside = analyze_capture(tmp_path / "nat-outside.pcap", keys)
    ladder = draw_ladder([inside, outside], tmp_path / "ladder").model
    auth_request, auth_response = ladder.arrows[2], ladder.arrows[3]
    assert (auth_request.sport, auth_request.dport, auth_request.far_ports) == (4500, 4500, (31000, 4500))
    assert auth_request.note == "NAT: src 172.16.0.2:4500 → 198.51.100.1:31000"
    assert (auth_response.sport, auth_response.dport, auth_response.far_ports) == (4500, 31000, (4500, 4500))
    assert auth_response.note == "NAT: dst 198.51.100.1:31000 → 172.16.0.2:4500"
    assert sum(b.count for b in ladder.bands) == 16


def test_ladder_of_a_capture_without_ipsec_draws_its_first_packets_only(tmp_path):
    """A bulk TCP transfer in clear (or in a TCP stream the ladder does not take apart, as ESP in
    TCP) has no IKE or ESP: its first PLAIN_LIMIT packets are drawn, not thousands of arrows."""
    from scapy.layers.inet import IP, TCP
    from scapy.utils import wrpcap

    from lab.viz.ladder import PLAIN_LIMIT, build_ladder
    packets = []
    for i in range(PLAIN_LIMIT * 3):
        p = IP(src="10.1.0.10", dst="10.2.0.10") / TCP(sport=40000, dport=5201, seq=1 + 1000 * i) / (b"x" * 1000)
        p.time = 1.0 + i / 1000
        packets.append(p)
    wrpcap(str(tmp_path / "bulk.pcap"), packets)
    capture = analyze_capture(tmp_path / "bulk.pcap")
    ladder = build_ladder([capture])
    assert len(ladder.arrows) == PLAIN_LIMIT
    assert [a.frames[0][1] for a in ladder.arrows] == list(range(1, PLAIN_LIMIT + 1))


def _two_nat_boxes_run(tmp_path: Path) -> Path:
    """A run folder of a topology with two NAT boxes (as compare with lte: true): gwa and gwi
    each on their own inside link of natl (public 198.51.100.20), talking ESP to their own peers
    gwb 198.51.100.2 and gwj 198.51.100.6; natl's outside capture holds both conversations."""
    import json

    from scapy.all import IP, Ether, Raw, wrpcap

    def esp(src: str, dst: str, spi: int, seq: int):
        return Ether() / IP(src=src, dst=dst, proto=50) / Raw(struct.pack(">II", spi, seq) + bytes([spi % 251, seq]) * 40)

    def node(name: str, *addresses: str, nat: dict | None = None) -> dict:
        entry = {"name": name, "kind": "nat" if nat else "gateway",
                 "interfaces": [{"name": f"{name}-{n}", "addresses": [a]} for n, a in enumerate(addresses)]}
        if nat:
            entry["nat"] = nat
        return entry

    run = tmp_path / "run"
    (run / "captures").mkdir(parents=True)
    topology = {"nodes": [
        node("nat", "198.51.100.1/24", "172.16.0.1/24", "172.16.4.1/24",
             nat={"inside": ["nat-1", "nat-2"], "outside": "nat-0", "public": "198.51.100.1"}),
        node("natl", "198.51.100.20/24", "10.64.0.1/24", "10.64.4.1/24",
             nat={"inside": ["natl-1", "natl-2"], "outside": "natl-0", "public": "198.51.100.20"}),
        node("gwa", "172.16.0.2/24", "10.64.0.2/24"), node("gwb", "198.51.100.2/24"),
        node("gwi", "172.16.4.2/24", "10.64.4.2/24"), node("gwj", "198.51.100.6/24")],
        "taps": [{"name": name, "node": "natl", "intf": intf, "file": f"captures/{name}.pcap"}
                 for name, intf in (("natl-in", "natl-1"), ("natl-in5", "natl-2"), ("natl-outside", "natl-0"))]}
    (run / "topology.json").write_text(json.dumps(topology))
    inside: dict[str, list] = {"natl-in": [], "natl-in5": []}
    outside = []
    for seq in range(1, 4):
        for name, private, peer, spi in (("natl-in", "10.64.0.2", "198.51.100.2", 0x1000),
                                         ("natl-in5", "10.64.4.2", "198.51.100.6", 0x5000)):
            inside[name] += [esp(private, peer, spi, seq), esp(peer, private, spi + 1, seq)]
            outside += [esp("198.51.100.20", peer, spi, seq), esp(peer, "198.51.100.20", spi + 1, seq)]
    for name, packets in inside.items():
        wrpcap(str(run / "captures" / f"{name}.pcap"), packets)
    wrpcap(str(run / "captures" / "natl-outside.pcap"), outside)
    return run


def test_ladder_of_a_second_nat_box_names_it_and_only_its_address(tmp_path):
    """An outside capture of a NAT box with several inside links holds the others' peers too:
    the NAT box's lane has only its public address and its name, each peer its own lane."""
    from lab.viz.ladder import build_ladder
    from lab.viz.run import load_run

    run = load_run(_two_nat_boxes_run(tmp_path))
    pairs = {inside.stem: (inside, outside) for inside, outside in run.nat_sides()}
    assert sorted(pairs) == ["natl-in", "natl-in5"]
    expected = {"natl-in": [("gwa", ["10.64.0.2"]), ("natl", ["198.51.100.20"]), ("gwb", ["198.51.100.2"])],
                "natl-in5": [("gwi", ["10.64.4.2"]), ("natl", ["198.51.100.20"]), ("gwj", ["198.51.100.6"])]}
    for name, (inside, outside) in pairs.items():
        ladder = build_ladder([analyze_capture(inside), analyze_capture(outside)], run.topology)
        assert [(lane.name, lane.addresses) for lane in ladder.lanes] == expected[name], name
        assert [lane.nat for lane in ladder.lanes] == [False, True, False]
        assert sum(b.count for b in ladder.bands) == 6 and all(b.via == 1 for b in ladder.bands)
    # without topology.json: the address the NAT box wrote over the inside host's, not a name
    inside, outside = pairs["natl-in5"]
    ladder = build_ladder([analyze_capture(inside), analyze_capture(outside)])
    assert [lane.addresses for lane in ladder.lanes] == [["10.64.4.2"], ["198.51.100.20"], ["198.51.100.6"]]
