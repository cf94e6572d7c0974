"""The site-to-site topology (topologies/site_to_site.py) as a lab with the conveniences that
bench/ and tests/lab use: each gateway's swanctl.conf for the `s2s`/`net` connection with a PSK,
the middle box's interfaces, and plain routing for a baseline without IPsec.

    with SiteLab(nat="one") as lab:
        lab.node("gwa"), lab.swanctl_conf("a", esp_proposals="aes128-sha256")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .lab import Lab
from .strongswan import render_s2s_conf, usable_proposals
from .topology import load

PSK = "a-lab-only-psk"
SITE_A_LAN, HOSTA, GWA_LAN = "10.1.0.0/24", "10.1.0.10", "10.1.0.1"
SITE_B_LAN, HOSTB, GWB_LAN = "10.2.0.0/24", "10.2.0.10", "10.2.0.1"
GWB_PUBLIC = "198.51.100.2"
GWA_WAN = {"none": "192.0.2.2", "one": "172.16.0.2"}
MIDDLE = {"none": ("router", "router-a", "router-b"), "one": ("nat", "nat-in", "nat-out")}


class SiteLab(Lab):
    """hosta - gwa - (nat | router) - gwb - hostb; `nat` is none or one."""

    def __init__(self, nat: str = "one", workdir: str | Path | None = None, **params: Any) -> None:
        if nat not in MIDDLE:
            raise ValueError(f"SiteLab knows nat=none and nat=one, not {nat!r}")
        super().__init__(load("site-to-site")(nat=nat, **params), workdir, f"site-to-site-{nat}")
        self.nat = nat
        self.gwa_wan = GWA_WAN[nat]
        self.middle, self.inside_intf, self.internet_intf = MIDDLE[nat]

    @property
    def gwa_public(self) -> str:
        """The address gwb sees gwa's packets come from."""
        return "198.51.100.1" if self.nat == "one" else self.gwa_wan

    def swanctl_conf(self, side: str, **options: Any) -> str:
        """swanctl.conf of gateway `side` ("a" initiates to gwb, "b" answers anyone) for the
        connection `s2s` with child `net`; `options` go to render_s2s_conf (proposals,
        esp_proposals, mode, local_ts/remote_ts, ...)."""
        if side == "a":
            base = dict(local_addrs=self.gwa_wan, remote_addrs=GWB_PUBLIC, local_id="gwa.lab", remote_id="gwb.lab",
                        local_ts=SITE_A_LAN, remote_ts=SITE_B_LAN)
        else:
            base = dict(local_addrs=GWB_PUBLIC, remote_addrs="%any", local_id="gwb.lab", remote_id="gwa.lab",
                        local_ts=SITE_B_LAN, remote_ts=SITE_A_LAN)
        return render_s2s_conf(psk=PSK, usable=usable_proposals, **{**base, **options})

    def plain_routing(self, enable: bool) -> None:
        """Let the middle box route the two LANs in clear (a baseline without IPsec). Off by
        default, so that a missing tunnel route shows as lost packets, not as a clear-text leak."""
        verb = "replace" if enable else "del"
        middle = self.node(self.middle)
        for prefix, via in ((SITE_A_LAN, self.gwa_wan), (SITE_B_LAN, GWB_PUBLIC)):
            middle.cmd(f"ip route {verb} {prefix}" + (f" via {via}" if enable else ""))
