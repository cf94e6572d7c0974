"""Makes freeradius-eap-mschapv2.json: a whole EAP-MSCHAPv2 conversation of our EapPeer with
Debian's FreeRADIUS 3.2 through lab.ike.radius, every Access-Request and answer as sent, with
the shared secret, the user's password and the MSK our peer computed. Run as root from the
repository's root: `unshare -n python tests/data/radius/capture.py` (a private network
namespace: FreeRADIUS listens on its loopback only and dies with the script)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from lab.ike import radius
from lab.ike.const import EapType
from lab.ike.eap import EapPacket, EapPeer
from lab.ike.eap.mschapv2 import MsChapV2Peer

SECRET = b"testing123"
USER, PASSWORD = b"carol", b"carol-pass"


def main() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = tempfile.mkdtemp(prefix="radius-capture-")
    conf = os.path.join(work, "raddb")
    shutil.copytree("/etc/freeradius/3.0", conf, symlinks=True)
    main_conf = os.path.join(conf, "radiusd.conf")
    with open(main_conf) as f:
        text = f.read()
    with open(main_conf, "w") as f:  # root in the namespace: its copied files stay readable
        f.write(text.replace("\tuser = freerad", "#\tuser = freerad").replace("\tgroup = freerad", "#\tgroup = freerad"))
    users = os.path.join(conf, "mods-config", "files", "authorize")
    with open(users) as f:
        old = f.read()
    with open(users, "w") as f:
        f.write(f'{USER.decode()} Cleartext-Password := "{PASSWORD.decode()}"\n'
                '\tFramed-IP-Address = 10.3.0.7,\n\tClass = "staff"\n\n' + old)
    log_path = os.path.join(work, "radiusd.log")
    log = open(log_path, "w")  # noqa: SIM115 - the server writes to it until the finally below
    server = subprocess.Popen(["freeradius", "-X", "-d", conf], stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(2.5)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(3)
        peer = EapPeer(USER, {EapType.MSCHAPV2: lambda: MsChapV2Peer(USER, PASSWORD, os.urandom)})
        eap = EapPacket(2, 0, EapType.IDENTITY, USER).serialize()
        state = None
        exchanges = []
        for identifier in range(1, 12):
            authenticator = os.urandom(16)
            request = radius.access_request(SECRET, identifier, authenticator, USER, eap, state,
                                            nas_identifier=b"lab-gateway")
            sock.sendto(request, ("127.0.0.1", 1812))
            answer, _ = sock.recvfrom(4096)
            exchanges.append({"request": request.hex(), "reply": answer.hex()})
            reply = radius.parse_reply(answer, request, SECRET)
            state = reply.state
            out = peer.receive(EapPacket.parse(reply.eap))
            if reply.code != radius.ACCESS_CHALLENGE:
                break
            eap = out.serialize()
        assert reply.code == radius.ACCESS_ACCEPT and peer.succeeded, reply.code_name
        # RFC 3079 §3.4 keys of our peer = the MS-MPPE keys FreeRADIUS sent (Recv-Key, Send-Key)
        assert reply.msk is not None and peer.msk is not None and reply.msk == peer.msk[:len(reply.msk)]
        data = {"made_by": "tests/data/radius/capture.py with Debian's freeradius "
                + subprocess.run(["dpkg-query", "-W", "-f=${Version}", "freeradius"], check=False, capture_output=True,
                                 text=True).stdout,
                "secret": SECRET.decode(), "user": USER.decode(), "password": PASSWORD.decode(),
                "peer_msk": peer.msk.hex(), "exchanges": exchanges}
        out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "freeradius-eap-mschapv2.json")
        with open(out_path, "w") as f:
            json.dump(data, f, indent=1)
        print("written", out_path, len(exchanges), "exchanges")
    except Exception:
        log.flush()
        with open(log_path) as f:
            print(f.read()[-3000:], file=sys.stderr)
        raise
    finally:
        server.terminate()
        server.wait(5)
        log.close()
        shutil.rmtree(work)


if __name__ == "__main__":
    sys.exit(main())
