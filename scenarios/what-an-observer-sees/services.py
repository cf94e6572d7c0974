"""The company services of what-an-observer-sees, Python's standard library only.

    python3 services.py serve SECONDS   on hostb: DNS on UDP 53 (intranet.example -> 10.2.0.10),
                                        HTTP on TCP 80 and HTTPS on TCP 443 (a self-signed
                                        certificate for intranet.example, made by openssl), each
                                        serving /report.pdf; returns once they listen and
                                        stops by itself after SECONDS
    python3 services.py stop            on hostb: ends them before their time
    python3 services.py dns NAME SERVER on hosta: one DNS query for NAME's A record (RFC 1035 §4.1)
"""
from __future__ import annotations

import http.server
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

NAME, ADDRESS = "intranet.example", "10.2.0.10"
PIDFILE = "/tmp/what-an-observer-sees.pid"  # `kill $(cat ...)` ends the services before their time
# the "confidential" file: 100000 octets an observer can recognise when it is readable
REPORT = (b"CONFIDENTIAL quarterly report of the company. " * 2200)[:100000]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/report.pdf":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/pdf")
        self.send_header("Content-Length", str(len(REPORT)))
        self.end_headers()
        self.wfile.write(REPORT)

    def log_message(self, *args) -> None:
        pass


def dns_answer(query: bytes) -> bytes | None:
    """A response to a standard query (RFC 1035 §4.1): NAME's A record, else NXDOMAIN."""
    if len(query) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    end = 12
    labels = []
    while end < len(query) and query[end]:
        labels.append(query[end + 1:end + 1 + query[end]].decode("ascii", "replace"))
        end += 1 + query[end]
    question = query[12:end + 5]
    qtype = struct.unpack("!H", query[end + 1:end + 3])[0] if end + 3 <= len(query) else 0
    found = ".".join(labels).lower() == NAME and qtype == 1
    header = struct.pack("!HHHHHH", ident, 0x8180 if found else 0x8183, 1, 1 if found else 0, 0, 0)
    if not found:
        return header + question
    # the answer points back to the question's name (offset 12), class IN, TTL 60, 4 octets
    answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(ADDRESS)
    return header + question + answer


def serve(seconds: float) -> None:
    folder = tempfile.mkdtemp(prefix="observer-")
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/O=company/CN={NAME}",
                    "-addext", f"subjectAltName=DNS:{NAME}"], check=True, capture_output=True)
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("0.0.0.0", 53))
    plain = http.server.ThreadingHTTPServer(("0.0.0.0", 80), Handler)
    secure = http.server.ThreadingHTTPServer(("0.0.0.0", 443), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    child = os.fork()
    if child:
        with open(PIDFILE, "w") as f:
            f.write(f"{child}\n")
        print(f"DNS on 53, HTTP on 80, HTTPS on 443 for {seconds:g} s (pid {child} in {PIDFILE})")
        os._exit(0)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    for server in (plain, secure):
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def answer() -> None:
        while True:
            query, peer = dns.recvfrom(512)
            reply = dns_answer(query)
            if reply is not None:
                dns.sendto(reply, peer)

    threading.Thread(target=answer, daemon=True).start()
    time.sleep(seconds)
    for path in (cert, key):
        os.unlink(path)
    os.rmdir(folder)
    os._exit(0)


def stop() -> None:
    try:
        with open(PIDFILE) as f:
            os.kill(int(f.read()), 15)
        os.unlink(PIDFILE)
    except (OSError, ValueError):
        pass


def ask_dns(name: str, server: str) -> None:
    question = b"".join(bytes([len(part)]) + part.encode() for part in name.split(".")) + b"\0"
    query = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", 1, 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    sock.sendto(query, (server, 53))
    reply = sock.recv(512)
    if reply[3] & 0x0F or len(reply) < len(query) + 16:
        sys.exit(f"{name}: no address (rcode {reply[3] & 0x0F})")
    print(f"{name} is {socket.inet_ntoa(reply[-4:])}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(float(sys.argv[2]))
    elif sys.argv[1:] == ["stop"]:
        stop()
    elif len(sys.argv) == 4 and sys.argv[1] == "dns":
        ask_dns(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
