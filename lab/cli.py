"""The `ipsec-lab` command."""
from __future__ import annotations

import argparse
import sys

from lab import __version__


def _cmd_decode(args: argparse.Namespace) -> int:
    from lab.viz.decode import CaptureError, decode_capture, render_json, render_text

    try:
        summary = decode_capture(args.capture, ike_port=args.ike_port, natt_port=args.natt_port)
    except CaptureError as err:
        print(f"ipsec-lab decode: {err}", file=sys.stderr)
        return 2
    render = render_json if args.json else render_text
    try:
        for line in render(summary):
            print(line)
    except BrokenPipeError:
        sys.stderr.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ipsec-lab", description="An IPsec teaching and simulation lab.")
    parser.add_argument("--version", action="version", version=f"ipsec-lab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    decode = commands.add_parser("decode", help="list the IKE messages in a pcap/pcapng capture",
                                 description="For each IKE message in a capture (UDP 500, and UDP 4500 behind "
                                             "the non-ESP marker): a header line and the payload chain.")
    decode.add_argument("capture", help="a pcap or pcapng file")
    decode.add_argument("--json", action="store_true", help="one JSON object per message instead of text")
    decode.add_argument("--ike-port", type=int, default=500, metavar="PORT", help="IKE port (default 500)")
    decode.add_argument("--natt-port", type=int, default=4500, metavar="PORT",
                        help="NAT-T port with the non-ESP marker (default 4500)")
    decode.set_defaults(handler=_cmd_decode)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
