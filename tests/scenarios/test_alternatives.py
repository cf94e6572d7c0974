"""Break-checks of the scenarios that compare IPsec with its alternatives (root): a scenario
whose point is that something cannot get through must fail when it can."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.net.exercises import replace

from .broken import run_broken, run_edited

pytestmark = pytest.mark.root
HOTEL = "allow_only: [tcp/80, tcp/443, udp/53]"


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("scenarios need root (network namespaces)")


def test_restrictive_network_fails_when_the_hotel_lets_udp_through(tmp_path):
    result, failed = run_broken(tmp_path, "restrictive-network", "scenario.yaml", HOTEL,
                                "allow_only: [tcp/80, tcp/443, udp/53, udp/500, udp/4500, udp/51820, udp/1194]")
    assert failed[0].index == 2 and "should have failed but worked" in failed[0].detail, failed[0].detail
    udp_out = next(c for c in result.checks if "no UDP" in c.text)
    assert not udp_out.ok, udp_out.saw


def test_compare_roaming_fails_when_wireguard_does_not_follow(tmp_path):
    """The LTE network lets IKE through but not WireGuard: gwd keeps gwc's Wi-Fi endpoint and the
    scenario must fail at its check that gwd followed."""
    _, failed = run_broken(tmp_path, "compare-roaming", "scenario.yaml", "\ngateways:",
                           "\nknobs:\n  natl: {allow_only: [udp/500, udp/4500]}\ngateways:")
    assert "gwd follows it to LTE" in failed[0].text and "198.51.100.1" in failed[0].detail, failed[0].detail


def test_restrictive_network_fails_when_the_hotel_lets_dtls_through(tmp_path):
    """With UDP 443 allowed, OpenConnect's DTLS gets out: the check that gwj's session carries its
    data in TLS only must fail."""
    result, failed = run_broken(tmp_path, "restrictive-network", "scenario.yaml", HOTEL,
                                "allow_only: [tcp/80, tcp/443, udp/53, udp/443]")
    assert failed and "TLS connection (no DTLS)" in failed[0].text, [(s.text, s.detail) for s in failed]
    dtls_out = next(c for c in result.checks if "no UDP" in c.text)
    assert not dtls_out.ok, dtls_out.saw


def test_compare_roaming_fails_when_openconnect_checks_its_peer_too_seldom(tmp_path):
    """With dead peer detection every 60 s instead of 5, DTLS follows gwe to LTE but the old TLS
    connection is not found dead in time: gwf still sees carol at the Wi-Fi address."""
    _, failed = run_broken(tmp_path, "compare-roaming", "hosts/gwf/ocserv.conf", "\ndpd = 5\nmobile-dpd = 5\n",
                           "\ndpd = 60\nmobile-dpd = 60\n")
    assert "logs in again with its cookie" in failed[0].text and "198.51.100.1" in failed[0].detail, failed[0].detail


def test_tcp_over_tcp_fails_when_a_check_counts_the_wrong_layer(tmp_path):
    """ESP in UDP made ESP in TCP (tcp = yes on gwa and gwb): the check that no TCP segment to or
    from gwb was sent twice must fail; and the outer connection's check pointed at the inner TCP's
    tap (hosta's side of the ESP-in-TCP tunnel, where no TCP port 4500 passes) must find nothing."""
    outer = '- tap: {on: nat-outside, filter: "tcp port 4500",'

    def edit(folder: Path) -> None:
        for gw in ("gwa", "gwb"):
            replace(folder / "hosts" / gw / "swanctl.conf", "    mobike = no\n", "    mobike = no\n    tcp = yes\n")
        assert (folder / "scenario.yaml").read_text().count(outer) == 1
        replace(folder / "scenario.yaml", outer, '- tap: {on: inner-esp-tcp, filter: "tcp port 4500",')

    result, failed_steps = run_edited(tmp_path, "tcp-over-tcp", edit)
    assert failed_steps == [], [s.detail for s in failed_steps]
    failed = {c.index: c.saw for c in result.checks if not c.ok}
    assert {1, 3} <= set(failed), failed   # (5 and maybe 7 fail too: no UDP 4500, fewer inner retransmissions)
    assert failed[1].startswith("0 packets"), failed[1]
    assert not failed[3].startswith("0 packets"), failed[3]


def test_compare_roaming_fails_when_openvpn_does_not_float(tmp_path):
    """Without `float` gwh takes packets only from the address in its `remote` (the Wi-Fi NAT
    box): gwg's new session from LTE is refused and the check that gwh follows it must fail."""
    _, failed = run_broken(tmp_path, "compare-roaming", "hosts/gwh/openvpn.conf", "\nfloat\n", "\n")
    assert "with float, gwh takes the new TLS session" in failed[0].text and "198.51.100.1" in failed[0].detail, \
        failed[0].detail
    log = (tmp_path / "run" / "logs" / "gwh-openvpn.log").read_text()
    assert "Incoming packet rejected from [AF_INET]198.51.100.20" in log


def _open_proxy(folder: Path) -> None:
    """The proxy goes wherever a request's Host says, but for app.lab."""
    conf = folder / "hosts" / "proxy" / "nginx.conf"
    replace(conf, "proxy_pass http://10.2.0.10:80;\n        proxy_set_header Host app.lab;", "proxy_pass http://$upstream;")
    conf.write_text("map $http_host $upstream {\n    app.lab 10.2.0.10:80;\n    default $http_host;\n}\n"
                    + conf.read_text())


def test_lateral_movement_fails_when_the_proxy_forwards_to_the_whole_network(tmp_path):
    """A reverse proxy that serves app.lab but goes wherever any other request's Host says (an
    open proxy into the LAN): the check that every request reaches the one application must fail."""
    _, failed = run_edited(tmp_path, "lateral-movement", _open_proxy)
    assert failed and "the proxy still goes to the one application only" in failed[0].text, \
        [(s.text, s.detail) for s in failed]
    log = (tmp_path / "run" / "nodes" / "proxy" / "access.log").read_text()
    assert '"GET http://10.2.0.11:5432/ HTTP/1.1" 200' in log, log  # it went there, and got an answer
