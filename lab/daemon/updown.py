"""updown scripts as strongSwan runs them (swanctl.conf(5) children.<child>.updown).

On every CHILD_SA up and down the child's `updown` command line is run by /bin/sh in the
gateway's network namespace, with the environment strongSwan's updown plugin gives it
(PLUTO_VERSION, PLUTO_VERB, PLUTO_CONNECTION, PLUTO_REQID, PLUTO_ME, PLUTO_PEER, PLUTO_MY_CLIENT,
...; the list is in the comment at the top of Debian's /usr/lib/ipsec/_updown), once per pair of
local and remote traffic selectors. A rekey is neither: the replacement SA inherits the old one's
reqid and no script runs. The script's output goes to the log line by line; a script that fails
is logged with its exit status and the daemon goes on, as charon does.
"""
from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab.ike import events as ev
from lab.ike.payloads import TrafficSelector

if TYPE_CHECKING:
    from .gateway import Gateway

TIMEOUT = 30.0  # seconds a script may run before it is killed (charon waits forever)
_ICMP = (1, 58)


@dataclass
class _Up:
    """A CHILD_SA whose up script ran: what its down script needs."""

    key: tuple[Any, ...]
    reqid: int
    env: list[dict[str, str]]
    command: str
    name: str


def _subnet(ts: TrafficSelector) -> str:
    """strongSwan's traffic_selector_t.to_subnet: the range as net/prefix, or the smallest
    subnet holding it (updown 'approximates' a range that is not a subnet)."""
    start, end = int(ts.start_addr), int(ts.end_addr)
    bits: int = ts.start_addr.max_prefixlen
    prefix = bits
    while prefix > 0 and (start >> (bits - prefix)) != (end >> (bits - prefix)):
        prefix -= 1
    network = ipaddress.ip_network((ts.start_addr, prefix), strict=False)
    return f"{network.network_address}/{prefix}"


def _port(me: TrafficSelector, other: TrafficSelector, local: bool) -> str:
    """updown_listener.c get_port: ICMP type (ours) and code (peer's), else a port or a range."""
    if max(me.ip_protocol, other.ip_protocol) in _ICMP:
        port = max(me.start_port, other.start_port)
        return str(port >> 8 if local else port & 0xFF)
    ts = me if local else other
    if ts.start_port == ts.end_port or (ts.start_port, ts.end_port) == (0, 65535):
        return str(ts.start_port)
    return f"{ts.start_port}:{ts.end_port}"


def _is_host(ts: TrafficSelector, address: str) -> bool:
    return ts.start_addr == ts.end_addr == ipaddress.ip_address(address)


def interface_of(address: str) -> str | None:
    """The interface holding `address` (PLUTO_INTERFACE), as `ip -o addr` lists it."""
    try:
        out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3].split("/")[0] == address:
            return fields[1].split("@")[0]
    return None


def environment(event: ev.ChildSaUp, ike: Any, up: bool, reqid: int, local_ts: TrafficSelector,
                remote_ts: TrafficSelector, interface: str | None, hostaccess: bool) -> dict[str, str]:
    """The PLUTO_* variables strongSwan 5.9's updown plugin sets (updown_listener.c invoke_once)."""
    me, peer = event.local[0], event.remote[0]
    host = _is_host(local_ts, me)
    ipv6 = ipaddress.ip_address(me).version == 6 if host else local_ts.start_addr.version == 6
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "PLUTO_VERSION": "1.1",
        "PLUTO_VERB": f"{'up' if up else 'down'}-{'host' if host else 'client'}{'-v6' if ipv6 else ''}",
        "PLUTO_CONNECTION": event.name,
        "PLUTO_INTERFACE": interface or "unknown",
        "PLUTO_REQID": str(reqid),
        "PLUTO_PROTO": "ah" if event.protocol == 2 else "esp",  # RFC 7296 §3.3.1 Protocol ID 2 = AH
        "PLUTO_UNIQUEID": str(event.ike_sa),
        "PLUTO_ME": me,
        "PLUTO_MY_ID": str(ike.local_id) if ike is not None else "%any",
        "PLUTO_MY_CLIENT": _subnet(local_ts),
        "PLUTO_MY_PORT": _port(local_ts, remote_ts, True),
        "PLUTO_MY_PROTOCOL": str(local_ts.ip_protocol),
        "PLUTO_PEER": peer,
        "PLUTO_PEER_ID": str(ike.remote_id) if ike is not None and ike.remote_id is not None else "%any",
        "PLUTO_PEER_CLIENT": _subnet(remote_ts),
        "PLUTO_PEER_PORT": _port(local_ts, remote_ts, False),
        "PLUTO_PEER_PROTOCOL": str(remote_ts.ip_protocol),
    }
    if ike is not None:
        if ike.remote_eap_id is not None and ike.remote_eap_id != ike.remote_id:
            env["PLUTO_XAUTH_ID"] = str(ike.remote_eap_id)
        for prefix, vips in (("PLUTO_MY_SOURCEIP", ike.virtual_ips), ("PLUTO_PEER_SOURCEIP", ike.assigned_ips)):
            # the first one alone (the legacy variable), then each numbered within its family
            counts = {4: 0, 6: 0}
            for vip in vips:
                env.setdefault(prefix, vip)
                version = ipaddress.ip_address(vip).version
                counts[version] += 1
                env[f"{prefix}{version}_{counts[version]}"] = vip
    if event.encap:
        env["PLUTO_UDP_ENC"] = str(event.remote[1])
    if hostaccess:
        env["PLUTO_HOST_ACCESS"] = "1"
    return env


class Updown:
    """Runs the children's updown scripts on the gateway's CHILD_SA events."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.up: dict[bytes, _Up] = {}  # spi_in -> the SA whose up script ran
        self.reqids: dict[tuple[Any, ...], int] = {}
        self.next_reqid = 1
        self.interfaces: dict[str, str | None] = {}

    def on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.ChildSaUp):
            self._child_up(event)
        elif isinstance(event, ev.ChildSaDeleted):
            self._child_down(event.spi_in)

    def _reqid(self, key: tuple[Any, ...]) -> int:
        # strongSwan allocates one reqid per set of traffic selectors while SAs use it
        if key not in self.reqids:
            self.reqids[key] = self.next_reqid
            self.next_reqid += 1
        return self.reqids[key]

    def _child_up(self, event: ev.ChildSaUp) -> None:
        old = self.up.pop(event.rekeyed_from, None) if event.rekeyed_from else None
        if old is not None:  # a rekey: same policies, no script (charon's child_updown is not called)
            self.up[event.spi_in] = old
            return
        ike = self.gateway.endpoint.by_id.get(event.ike_sa)
        config = ike.config.children.get(event.name) if ike is not None else None
        if config is None or not config.updown:
            return
        key = (event.name, tuple(map(str, event.local_ts)), tuple(map(str, event.remote_ts)))
        reqid = self._reqid(key)
        me = event.local[0]
        if me not in self.interfaces:
            self.interfaces[me] = interface_of(me)
        # one run per policy: each pair of selectors of one family whose protocols agree
        # (strongSwan's child_sa.c policy_enumerate: an IPv4 and an IPv6 virtual IP give two)
        envs = [environment(event, ike, True, reqid, local, remote, self.interfaces[me], config.hostaccess)
                for local in event.local_ts for remote in event.remote_ts
                if local.start_addr.version == remote.start_addr.version
                and not (local.ip_protocol and remote.ip_protocol and local.ip_protocol != remote.ip_protocol)]
        record = _Up(key, reqid, envs, config.updown, event.name)
        self.up[event.spi_in] = record
        for env in envs:
            self._run(record, env)

    def _child_down(self, spi_in: bytes) -> None:
        record = self.up.pop(spi_in, None)
        if record is None:
            return
        for env in record.env:
            down = dict(env, PLUTO_VERB=env["PLUTO_VERB"].replace("up-", "down-", 1))
            self._run(record, down)
        if not any(r.key == record.key for r in self.up.values()):
            self.reqids.pop(record.key, None)

    def _run(self, record: _Up, env: dict[str, str]) -> None:
        say = self.gateway.say
        verb = env["PLUTO_VERB"]
        try:
            # charon: /bin/sh -c "2>&1 <updown>", with only the PLUTO_* variables and PATH
            done = subprocess.run(["/bin/sh", "-c", f"2>&1 {record.command}"], env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            for line in (exc.stdout or b"").decode(errors="replace").splitlines():
                say(f"[CHD] updown: {line}")
            say(f"[CHD] updown script '{record.command}' ({verb} {record.name}) killed after {TIMEOUT:.0f} s")
            return
        except OSError as exc:
            say(f"[CHD] could not execute updown script '{record.command}': {exc}")
            return
        for line in done.stdout.decode(errors="replace").splitlines():
            say(f"[CHD] updown: {line}")
        if done.returncode != 0:
            say(f"[CHD] updown script '{record.command}' ({verb} {record.name}) failed with exit status "
                f"{done.returncode}")
        else:  # charon says this at log level 3 only; a trainee wants to see that it ran
            say(f"[CHD] updown script '{record.command}' ran: {verb} {record.name} reqid {record.reqid}")
