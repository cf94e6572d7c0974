"""`ipsec-lab figures CAPTURE... [--keys DIR] [--out DIR]`: the figures of any capture (or
of a run folder, with its report.html), drawn without root; `ipsec-lab diagnose`, `ipsec-lab
pack` and `ipsec-lab watch`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(commands, live_source=None) -> None:
    """figures, diagnose, pack and (given `live_source`, lab.net.watch.LiveSource) watch."""
    figures = commands.add_parser(
        "figures", help="draw ladder, header layouts, rekey timeline, MTU figures from captures or a run folder",
        description="Draw the classroom figures (PNG and SVG, legible when projected) from pcap/pcapng captures, "
                    "decrypted with Wireshark key tables when --keys is given; or from a run folder "
                    "(captures/, keys/, topology.json), into its figures/, and its report.html anew. Two captures "
                    "from both sides of a NAT box give one ladder across the box.")
    figures.add_argument("captures", nargs="+", metavar="CAPTURE", help="pcap/pcapng files, or one run folder")
    figures.add_argument("--keys", metavar="DIR", help="folder with ikev2_decryption_table and esp_sa "
                                                       "(the run's keys/, or DIR/wireshark/)")
    figures.add_argument("--out", metavar="DIR", help="where the figures go (default: figures/ beside the first "
                                                      "capture, or the run folder's figures/)")
    figures.add_argument("--mtu", type=int, default=1500, metavar="BYTES", help="path MTU for the MTU figure")
    figures.add_argument("--steps", type=_steps, metavar="N|FIRST-LAST",
                         help="of a run folder: only what crossed the wire during these steps (numbered as in "
                              "its report), into figures/steps-FIRST-LAST/ (figures/step-N/)")
    figures.set_defaults(handler=run)

    diagnose = commands.add_parser(
        "diagnose", help="name the first point where a failed run went wrong, and the likely misconfiguration",
        description="Read a run folder (result.json, trace.jsonl, logs/, the gateways' swanctl.conf as run, "
                    "captures/ with keys/) and say in one paragraph where the run first went wrong and what to "
                    "change: proposals, traffic selectors, PSK or identity, certificate names, transport mode, "
                    "encap or MOBIKE on one side, child names, addresses, blocked UDP or ESP, lost IKE "
                    "fragments, an expired NAT mapping, a PMTUD black hole. When a peer logged why it refused, "
                    "that reason leads.")
    diagnose.add_argument("run_dir", metavar="DIR", help="a run folder (ipsec-lab run --out DIR)")
    diagnose.add_argument("--json", action="store_true", help="cause, title, paragraph, step and evidence as JSON")
    diagnose.set_defaults(handler=run_diagnose)

    pack = commands.add_parser(
        "pack", help="pack run folders, their report.html and a README into one archive to take home",
        description="Put run folders into one archive (.tar.gz or .zip) for a laptop without root or Python: each "
                    "folder as it is (captures, keys, logs, figures), its report.html (made now if it has none, or "
                    "an older one) and a README.txt saying what is inside and how to open it.")
    pack.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (ipsec-lab run --out DIR)")
    pack.add_argument("-o", "--out", default="ipsec-lab-runs.tar.gz", metavar="FILE",
                      help="the archive; .zip makes a zip file (default: ipsec-lab-runs.tar.gz)")
    pack.set_defaults(handler=run_pack)

    if live_source is None:
        return
    watch = commands.add_parser(
        "watch", help="print the packets on a running lab's interfaces as they pass, annotated and decrypted",
        description="While a lab runs (ipsec-lab up NAME, in another terminal), show every packet on NODE:IFACE "
                    "as it passes: IKE exchange, role, message ID and payloads (inside SK once the keys exist), "
                    "ESP SPI, sequence number and the packet inside, NAT-keepalives, IP fragments. Both sides of "
                    "a NAT box (nat:nat-in nat:nat-out) also show how the box rewrote each packet. Needs root; "
                    "ends with the lab, after --count packets or --seconds, or with Ctrl-C.")
    watch.add_argument("targets", nargs="+", metavar="NODE:IFACE",
                       help="e.g. nat:nat-out (`<node> ip link` in the Mininet CLI lists a node's interfaces)")
    watch.add_argument("-c", "--count", type=int, metavar="N", help="stop after N packets")
    watch.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    watch.add_argument("--lab", type=int, metavar="PID", help="the lab's process, when several run")
    watch.add_argument("--all", action="store_true", help="also frames that carry no IP packet (ARP)")
    watch.set_defaults(handler=lambda args: run_watch(args, live_source))


def _steps(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    try:
        steps = (int(first), int(last) if sep else int(first))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a step number (6) or a range of them (6-9)") from None
    if min(steps) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: steps are numbered from 1")
    return steps


def run(args: argparse.Namespace) -> int:
    from .analysis import shared_analyses

    with shared_analyses():  # a run folder's figures and its report.html read each capture once
        return _figures(args)


def _figures(args: argparse.Namespace) -> int:
    from .analysis import CaptureError, analyze_capture
    from .figures import StepsError, draw_captures, draw_run
    from .keys import load_keys

    paths = [Path(p) for p in args.captures]
    try:
        if len(paths) == 1 and paths[0].is_dir():
            if args.keys:
                print(f"ipsec-lab figures: {paths[0]} is a run folder, which uses its own keys/; "
                      "--keys goes with capture files", file=sys.stderr)
                return 2
            try:
                entries = draw_run(paths[0], report=not args.out and not args.steps, out=args.out, steps=args.steps)
            except StepsError as err:
                print(f"ipsec-lab figures: {paths[0]}: {err}", file=sys.stderr)
                return 2
            for path, caption in entries:
                print(f"{path}  {caption}")
            if not args.out and not args.steps and (paths[0] / "result.json").is_file():
                from .html import write_report_html

                print(f"{write_report_html(paths[0])}  the run's page: open it in any browser")
            return 0 if entries else 1
        if args.steps:
            print("ipsec-lab figures: --steps needs a run folder (its result.json has the steps' times), "
                  "not capture files", file=sys.stderr)
            return 2
        missing = [p for p in paths if not p.is_file()]
        if missing:
            what = "a folder: give one run folder alone, or capture files" if missing[0].is_dir() else "no such file"
            print(f"ipsec-lab figures: {missing[0]}: {what}", file=sys.stderr)
            return 2
        keys = load_keys(args.keys) if args.keys else None
        for problem in (keys.problems if keys is not None else []):
            print(f"ipsec-lab figures: {problem}", file=sys.stderr)
        captures = [analyze_capture(p, keys) for p in paths]
    except CaptureError as err:
        print(f"ipsec-lab figures: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else paths[0].parent / "figures"
    figures = draw_captures(captures, out, path_mtu=args.mtu)
    if not figures:
        print("ipsec-lab figures: no IKE, ESP or AH in these captures: nothing to draw", file=sys.stderr)
        return 1
    for figure in figures:
        for path, caption in figure.entries():
            print(f"{path}  {caption}")
    return 0


def run_pack(args: argparse.Namespace) -> int:
    from .pack import PackError, pack

    try:
        out = pack(args.run_dirs, args.out)
    except PackError as err:
        print(f"ipsec-lab pack: {err}", file=sys.stderr)
        return 2
    print(f"{out}: {len(args.run_dirs)} run folder{'s' if len(args.run_dirs) != 1 else ''} with report.html and "
          f"README.txt")
    return 0


def run_diagnose(args: argparse.Namespace) -> int:
    import json

    from .diagnose import DiagnoseError, diagnose

    try:
        found = diagnose(args.run_dir)
    except DiagnoseError as err:
        print(f"ipsec-lab diagnose: {err}", file=sys.stderr)
        return 2
    print(json.dumps(found.to_json(), indent=1) if args.json else found.text())
    return 0


def run_watch(args: argparse.Namespace, live_source) -> int:
    import os

    from .live import watch

    if os.geteuid() != 0:
        print("ipsec-lab watch needs root (it taps an interface inside the lab's namespace): run it with sudo.",
              file=sys.stderr)
        return 1
    try:
        source = live_source(args.targets, args.lab)
    except live_source.Error as err:
        print(f"ipsec-lab watch: {err}", file=sys.stderr)
        return 2
    try:
        watch(source, sys.stdout, count=args.count, seconds=args.seconds, show_all=args.all)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
    finally:
        source.close()
    return 0
