"""The topology diagram from topology.json (the run folder's format)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.viz.topology import BOX_W, TopologyFileError, draw_topology, load_topology, topology_model

TOPOLOGY = Path(__file__).resolve().parent.parent / "data" / "demo" / "topology.json"


def test_site_to_site_through_a_nat_box(tmp_path):
    figure = draw_topology(TOPOLOGY, tmp_path / "topology")
    model = figure.model
    order = [n.name for n in sorted(model.nodes, key=lambda n: n.x)]
    assert order == ["hosta", "gwa", "nat", "gwb", "hostb"] or order == ["hostb", "gwb", "nat", "gwa", "hosta"]
    nodes = {n.name: n for n in model.nodes}
    assert nodes["nat"].lines[0] == "NAT to 198.51.100.1"
    assert nodes["nat"].interfaces == {"in:": "172.16.0.1/24", "out:": "198.51.100.1/24"}
    assert nodes["gwa"].lines == ["gateway, ipsec-lab"] and nodes["gwb"].lines == ["gateway, strongSwan"]
    assert model.taps == [("nat-inside", "nat", "nat-eth0"), ("nat-outside", "nat", "nat-eth1")]
    assert "2 taps" in figure.caption and "1 NAT box" in figure.caption


def test_a_hub_with_spokes_places_every_node(tmp_path):
    nodes = [{"name": "hub", "kind": "gateway", "software": "ours", "interfaces": []}]
    links = []
    for i in range(4):
        nodes.append({"name": f"spoke{i}", "kind": "gateway", "software": "strongswan", "interfaces": []})
        links.append({"a": "hub", "a_intf": f"hub-eth{i}", "b": f"spoke{i}", "b_intf": f"spoke{i}-eth0", "mtu": 1400})
    topology = {"scenario": "hub", "nodes": nodes, "links": links, "taps": []}
    model = draw_topology(topology, tmp_path / "hub").model
    places = {(n.x, n.y) for n in model.nodes}
    assert len(places) == 5


def test_bad_topology_names_the_field(tmp_path):
    broken = json.loads(TOPOLOGY.read_text())
    broken["links"][0]["b"] = "nowhere"
    with pytest.raises(TopologyFileError, match=r"links\[0\] joins unknown node 'nowhere'"):
        draw_topology(broken, tmp_path / "x")
    (tmp_path / "t.json").write_text("{")
    with pytest.raises(TopologyFileError, match="not JSON"):
        draw_topology(tmp_path / "t.json", tmp_path / "x")


def test_an_ipv6_address_beside_the_ipv4_one_gets_a_line_of_its_own_and_the_slide_grows(tmp_path):
    from PIL import Image

    from lab.viz.topology import _intf_lines

    assert _intf_lines("gwa-lan", "10.1.0.1/24, 2001:db8:1::1/64") == ["lan 10.1.0.1/24", "    2001:db8:1::1/64"]
    assert _intf_lines("gwa-lan", "10.1.0.1/24") == ["lan 10.1.0.1/24"] and _intf_lines("lo", "") == ["lo"]
    draw_topology(TOPOLOGY, tmp_path / "v4")
    both = json.loads(TOPOLOGY.read_text())
    for node in both["nodes"]:
        for intf in node["interfaces"]:
            intf["addresses"] = intf["addresses"] + [f"2001:db8:{i}::1/64" for i in range(len(intf["addresses"]))]
    draw_topology(both, tmp_path / "v6")
    heights = [Image.open(tmp_path / f"{name}.png").size[1] for name in ("v4", "v6")]
    assert heights[1] > heights[0], heights


def test_a_nat_box_with_several_inside_interfaces_shows_each(tmp_path):
    """compare's NAT box has one inside interface per VPN: each address is in its box, not only
    the last one (they all had the label "in:")."""
    topology = {"scenario": "compare", "links": [], "taps": [], "nodes": [{
        "name": "nat", "kind": "nat", "interfaces": [
            {"name": "nat-out", "addresses": ["198.51.100.1/24"]}, {"name": "nat-in", "addresses": ["172.16.0.1/24"]},
            {"name": "nat-in2", "addresses": ["172.16.1.1/24"]}, {"name": "nat-eth3", "addresses": ["172.16.2.1/24"]}],
        "nat": {"inside": ["nat-in", "nat-in2", "nat-eth3"], "outside": "nat-out", "public": "198.51.100.1"}}]}
    nat = draw_topology(topology, tmp_path / "compare").model.nodes[0]
    assert nat.interfaces == {"out:": "198.51.100.1/24", "in:": "172.16.0.1/24", "in2:": "172.16.1.1/24",
                              "in eth3:": "172.16.2.1/24"}


def test_taps_drawn_at_one_point_share_one_label(tmp_path):
    """compare-site-to-site's NAT box: four inside taps on links that leave the box at the same
    point. Their four labels were drawn over each other; now one label names them all, and the box
    lists its four inside addresses (all were labelled "in:", and only the last was shown)."""
    topology = Path(__file__).resolve().parent.parent / "data" / "alternatives" / "topology.json"
    figure = draw_topology(topology, tmp_path / "compare")
    svg = next(p for p in figure.files if p.suffix == ".svg").read_text()
    assert "taps nat-in, nat-in2, nat-in3, nat-in4<" in svg and "tap nat-outside<" in svg
    assert "tap nat-in2<" not in svg
    nat = next(n for n in figure.model.nodes if n.name == "nat")
    assert [nat.interfaces[k] for k in ("in:", "in2:", "in3:", "in4:")] == [f"172.16.{i}.1/24" for i in range(4)]


COMPARE = [Path(__file__).resolve().parent.parent / "data" / path for path in
           ("alternatives/topology.json", "topology/restrictive-network.json", "topology/compare-roaming.json")]


def _crosses(path: list[tuple[float, float]], box) -> bool:
    """Whether the polyline runs into a node's box (points every 0.02 inch along it)."""
    for (x0, y0), (x1, y1) in zip(path, path[1:]):
        steps = max(1, int(max(abs(x1 - x0), abs(y1 - y0)) / 0.02))
        for i in range(steps + 1):
            x, y = x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps
            if abs(x - box.x) < BOX_W / 2 and abs(y - box.y) < box.h / 2:
                return True
    return False


@pytest.mark.parametrize("source", COMPARE, ids=lambda p: p.stem if p.stem != "topology" else p.parent.name)
def test_compare_topologies_pairs_share_a_row_and_no_link_runs_through_a_box(source):
    """compare's topologies (one NAT box, a gateway pair per VPN between hosta and hostb): the
    pair that serves hosta's lanN and hostb's lanN sits on one row, hosta left of site A's
    gateways and hostb right of site B's (or mirrored), and no link's line crosses a box that is
    not one of its ends (hostb sat under the NAT box with every site B line through the boxes)."""
    model = topology_model(load_topology(source))
    nodes = {n.name: n for n in model.nodes}
    by_lan: dict[tuple[str, str], str] = {}   # (host, its interface's suffix) -> the gateway on it
    for a, a_intf, b, b_intf, _ in model.links:
        for host, intf, gateway in ((a, a_intf, b), (b, b_intf, a)):
            if host in ("hosta", "hostb"):
                by_lan[host, intf.split("-", 1)[1]] = gateway
    lans = sorted({lan for _, lan in by_lan})
    assert len(lans) >= 4
    for lan in lans:
        left, right = nodes[by_lan["hosta", lan]], nodes[by_lan["hostb", lan]]
        assert abs(left.y - right.y) < 0.01, (lan, left.name, left.y, right.name, right.y)
        xs = [nodes["hosta"].x, left.x, nodes["nat"].x, right.x, nodes["hostb"].x]
        assert xs == sorted(xs) or xs == sorted(xs, reverse=True), (lan, xs)
    assert len(model.paths) == len(model.links)
    for (a, _, b, _, _), path in zip(model.links, model.paths):
        for node in model.nodes:
            if node.name not in (a, b):
                assert not _crosses(path, node), f"the link {a}-{b} runs through {node.name}'s box: {path}"


def test_six_vpn_pairs_fit_two_slides(tmp_path):
    """restrictive-network's six pairs: the figure was 1920 x 5310 pixels (five slides of
    height); now at most two 1080-pixel slides."""
    from PIL import Image

    figure = draw_topology(COMPARE[1], tmp_path / "topology")
    width, height = Image.open(figure.files[0]).size
    assert width == 1920 and height <= 2 * 1080, (width, height)


def test_a_title_too_wide_puts_its_parameters_on_a_line_below(tmp_path):
    """road-warriors' title with its six parameters ran off both edges of the figure."""
    topology = json.loads(TOPOLOGY.read_text())
    topology["scenario"] = "road-warriors"
    topology["params"] = {"clients": 3, "nats": 2, "mapping": "preserve", "servers": 1, "ipv6": False, "proxy": False}
    svg = next(p for p in draw_topology(topology, tmp_path / "long").files if p.suffix == ".svg").read_text()
    assert ">Topology: road-warriors<" in svg and ">(clients=3, nats=2, mapping=preserve" in svg
    topology["params"] = {"nats": 2}
    svg = next(p for p in draw_topology(topology, tmp_path / "short").files if p.suffix == ".svg").read_text()
    assert ">Topology: road-warriors (nats=2)<" in svg
