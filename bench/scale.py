"""Hub and spoke at scale: N spoke gateways each bring a tunnel up to one hub and ping the
server behind it from their LAN. Ends with one line per software and number of spokes:

    scale: U/N spokes up and pinging in S s; per gateway: RSS max R MB, PSS mean P MB, PSS with shared T MB

    sudo .venv/bin/python bench/scale.py --spokes 100                  # our daemon everywhere
    sudo .venv/bin/python bench/scale.py --spokes 25 100 --compare     # also the other designs and strongSwan, ratios
    sudo .venv/bin/python bench/scale.py --spokes 100 --software ours-threads

The software: `ours` (our daemons forked from the lab's fork server, lab.net.forkserver, as
IPSEC_LAB_GATEWAY_THREADS=0 makes them), `ours-threads` (our daemons as threads of one gateway
host, one process for all: what a lab of more than two of ours does unless told otherwise),
`ours-fresh` (each daemon a fresh Python process, IPSEC_LAB_FORK=0) and `strongswan` (charon).
S runs from starting the first daemon to the last spoke's successful ping. Memory is measured
when all are up: RSS (VmRSS) counts every page a process maps, shared or not; PSS
(/proc/PID/smaps_rollup) divides each shared page among the processes sharing it, so the PSS of
all gateways adds up to the memory they take together. "PSS with shared" is that sum (with the
fork server's own PSS, for ours; each process counted once: ours-threads' gateways share one)
divided by the number of gateways: what one gateway costs. For ours-threads, RSS and PSS "mean" are
the host's, the one process of all gateways.
Needs root.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.conf.writer import render as render_swanctl  # noqa: E402
from lab.net.lab import Lab  # noqa: E402
from lab.net.peers import established, make_peer  # noqa: E402
from lab.net.topology import load  # noqa: E402

PSK = '"a-lab-only-psk"'
HUB, SERVER = "198.51.100.1", "10.0.0.10"


def hub_conf(spokes: int) -> str:
    secrets = {"ike-spokes": {"id-hub": "hub.lab", **{f"id-{i}": f"spoke{i}.lab" for i in range(1, spokes + 1)},
                              "secret": PSK}}
    return render_swanctl({
        "connections": {"spokes": {
            "version": "2", "remote_addrs": "%any", "proposals": "aes128gcm16-prfsha256-x25519", "mobike": "no",
            "local": {"auth": "psk", "id": "hub.lab"}, "remote": {"auth": "psk"},
            "children": {"lan": {"local_ts": "10.0.0.0/24", "remote_ts": "10.128.0.0/16",
                                 "esp_proposals": "aes128gcm16"}}}},
        "secrets": secrets})


def spoke_conf(i: int) -> str:
    return render_swanctl({
        "connections": {"hub": {
            "version": "2", "remote_addrs": HUB, "proposals": "aes128gcm16-prfsha256-x25519", "mobike": "no",
            "local": {"auth": "psk", "id": f"spoke{i}.lab"}, "remote": {"auth": "psk", "id": "hub.lab"},
            "children": {"lan": {"local_ts": f"10.128.{i}.0/24", "remote_ts": "10.0.0.0/24",
                                 "esp_proposals": "aes128gcm16", "start_action": "start"}}}},
        "secrets": {"ike-hub": {"id-spoke": f"spoke{i}.lab", "id-hub": "hub.lab", "secret": PSK}}})


def rss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0


def pss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) / 1024 if match else 0.0


SOFTWARE = {"ours": "ours", "ours-threads": "ours", "ours-fresh": "ours", "strongswan": "strongswan"}
COMPARE = ("ours", "ours-threads", "ours-fresh", "strongswan")


def run(spokes: int, software: str, workdir: Path, timeout: float) -> dict:
    lab = Lab(load("hub-and-spoke")(spokes=spokes), workdir, f"scale-{software}", say=print,
              fork=software in ("ours", "ours-threads"),
              gateway_threads=software == "ours-threads").start()
    kind = SOFTWARE[software]
    try:
        peers = {}
        for name, conf in [("hub", hub_conf(spokes))] + [(f"spoke{i}", spoke_conf(i)) for i in range(1, spokes + 1)]:
            # a hundred daemons starting at once share two cores: give each its turn
            patience = max(15.0, 0.6 * spokes)
            options = {"export_keys": False, "start_timeout": patience} if kind == "ours" else {
                "start_timeout": patience}
            peer = make_peer(kind, lab.node(name), workdir / f"{software}-{spokes}" / name, name, **options)
            peer.write_config(conf)
            peers[name] = peer
            lab.on_stop(peer.stop)
        started = time.monotonic()
        if kind == "ours":
            peers["hub"].start()
            for i in range(1, spokes + 1):
                peers[f"spoke{i}"].launch()  # each spoke initiates by itself (start_action = start)
            for i in range(1, spokes + 1):
                peers[f"spoke{i}"].wait_started()
        else:
            for peer in peers.values():
                peer.start()  # charon loads its config; start_action = start initiates
        pending = set(range(1, spokes + 1))
        up: set[int] = set()
        deadline = started + timeout
        while pending and time.monotonic() < deadline:
            for i in sorted(pending):
                if not established(peers[f"spoke{i}"].list_sas(), "hub", "lan"):
                    continue
                out = lab.node(f"spoke{i}").cmd(f"ping -n -c 1 -W 1 -I 10.128.{i}.1 {SERVER}")
                if " 1 received" in out:
                    up.add(i)
                    pending.discard(i)
            time.sleep(0.2)
        seconds = time.monotonic() - started
        pids = {name: peer.process.pid for name, peer in peers.items() if peer.process is not None}
        memory = {name: rss_mb(pid) for name, pid in pids.items()}
        pss = {pid: pss_mb(pid) for pid in set(pids.values())}  # a hosted gateway's PID is its host's
        server = lab.fork_server.process.pid if lab.fork_server is not None and lab.fork_server.running else None
        server_pss = pss_mb(server) if server else 0.0
        return {"software": software, "spokes": spokes, "up": len(up), "seconds": seconds,
                "max_rss": max(memory.values(), default=0.0), "hub_rss": memory.get("hub", 0.0),
                "mean_pss": sum(pss.values()) / max(len(pss), 1), "server_pss": server_pss,
                "pss_each": (sum(pss.values()) + server_pss) / max(len(pids), 1),
                "forked": server is not None, "missing": sorted(pending)}
    finally:
        problems = lab.stop()
        if problems:
            print("teardown:", "; ".join(problems))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spokes", type=int, nargs="+", default=[10], help="one run for each number given")
    parser.add_argument("--compare", action="store_true",
                        help="also our daemons as fresh processes and strongSwan on every gateway, with ratios")
    parser.add_argument("--software", choices=COMPARE, default="ours", help="without --compare: whose gateways")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="ipsec-lab-scale-"))
    try:
        for spokes in args.spokes:
            for software in (COMPARE if args.compare else [args.software]):
                result = run(spokes, software, workdir, args.timeout)
                results.append(result)
                report(result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.compare:
        print("\nsummary (one session):")
        for result in results:
            report(result)
        for spokes in args.spokes:
            by = {r["software"]: r for r in results if r["spokes"] == spokes}
            theirs = by["strongswan"]
            for software in COMPARE[:-1]:
                ours = by[software]
                print(f"ratio {software}/strongSwan at {spokes} spokes: time {ours['seconds'] / theirs['seconds']:.2f}, "
                      f"PSS per gateway {ours['pss_each'] / max(theirs['pss_each'], 0.1):.2f}, "
                      f"max RSS {ours['max_rss'] / max(theirs['max_rss'], 0.1):.2f}")
    return 0 if all(r["up"] == r["spokes"] for r in results) else 1


def report(result: dict) -> None:
    missing = f" (missing: {', '.join(f'spoke{i}' for i in result['missing'][:10])})" if result["missing"] else ""
    server = f", fork server PSS {result['server_pss']:.1f} MB" if result["forked"] else ""
    print(f"scale: {result['up']}/{result['spokes']} spokes up and pinging in {result['seconds']:.1f} s; per gateway: "
          f"RSS max {result['max_rss']:.1f} MB, PSS mean {result['mean_pss']:.1f} MB, "
          f"PSS with shared {result['pss_each']:.1f} MB [{result['software']}; hub RSS {result['hub_rss']:.1f} MB{server}]"
          f"{missing}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
