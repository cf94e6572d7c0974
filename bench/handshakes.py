"""IKE handshakes per second through one responder, ours and strongSwan's charon, in one run, with
the same load generator against both. Needs root (network namespaces).

    .venv/bin/python bench/handshakes.py [--seconds 10] [--sources 4] [--per-source 2]
        [--proposal aes128gcm16-prfsha256-x25519 --esp aes128gcm16] [--no-dataplane]

The site-to-site topology without NAT (gwa - router - gwb): gwb is the responder (ours, then
charon with kernel-libipsec), gwa runs the generator (`handshakes.py load`): our own sans-I/O
initiator core (lab.ike.IkeEndpoint) over plain UDP sockets, from --sources addresses of gwa,
--per-source handshakes outstanding from each (below charon's and our block_threshold of 5
half-open SAs per peer IP, and their cookie_threshold of 10 in all, so no cookies). A handshake
is IKE_SA_INIT and IKE_AUTH with its CHILD SA (PSK, installed in the responder's data plane);
each IKE SA is deleted as soon as it is up and the next one started. Both responders run with
`unique = never` (the same identity many times over). Prints each responder's rate, its CPU
(a responder below 100 % of a core was not the bottleneck: the generator was), the rate per
responder CPU-second, and the ratios ours/charon.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import cpu_seconds  # noqa: E402

RESPONDER = "198.51.100.2"
SOURCE_BASE = "192.0.2.{}"
FIRST_SOURCE = 10


# ---------------------------------------------------------------- the generator (inside gwa)


def load(args) -> dict:
    from lab.ike.config import Config
    from lab.ike.endpoint import IkeEndpoint
    from lab.ike.events import AuthFailed, IkeSaDeleted, IkeSaUp, NegotiationFailed, PeerUnreachable
    from lab.ike.memnet import s2s_config
    from lab.ike.settings import Settings

    sources = [SOURCE_BASE.format(FIRST_SOURCE + i) for i in range(args.sources)]
    connections, secrets = {}, None
    for index, source in enumerate(sources):
        one = s2s_config(source, args.target, "gwa.lab", "gwb.lab", "10.1.0.0/24", "10.2.0.0/24",
                         proposals=args.proposal, esp=args.esp)
        conn = one.connections["s2s"]
        connections[f"c{index}"] = dataclasses.replace(conn, name=f"c{index}")
        secrets = one.secrets
    endpoint = IkeEndpoint(Config(connections=connections, secrets=secrets),
                           Settings(retransmit_timeout=2.0, retransmit_tries=3))
    selector = selectors.DefaultSelector()
    sockets: dict[tuple[str, int], socket.socket] = {}
    for source in sources:
        for port in (500, 4500):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((source, port))
            sock.setblocking(False)
            sockets[(source, port)] = sock
            selector.register(sock, selectors.EVENT_READ, (source, port))
    connection_of = {f"c{i}": f"c{i}" for i in range(len(sources))}
    counts = {"up": 0, "failed": 0, "deleted": 0}
    started = time.monotonic()
    measure_from = started + args.warmup
    deadline = measure_from + args.seconds
    up_in_window = 0
    cpu_from: float | None = None
    name_of_sa: dict[int, str] = {}

    def start(name: str, now: float) -> None:
        ike = endpoint.initiate(name, now)
        name_of_sa[ike.unique_id] = name

    now = time.monotonic()
    for name in connection_of:
        for _ in range(args.per_source):
            start(name, now)
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        if cpu_from is None and now >= measure_from:
            cpu_from = time.process_time()
        for out in endpoint.datagrams_to_send():
            sockets[(out.src[0], out.src[1])].sendto(out.data, out.dst)
        timer = endpoint.get_timer()
        timeout = max(0.0, min(timer - now, 0.05)) if timer is not None else 0.05
        for key, _mask in selector.select(timeout):
            sock = key.fileobj
            local = key.data
            while True:
                try:
                    data, peer = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                endpoint.receive_datagram(data, peer, local, time.monotonic())
        now = time.monotonic()
        timer = endpoint.get_timer()
        if timer is not None and timer <= now:
            endpoint.handle_timer(now)
        while (event := endpoint.next_event()) is not None:
            if isinstance(event, IkeSaUp):
                counts["up"] += 1
                if measure_from <= now < deadline:
                    up_in_window += 1
                endpoint.terminate(now, ike_id=event.ike_sa)  # INFORMATIONAL Delete; the next one starts
                start(name_of_sa.get(event.ike_sa, "c0"), now)
            elif isinstance(event, (AuthFailed, NegotiationFailed, PeerUnreachable)):
                counts["failed"] += 1
                if event.ike_sa in name_of_sa and endpoint.find(ike_id=event.ike_sa) == []:
                    start(name_of_sa.pop(event.ike_sa), now)
            elif isinstance(event, IkeSaDeleted):
                counts["deleted"] += 1
                name_of_sa.pop(event.ike_sa, None)
        endpoint.pop_trace()
        endpoint.pop_ike_keys()
    return {**counts, "up_in_window": up_in_window, "seconds": args.seconds, "rate": round(up_in_window / args.seconds, 1),
            "outstanding": len(connection_of) * args.per_source,
            "generator_cpu": round((time.process_time() - (cpu_from or 0.0)) / args.seconds, 2)}


# ---------------------------------------------------------------- the run (root)


def run_one(lab, workdir: Path, kind: str, args) -> dict:
    from lab.net.gateway import OurGateway
    from lab.net.strongswan import StrongSwan

    node = lab.node("gwb")
    text = lab.swanctl_conf("b", proposals=args.proposal, esp_proposals=args.esp,
                            extra_connection={"unique": "never"})
    if kind == "ours":
        extra = ("--no-dataplane",) if args.no_dataplane else ()
        responder = OurGateway(node, workdir / "ours", export_keys=False, extra_args=extra)
        responder.write_config(text)
        responder.start()
    else:
        responder = StrongSwan(node, workdir / "charon")
        responder.write_config(text)
        responder.start()
        responder.load_all()
    try:
        generator = lab.node("gwa").popen(
            [sys.executable, __file__, "load", "--target", RESPONDER, "--sources", str(args.sources), "--per-source",
             str(args.per_source), "--seconds", str(args.seconds), "--warmup", str(args.warmup), "--proposal",
             args.proposal, "--esp", args.esp], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(args.warmup)
        pid = responder.process.pid
        cpu_before = cpu_seconds(pid)
        stdout, stderr = generator.communicate(timeout=args.seconds + args.warmup + 60)
        cpu = cpu_seconds(pid) - cpu_before
        if generator.returncode != 0:
            raise RuntimeError(f"the load generator failed against {kind}: {stderr.strip()[-2000:]}")
        result = json.loads(stdout.strip().splitlines()[-1])
        result["cpu"] = round(cpu / args.seconds, 2)
        result["per_cpu_second"] = round(result["up_in_window"] / cpu, 1) if cpu > 0 else 0.0
        return result
    finally:
        responder.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="run", choices=["run", "load"])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--sources", type=int, default=4, help="addresses of gwa the handshakes come from")
    parser.add_argument("--per-source", type=int, default=2, help="handshakes outstanding from each address")
    parser.add_argument("--proposal", default="aes128gcm16-prfsha256-x25519")
    parser.add_argument("--esp", default="aes128gcm16")
    parser.add_argument("--target", default=RESPONDER)
    parser.add_argument("--responders", default="ours,charon")
    parser.add_argument("--no-dataplane", action="store_true", help="ours negotiates only (charon always installs)")
    args = parser.parse_args(argv)
    if args.command == "load":
        print(json.dumps(load(args)), flush=True)
        return 0
    if os.geteuid() != 0:
        print("bench/handshakes.py needs root (network namespaces)", file=sys.stderr)
        return 1
    from lab.net.sites import SiteLab

    workdir = Path(tempfile.mkdtemp(prefix="ipsec-lab-handshakes-"))
    results: dict[str, dict] = {}
    print(f"IKE handshakes through one responder (gwb), {args.seconds:g} s each, IKE {args.proposal}, ESP {args.esp}, "
          f"{args.sources} sources x {args.per_source} outstanding; each IKE SA deleted once up")
    try:
        with SiteLab(nat="none") as lab:
            for index in range(args.sources):
                lab.node("gwa").cmd(f"ip addr add {SOURCE_BASE.format(FIRST_SOURCE + index)}/24 dev gwa-wan")
            for kind in args.responders.split(","):
                result = results[kind] = run_one(lab, workdir, kind, args)
                print(f"  {kind:7s} {result['rate']:8.1f} handshakes/s   responder CPU {100 * result['cpu']:.0f}% "
                      f"of a core, {result['per_cpu_second']:.1f} handshakes per CPU-second   "
                      f"(generator CPU {100 * result['generator_cpu']:.0f}%, failed {result['failed']})", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if "ours" in results and "charon" in results and results["charon"]["rate"]:
        ours, charon = results["ours"], results["charon"]
        print(f"  ratio ours/charon: {ours['rate'] / charon['rate']:.2f} (handshakes/s), "
              f"{ours['per_cpu_second'] / max(charon['per_cpu_second'], 1e-9):.2f} (per responder CPU-second)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
