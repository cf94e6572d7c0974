"""The `ipsec-lab` command."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from lab import __version__

if TYPE_CHECKING:
    from lab.net.steps import Step
    from lab.runfolder import StepResult


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


def _cmd_audit(args: argparse.Namespace) -> int:
    from lab.conf.swanctl import ConfigError
    from lab.viz.audit import AuditError, audit_paths, render_json, render_markdown, render_text

    try:
        report = audit_paths(args.paths, cert_days=args.cert_days, keys=args.keys)
    except (AuditError, ConfigError) as err:
        print(f"ipsec-lab audit: {err}", file=sys.stderr)
        return 2
    try:
        if args.format == "json":
            print(render_json(report))
        elif args.format == "markdown":
            print(render_markdown(report), end="")
        else:
            render_text(report)
    except BrokenPipeError:
        sys.stderr.close()
    if args.fail_on != "never" and report.at_or_above(args.fail_on):
        return 1
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def _cmd_daemon(args: argparse.Namespace) -> int:

    from lab.daemon.gateway import run_gateway

    if _root_refused("daemon", "it binds UDP 500/4500"):
        return 1
    from lab.ike.settings import Settings

    settings = Settings()
    if args.retransmit_timeout is not None:
        settings.retransmit_timeout = args.retransmit_timeout
    if args.retransmit_tries is not None:
        settings.retransmit_tries = args.retransmit_tries
    if args.cookie_threshold is not None:
        settings.cookie_threshold = args.cookie_threshold
    if args.fragment_size is not None:
        settings.fragment_size = args.fragment_size
    for _option, field, _kind, _help in LIMIT_OPTIONS:
        if getattr(args, field) is not None:
            setattr(settings, field, getattr(args, field))
    return run_gateway(args.config, args.control, args.trace, args.export_keys, settings,
                       dataplane=not args.no_dataplane, tunnel_mtu=args.tunnel_mtu, offload=not args.no_offload,
                       keepalive_interval=args.keepalive_interval, checksum_fixup=not args.no_checksum_fixup)


def _print_sas(sas: list[dict]) -> None:
    if not sas:
        print("no IKE SAs")
    for sa in sas:
        role = "initiator" if sa["initiator"] else "responder"
        print(f"{sa['name']}: #{sa['id']}, {sa['state']}, IKEv2, {sa['spi_i']}_i{'*' if sa['initiator'] else ''} "
              f"{sa['spi_r']}_r{'' if sa['initiator'] else '*'} ({role})")
        nat = [side for side in ("local", "remote") if sa["nat"][side]]
        print(f"  local  '{sa['local_id']}' @ {sa['local']}" + (" (behind NAT)" if "local" in nat else "")
              + (f" [{' '.join(sa['virtual_ips'])}]" if sa.get("virtual_ips") else ""))
        print(f"  remote '{sa['remote_id']}' @ {sa['remote']}" + (" (behind NAT)" if "remote" in nat else "")
              + (f" [{' '.join(sa['assigned_ips'])}]" if sa.get("assigned_ips") else ""))
        if sa["algorithms"]:
            print(f"  {sa['algorithms']}")
        for child in sa["children"]:
            encap = ", UDP-encapsulated" if child["encap"] else ""
            print(f"  {child['name']}: #{child['id']}, {child['state']}, {child['mode'].upper()}{encap}, ESP SPIs: "
                  f"{child['spi_in']}_i {child['spi_out']}_o")
            print(f"    {child['algorithms']}")
            traffic = child.get("traffic")
            if traffic:
                drops = ", ".join(f"{k} {v}" for k, v in traffic["drops_in"].items())
                print(f"    in  {traffic['bytes_in']} bytes, {traffic['packets_in']} packets"
                      + (f" (dropped: {drops})" if drops else ""))
                print(f"    out {traffic['bytes_out']} bytes, {traffic['packets_out']} packets"
                      + ("" if traffic["outbound_active"] else " (outbound now on its successor)"))
            print(f"    local  {' '.join(child['local_ts'])}")
            print(f"    remote {' '.join(child['remote_ts'])}")


def _cmd_ctl(args: argparse.Namespace) -> int:
    import json

    from lab.daemon.control import ControlClient

    if not args.control:
        print("ipsec-lab ctl: give the daemon's control socket with --control SOCKET", file=sys.stderr)
        return 2
    request: dict = {"cmd": args.action}
    if args.action == "create-child":
        if args.ike_id is None or not args.child:
            print("ipsec-lab ctl create-child: give the IKE SA with --ike-id N and the child config with --child NAME",
                  file=sys.stderr)
            return 2
        request.update(ike_id=args.ike_id, child=args.child)
    elif args.action in ("initiate", "terminate", "rekey"):
        if not args.ike and not args.child and args.ike_id is None:
            print(f"ipsec-lab ctl {args.action}: name the SA with --ike NAME or --child NAME", file=sys.stderr)
            return 2
        request.update({k: v for k, v in (("ike", args.ike), ("child", args.child), ("ike_id", args.ike_id))
                        if v is not None})
        if args.action == "initiate":
            request["timeout"] = args.timeout
    try:
        with ControlClient(args.control, timeout=args.timeout + 5) as client:
            response = client.request(**request)
    except (ConnectionError, OSError) as err:
        print(f"ipsec-lab ctl: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(response, indent=2))
    elif not response.get("ok"):
        print(f"ipsec-lab ctl {args.action}: {response.get('error', 'failed')}", file=sys.stderr)
    elif args.action == "list-sas":
        _print_sas(response["sas"])
    elif args.action == "list-conns":
        for conn in response["conns"]:
            print(f"{conn['name']}: IKEv2, {','.join(conn['local_addrs'])}...{','.join(conn['remote_addrs'])}")
            print(f"  proposals: {conn['proposals']}")
            print(f"  local  {conn['local']['auth']} '{conn['local']['id']}'")
            print(f"  remote {conn['remote']['auth']} '{conn['remote']['id']}'")
            for child in conn["children"]:
                print(f"  {child['name']}: {child['mode'].upper()}, {child['esp_proposals']}")
                print(f"    local  {' '.join(child['local_ts'])}")
                print(f"    remote {' '.join(child['remote_ts'])}")
    elif args.action == "stats":
        stats = response["stats"]
        print(f"uptime {stats['uptime']} s, {stats['ike_sas']} IKE SAs ({stats.get('half_open', 0)} half-open), "
              f"{stats['child_sas']} CHILD SAs")
        for key, value in sorted(stats["counters"].items()):
            print(f"  {key}: {value}")
        for key, value in sorted(stats["drops"].items()):
            print(f"  dropped, {key}: {value}")
        dataplane = stats.get("dataplane") or {}
        for key, value in sorted(dataplane.items()):
            if isinstance(value, int) and not isinstance(value, bool) and key != "mtu":
                print(f"  ESP {key}: {value}")
        for key, value in sorted((dataplane.get("drops") or {}).items()):
            print(f"  ESP dropped, {key}: {value}")
    else:
        detail = response.get("event") or f"{response.get('count', 0)} SA(s)"
        print(f"{args.action}: ok ({detail})")
    return 0 if response.get("ok") else 1


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a number of seconds") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"'{value}' must be more than 0 seconds")
    return number


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"'{value}' must be 0 or more")
    return number


DEFAULT_SCENARIO = "net2net-nat"

# daemon options that set a limit of lab.ike.settings.Settings (defaults there, as charon's)
LIMIT_OPTIONS = [
    ("--half-open-timeout", "half_open_timeout", _positive_float,
     "seconds a responder waits for IKE_AUTH before dropping a half-open IKE SA (default 30, like charon's "
     "half_open_timeout)"),
    ("--half-open-limit", "half_open_limit", _non_negative_int,
     "half-open IKE SAs in all; IKE_SA_INIT past it is dropped and counted (default 1000; charon's "
     "init_limit_half_open; 0: no limit)"),
    ("--half-open-per-peer", "half_open_per_peer", _non_negative_int,
     "half-open IKE SAs of one peer IP; past it its IKE_SA_INIT is dropped and counted (default 5, like charon's "
     "block_threshold; 0: no limit)"),
    ("--ike-sas-per-peer", "ike_sas_per_peer", _non_negative_int,
     "IKE SAs of one peer IP in any state; past it its IKE_SA_INIT is dropped and counted (default 100; 0: no "
     "limit)"),
    ("--max-packet", "max_packet", _positive_int,
     "largest IKE datagram taken in, and largest message reassembled from fragments (default 10000, like "
     "charon's max_packet)"),
    ("--max-fragments", "max_fragments", _positive_int,
     "fragments of one IKE message (RFC 7383); more are dropped and counted (default 64)"),
    ("--reassembly-buffers", "reassembly_buffers", _non_negative_int,
     "IKE messages under reassembly at once over all IKE SAs; a fragment that needs one more is dropped and "
     "counted (default 100; 0: no limit)"),
]


def _root_refused(command: str, why: str = "it creates network namespaces") -> bool:
    """True (and one line said) when `command` needs root and we are not."""
    if os.geteuid() == 0:
        return False
    print(f"ipsec-lab {command} needs root ({why}): run it with sudo or as root.", file=sys.stderr)
    return True


def _draw_figures(out) -> None:
    """Figures of a run folder into out/figures, listed in its report, and report.html (lab.viz)."""
    from pathlib import Path

    from lab.net.report import set_figures
    from lab.viz.figures import draw_run
    from lab.viz.html import write_report_html

    try:
        figures = draw_run(Path(out))
    except Exception as err:  # a figure that cannot be drawn must not cost the run
        print(f"ipsec-lab: figures could not be drawn: {type(err).__name__}: {err}", file=sys.stderr)
    else:
        set_figures(Path(out) / "report.md", [(str(Path(p).relative_to(out)) if Path(p).is_absolute() else str(p), c)
                                              for p, c in figures])
    try:
        write_report_html(Path(out))
    except Exception as err:  # nor can the page
        print(f"ipsec-lab: report.html could not be written: {type(err).__name__}: {err}", file=sys.stderr)


def _interrupted_code(result) -> int:
    return 143 if result.interrupted == "SIGTERM" else 130


def _run_one(name: str, out, progress=None, explain: bool = False, step: bool = False, figures: bool = True):
    from lab.net import runner, world
    from lab.net.scenario import load

    scenario = load(name)
    hooks: list[Callable[[runner.Runner, Step, StepResult], None]] = []
    if explain:  # each step told in plain words as it ends (lab.viz.narrate)
        from lab.viz.narrate import Narrator
        hooks.append(Narrator())
    if step:
        hooks.append(_pause_after_step)

    def after_step(run: runner.Runner, s: Step, r: StepResult) -> None:
        for hook in hooks:
            hook(run, s, r)

    options = {"after_step": after_step} if hooks else {}
    try:
        result = runner.run(scenario, out, progress, **options)
        if not result.interrupted:
            from lab.viz.analysis import shared_analyses

            with shared_analyses():  # the figures, report.html, its narration and the audit read each capture once
                if figures:
                    _draw_figures(result.out)
                _audit_run(result.out)
    finally:
        world.own(out)  # in a world without root: the caller's
    return result


def _pause_after_step(run, step, result) -> None:
    """`run --step`: after each step, wait for Enter; meanwhile the Mininet CLI's commands work
    (`gwa ipsec-lab ctl list-sas`, `hosta ping -c 1 10.2.0.10`)."""
    from mininet.cli import CLI
    from mininet.log import setLogLevel

    class StepCLI(CLI):
        prompt = f"step {step.index} done: Enter for the next step, or a node command (gwa ipsec-lab ctl list-sas)> "

        def emptyline(self) -> bool:
            return True  # Enter alone: go on

        def do_EOF(self, line: str) -> bool:
            return True

        def do_exit(self, line: str) -> bool:
            return True

    setLogLevel("output")  # the CLI prints what commands in the nodes print at this level
    try:
        StepCLI(run.lab.net)
    finally:
        setLogLevel("error")


def _in_world(args: argparse.Namespace) -> int | None:
    """This command again, in a world of its own (lab.net.world: its own namespaces, without root
    on the host), unless already in one or --host: its exit status; None: go on here."""
    from lab.net import world

    if world.inside() or getattr(args, "host", False) or os.environ.get(world.HOST) == "1":
        return None
    reason = world.unavailable()
    if reason:
        if os.geteuid() == 0:  # root can still run it on the host, one lab at a time
            print(f"ipsec-lab {args.command}: {reason}; running on the host itself", file=sys.stderr)
            return None
        print(f"ipsec-lab {args.command}: {reason}", file=sys.stderr)
        return 1
    try:
        return world.run_command(args.argv)
    except world.WorldError as err:
        print(f"ipsec-lab {args.command}: {err}", file=sys.stderr)
        return 1


def _run_parallel(names: list[str], args: argparse.Namespace) -> int:
    """`run --all --jobs N`: N scenarios at a time, each `ipsec-lab run` in a world of its own;
    one line per scenario as it ends, its output in DIR/NAME.txt."""
    import subprocess
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from lab.net import world

    base = Path(args.out or "out/all")
    base.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in (world.MARKER, world.USERNS)}
    started, passed, lock = time.monotonic(), [], threading.Lock()
    procs: set[subprocess.Popen] = set()

    def one(name: str) -> None:
        out = base / Path(name).name
        argv = ([sys.executable, "-m", "lab.cli", "run", name, "--out", str(out)] + (["--explain"] if args.explain else [])
                + (["--no-figures"] if getattr(args, "no_figures", False) else [])
                + (["--host"] if getattr(args, "host", False) else []))
        with open(base / f"{Path(name).name}.txt", "w") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
            with lock:
                procs.add(proc)
            code = proc.wait()
        with lock:
            procs.discard(proc)
            text = (base / f"{Path(name).name}.txt").read_text(errors="replace")
            verdict = [line for line in text.splitlines() if line.startswith(("PASSED ", "FAILED ", "INTERRUPTED "))]
            print(verdict[-1] if verdict else f"FAILED {Path(name).name} (exit status {code}): see {log.name}",
                  flush=True)
            if code == 0:
                passed.append(name)

    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for future in [pool.submit(one, name) for name in names]:
                future.result()
    except BaseException:
        with lock:
            for proc in procs:
                proc.terminate()  # each world's maker passes it on; the world tears its lab down
        for proc in list(procs):
            proc.wait()
        raise
    print(f"{len(passed)}/{len(names)} scenarios passed in {time.monotonic() - started:.1f} s "
          f"({args.jobs} at a time; each one's output in {base}/NAME.txt)")
    return 0 if len(passed) == len(names) else 1


def _audit_run(out) -> None:
    """The audit of the run's gateways into out/audit.md and report.md's Audit section (lab.viz)."""
    from lab.conf.swanctl import ConfigError
    from lab.viz.audit import AuditError, write_run_audit

    try:
        write_run_audit(out)
    except (AuditError, ConfigError, OSError) as err:  # an audit that cannot be made must not cost the run
        print(f"ipsec-lab: the audit could not be made: {err}", file=sys.stderr)


def _cmd_run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from lab.net.lab import LabError
    from lab.net.scenario import ScenarioError, library, load

    names = [p.name for p in library()] if args.all else [args.scenario]
    if not args.all and not args.scenario:
        print("ipsec-lab run: name a scenario (ipsec-lab scenarios lists them) or give --all", file=sys.stderr)
        return 2
    try:
        for name in names:
            load(name)  # every scenario file is checked before anything starts
    except ScenarioError as err:
        print(f"ipsec-lab run: {err}", file=sys.stderr)
        return 2
    if args.jobs > 1 and not args.all:
        print("ipsec-lab run: --jobs runs the library in parallel: give it with --all", file=sys.stderr)
        return 2
    if args.step and args.all:
        print("ipsec-lab run: --step pauses one scenario: name it instead of --all", file=sys.stderr)
        return 2
    if args.all and args.jobs > 1:
        return _run_parallel(names, args)
    code = _in_world(args)
    if code is not None:
        return code
    if _root_refused("run"):
        return 1
    started = time.monotonic()
    import threading

    # matplotlib takes a second or two to import: do it while the lab runs, for the figures after
    threading.Thread(target=__import__, args=("lab.viz.figures",), daemon=True).start()
    passed = 0
    for name in names:
        out = Path(args.out) / Path(name).name if args.all else Path(args.out or f"out/{Path(name).name}")
        try:
            result = _run_one(name, out, explain=getattr(args, "explain", False), step=getattr(args, "step", False),
                              figures=not getattr(args, "no_figures", False))
        except LabError as err:
            print(f"ipsec-lab run: {err}", file=sys.stderr)
            return 1
        verdict = "PASSED" if result.passed else "INTERRUPTED" if result.interrupted else "FAILED"
        print(f"{verdict} {result.scenario} in {result.duration:g} s: {Path(result.out) / 'report.md'}")
        if result.error:
            print(f"  {result.error}", file=sys.stderr)
        if result.interrupted:
            print(f"ipsec-lab run: interrupted ({result.interrupted}); everything it started is stopped and "
                  f"removed", file=sys.stderr)
            return _interrupted_code(result)
        passed += result.passed
    if args.all:
        print(f"{passed}/{len(names)} scenarios passed in {time.monotonic() - started:.1f} s")
    return 0 if passed == len(names) else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    args.scenario, args.all, args.jobs, args.explain, args.step = DEFAULT_SCENARIO, False, 1, False, False
    return _cmd_run(args)


def _cmd_scenarios(args: argparse.Namespace) -> int:
    from lab.net.scenario import ScenarioError, library, load

    for folder in library():
        try:
            scenario = load(folder)
            print(f"{folder.name:24} {scenario.title}")
        except ScenarioError as err:
            print(f"{folder.name:24} (broken: {err})")
    return 0


def _cmd_exercises(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lab.net.exercises import ANSWERS, EXERCISES, ExerciseError, exercise
    from lab.net.lab import LabError

    if args.action is None:
        for e in EXERCISES:
            print(f"{e.number:2}  {e.title:42} {e.scenario:12} {e.sees}")
        print(f"\nipsec-lab exercises run N (as root) runs one broken; the answers are in {_shown(ANSWERS)}/")
        return 0
    if args.number is None:
        print("ipsec-lab exercises run: name an exercise (its number; ipsec-lab exercises lists them)",
              file=sys.stderr)
        return 2
    try:
        e = exercise(args.number)
    except ExerciseError as err:
        print(f"ipsec-lab exercises: {err}", file=sys.stderr)
        return 2
    if _root_refused("exercises run"):
        return 1
    out = Path(args.out or f"out/exercises/{e.number:02}")
    folder, run_dir = out / "scenario", out / "run"
    try:
        e.make_for_trainee(folder)
    except ExerciseError as err:
        print(f"ipsec-lab exercises: {err}", file=sys.stderr)
        return 2
    print(f"Exercise {e.number}: {e.title} ({e.scenario}, broken in one place)")
    try:
        result = _run_one(str(folder), run_dir)
    except LabError as err:
        print(f"ipsec-lab exercises: {err}", file=sys.stderr)
        return 1
    if result.interrupted:
        print(f"ipsec-lab exercises: interrupted ({result.interrupted}); everything it started is stopped and "
              f"removed", file=sys.stderr)
        return _interrupted_code(result)
    if result.passed:
        print(f"PASSED in {result.duration:g} s, but the exercise should have failed: {run_dir / 'report.md'}",
              file=sys.stderr)
        return 1
    print(f"FAILED, as intended, in {result.duration:g} s. What went wrong, and what to change?\n"
          f"  the report:    {run_dir / 'report.md'} (and its figures/)\n"
          f"  the captures:  {run_dir / 'captures'}/ (ipsec-lab decode CAPTURE lists the IKE messages; Wireshark "
          f"with {run_dir / 'keys'}/ decrypts them, report.md says how)\n"
          f"  the scenario:  {folder}/ (as it ran; fix it there and: ipsec-lab run {folder} --out {out / 'fixed'})\n"
          f"  then:          ipsec-lab diagnose {run_dir}\n"
          f"  the answer:    {_shown(e.answer)}")
    return 0


def _shown(path) -> str:
    """A path as a person types it: relative to the current folder when it is below it."""
    from pathlib import Path

    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _cmd_clean(args: argparse.Namespace) -> int:

    from lab.net.cleanup import clean

    if _root_refused("clean", "it removes network namespaces and processes"):
        return 1
    # what a lab on the host itself (--host) left when its process died; a running lab's record
    # names a live owner and is left alone, and a lab in a world of its own (lab.net.world) leaves
    # nothing on the host: its namespaces and processes end with it
    found = clean()
    if found:
        print("removed: " + ", ".join(found))
    else:
        print("nothing to clean: no lab of ours left anything behind")
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    import signal
    from pathlib import Path

    from lab.net import runner
    from lab.net.lab import LabError
    from lab.net.scenario import ScenarioError, load

    try:
        scenario = load(args.scenario)
    except ScenarioError as err:
        print(f"ipsec-lab up: {err}", file=sys.stderr)
        return 2
    code = _in_world(args)
    if code is not None:
        return code
    if _root_refused("up"):
        return 1
    if not args.run:
        scenario.steps = [s for s in scenario.steps if s.kind in ("start", "initiate") and s.expect == "pass"]
        scenario.checks = []

    def open_cli(run: runner.Runner) -> None:
        from mininet.cli import CLI
        from mininet.log import setLogLevel

        setLogLevel("output")  # the CLI prints what commands in the nodes print at this level
        assert run.lab is not None  # the runner calls this once the lab is up
        names = ", ".join(sorted(run.lab.nodes))
        run.say(f"== the lab is up: nodes {names}. Try `{next(iter(scenario.gateways), 'gwa')} ipsec-lab ctl "
                f"list-sas` (our daemon) or `<node> swanctl --list-sas` (strongSwan); `exit` tears it all down.")
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            CLI(run.lab.net)
        finally:
            signal.signal(signal.SIGINT, previous)

    out = Path(args.out or f"out/{scenario.name}")
    try:
        result = runner.Runner(scenario, out, keep_open=open_cli).run()
    except LabError as err:
        print(f"ipsec-lab up: {err}", file=sys.stderr)
        return 1
    finally:
        from lab.net import world
        world.own(out)
    print(f"lab {scenario.name} is down; captures, keys and logs are in {out}")
    if result.interrupted:
        return _interrupted_code(result)
    return 0 if result.passed else 1


def _watch_in_world(args: argparse.Namespace) -> int | None:
    """`watch` from the host while the lab runs in a world (lab.net.world): the same command inside
    that world (nsenter). None: no world has the node, watch here (a lab run with --host)."""
    from lab.net import world
    from lab.net.cleanup import owner_alive, records

    node = args.targets[0].split(":", 1)[0]
    if world.inside() or any(owner_alive(r) and node in r.shells for r in records()):
        return None
    found = [(pid, labs) for pid, labs in world.worlds() if any(node in r.shells for r in labs)]
    if args.lab is not None:
        found = [(pid, labs) for pid, labs in found if pid == args.lab]
    if not found:
        return None
    if len(found) > 1:
        names = "; ".join(f"--lab {pid}: " + ", ".join(f"{r.name} ({r.out or 'no run folder'})" for r in labs)
                          for pid, labs in found)
        print(f"ipsec-lab watch: several running labs have a node {node}; say which: {names}", file=sys.stderr)
        return 2
    argv, env = world.enter_argv(found[0][0])
    rest, skip = [], False
    for arg in args.argv:  # --lab named the world; inside it, its one lab is found by the node
        if skip:
            skip = False
        elif arg == "--lab":
            skip = True
        elif not arg.startswith("--lab="):
            rest.append(arg)
    import subprocess

    return subprocess.call(argv + [sys.executable, "-m", "lab.cli", *rest], env=env)


def _host_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", action="store_true",
                        help="build the lab on the machine itself (root; one lab at a time, under the machine's lab "
                             "lock) instead of in a world of its own (also IPSEC_LAB_HOST=1)")


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

    daemon = commands.add_parser("daemon", help="run a gateway: IKEv2 on UDP 500/4500, configured by swanctl.conf",
                                 description="Run one gateway (in the current network namespace).")
    daemon.add_argument("--config", required=True, metavar="FILE", help="swanctl.conf to read")
    daemon.add_argument("--control", metavar="SOCKET", help="Unix socket for `ipsec-lab ctl`")
    daemon.add_argument("--trace", metavar="FILE", help="append every message and state change as JSON lines")
    daemon.add_argument("--export-keys", metavar="DIR",
                        help="write Wireshark's ikev2_decryption_table and esp_sa into DIR (and DIR/wireshark/)")
    daemon.add_argument("--retransmit-timeout", type=_positive_float, metavar="S",
                        help="seconds before the first retransmission of a request (default 4, like charon's "
                             "retransmit_timeout); later ones wait 1.8 times longer each")
    daemon.add_argument("--retransmit-tries", type=_non_negative_int, metavar="N",
                        help="retransmissions before the peer counts as dead and the IKE SA is closed "
                             "(default 5, like charon's retransmit_tries)")
    daemon.add_argument("--cookie-threshold", type=_non_negative_int, metavar="N",
                        help="half-open IKE SAs from which IKE_SA_INIT must carry a COOKIE (RFC 7296 §2.6; "
                             "default 10, like charon's cookie_threshold; 0 asks every initiator)")
    daemon.add_argument("--fragment-size", type=_positive_int, metavar="BYTES",
                        help="largest IP datagram of an IKE message before IKE fragmentation (RFC 7383) "
                             "applies (default 1280, like charon's fragment_size)")
    for option, field, kind, text in LIMIT_OPTIONS:
        daemon.add_argument(option, dest=field, type=kind, metavar="N" if kind is not _positive_float else "S",
                            help=text)
    daemon.add_argument("--no-dataplane", action="store_true",
                        help="negotiate only: no TUN device, no ESP (CHILD SAs carry no traffic)")
    daemon.add_argument("--tunnel-mtu", type=int, default=1400, metavar="BYTES",
                        help="MTU of the ipsec0 TUN device (default 1400, as strongSwan's kernel-libipsec)")
    daemon.add_argument("--keepalive-interval", type=_positive_float, default=20.0, metavar="S",
                        help="NAT-keepalive period of a gateway behind a NAT (RFC 3948 §2.3; default 20 s, "
                             "like charon's keep_alive)")
    daemon.add_argument("--no-offload", action="store_true",
                        help="open ipsec0 without TUN offloads (IFF_VNET_HDR): the kernel then segments TCP "
                             "before the data plane reads it and gets every decrypted packet in its own write; "
                             "by default TCP super-packets are read whole and cut into segments here, and "
                             "in-order TCP segments are written as one (for comparison; a kernel that refuses "
                             "the offloads gets the same fallback)")
    daemon.add_argument("--no-checksum-fixup", action="store_true",
                        help="do not fix up the TCP/UDP checksums of transport-mode packets whose addresses a "
                             "NAT rewrote (RFC 3948 §3.1.2), and let the kernel check them (TUN offloads off): "
                             "how a peer without it breaks TCP across a NAT (for demonstration)")
    daemon.set_defaults(handler=_cmd_daemon)

    ctl = commands.add_parser("ctl", help="talk to a running gateway daemon")
    ctl.add_argument("--control", default=os.environ.get("IPSEC_LAB_CONTROL"), metavar="SOCKET",
                     help="the daemon's control socket (default $IPSEC_LAB_CONTROL, set in the lab's nodes)")
    ctl.add_argument("--json", action="store_true", help="print the daemon's JSON answer")
    ctl.add_argument("action", choices=["initiate", "terminate", "rekey", "create-child", "list-sas", "list-conns",
                                        "stats"])
    ctl.add_argument("--ike", metavar="NAME", help="connection (IKE SA) name")
    ctl.add_argument("--child", metavar="NAME", help="CHILD_SA name")
    ctl.add_argument("--ike-id", type=int, metavar="N", help="IKE SA number (#N in list-sas)")
    ctl.add_argument("--timeout", type=float, default=30.0, metavar="S", help="for initiate: wait this long")
    ctl.set_defaults(handler=_cmd_ctl)

    run = commands.add_parser("run", help="run a scenario (or --all) and write its run folder (root, or a user with "
                                   "subordinate IDs)",
                              description="Run one scenario from the library (ipsec-lab scenarios) or from a "
                                          "folder, and leave DIR/report.md, captures/, keys/, logs/, trace.jsonl, "
                                          "figures/. Exit status 0 iff every step and check passed.")
    run.add_argument("scenario", nargs="?", help="a library name (net2net-nat) or a scenario folder")
    run.add_argument("--all", action="store_true", help="run every scenario of the library")
    run.add_argument("--out", metavar="DIR", help="the run folder (default out/NAME; with --all, DIR/NAME each)")
    run.add_argument("--explain", action="store_true", help="tell each step in plain words as it happens: what was "
                                                            "proposed and chosen, NAT, keys, SPIs, drops")
    run.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                     help="with --all: N scenarios at a time, each in a world of its own (default 1)")
    run.add_argument("--step", action="store_true",
                     help="pause after each step until Enter; meanwhile node commands work as in the Mininet CLI")
    run.add_argument("--no-figures", action="store_true",
                     help="draw no figures (minutes on a loaded machine); `ipsec-lab figures DIR` draws them later")
    _host_option(run)
    run.set_defaults(handler=_cmd_run)

    demo = commands.add_parser("demo", help=f"run the default scenario ({DEFAULT_SCENARIO}) (as run)")
    demo.add_argument("--out", default="out/demo", metavar="DIR", help="the run folder (default out/demo)")
    _host_option(demo)
    demo.set_defaults(handler=_cmd_demo)

    scenarios = commands.add_parser("scenarios", help="list the scenario library")
    scenarios.set_defaults(handler=_cmd_scenarios)

    up = commands.add_parser("up", help="bring a scenario's topology and tunnels up and open the Mininet CLI",
                             description="Build the scenario's network, start its gateways and bring up its "
                                         "tunnels (its start and initiate steps; with --run, all its steps and "
                                         "checks), then open the Mininet CLI with the scenario's node names: "
                                         "`gwa ipsec-lab ctl list-sas`, `gwb swanctl --list-sas`, "
                                         "`hosta ping 10.2.0.10`. Leaving the CLI tears everything down.")
    up.add_argument("scenario", help="a library name or a scenario folder")
    up.add_argument("--run", action="store_true",
                    help="run every step and check of the scenario before opening the CLI")
    up.add_argument("--out", metavar="DIR", help="the run folder (default out/NAME)")
    _host_option(up)
    up.set_defaults(handler=_cmd_up)

    exercises = commands.add_parser(
        "exercises", help="list the exercises: library scenarios broken in one place (run one with: run N)",
        description="Without arguments, list the exercises: number, title, the library scenario each breaks and "
                    "what the trainee sees. `ipsec-lab exercises run N` (root) writes the broken scenario to "
                    "DIR/scenario, runs it into DIR/run and says where its report, captures and "
                    "`ipsec-lab diagnose` are; exercises/answers/ says what was wrong, how to see it, and the fix.")
    exercises.add_argument("action", nargs="?", choices=["run"], help="run one exercise (needs root)")
    exercises.add_argument("number", nargs="?", metavar="N", help="the exercise's number (or name)")
    exercises.add_argument("--out", metavar="DIR", help="where its scenario and run folder go (default "
                                                        "out/exercises/NN)")
    exercises.set_defaults(handler=_cmd_exercises)
    audit = commands.add_parser(
        "audit", help="grade IPsec settings (swanctl.conf, ipsec.conf, run folders, captures) against RFC 8247/8221",
        description="Read swanctl.conf files (one gateway or a folder of many), strongSwan's legacy ipsec.conf "
                    "(with ipsec.secrets beside it), run folders and pcap/pcapng captures, and grade every choice: "
                    "algorithms (RFC 8247, RFC 8221), PFS, lifetimes, pre-shared keys, certificates, DPD, "
                    "fragmentation, IKEv1, post-quantum readiness (RFC 9370), and whether the two ends of each "
                    "connection agree. Each finding names its reference and the file:line and key to change. "
                    "Exit status 1 when a finding at --fail-on's level or worse is found, 2 for unreadable input.")
    audit.add_argument("paths", nargs="+", metavar="PATH", help="a file or folder (searched for swanctl*.conf, "
                                                                "ipsec.conf, *.pcap, *.pcapng)")
    audit.add_argument("--format", choices=("table", "markdown", "json"), default="table",
                       help="table (terminal, default), markdown or json")
    audit.add_argument("--fail-on", choices=("must", "should", "advice", "never"), default="must",
                       help="exit 1 when anything at this level or worse is found (default must)")
    audit.add_argument("--cert-days", type=_positive_int, default=30, metavar="N",
                       help="flag certificates that expire within N days (default 30)")
    audit.add_argument("--keys", metavar="DIR", help="key tables (ikev2_decryption_table) to read the captures' "
                                                     "IKE_AUTH and CREATE_CHILD_SA with (a run folder's keys/ "
                                                     "is found by itself)")
    audit.set_defaults(handler=_cmd_audit)

    clean = commands.add_parser("clean", help="remove what a crashed lab run left behind (only that)")
    clean.set_defaults(handler=_cmd_clean)
    from lab.net.watch import LiveSource
    from lab.viz.cli import add_parser as add_figures
    add_figures(commands, live_source=LiveSource)  # figures, diagnose, watch (a live tap of lab.net)
    return parser


class Interrupted(BaseException):
    """Ctrl-C (SIGINT) or SIGTERM: the stack unwinds (every `finally` cleans up), then one line."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, _frame: object) -> None:
    for other in (signal.SIGINT, signal.SIGTERM):
        signal.signal(other, signal.SIG_IGN)  # a second Ctrl-C does not cut the clean-up short
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    if args.command == "watch":
        entered = _watch_in_world(args)
        if entered is not None:
            return entered
    # run, up and demo keep their own handlers while the lab runs; the daemon its event loop's
    import threading

    main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    try:
        return args.handler(args)
    except (Interrupted, KeyboardInterrupt) as err:
        signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
        print(f"ipsec-lab {args.command}: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
