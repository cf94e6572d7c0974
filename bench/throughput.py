"""iperf3 TCP from hosta to hostb on the site-to-site topology through a NAT box, in one run:
plain routing, strongSwan to strongSwan (kernel-libipsec), ours to ours, ours to strongSwan,
WireGuard (wireguard-go) and OpenVPN over UDP (AES-256-GCM, the certificates of
scenarios/compare-site-to-site). Prints Mbit/s for each, each daemon's CPU, and the ratios
ours/each. Needs root.

    .venv/bin/python bench/throughput.py [--seconds 10] [--proposal aes128gcm16-prfsha256-x25519 --esp aes128gcm16]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import cpu_seconds  # noqa: E402
from lab.net.gateway import OurGateway  # noqa: E402
from lab.net.openvpn import OpenVpn  # noqa: E402
from lab.net.strongswan import StrongSwan  # noqa: E402
from lab.net.sites import GWB_PUBLIC, HOSTB, SITE_A_LAN, SITE_B_LAN, SiteLab  # noqa: E402
from lab.net.wireguard import WireGuard  # noqa: E402

COMPARE = Path(__file__).resolve().parents[1] / "scenarios" / "compare-site-to-site" / "hosts"
# the compare-site-to-site files of each VPN's two gateways, and what changes on the site topology
# (one gateway pair: gwb at 198.51.100.2, the LANs 10.1.0.0/24 and 10.2.0.0/24)
VPN_HOSTS = {"wireguard": ("gwc", "gwd"), "openvpn": ("gwe", "gwf")}
VPN_REWRITE = {
    "wireguard": [("198.51.100.3", GWB_PUBLIC), ("10.2.1.0/24", SITE_B_LAN), ("10.1.1.0/24", SITE_A_LAN)],
    "openvpn": [("198.51.100.4", GWB_PUBLIC), ("route 10.2.2.0 ", "route 10.2.0.0 "),
                ("route 10.1.2.0 ", "route 10.1.0.0 ")],
}


def vpn_folders(kind: str, workdir: Path) -> tuple[Path, Path]:
    """Copies of the two gateways' host folders of compare-site-to-site for `kind`, rewritten
    for the site topology: (gwa's, gwb's)."""
    folders = []
    for side, host in zip("ab", VPN_HOSTS[kind]):
        target = workdir / f"{kind}-gw{side}-conf"
        shutil.copytree(COMPARE / host, target, dirs_exist_ok=True)
        for conf in target.glob("*.conf"):
            text = conf.read_text()
            for old, new in VPN_REWRITE[kind]:
                text = text.replace(old, new)
            conf.write_text(text)
        folders.append(target)
    return folders[0], folders[1]

def iperf(lab: SiteLab, seconds: float) -> tuple[float, float]:
    """(Mbit/s received, retransmits) of one iperf3 TCP run hosta -> hostb."""
    server = lab.node("hostb").popen(["iperf3", "-s", "-1", "-B", HOSTB], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = lab.node("hosta").cmd(f"iperf3 -c {HOSTB} -t {seconds} -J")
        result = json.loads(out[out.index("{"):])
        if "error" in result:
            raise RuntimeError(result["error"])
        end = result["end"]
        return end["sum_received"]["bits_per_second"] / 1e6, end["sum_sent"].get("retransmits", 0)
    finally:
        server.kill()
        server.wait()


def run_case(lab: SiteLab, workdir: Path, left: str, right: str, seconds: float, proposal: str, esp: str,
             cpu: dict) -> float:
    """left/right: 'ours' or 'strongswan' on gwa/gwb; returns Mbit/s."""
    daemons = []
    try:
        for side, kind in (("b", right), ("a", left)):
            node = lab.node(f"gw{side}")
            if kind == "ours":
                daemon = OurGateway(node, workdir / f"{left}-{right}-gw{side}", export_keys=False)
                daemon.write_config(lab.swanctl_conf(side, proposals=proposal, esp_proposals=esp))
                daemon.start()
            else:
                daemon = StrongSwan(node, workdir / f"{left}-{right}-gw{side}")
                daemon.write_config(lab.swanctl_conf(side, proposals=proposal, esp_proposals=esp))
                daemon.start()
                daemon.load_all()
            daemons.append(daemon)
        initiator = daemons[-1]
        if isinstance(initiator, OurGateway):
            result = initiator.ctl("initiate", ike="s2s", child="net", timeout=20)
            if not result.get("ok"):
                raise RuntimeError(f"{left}->{right}: tunnel did not come up: {result}")
        else:
            initiator.initiate(child="net", timeout=20)
        ping = lab.node("hosta").cmd(f"ping -n -c 3 -i 0.2 -W 2 {HOSTB}")
        if " 0 received" in ping:
            raise RuntimeError(f"{left}->{right}: no ping through the tunnel")
        before = {d: _cpu_seconds(d) for d in daemons}
        mbits, _ = iperf(lab, seconds)
        cpu[f"{left}-{right}"] = [round(100 * (_cpu_seconds(d) - before[d]) / seconds) for d in daemons]
        return mbits
    finally:
        for daemon in daemons:
            daemon.stop()


def run_vpn(lab: SiteLab, workdir: Path, kind: str, seconds: float, cpu: dict) -> float:
    """WireGuard or OpenVPN between gwa and gwb; returns Mbit/s."""
    peer_class = WireGuard if kind == "wireguard" else OpenVpn
    folders = vpn_folders(kind, workdir)
    daemons = []
    try:
        for side, folder in (("b", folders[1]), ("a", folders[0])):
            daemon = peer_class(lab.node(f"gw{side}"), workdir / f"{kind}-gw{side}")
            daemon.load(folder)
            daemon.start()
            daemons.append(daemon)
        daemons[-1].initiate(timeout=30)
        ping = lab.node("hosta").cmd(f"ping -n -c 3 -i 0.2 -W 2 {HOSTB}")
        if " 0 received" in ping:
            raise RuntimeError(f"{kind}: no ping through the tunnel")
        before = {d: _cpu_seconds(d) for d in daemons}
        mbits, _ = iperf(lab, seconds)
        cpu[kind] = [round(100 * (_cpu_seconds(d) - before[d]) / seconds) for d in daemons]
        return mbits
    finally:
        for daemon in daemons:
            daemon.stop()


def _cpu_seconds(daemon) -> float:
    return cpu_seconds(daemon.process.pid if getattr(daemon, "process", None) else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--proposal", default="aes128gcm16-prfsha256-x25519")
    parser.add_argument("--esp", default="aes128gcm16")
    parser.add_argument("--cases", default="plain,strongswan-strongswan,ours-ours,ours-strongswan,wireguard,openvpn")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/throughput.py needs root (network namespaces)", file=sys.stderr)
        return 1
    if shutil.which("iperf3") is None:
        print("iperf3 is missing: apt-get install iperf3 (scripts/setup.sh does)", file=sys.stderr)
        return 1
    results: dict[str, float] = {}
    cpu: dict[str, list[int]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="ipsec-lab-bench-"))
    print(f"iperf3 TCP {args.seconds:g} s hosta -> hostb through the NAT box, IKE {args.proposal}, ESP {args.esp}")
    try:
        with SiteLab(nat="one") as lab:
            for case in args.cases.split(","):
                if case == "plain":
                    lab.plain_routing(True)
                    try:
                        results[case] = iperf(lab, args.seconds)[0]
                    finally:
                        lab.plain_routing(False)
                elif case in VPN_HOSTS:
                    results[case] = run_vpn(lab, workdir, case, args.seconds, cpu)
                else:
                    left, right = case.split("-")
                    results[case] = run_case(lab, workdir, left, right, args.seconds, args.proposal, args.esp, cpu)
                load = f"   (daemon CPU gwb/gwa: {'/'.join(f'{c}%' for c in cpu[case])})" if case in cpu else ""
                print(f"  {case:24s} {results[case]:9.1f} Mbit/s{load}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for case, ratio in ratios(results):
        print(f"  ratio {case}: {ratio:.2f}")
    return 0


def ratios(results: dict[str, float]) -> list[tuple[str, float]]:
    """ours/each other data plane of the run, and ours-to-strongSwan against strongSwan's."""
    out = []
    ours = results.get("ours-ours")
    for other in ("strongswan-strongswan", "wireguard", "openvpn", "plain"):
        if ours and results.get(other):
            out.append((f"ours-ours / {other}", ours / results[other]))
    if results.get("ours-strongswan") and results.get("strongswan-strongswan"):
        out.append(("ours-strongswan / strongswan-strongswan",
                    results["ours-strongswan"] / results["strongswan-strongswan"]))
    return out


if __name__ == "__main__":
    sys.exit(main())
