"""Make tests/data/forms/: one small capture of each packet form with its key tables.

    flock /run/ipsec-lab.lock .venv/bin/python tests/data/make_forms.py [NAME...]

Root (network namespaces). Each form is our daemon against our daemon on the site-to-site
topology (lab.net.sites.SiteLab), captured on the middle box's internet side, with two small
pings (16 data octets, so the header-layout figure stays readable):

    plain            no IPsec: gwa pings gwb across the middle box (ICMP in clear)
    esp-tunnel       ESP tunnel mode, no NAT (IP protocol 50), hosta pings hostb
    esp-transport    ESP transport mode, gwa pings gwb
    esp-udp-tunnel   ESP-in-UDP tunnel (gwa behind the NAT box), also captured inside
    ah-transport     AH transport mode (sha256)
    ah-tunnel        AH tunnel mode (sha256)
    esp-null         ESP with NULL encryption and HMAC-SHA-256 (RFC 4543 would be GMAC)
    fragments        a 400-octet MTU on the WAN: IKE_SA_INIT (modp2048) in IP fragments,
                     IKE_AUTH in RFC 7383 fragments (--fragment-size 200), and the first
                     IKE_AUTH fragment dropped once by the middle box, so it is retransmitted
                     (fragments-inside.pcap, taken before the drop, shows both sends)

Leaves FORM.pcap (and FORM-inside.pcap), FORM.keys/ (ikev2_decryption_table, esp_sa and
the wireshark/ copies: XDG_CONFIG_HOME=FORM.keys) and FORM.trace.jsonl (gwa's trace).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from lab.net.gateway import OurGateway
from lab.net.sites import GWB_PUBLIC, HOSTB, SiteLab

OUT = Path(__file__).resolve().parent / "forms"
GCM = dict(proposals="aes128gcm16-prfsha256-x25519", esp_proposals="aes128gcm16")
CBC = dict(proposals="aes128-sha256-modp2048", esp_proposals="aes128-sha256")
TRANSPORT = dict(local_ts="dynamic", remote_ts="dynamic", mode="transport")

FORMS = {
    # name: (behind_nat, swanctl options, ESP->AH, ping from, ping to, daemon args)
    "plain": (False, None, False, "gwa", GWB_PUBLIC, ()),
    "esp-tunnel": (False, GCM, False, "hosta", HOSTB, ()),
    "esp-transport": (False, {**GCM, **TRANSPORT}, False, "gwa", GWB_PUBLIC, ()),
    "esp-udp-tunnel": (True, GCM, False, "hosta", HOSTB, ()),
    "ah-transport": (False, {**GCM, **TRANSPORT}, True, "gwa", GWB_PUBLIC, ()),
    "ah-tunnel": (False, GCM, True, "hosta", HOSTB, ()),
    "esp-null": (False, {**GCM, "esp_proposals": "null-sha256"}, False, "hosta", HOSTB, ()),
    "fragments": (False, CBC, False, "hosta", HOSTB, ("--fragment-size", "200", "--retransmit-timeout", "1")),
}


def ping(lab: SiteLab, src: str, dst: str) -> str:
    out = lab.node(src).cmd(f"ping -n -c 2 -s 16 -i 0.3 -W 2 {dst}")
    return next((line.strip() for line in out.splitlines() if "received" in line), out.strip()[-200:])


def make(name: str, work: Path) -> None:
    behind_nat, options, ah, src, dst, args = FORMS[name]
    with SiteLab(nat="one" if behind_nat else "none") as lab:
        middle = lab.node(lab.middle)
        gateways = []
        if name == "fragments":
            for node, intf in (("gwa", "gwa-wan"), (lab.middle, lab.inside_intf), (lab.middle, lab.internet_intf),
                               ("gwb", "gwb-wan")):
                lab.node(node).cmd(f"ip link set {intf} mtu 400")
            # the first IKE_AUTH fragment from gwa (an IP datagram of 200 octets at most) is lost once
            # (iptables-nft counts nth from 0)
            middle.cmd("iptables -A FORWARD -p udp --dport 500 -m length --length 150:200 "
                       "-m statistic --mode nth --every 1000 --packet 0 -j DROP")
        if options is not None:
            for side in ("b", "a"):
                gateway = OurGateway(lab.node(f"gw{side}"), work / name / f"gw{side}", extra_args=args)
                text = lab.swanctl_conf(side, **options)
                if ah:
                    text = text.replace(f"esp_proposals = {options['esp_proposals']}", "ah_proposals = sha256")
                gateway.write_config(text)
                gateways.append(gateway)
        lab.tap("outside", lab.middle, lab.internet_intf, work / name / "outside.pcap", "ip")
        if behind_nat or name == "fragments":
            lab.tap("inside", lab.middle, lab.inside_intf, work / name / "inside.pcap", "ip")
        try:
            for gateway in gateways:
                gateway.start()
            if gateways:
                result = gateways[-1].ctl("initiate", ike="s2s", child="net", timeout=20)
                if not result.get("ok"):
                    raise RuntimeError(f"{name}: no tunnel: {result.get('error')}\n{gateways[-1].log_tail()}")
            print(f"{name}: {ping(lab, src, dst)}")
            if gateways:
                gateways[-1].ctl("terminate", ike="s2s")
                time.sleep(0.5)
        finally:
            lab.stop_taps()
            for gateway in gateways:
                gateway.stop()
    OUT.mkdir(exist_ok=True)
    shutil.copy(work / name / "outside.pcap", OUT / f"{name}.pcap")
    if (work / name / "inside.pcap").exists():
        shutil.copy(work / name / "inside.pcap", OUT / f"{name}-inside.pcap")
    if gateways:
        keys = OUT / f"{name}.keys"
        shutil.rmtree(keys, ignore_errors=True)
        shutil.copytree(gateways[-1].keys_dir, keys)
        shutil.copy(gateways[-1].trace_path, OUT / f"{name}.trace.jsonl")


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in FORMS]
    if unknown:
        print(f"unknown form(s) {', '.join(unknown)}; known: {', '.join(FORMS)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ipsec-lab-forms-") as work:
        for name in names or list(FORMS):
            make(name, Path(work))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
