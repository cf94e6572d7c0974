"""Every key of swanctl.conf(5), loaded by ipsec-lab's reader and by strongSwan's charon.

    python -m tests.interop.swanctl_conformance [--write]     (root: charon runs in a namespace)

A corpus written for this project (not strongSwan's test configurations): one small swanctl.conf
per key of the swanctl.conf(5) manual of the installed strongSwan, a working PSK site-to-site
connection with that one key set to a value that makes it do something (not its default). Each
is loaded by lab.conf.load_swanctl and by `swanctl --load-all` into a charon of its own (a mount
and network namespace: its pid file and nothing else of the host's), and the two verdicts go
side by side into docs/swanctl-conformance.md (--write). Keys of the manual without a case here
are listed there as such, so a newer strongSwan's keys show up.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "swanctl-conformance.md"
FILES = REPO / "scenarios" / "certificate-revoked" / "hosts" / "gw"  # a certificate, its key, the CA
BASE = """connections {
  c {
    remote_addrs = 192.0.2.2
    %CONN%
    local {
      auth = %AUTH%
      id = %ID%
      %LOCAL%
    }
    remote {
      auth = psk
      id = b.lab
      %REMOTE%
    }
    children {
      net {
        local_ts = 10.1.0.0/24
        remote_ts = 10.2.0.0/24
        %CHILD%
      }
    }
  }
}
secrets {
  ike-1 {
    id-1 = a.lab
    id-2 = b.lab
    secret = 0sv+NkxY9LLZvwj4qCC2o/gGrWDF2d21jL
  }
}
%TOP%
"""


@dataclass
class Case:
    key: str     # as the manual writes it: connections.<conn>.local<suffix>.certs
    where: str   # conn, local, remote, child or top
    text: str    # what goes there
    pubkey: bool = False  # local auth = pubkey with gw.pem (for the keys about our certificate)


def _cases() -> list[Case]:
    conn = "connections.<conn>."
    local, remote, child = conn + "local<suffix>.", conn + "remote<suffix>.", conn + "children.<child>."
    pool = "pools {\n  p {\n    addrs = 10.3.0.0/24\n%s  }\n}\n"
    authority = "authorities {\n  lab-ca {\n%s  }\n}\n"
    cases = [Case(conn + k, "conn", v) for k, v in (
        ("version", "version = 2"), ("local_addrs", "local_addrs = 192.0.2.1"),
        ("remote_addrs", "remote_addrs = 192.0.2.3"), ("local_port", "local_port = 4510"),
        ("remote_port", "remote_port = 4510"), ("proposals", "proposals = aes256-sha384-modp3072"),
        ("vips", "vips = 0.0.0.0, ::"), ("aggressive", "aggressive = yes"), ("pull", "pull = no"),
        ("dscp", "dscp = 101110"), ("encap", "encap = yes"), ("mobike", "mobike = no"),
        ("dpd_delay", "dpd_delay = 30s"), ("dpd_timeout", "dpd_timeout = 150s"),
        ("fragmentation", "fragmentation = force"), ("childless", "childless = force"),
        ("send_certreq", "send_certreq = no"), ("send_cert", "send_cert = always"),
        ("ppk_id", "ppk_id = ppk.lab"), ("ppk_required", "ppk_required = yes"),
        ("keyingtries", "keyingtries = 0"), ("unique", "unique = replace"), ("reauth_time", "reauth_time = 24h"),
        ("rekey_time", "rekey_time = 8h"), ("over_time", "over_time = 30m"), ("rand_time", "rand_time = 10m"),
        ("if_id_in", "if_id_in = 42"), ("if_id_out", "if_id_out = 42"), ("mediation", "mediation = yes"),
        ("mediated_by", "mediated_by = m"), ("mediation_peer", "mediation_peer = peer.lab"))]
    cases.append(Case(conn + "pools", "conn", "pools = p", ))
    cases[-1].text += "\n"  # and the pool it names, below
    cases += [Case(local + k, "local", v, pubkey) for k, v, pubkey in (
        ("round", "round = 1", False), ("certs", "certs = gw.pem", True),
        ("cert<suffix>", "cert-1 {\n        file = %FILES%/x509/gw.pem\n      }", True),
        ("cert<suffix>.handle", "cert-1 {\n        handle = 0a0b\n      }", True),
        ("cert<suffix>.slot", "cert-1 {\n        handle = 0a0b\n        slot = 1\n      }", True),
        ("cert<suffix>.module", "cert-1 {\n        handle = 0a0b\n        module = softhsm\n      }", True),
        ("pubkeys", "pubkeys = gw.pub", True), ("eap_id", "eap_id = alice", False),
        ("aaa_id", "aaa_id = radius.lab", False), ("xauth_id", "xauth_id = alice", False))]
    cases.append(Case(conn + "local<suffix>", "conn", "local-2 {\n      auth = eap-md5\n      eap_id = alice\n    }"))
    cases.append(Case(conn + "remote<suffix>", "conn", "remote-2 {\n      auth = eap-md5\n    }"))
    cases.append(Case(local + "auth", "local", "", True))
    cases.append(Case(local + "id", "local", "", False))
    cases += [Case(remote + k, "remote", v) for k, v in (
        ("round", "round = 1"), ("eap_id", "eap_id = %any"), ("groups", "groups = staff"),
        ("cert_policy", "cert_policy = 1.3.6.1.4.1.36906.1"), ("certs", "certs = gw.pem"),
        ("cert<suffix>", "cert-1 {\n        file = %FILES%/x509/gw.pem\n      }"),
        ("cert<suffix>.handle", "cert-1 {\n        handle = 0a0b\n      }"),
        ("cert<suffix>.slot", "cert-1 {\n        handle = 0a0b\n        slot = 1\n      }"),
        ("cert<suffix>.module", "cert-1 {\n        handle = 0a0b\n        module = softhsm\n      }"),
        ("cacerts", "cacerts = ca.pem"), ("cacert<suffix>", "cacert-1 {\n        file = %FILES%/x509ca/ca.pem\n      }"),
        ("cacert<suffix>.handle", "cacert-1 {\n        handle = 0a0b\n      }"),
        ("cacert<suffix>.slot", "cacert-1 {\n        handle = 0a0b\n        slot = 1\n      }"),
        ("cacert<suffix>.module", "cacert-1 {\n        handle = 0a0b\n        module = softhsm\n      }"),
        ("ca_id", "ca_id = ca.lab"), ("pubkeys", "pubkeys = gw.pub"), ("revocation", "revocation = strict"),
        ("auth", "auth = pubkey\n      cacerts = ca.pem"), ("id", "id = %any"))]
    # the manual's cert<suffix>.file: the same case as cert<suffix> with file =
    cases += [Case(local + "cert<suffix>.file", "local", "cert-1 {\n        file = %FILES%/x509/gw.pem\n      }", True),
              Case(remote + "cert<suffix>.file", "remote", "cert-1 {\n        file = %FILES%/x509/gw.pem\n      }"),
              Case(remote + "cacert<suffix>.file", "remote", "cacert-1 {\n        file = %FILES%/x509ca/ca.pem\n      }")]
    cases += [Case(child + k, "child", v) for k, v in (
        ("ah_proposals", "ah_proposals = sha256"), ("esp_proposals", "esp_proposals = aes256gcm16-modp3072"),
        ("sha256_96", "sha256_96 = yes"), ("local_ts", "local_ts = 10.1.0.0/24[tcp/443]"),
        ("remote_ts", "remote_ts = 10.2.0.0/16"), ("rekey_time", "rekey_time = 30m"), ("life_time", "life_time = 2h"),
        ("rand_time", "rand_time = 5m"), ("rekey_bytes", "rekey_bytes = 500000000"),
        ("life_bytes", "life_bytes = 600000000"), ("rand_bytes", "rand_bytes = 1000000"),
        ("rekey_packets", "rekey_packets = 1000000"), ("life_packets", "life_packets = 1200000"),
        ("rand_packets", "rand_packets = 1000"), ("updown", "updown = /usr/lib/ipsec/_updown iptables"),
        ("hostaccess", "hostaccess = yes"), ("mode", "mode = transport"), ("policies", "policies = no"),
        ("policies_fwd_out", "policies_fwd_out = yes"), ("dpd_action", "dpd_action = restart"),
        ("ipcomp", "ipcomp = yes"), ("inactivity", "inactivity = 5m"), ("reqid", "reqid = 7"),
        ("priority", "priority = 100"), ("interface", "interface = eth0"), ("mark_in", "mark_in = 42"),
        ("mark_in_sa", "mark_in_sa = yes"), ("mark_out", "mark_out = 42"), ("set_mark_in", "set_mark_in = 1"),
        ("set_mark_out", "set_mark_out = 1"), ("if_id_in", "if_id_in = 1"), ("if_id_out", "if_id_out = 1"),
        ("label", "label = system_u:object_r:ipsec_spd_t:s0"), ("label_mode", "label_mode = simple"),
        ("tfc_padding", "tfc_padding = mtu"), ("replay_window", "replay_window = 64"),
        ("hw_offload", "hw_offload = auto"), ("copy_df", "copy_df = no"), ("copy_ecn", "copy_ecn = no"),
        ("copy_dscp", "copy_dscp = yes"), ("start_action", "start_action = trap"),
        ("close_action", "close_action = start"))]
    secret = "secrets {\n  %s {\n%s  }\n}\n"
    cases += [Case("secrets." + k, "top", secret % (name, body)) for k, name, body in (
        ("eap<suffix>", "eap-alice", "    id = alice\n    secret = alice-password\n"),
        ("eap<suffix>.secret", "eap-alice", "    secret = alice-password\n"),
        ("eap<suffix>.id<suffix>", "eap-alice", "    id-1 = alice\n    id-2 = bob\n    secret = shared\n"),
        ("xauth<suffix>", "xauth-alice", "    id = alice\n    secret = alice-password\n"),
        ("ntlm<suffix>", "ntlm-alice", "    id = alice\n    secret = alice-password\n"),
        ("ntlm<suffix>.secret", "ntlm-alice", "    secret = alice-password\n"),
        ("ntlm<suffix>.id<suffix>", "ntlm-alice", "    id-1 = alice\n    secret = alice-password\n"),
        ("ike<suffix>", "ike-2", "    id = c.lab\n    secret = another-psk\n"),
        ("ike<suffix>.secret", "ike-2", "    secret = 0x6c61622d6f6e6c79\n"),
        ("ike<suffix>.id<suffix>", "ike-2", "    id-x = c.lab\n    id-y = 192.0.2.9\n    secret = another-psk\n"),
        ("ppk<suffix>", "ppk-1", "    id = ppk.lab\n    secret = 0x" + "ab" * 32 + "\n"),
        ("ppk<suffix>.secret", "ppk-1", "    secret = 0x" + "ab" * 32 + "\n"),
        ("ppk<suffix>.id<suffix>", "ppk-1", "    id-1 = ppk.lab\n    secret = 0x" + "ab" * 32 + "\n"),
        ("private<suffix>", "private-gw", "    file = gw.key\n"),
        ("private<suffix>.file", "private-gw", "    file = %FILES%/private/gw.key\n"),
        ("private<suffix>.secret", "private-gw", "    file = gw-enc.key\n    secret = key-password\n"),
        ("rsa<suffix>", "rsa-gw", "    file = gw.key\n"), ("rsa<suffix>.file", "rsa-gw", "    file = gw.key\n"),
        ("rsa<suffix>.secret", "rsa-gw", "    file = gw-enc.key\n    secret = key-password\n"),
        ("ecdsa<suffix>", "ecdsa-gw", "    file = gw.key\n"), ("ecdsa<suffix>.file", "ecdsa-gw", "    file = gw.key\n"),
        ("ecdsa<suffix>.secret", "ecdsa-gw", "    file = gw-enc.key\n    secret = key-password\n"),
        ("pkcs8<suffix>", "pkcs8-gw", "    file = gw.key\n"), ("pkcs8<suffix>.file", "pkcs8-gw", "    file = gw.key\n"),
        ("pkcs8<suffix>.secret", "pkcs8-gw", "    file = gw-enc.key\n    secret = key-password\n"),
        ("pkcs12<suffix>", "pkcs12-gw", "    file = gw.p12\n"), ("pkcs12<suffix>.file", "pkcs12-gw", "    file = gw.p12\n"),
        ("pkcs12<suffix>.secret", "pkcs12-gw", "    file = gw.p12\n    secret = p12-password\n"),
        ("token<suffix>", "token-1", "    handle = 0a0b\n"), ("token<suffix>.handle", "token-1", "    handle = 0a0b\n"),
        ("token<suffix>.slot", "token-1", "    handle = 0a0b\n    slot = 1\n"),
        ("token<suffix>.module", "token-1", "    handle = 0a0b\n    module = softhsm\n"),
        ("token<suffix>.pin", "token-1", "    handle = 0a0b\n    pin = 1234\n"))]
    cases += [Case("pools.<name>", "top", pool % ""),
              Case("pools.<name>.addrs", "top", pool.replace("10.3.0.0/24", "fd00:10::1-fd00:10::ff") % ""),
              Case("pools.<name>.<attr>", "top", pool % "    dns = 10.2.0.1\n")]
    cases += [Case("authorities.<name>." + k, "top", authority % body) for k, body in (
        ("cacert", "    cacert = ca.pem\n"), ("file", "    file = %FILES%/x509ca/ca.pem\n"),
        ("handle", "    handle = 0a0b\n"), ("slot", "    handle = 0a0b\n    slot = 1\n"),
        ("module", "    handle = 0a0b\n    module = softhsm\n"),
        ("crl_uris", "    cacert = ca.pem\n    crl_uris = http://10.2.0.10/ca.crl, file:///etc/ca.crl\n"),
        ("ocsp_uris", "    cacert = ca.pem\n    ocsp_uris = http://10.2.0.10:8880\n"),
        ("cert_uri_base", "    cacert = ca.pem\n    cert_uri_base = http://10.2.0.10/certs/\n"))]
    cases.append(Case("authorities.<name>", "top", authority % "    cacert = ca.pem\n"))
    return cases


CASES = _cases()


def manual_keys() -> list[str]:
    """The leaf keys of the installed strongSwan's swanctl.conf(5) (sections with no value left out)."""
    found = subprocess.run(["man", "-w", "swanctl.conf"], capture_output=True, text=True).stdout.strip()
    if not found:
        raise RuntimeError("swanctl.conf(5) is not installed (apt-get install strongswan-swanctl)")
    text = gzip.open(found, "rt").read() if found.endswith(".gz") else Path(found).read_text()
    keys = []
    for match in re.finditer(r'^\.TP\n\.BR? ([^\s"]+)(?: "\s*\[([^\]]*)\]")?', text, re.M):
        key, default = match.group(1), match.group(2)
        if default is not None or key.endswith(("<suffix>", "<name>")):
            keys.append(key)
    return keys


def write_case(case: Case, folder: Path) -> Path:
    """The case's swanctl directory: swanctl.conf, the certificate, its key and public key, the CA."""
    for sub in ("x509", "x509ca", "private", "pubkey"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(FILES / "x509" / "gw.pem", folder / "x509" / "gw.pem")
    shutil.copy2(FILES / "x509ca" / "ca.pem", folder / "x509ca" / "ca.pem")
    shutil.copy2(FILES / "private" / "gw.key", folder / "private" / "gw.key")
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    cert = x509.load_pem_x509_certificate((FILES / "x509" / "gw.pem").read_bytes())
    (folder / "pubkey" / "gw.pub").write_bytes(cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    key = serialization.load_pem_private_key((FILES / "private" / "gw.key").read_bytes(), None)
    kind = re.match(r"secrets\.(private|rsa|ecdsa|pkcs8)<", case.key)
    if kind:  # secrets.<type><suffix>.file = NAME is looked for in <type>/: the key there in that form
        from cryptography.hazmat.primitives.asymmetric import rsa
        sub = kind.group(1)
        if sub == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fmt = serialization.PrivateFormat.PKCS8 if sub in ("pkcs8", "private") else \
            serialization.PrivateFormat.TraditionalOpenSSL
        (folder / sub).mkdir(exist_ok=True)
        if "gw-enc.key" in case.text:  # the .secret keys: the key encrypted, passphrase key-password
            (folder / sub / "gw-enc.key").write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"key-password")))
        elif sub != "private":
            (folder / sub / "gw.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt,
                                                                    serialization.NoEncryption()))
    if case.key.startswith("secrets.pkcs12"):  # the certificate and its key in one container
        from cryptography.hazmat.primitives.serialization import pkcs12
        (folder / "pkcs12").mkdir(exist_ok=True)
        secret = b"p12-password" if "secret =" in case.text else None
        (folder / "pkcs12" / "gw.p12").write_bytes(pkcs12.serialize_key_and_certificates(
            b"gw", key, cert, None, serialization.BestAvailableEncryption(secret) if secret
            else serialization.NoEncryption()))
    slots = {"conn": "", "local": "", "remote": "", "child": "", "top": ""}
    slots[case.where] = case.text
    if case.key.endswith("<conn>.pools"):
        slots["top"] = "pools {\n  p {\n    addrs = 10.3.0.0/24\n  }\n}\n"
    if case.key.endswith(("<conn>.local<suffix>", "<conn>.remote<suffix>")):  # the EAP round's password
        slots["top"] = "secrets {\n  eap-alice {\n    id = alice\n    secret = alice-password\n  }\n}\n"
    if case.key.endswith(".ppk_id") or case.key.endswith(".ppk_required"):
        slots["top"] = "secrets {\n  ppk-1 {\n    id = ppk.lab\n    secret = 0x" + "ab" * 32 + "\n  }\n}\n"
    text = (BASE.replace("%CONN%", slots["conn"]).replace("%LOCAL%", slots["local"])
            .replace("%REMOTE%", slots["remote"]).replace("%CHILD%", slots["child"]).replace("%TOP%", slots["top"])
            .replace("%AUTH%", "pubkey\n      certs = gw.pem" if case.pubkey else "psk")
            .replace("%ID%", "gw.lab" if case.pubkey else "a.lab").replace("%FILES%", str(folder)))
    if case.key.endswith(".mediated_by"):  # the mediation connection it names
        text = text.replace("connections {\n", "connections {\n  m {\n    remote_addrs = 192.0.2.7\n    mediation = yes\n"
                            "    local {\n      auth = psk\n      id = a.lab\n    }\n    remote {\n      auth = psk\n"
                            "      id = b.lab\n    }\n  }\n", 1)
    if "secrets {" in slots["top"]:  # one secrets section: the case's entries join the PSK's
        body = slots["top"].split("secrets {\n", 1)[1].rsplit("}\n", 1)[0]
        text = text.replace("%TOP%", "").replace(slots["top"], "")
        text = text.replace("secrets {\n", "secrets {\n" + body, 1)
    (folder / "swanctl.conf").write_text(text)
    return folder / "swanctl.conf"


def ours(path: Path) -> tuple[bool, str]:
    """(loads, why not): why not is the error without its file:line:key (checked to be there)."""
    from lab.conf.settings import ConfigError
    from lab.conf.swanctl import load_swanctl
    try:
        load_swanctl(path)
    except ConfigError as err:
        text = str(err)
        where = re.match(re.escape(str(path)) + r":\d+: [\w.<>-]+: ", text)
        if where is None:
            return False, "NO FILE:LINE: " + text
        return False, text[where.end():].replace(str(path.parent), "…")
    return True, ""


class Charon:
    """A charon of its own (mount and network namespaces: its /run and nothing of the host's),
    with the plugins Debian installed; started again if a case makes it stop."""

    def __init__(self, work: Path) -> None:
        self.work, self.proc, self.starts = work, None, 0
        plugins = sorted(p.name[len("libstrongswan-"):-3]
                         for p in Path("/usr/lib/ipsec/plugins").glob("libstrongswan-*.so"))
        plugins = [p for p in plugins if p not in ("kernel-libipsec", "farp", "dhcp", "ha", "led", "connmark",
                                                   "forecast", "bypass-lan", "lookip", "error-notify", "certexpire",
                                                   "stroke")]
        self.socket = work / "charon.vici"
        conf = work / "strongswan.conf"
        conf.write_text("charon {\n  load = " + " ".join(plugins) + "\n  plugins {\n    vici {\n      socket = unix://"
                        f"{self.socket}\n    }}\n  }}\n}}\nswanctl {{\n  socket = unix://{self.socket}\n}}\n")
        self.env = {**os.environ, "STRONGSWAN_CONF": str(conf)}

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.stop()
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        self.starts += 1
        with open(self.work / f"charon-{self.starts}.log", "w") as log:
            self.proc = subprocess.Popen(["unshare", "-m", "-n", "sh", "-c",
                                          "mount -t tmpfs none /run && exec /usr/lib/ipsec/charon"],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"charon did not start: {(self.work / f'charon-{self.starts}.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def load(self, path: Path) -> tuple[bool, str]:
        """swanctl --load-all of the case (which unloads the connections of the one before)."""
        if not self.running():
            self.start()
        try:
            done = subprocess.run(["swanctl", "--load-all", "--noprompt"],
                                  env={**self.env, "SWANCTL_DIR": str(path.parent)},
                                  capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            self.stop()
            return False, "charon stopped answering while loading it"
        if not self.running():
            return False, "charon stopped answering while loading it"
        out = done.stdout + done.stderr
        failed = [line for line in out.splitlines() if not line.startswith(("plugin '", "opening directory"))
                  and ("failed" in line or "error" in line.lower() or "invalid" in line)]
        why = " ".join(" ".join(failed).split()).replace(str(path.parent), "…")
        return done.returncode == 0 and not failed, why[:200]


def run_all(work: Path) -> list[tuple[Case, tuple[bool, str], tuple[bool, str]]]:
    results = []
    charon = Charon(work)
    try:
        for index, case in enumerate(CASES):
            path = write_case(case, work / f"case-{index:03d}")
            print(f"[{index + 1}/{len(CASES)}] {case.key}", file=sys.stderr, flush=True)
            results.append((case, ours(path), charon.load(path)))
    finally:
        charon.stop()
    return results


def render(results, keys: list[str]) -> str:
    both = sum(1 for _, o, t in results if o[0] and t[0])
    refused = [(c, o) for c, o, t in results if not o[0] and t[0]]
    lenient = [(c, t) for c, o, t in results if o[0] and not t[0]]
    covered = {c.key for c, *_ in results}
    missing = [k for k in keys if k not in covered]
    lines = ["# swanctl.conf(5), key by key: ipsec-lab and strongSwan's charon", "",
             "Written by `python -m tests.interop.swanctl_conformance --write` (root): one swanctl.conf per key of",
             "the installed strongSwan's swanctl.conf(5) manual, a PSK site-to-site connection with that key set to",
             "a value that does something, loaded by ipsec-lab's reader and by `swanctl --load-all` into charon.",
             "tests/interop/test_swanctl_conformance.py checks that this page is what a run gives.", "",
             f"{len(results)} cases for {len(covered)} keys of the manual: {both} load in both, {len(refused)} are refused by",
             f"ipsec-lab only (each with file:line and why), {len(lenient)} are taken by ipsec-lab and refused by charon.",
             "", "| key | value | charon | ipsec-lab |", "|---|---|---|---|"]
    for case, (ok, why), (their_ok, their_why) in results:
        value = " ".join(case.text.replace("%FILES%", "…").split())[:60]
        mine = "loads" if ok else "refused: " + why.replace("|", "\\|")
        other = "loads" if their_ok else "refused: " + their_why.replace("|", "\\|")
        lines.append(f"| `{case.key}` | `{value}` | {other} | {mine} |")
    if missing:
        lines += ["", "Keys of the manual without a case here: " + ", ".join(f"`{k}`" for k in missing) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.interop.swanctl_conformance")
    parser.add_argument("--write", action="store_true", help=f"write {DOC.relative_to(REPO)}")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="swanctl-conformance-") as work:
        results = run_all(Path(work))
    text = render(results, manual_keys())
    if args.write:
        DOC.write_text(text)
        print(f"wrote {DOC.relative_to(REPO)}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
