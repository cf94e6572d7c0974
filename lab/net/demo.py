"""The default lab run: our gateway (gwa, behind a NAT box) builds a tunnel to strongSwan
(gwb), rekeys it and closes it, while tcpdump records both sides of the NAT box.

    ipsec-lab demo [--out DIR]

Leaves DIR/captures/{nat-inside,nat-outside}.pcap, DIR/keys/ (Wireshark tables),
DIR/gwa/trace.jsonl and the daemons' logs; prints what happened, step by step.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable

from lab.net.capture import Capture
from lab.net.gateway import OurGateway
from lab.net.strongswan import StrongSwan
from lab.net.topo import GWB_PUBLIC, PREFIX, SITE_A, SITE_B, SiteToSite
from lab.viz.decode import decode_capture

def _new_log_lines(path: Path, seen: int) -> tuple[list[str], int]:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return lines[seen:], len(lines)


def _ping(lab: SiteToSite, count: int) -> str:
    out = lab.node("hosta").cmd(f"ping -n -c {count} -i 0.2 -W 2 {SITE_B.host}")
    return next((line.strip() for line in out.splitlines() if "received" in line), out.strip()[-200:])


def run_demo(out: str | Path, say: Callable[[str], None] = print) -> int:
    if os.geteuid() != 0:
        say("ipsec-lab demo needs root (it creates network namespaces): run it with sudo or as root.")
        return 1
    out = Path(out).absolute()
    if out.exists():
        shutil.rmtree(out)
    (out / "captures").mkdir(parents=True)
    say("== topology: hosta 10.1.0.10 - gwa (ipsec-lab) - NAT box - gwb (strongSwan) - hostb 10.2.0.10")
    with SiteToSite(behind_nat=True) as lab:
        ours_conf, theirs_conf = lab.swanctl_conf("a"), lab.swanctl_conf("b")
        swan = StrongSwan(lab.node("gwb"), out / "gwb")
        swan.write_config(theirs_conf)
        gateway = OurGateway(lab.node("gwa"), out / "gwa")
        gateway.write_config(ours_conf)
        inside = Capture(lab.node("nat"), f"{PREFIX}nat-eth0", out / "captures" / "nat-inside.pcap",
                         "udp port 500 or udp port 4500 or esp").start()
        outside = Capture(lab.node("nat"), f"{PREFIX}nat-eth1", out / "captures" / "nat-outside.pcap").start()
        seen = 0
        try:
            swan.start()
            swan.load_all()
            gateway.start()
            say(f"== gwa initiates to {GWB_PUBLIC}; gwa's address {lab.gwa_wan} is hidden behind {lab.gwa_public}")
            result = gateway.ctl("initiate", ike="s2s", child="net", timeout=20)
            lines, seen = _new_log_lines(gateway.log_path, seen)
            for line in lines:
                say("   " + line)
            if not result.get("ok"):
                say(f"!! the tunnel did not come up: {result.get('error')}")
                return 1
            theirs = swan.raw_sas()
            state = theirs[0]["state"] if theirs else "no IKE SA"
            say(f"== strongSwan on gwb sees: IKE SA {state}, remote {theirs[0].get('remote-host')}:"
                f"{theirs[0].get('remote-port')} (the NAT box's mapping)" if theirs else f"== strongSwan: {state}")
            say(f"== hosta {SITE_A.host} pings hostb {SITE_B.host} through the tunnel")
            say("   " + _ping(lab, 5))
            say("== gwa rekeys the CHILD_SA (make-before-break), then strongSwan rekeys the IKE SA")
            gateway.ctl("rekey", child="net")
            time.sleep(0.5)
            swan.rekey(ike="s2s")
            time.sleep(0.5)
            lines, seen = _new_log_lines(gateway.log_path, seen)
            for line in lines:
                say("   " + line)
            say("   after the rekeys: " + _ping(lab, 3))
            say("== gwa closes the tunnel")
            gateway.ctl("terminate", ike="s2s")
            time.sleep(0.5)
            lines, seen = _new_log_lines(gateway.log_path, seen)
            for line in lines:
                say("   " + line)
        finally:
            inside.stop()
            outside.stop()
            gateway.stop()
            swan.stop()
            if gateway.keys_dir.exists():
                shutil.copytree(gateway.keys_dir, out / "keys", dirs_exist_ok=True)
    for label, name in (("inside the NAT box (gwa's private side)", "nat-inside"),
                        ("outside the NAT box (what gwb sees)", "nat-outside")):
        summary = decode_capture(out / "captures" / f"{name}.pcap")
        say(f"== on the wire, {label}: ipsec-lab decode captures/{name}.pcap")
        for message in summary.messages[:4]:
            say("   " + message.header_line().split("  ", 1)[-1].strip())
        if len(summary.messages) > 4:
            say(f"   ... {len(summary.messages) - 4} more IKE messages")
    say(f"== files in {out}: captures/*.pcap, keys/ (open the captures decrypted: "
        f"XDG_CONFIG_HOME={out / 'keys'} wireshark ...), gwa/trace.jsonl, gwa/gateway.log, gwb/charon.log")
    return 0
