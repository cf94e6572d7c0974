"""The topology diagram from topology.json (the run folder's format)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.viz.topology import TopologyFileError, draw_topology

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
