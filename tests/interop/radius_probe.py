"""A gateway's EAP-RADIUS half without IKE, run inside a lab node by tests/interop/test_freeradius.py:
our EAP-MSCHAPv2 peer (the user) relayed by lab.ike.eap.radius_relay through lab.daemon.radius
to the servers named on the command line, one login after another until one ends (a login
that met a dead server is tried again, as a user would). `--gtc` first: EAP-GTC instead, the
password argument then holding the password and the one-time code. Prints one JSON object."""
from __future__ import annotations

import asyncio
import json
import os
import sys

from lab.daemon.radius import RadiusClient, RadiusServerConfig, RadiusTimeout
from lab.ike import radius
from lab.ike.const import EapType
from lab.ike.eap import EapPeer
from lab.ike.eap.gtc import GtcPeer
from lab.ike.eap.mschapv2 import MsChapV2Peer
from lab.ike.eap.radius_relay import EapRadiusRelay


async def login(client: RadiusClient, user: bytes, password: bytes, method: str = "mschapv2") -> dict:
    server = client.pick()
    if method == "gtc":  # the password with the one-time code already after it
        peer = EapPeer(user, {EapType.GTC: lambda: GtcPeer(password)})
    else:
        peer = EapPeer(user, {EapType.MSCHAPV2: lambda: MsChapV2Peer(user, password, os.urandom)})
    relay = EapRadiusRelay(user, server.secret, os.urandom, nas_identifier=b"lab-gateway")
    request = relay.start()
    while True:
        outcome = await client.exchange(server, request, relay.answer)
        answer = peer.receive(outcome.eap)
        if outcome.done:
            accounting = []
            if outcome.accepted:
                # RFC 2866 §4.1: Start when the session begins, Stop with its counts when it ends
                for status in (radius.ACCT_START, radius.ACCT_STOP):
                    acct = radius.accounting_request(
                        server.secret, status, status, b"lab-session-1", user, framed_ip=outcome.framed_ip,
                        classes=outcome.classes, nas_identifier=b"lab-gateway", input_octets=5 * 2**32 + 1234,
                        output_octets=5678, input_packets=9, output_packets=10, session_time=42)
                    await client.exchange(server, acct,
                                          lambda raw, a=acct: radius.check_accounting_response(raw, a, server.secret),
                                          port=server.acct_port)
                    accounting.append(status)
            return {"accounting": accounting,"server": server.name, "accepted": outcome.accepted, "peer_succeeded": peer.succeeded,
                    "msk_matches": bool(outcome.msk and peer.msk and peer.msk.startswith(outcome.msk)),
                    "framed_ip": outcome.framed_ip, "classes": [c.decode() for c in outcome.classes],
                    "reply_message": outcome.reply_message}
        assert answer is not None
        request = relay.respond(answer.serialize())


async def main() -> None:
    method = "mschapv2"
    if sys.argv[1] == "--gtc":
        method = sys.argv.pop(1)[2:]
    user, password, secret, tries, timeout = sys.argv[1:6]
    servers = [RadiusServerConfig(f"r{i + 1}", *spec.split(":")[:1], secret.encode(),
                                  auth_port=int(spec.split(":")[1]), acct_port=int(spec.split(":")[1]) + 1,
                                  preference=10 - i)
               for i, spec in enumerate(sys.argv[6:])]
    lines: list[str] = []
    client = RadiusClient(servers, tries=int(tries), timeout=float(timeout), base=1.0, say=lines.append)
    result: dict = {"logins": []}
    for _ in range(len(servers) + 1):
        try:
            result["logins"].append(await login(client, user.encode(), password.encode(), method))
            break
        except RadiusTimeout as error:
            result["logins"].append({"timeout": str(error)})
    result["counters"] = {name: dict(c) for name, c in client.counters.items()}
    result["lines"] = lines
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
