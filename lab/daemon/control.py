"""The gateway's control socket: JSON lines over a Unix socket, and the `ctl` client.

Requests: {"cmd": "initiate", "ike": NAME, "child": NAME?, "timeout": S}, {"cmd": "terminate",
"ike": NAME?, "child": NAME?, "ike_id": N?}, {"cmd": "rekey", "ike": NAME? | "child": NAME?},
{"cmd": "list-sas"}, {"cmd": "list-conns"}, {"cmd": "stats"}. Each gets one response object
with "ok" true or false ("error" then says why)."""
from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from lab.ike import events as ev


async def serve_control(gateway, path: str) -> asyncio.AbstractServer:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("a request is a JSON object")
                    response = await handle(gateway, request)
                except (ValueError, KeyError, TypeError) as err:
                    said = err.args[0] if isinstance(err, KeyError) and err.args else str(err)  # not KeyError's repr
                    response = {"ok": False, "error": said}
                writer.write((json.dumps(response, default=str) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_unix_server(client, path)


async def handle(gateway, request: dict[str, Any]) -> dict[str, Any]:
    cmd = request.get("cmd")
    endpoint = gateway.endpoint
    now = gateway.now()
    if cmd == "initiate":
        name = request.get("ike") or _only_connection(gateway, request.get("child"))
        child = request.get("child")
        ike_id = gateway.initiate(name, child, reuse=bool(request.get("reuse")))
        timeout = float(request.get("timeout", 30))

        def done(event: ev.Event) -> bool:
            # a TCP fallback (RFC 9329 §5.1) ends the UDP attempt and goes on under a new IKE SA
            if event.ike_sa not in gateway.attempt(ike_id) or event.ike_sa in gateway.successor:
                return False
            if isinstance(event, ev.ChildSaUp):
                return True
            if isinstance(event, ev.IkeSaUp) and not gateway.config.connections[name].children:
                return True
            return isinstance(event, (ev.AuthFailed, ev.NegotiationFailed, ev.PeerUnreachable, ev.IkeSaDeleted))

        event = await gateway.wait_for(done, timeout)
        if event is None:
            return {"ok": False, "error": f"no result within {timeout:g} s (see the daemon's log)", "ike_id": ike_id}
        if isinstance(event, (ev.ChildSaUp, ev.IkeSaUp)):
            return {"ok": True, "ike_id": event.ike_sa, "event": type(event).__name__}
        return {"ok": False, "ike_id": ike_id, "error": f"{type(event).__name__}: {getattr(event, 'reason', '')}"
                or type(event).__name__}
    if cmd == "terminate":
        if request.get("child"):
            count = endpoint.terminate_child(now, name=request["child"])
        else:
            count = endpoint.terminate(now, ike_id=request.get("ike_id"), name=request.get("ike"))
        gateway._pump()
        return {"ok": count > 0, "count": count, **({} if count else {"error": "no such SA"})}
    if cmd == "rekey":
        if request.get("child"):
            count = endpoint.rekey_child(now, name=request["child"])
        else:
            count = endpoint.rekey_ike(now, ike_id=request.get("ike_id"), name=request.get("ike"))
        gateway._pump()
        return {"ok": count > 0, "count": count, **({} if count else {"error": "no such SA"})}
    if cmd == "create-child":
        # an additional CHILD_SA on an established IKE SA (RFC 7296 §1.3.1)
        ike_id, child = request["ike_id"], request["child"]
        if ike_id not in endpoint.by_id:
            raise ValueError(f"no IKE SA #{ike_id}")
        if child not in endpoint.by_id[ike_id].config.children:
            raise ValueError(f"IKE SA #{ike_id} has no child config {child!r}")
        endpoint.create_child(now, ike_id, child)
        gateway._pump()
        return {"ok": True}
    if cmd == "list-sas":
        return {"ok": True, "sas": gateway.list_sas()}
    if cmd == "list-conns":
        return {"ok": True, "conns": gateway.list_conns()}
    if cmd == "stats":
        return {"ok": True, "stats": gateway.stats()}
    raise ValueError(f"unknown command {cmd!r} (known: initiate, terminate, rekey, create-child, list-sas, "
                     f"list-conns, stats)")


def _only_connection(gateway, child: str | None) -> str:
    for conn in gateway.config.connections.values():
        if child is None or child in conn.children:
            return conn.name
    raise ValueError(f"no connection has a child named {child!r}")


class ControlClient:
    def __init__(self, path: str, timeout: float = 60.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except FileNotFoundError:
            raise ConnectionError(f"no control socket at {path}: is the daemon running?") from None
        except ConnectionRefusedError:
            raise ConnectionError(f"nothing listens on {path}: the daemon has stopped") from None
        # read through a buffer, write straight to the socket: a buffered write that a signal
        # interrupts after the send keeps its data, and closing the file would send it again
        self.file = self.sock.makefile("rb")

    def request(self, **request: Any) -> dict[str, Any]:
        self.sock.sendall((json.dumps(request) + "\n").encode())
        line = self.file.readline()
        if not line:
            raise ConnectionError("the daemon closed the control connection")
        return json.loads(line)

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
