"""The teaching text keeps its numbers honest, and stays inside the repository.

Every packet size and overhead the READMEs, scenario descriptions and notebooks state where it
can be computed is recomputed here by protecting a packet of that size with `lab.esp`, with the
algorithm and mode the sentence names, and measuring the result. Every written sum
("20 IP + 8 ESP + ... = 120") must add up. And no tracked file may point to a document outside
the repository: relative links resolve to files in it (headings included), nothing names the
notes the project was built from.
"""
from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.esp import IpsecProto, Mode, OutboundSA, UdpEncap, encr_keymat_size, integ_keymat_size
from lab.ike.const import EncrId, IntegId

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ packets measured with lab.esp

@dataclass(frozen=True)
class Sa:
    """What a sentence names: protocol, mode, cipher, integrity, UDP encapsulation."""

    protocol: IpsecProto
    mode: Mode
    encr_id: int | None
    key_bits: int | None
    integ_id: int
    encap: bool = False

    def protect(self, size: int) -> bytes:
        encr_key = bytes(encr_keymat_size(self.encr_id, self.key_bits)) if self.encr_id is not None else b""
        integ_key = bytes(integ_keymat_size(self.integ_id)) if self.integ_id != IntegId.NONE else b""
        sa = OutboundSA(0x1000, protocol=self.protocol, mode=self.mode, encr_id=self.encr_id, encr_key=encr_key,
                        integ_id=self.integ_id, integ_key=integ_key, local="192.0.2.10", remote="192.0.2.20",
                        encap=UdpEncap() if self.encap else None)
        return sa.protect(ip_packet(size))

    def wire(self, size: int) -> int:
        """Octets of the IP datagram on the wire for an IP packet of `size` octets."""
        return len(self.protect(size))

    def added(self, size: int) -> int:
        return self.wire(size) - size


def ip_packet(size: int) -> bytes:
    """An IPv4 ICMP echo request of `size` octets (a ping), host to host."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + bytes(size - 28)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 1, 0x4000, 64, 1, 0, bytes([192, 0, 2, 10]),
                       bytes([192, 0, 2, 20])) + icmp


GCM = dict(encr_id=EncrId.AES_GCM_16, key_bits=128, integ_id=IntegId.NONE)
CBC_SHA256 = dict(encr_id=EncrId.AES_CBC, key_bits=128, integ_id=IntegId.HMAC_SHA2_256_128)
NULL_SHA256 = dict(encr_id=EncrId.NULL, key_bits=None, integ_id=IntegId.HMAC_SHA2_256_128)
AH_SHA256 = dict(encr_id=None, key_bits=None, integ_id=IntegId.HMAC_SHA2_256_128)

ESP_TUNNEL_GCM = Sa(IpsecProto.ESP, Mode.TUNNEL, **GCM)
ESP_TRANSPORT_GCM = Sa(IpsecProto.ESP, Mode.TRANSPORT, **GCM)
ESP_UDP_TUNNEL_GCM = Sa(IpsecProto.ESP, Mode.TUNNEL, **GCM, encap=True)
ESP_TUNNEL_CBC = Sa(IpsecProto.ESP, Mode.TUNNEL, **CBC_SHA256)
ESP_UDP_TUNNEL_CBC = Sa(IpsecProto.ESP, Mode.TUNNEL, **CBC_SHA256, encap=True)
AH_TUNNEL = Sa(IpsecProto.AH, Mode.TUNNEL, **AH_SHA256)
AH_TRANSPORT = Sa(IpsecProto.AH, Mode.TRANSPORT, **AH_SHA256)

PING = 84  # the default ping: 20 IP + 8 ICMP + 56 data


def wireguard_wire(size: int) -> int:
    """Octets of a WireGuard transport data message's IP datagram for an inner packet of `size`
    (WireGuard paper §5.4.6: type 1 + reserved 3 + receiver 4 + counter 8, the packet padded to a
    multiple of 16, the Poly1305 tag 16), in UDP and IPv4."""
    return 20 + 8 + 16 + -(-size // 16) * 16 + 16


def openvpn_wire(size: int, tcp: bool = False) -> int:
    """Octets of an OpenVPN 2.6 P_DATA_V2 packet with an AEAD cipher for an inner packet of
    `size` (opcode and key id 1 + peer id 3, packet id 4, tag 16, no padding), in UDP and IPv4;
    over TCP with the timestamp option (20 + 12) and OpenVPN's 2-octet length in front."""
    return 20 + (32 + 2 if tcp else 8) + 4 + 4 + 16 + size


def openconnect_wire(size: int, dtls: bool = True) -> int:
    """Octets of an OpenConnect data packet for an inner packet of `size`, in IPv4: in DTLS 1.2
    with AES-GCM, UDP + a 13-octet record header (RFC 6347 §4.1) + an 8-octet explicit nonce
    (RFC 5288 §3) + AnyConnect's 1-octet packet type + the 16-octet tag; in TLS 1.3, TCP with the
    timestamp option (20 + 12) + a 5-octet record header + the 8-octet CSTP header + TLS 1.3's
    inner content type 1 (RFC 8446 §5.2) + the tag 16."""
    return 20 + (8 + 13 + 8 + 1 + 16 if dtls else 32 + 5 + 8 + 1 + 16) + size


def sa_named(label: str) -> Sa:
    """The SA a row or a sentence names: "ESP in UDP, tunnel, AES-GCM-128", "AH tunnel, HMAC-SHA-256"."""
    mode = Mode.TRANSPORT if "transport" in label else Mode.TUNNEL
    if label.startswith("AH"):
        return Sa(IpsecProto.AH, mode, **AH_SHA256)
    if label.startswith("ESP-NULL"):
        return Sa(IpsecProto.ESP, mode, **NULL_SHA256)
    if "AES-GCM-128" in label:
        return Sa(IpsecProto.ESP, mode, **GCM, encap="UDP" in label)
    if "AES-CBC" in label and "HMAC-SHA-256" in label:
        return Sa(IpsecProto.ESP, mode, **CBC_SHA256, encap="UDP" in label)
    raise AssertionError(f"no SA known for {label!r}: teach sa_named() what it means")


# ------------------------------------------------------------------ the teaching text

def teaching_text(path: Path) -> str:
    """The prose of a file with its line breaks and indentation collapsed to single spaces, so
    that a sentence wrapped differently still matches; a notebook's markdown cells only."""
    text = path.read_text()
    if path.suffix == ".ipynb":
        text = "\n\n".join("".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "markdown")
    return re.sub(r"\s+", " ", text)


def stated(relpath: str, pattern: str) -> list[int]:
    """The numbers the `n` group of `pattern` finds in a file; the claim must be there."""
    text = teaching_text(ROOT / relpath)
    found = [int(m.group("n")) for m in re.finditer(pattern, text)]
    assert found, f"{relpath}: no sentence matches {pattern!r} any more; update this test with the text"
    return found


# (file, the sentence with the number as group n, what lab.esp says it must be)
CLAIMS = [
    # compare-site-to-site: the 84-octet ping through ESP in UDP and through WireGuard
    ("scenarios/compare-site-to-site/README.md", r"the 84-octet ping on the wire \| (?P<n>\d+) octets",
     ESP_UDP_TUNNEL_GCM.wire(PING)),
    ("scenarios/compare-site-to-site/README.md", r"the 84-octet ping on the wire \| \d+ octets \((?P<n>\d+) added",
     ESP_UDP_TUNNEL_GCM.added(PING)),
    ("scenarios/compare-site-to-site/README.md", r"the 84-octet ping on the wire \| \d+ octets \(\d+ added\) \| "
     r"(?P<n>\d+) octets", wireguard_wire(PING)),
    ("scenarios/compare-site-to-site/README.md",
     r"the 84-octet ping on the wire \| \d+ octets \(\d+ added\) \| \d+ octets \((?P<n>\d+) added\)",
     wireguard_wire(PING) - PING),
    ("scenarios/compare-site-to-site/README.md", r"ESP in UDP adds 20 IP .*? = (?P<n>\d+) octets",
     ESP_UDP_TUNNEL_GCM.added(PING)),
    ("scenarios/compare-site-to-site/README.md", r"WireGuard adds 20 IP .*? = (?P<n>\d+) octets", wireguard_wire(PING) - PING),
    ("scenarios/compare-site-to-site/README.md", r"the 84-octet ping on the wire(?: \| \d+ octets \(\d+ added\)){2} \| "
     r"(?P<n>\d+) octets", openvpn_wire(PING)),
    ("scenarios/compare-site-to-site/README.md", r"the 84-octet ping on the wire(?: \| \d+ octets \(\d+ added\)){3} \| "
     r"(?P<n>\d+) octets", openvpn_wire(PING, tcp=True)),
    ("scenarios/compare-site-to-site/README.md", r"OpenVPN over UDP adds 20 IP .*? = (?P<n>\d+) octets",
     openvpn_wire(PING) - PING),
    ("scenarios/compare-site-to-site/README.md", r"over TCP it adds 20 IP .*? = (?P<n>\d+) octets",
     openvpn_wire(PING, tcp=True) - PING),
    # compare-roaming (IPsec with and without MOBIKE, WireGuard, OpenConnect, OpenVPN) and
    # restrictive-network: the ping through OpenConnect, in DTLS and in TLS
    ("scenarios/compare-roaming/README.md", r"the 84-octet ping on the wire \| (?P<n>\d+) octets",
     ESP_UDP_TUNNEL_GCM.wire(PING)),
    ("scenarios/compare-roaming/README.md", r"the 84-octet ping on the wire \| \d+ octets \| (?P<n>\d+) octets",
     ESP_UDP_TUNNEL_GCM.wire(PING)),
    ("scenarios/compare-roaming/README.md", r"the 84-octet ping on the wire(?: \| \d+ octets){2} \| (?P<n>\d+) octets",
     wireguard_wire(PING)),
    ("scenarios/compare-roaming/README.md", r"the 84-octet ping on the wire(?: \| [^|]+){4} \| (?P<n>\d+) octets",
     openvpn_wire(PING)),
    ("scenarios/compare-roaming/README.md", r"the 84-octet ping on the wire(?: \| [^|]+){4} \| \d+ octets \((?P<n>\d+) "
     r"added", openvpn_wire(PING) - PING),
    ("scenarios/compare-roaming/README.md", r"(?P<n>\d+) octets in DTLS", openconnect_wire(PING)),
    ("scenarios/compare-roaming/README.md", r"octets in DTLS \((?P<n>\d+) added", openconnect_wire(PING) - PING),
    ("scenarios/compare-roaming/README.md", r"The ping in DTLS is (?P<n>\d+) octets", openconnect_wire(PING)),
    ("scenarios/restrictive-network/README.md", r"\| 162 octets \(see compare-site-to-site\) \| (?P<n>\d+) octets",
     openconnect_wire(PING, dtls=False)),
    ("scenarios/restrictive-network/README.md", r"\| 162 octets \(see compare-site-to-site\) \| \d+ octets \((?P<n>\d+) "
     r"added", openconnect_wire(PING, dtls=False) - PING),
    ("scenarios/restrictive-network/README.md", r"(?P<n>\d+) octets added; in DTLS", openconnect_wire(PING, dtls=False) - PING),
    ("scenarios/restrictive-network/README.md", r"In TLS the ping is (?P<n>\d+) octets", openconnect_wire(PING, dtls=False)),
    ("scenarios/restrictive-network/README.md", r"in DTLS it is (?P<n>\d+)", openconnect_wire(PING)),
    ("scenarios/restrictive-network/README.md", r"\| (?P<n>\d+) octets \(see compare-site-to-site\)",
     openvpn_wire(PING, tcp=True)),
    # tunnel-vs-transport: the 84-octet ping in transport and tunnel mode with AES-GCM-128
    ("scenarios/tunnel-vs-transport/README.md", r"transport: \| IP .*? ICV \| (?P<n>\d+) octets",
     ESP_TRANSPORT_GCM.wire(PING)),
    ("scenarios/tunnel-vs-transport/README.md", r"tunnel: \| IP .*? ICV \| (?P<n>\d+) octets",
     ESP_TUNNEL_GCM.wire(PING)),
    ("scenarios/tunnel-vs-transport/README.md", r"the first pings are (?P<n>\d+)-octet ESP packets",
     ESP_TRANSPORT_GCM.wire(PING)),
    ("scenarios/tunnel-vs-transport/README.md", r"-octet ESP packets, the later ones (?P<n>\d+)",
     ESP_TUNNEL_GCM.wire(PING)),
    ("scenarios/tunnel-vs-transport/README.md", r"The ping is an (?P<n>\d+)-octet IP packet", PING),
    ("scenarios/tunnel-vs-transport/scenario.yaml", r"transport mode: 20 IP \+ .*? = (?P<n>\d+) octets",
     ESP_TRANSPORT_GCM.wire(PING)),
    ("scenarios/tunnel-vs-transport/scenario.yaml", r"inner IP header = (?P<n>\d+) octets",
     ESP_TUNNEL_GCM.wire(PING)),
    ("scenarios/tunnel-vs-transport/scenario.yaml", r"all tunnel mode adds here is the inner IP header: (?P<n>\d+) octets",
     ESP_TUNNEL_GCM.wire(PING) - ESP_TRANSPORT_GCM.wire(PING)),
    ("scenarios/README.md", r"the same ping in both modes: (?P<n>\d+) vs \d+ octets", ESP_TRANSPORT_GCM.wire(PING)),
    ("scenarios/README.md", r"the same ping in both modes: \d+ vs (?P<n>\d+) octets", ESP_TUNNEL_GCM.wire(PING)),
    ("notebooks/02-tunnel-vs-transport.ipynb", r"(?P<n>\d+) bytes on the wire in transport mode",
     ESP_TRANSPORT_GCM.wire(PING)),
    ("notebooks/02-tunnel-vs-transport.ipynb", r"on the wire in transport mode, (?P<n>\d+) in tunnel mode",
     ESP_TUNNEL_GCM.wire(PING)),
    # ah-vs-esp: what AH with HMAC-SHA-256-128 adds, and the ping in each form
    ("scenarios/ah-vs-esp/README.md", r"AH with HMAC-SHA-256-128 adds 12 \+ 16 = (?P<n>\d+) octets", AH_TRANSPORT.added(PING)),
    ("scenarios/ah-vs-esp/README.md", r"(?P<n>\d+) in tunnel mode with the new outer IP header", AH_TUNNEL.added(PING)),
    ("scenarios/ah-vs-esp/README.md", r"The 84-octet ping becomes (?P<n>\d+) octets with AH", AH_TUNNEL.wire(PING)),
    ("scenarios/ah-vs-esp/README.md", r"octets with AH, (?P<n>\d+) with ESP and AES-GCM-128", ESP_TUNNEL_GCM.wire(PING)),
    # mtu-blackhole: a 1400-octet packet in the plain-ESP AES-GCM-128 tunnel (no NAT, no UDP)
    ("scenarios/mtu-blackhole/README.md", r"= (?P<n>\d+) octets, for a link of 1400", ESP_TUNNEL_GCM.wire(1400)),
    ("scenarios/mtu-blackhole/README.md", r"adds (?P<n>\d+) to \d+ octets to every packet with AES-GCM-128",
     min(ESP_TUNNEL_GCM.added(n) for n in range(40, 1501))),
    ("scenarios/mtu-blackhole/README.md", r"adds \d+ to (?P<n>\d+) octets to every packet with AES-GCM-128",
     max(ESP_TUNNEL_GCM.added(n) for n in range(40, 1501))),
    ("scenarios/mtu-blackhole/README.md", r"AES-GCM-128, (?P<n>\d+) to \d+ with AES-CBC and HMAC-SHA-256",
     min(ESP_TUNNEL_CBC.added(n) for n in range(40, 1501))),
    ("scenarios/mtu-blackhole/README.md", r"AES-GCM-128, \d+ to (?P<n>\d+) with AES-CBC and HMAC-SHA-256",
     max(ESP_TUNNEL_CBC.added(n) for n in range(40, 1501))),
    ("scenarios/mtu-blackhole/README.md", r"(?P<n>\d+) more when ESP runs in UDP",
     ESP_UDP_TUNNEL_GCM.wire(1400) - ESP_TUNNEL_GCM.wire(1400)),
    ("scenarios/mtu-blackhole/scenario.yaml", r"= (?P<n>\d+) octets with DF set", ESP_TUNNEL_GCM.wire(1400)),
    ("notebooks/05-mtu.ipynb", r"16 ICV = (?P<n>\d+) octets", ESP_TUNNEL_GCM.wire(1400)),
    ("notebooks/05-mtu.ipynb", r"(?P<n>\d+) more than the 1400-octet link takes", ESP_TUNNEL_GCM.wire(1400) - 1400),
    ("notebooks/05-mtu.ipynb", r"segments of at most 1300 bytes of data - (?P<n>\d+)-byte packets", 1340),
    # the answers to the notebooks' "Try it"
    ("notebooks/solutions/02.md", r"16 ICV = (?P<n>\d+)\s+tunnel:", ESP_TRANSPORT_GCM.wire(1400)),
    ("notebooks/solutions/02.md", r"tunnel: .*? 16 ICV = (?P<n>\d+)", ESP_TUNNEL_GCM.wire(1400)),
    ("notebooks/solutions/02.md", r"fits is (?P<n>\d+) octets in tunnel mode",
     max(n for n in range(40, 1501) if ESP_TUNNEL_GCM.wire(n) <= 1500)),
    ("notebooks/solutions/02.md", r"in tunnel mode and (?P<n>\d+) in transport mode",
     max(n for n in range(40, 1501) if ESP_TRANSPORT_GCM.wire(n) <= 1500)),
    ("notebooks/solutions/05.md", r"IP packet and a (?P<n>\d+)-octet ESP packet", ESP_TUNNEL_GCM.wire(1340)),
    ("notebooks/solutions/05.md", r"a 1300-octet inner packet is (?P<n>\d+) octets", ESP_TUNNEL_GCM.wire(1300)),
    ("notebooks/solutions/05.md", r"fits 1300 is (?P<n>\d+) octets",
     max(n for n in range(40, 1301) if ESP_TUNNEL_GCM.wire(n) <= 1300)),
    ("notebooks/solutions/05.md", r"the limits are (?P<n>\d+) and",
     max(n for n in range(40, 1301) if ESP_UDP_TUNNEL_GCM.wire(n) <= 1300)),
    ("notebooks/solutions/08.md", r"(?P<n>\d+) octets on the wire with `null-sha256`", Sa(IpsecProto.ESP, Mode.TUNNEL, **NULL_SHA256).wire(PING)),
    ("notebooks/solutions/08.md", r"and (?P<n>\d+) with `aes128gmac`",
     Sa(IpsecProto.ESP, Mode.TUNNEL, encr_id=EncrId.NULL_AUTH_AES_GMAC, key_bits=128, integ_id=IntegId.NONE).wire(PING)),
    # the field problems: a 1500-octet packet in the two usual tunnels
    ("docs/field-problems.md", r"a 1500-octet packet becomes (?P<n>\d+) octets", ESP_TUNNEL_GCM.wire(1500)),
    ("docs/field-problems.md", r"with AES-CBC and HMAC-SHA-256 (?P<n>\d+)\.", ESP_TUNNEL_CBC.wire(1500)),
]


@pytest.mark.parametrize("relpath,pattern,computed", CLAIMS, ids=[f"{c[0]}:{c[1][:40]}" for c in CLAIMS])
def test_stated_sizes_are_what_lab_esp_makes(relpath, pattern, computed):
    for number in stated(relpath, pattern):
        assert number == computed, f"{relpath} says {number} where lab.esp makes {computed} ({pattern!r})"


def test_mss_clamped_packets_fit_the_black_hole_path():
    # notebook 05: 1300 octets of TCP data in 1340-octet packets fit the 1400-octet path after ESP
    assert ESP_TUNNEL_GCM.wire(1340) <= 1400 < ESP_TUNNEL_GCM.wire(1400)


def overhead_rows() -> list[tuple[str, int]]:
    text = (ROOT / "scenarios/overhead/README.md").read_text()
    rows = [tuple(cell.strip() for cell in line.strip().strip("|").split("|"))
            for line in text.splitlines() if line.startswith("| ")]
    return [(sa, int(wire)) for sa, wire, *_ in rows[1:] if wire.isdigit()]


def test_overhead_readme_table():
    rows = overhead_rows()
    assert len(rows) == 7, rows
    for label, wire in rows:
        assert wire == sa_named(label).wire(1500), f"overhead/README.md: {label}: {wire}, lab.esp makes " \
                                                   f"{sa_named(label).wire(1500)}"


def test_overhead_scenario_checks():
    """Each check of overhead/scenario.yaml: the size its tap filter counts and the size it says."""
    text = (ROOT / "scenarios/overhead/scenario.yaml").read_text()
    checks = re.findall(r'ip\[2:2\] == (\d+)", min: \d+\}\n\s+say: "([^:"]+): (\d+) octets', text)
    assert len(checks) == 7, checks
    for filtered, label, said in checks:
        assert int(filtered) == int(said) == sa_named(label).wire(1500), (label, filtered, said)


# ------------------------------------------------------------------ written sums add up

TERM = r"\d+(?: [A-Za-z][\w-]*)*(?: \([^()]*\))?"
SUM_THEN_TOTAL = re.compile(rf"(?<![\w.+-])(?<!\+ )({TERM}(?: ?\+ ?{TERM})+) ?= ?(\d+)(?![\w.])")
TOTAL_THEN_SUM = re.compile(rf"(?<![\w.+-])(\d+)(?: octets)? ?= ?({TERM}(?: ?\+ ?{TERM})+)(?! ?[+=\d])")


def teaching_files() -> list[Path]:
    return sorted([ROOT / "README.md", *ROOT.glob("scenarios/**/README.md"), *ROOT.glob("scenarios/*/scenario.yaml"),
                   *ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("notebooks/**/README.md"), *ROOT.glob("notebooks/solutions/*.md"), *ROOT.glob("docs/*.md")])


def written_sums(text: str) -> list[tuple[str, list[int], int]]:
    sums = []
    for m in SUM_THEN_TOTAL.finditer(text):
        sums.append((m.group(0), [int(t.split()[0]) for t in m.group(1).split("+")], int(m.group(2))))
    for m in TOTAL_THEN_SUM.finditer(text):
        sums.append((m.group(0), [int(t.split()[0]) for t in m.group(2).split("+")], int(m.group(1))))
    return sums


def test_the_sum_finder_finds_sums():
    found = written_sums("makes it 20 IP + 8 ESP + 4 trailer (pad to 4) + 16 ICV = 48 octets; "
                         "1548 octets = 20 IP + 12 AH + 16 ICV + 1500 inner, no trailer; 12 + 16 = 28")
    assert [(terms, total) for _, terms, total in found] == [([20, 8, 4, 16], 48), ([12, 16], 28),
                                                             ([20, 12, 16, 1500], 1548)]


def test_written_sums_add_up():
    checked = 0
    for path in teaching_files():
        for expression, terms, total in written_sums(teaching_text(path)):
            assert sum(terms) == total, f"{path.relative_to(ROOT)}: {expression!r} adds up to {sum(terms)}"
            checked += 1
    assert checked >= 15, checked  # the finder still finds the sums the text has


# ------------------------------------------------------------------ nothing points outside

TEXT_SUFFIXES = {".md", ".py", ".ipynb", ".yaml", ".yml", ".conf", ".sh", ".toml", ".cfg", ".txt", ".ini"}
# the notes the project was built from live outside the repository: no file may send a reader there
OUTSIDE = re.compile(r"(?<![\w-])(?:(?:\.\./)+shared/|shared/reference\b|(?:problems|strongswan|machine|anchors|DESIGN)"
                     r"\.md\b|/work/)")
MD_LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)|!\[[^\]\n]*\]\(([^)\s]+)\)")


def tracked_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        files = [ROOT / n for n in names.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "out", "__pycache__"}
        files = [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    return [p for p in files if p.suffix in TEXT_SUFFIXES and p.exists()]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub and JupyterLab make it."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def markdown_of(path: Path) -> str:
    if path.suffix == ".ipynb":
        return "\n\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                           if c["cell_type"] == "markdown")
    return path.read_text()


def anchors(path: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", markdown_of(path), re.M)}


def broken_links(path: Path) -> list[str]:
    broken = []
    for m in MD_LINK.finditer(markdown_of(path)):
        target = m.group(1) or m.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # a web address: not a document of the repository, and not a path out of it
        file, _, fragment = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if ROOT not in resolved.parents and resolved != ROOT:
            broken.append(f"{target} (outside the repository)")
        elif not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and resolved.suffix in (".md", ".ipynb") and fragment not in anchors(resolved):
            broken.append(f"{target} (no heading #{fragment} in {resolved.name})")
    return broken


def test_no_file_points_outside_the_repository():
    this = Path(__file__).resolve()
    offenders = []
    for path in tracked_files():
        if path.resolve() == this:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "points outside the repository:\n" + "\n".join(offenders)


def test_links_resolve_inside_the_repository():
    # tests/data/runs holds run folders trimmed to what lab.viz reads: their report.md links files left out
    kept_runs = ROOT / "tests" / "data" / "runs"
    broken = [f"{path.relative_to(ROOT)}: {link}" for path in tracked_files()
              if path.suffix in (".md", ".ipynb") and kept_runs not in path.parents for link in broken_links(path)]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_checker_sees_a_link_out(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    page = tmp_path / "README.md"
    page.write_text("# Top\n\n[ok](#top) [gone](docs/none.md) [out](../../shared/notes.md) [web](https://example.org/)\n"
                    "[anchor](README.md#nowhere)\n")
    assert [b.split(" ")[0] for b in broken_links(page)] == ["docs/none.md", "../../shared/notes.md",
                                                             "README.md#nowhere"]
    assert OUTSIDE.search("see ../shared/reference/problems.md") and not OUTSIDE.search("docs/field-problems.md")


def test_glossary_is_linked_from_every_notebooks_first_cell():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        first = json.loads(path.read_text())["cells"][0]
        assert first["cell_type"] == "markdown" and "](../docs/glossary.md)" in "".join(first["source"]), path.name
