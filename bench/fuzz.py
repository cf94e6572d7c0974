"""Coverage-guided fuzzing (atheris, libFuzzer for Python) of everything that takes bytes or
text from outside: IKE messages, SK/SKF decryption, an established IKE SA fed protected
messages of any content, ESP/AH unprotect, the RFC 9329 TCP stream framing, swanctl.conf, scenario files, captures.

    .venv/bin/python bench/fuzz.py --inputs 1000000               # every target in turn
    .venv/bin/python bench/fuzz.py --inputs 10000 --target esp    # one
    .venv/bin/python bench/fuzz.py --list

Each target runs in a process of its own (libFuzzer takes one per process) from a seed corpus
made of the project's own messages, configurations and captures. An input that raises
anything but the target's clear error (ParseError, EspDrop, ConfigError, ScenarioError,
CaptureError, ...) is a crash: its bytes go to out/fuzz/<target>/crash-<sha1>, its traceback
to the report; the fuzzing goes on. An input running longer than --timeout seconds is a
hang (libFuzzer writes timeout-<sha1> there and stops that target). One line per target:

    esp: 1000000 inputs, coverage 812 edges / 2301 features, 0 crashes (143 s)

`--json` prints the same as one JSON object per target (the unit tests read that).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGETS = ["ike_message", "ike_sk", "ike_endpoint", "esp", "tcp_stream", "swanctl", "scenario", "decode"]
MAX_LEN = {"ike_message": 2048, "ike_sk": 2048, "ike_endpoint": 1500, "esp": 1600, "tcp_stream": 4096, "swanctl": 4096,
           "scenario": 4096, "decode": 8192}


# ================================================================ the targets
# Each `setup_<target>()` returns (test_one_input, allowed exception types, seed inputs).


class Cursor:
    """Choices read off the front of an input, one octet each, then the rest as bytes: the seeds
    are written in the same order, so a seed means what it was made to mean."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def pick(self, n: int) -> int:
        """A number in 0..n-1 (0 once the input is used up)."""
        if self.at >= len(self.data):
            return 0
        self.at += 1
        return self.data[self.at - 1] % n

    def rest(self) -> bytes:
        out, self.at = self.data[self.at:], len(self.data)
        return out


def _handshake_datagrams() -> list[bytes]:
    """Every IKE datagram of in-memory exchanges: IKE_SA_INIT with a cookie and INVALID_KE, IKE_AUTH
    fragmented and whole, CHILD and IKE rekeys, DPD, deletes (the non-ESP marker stripped)."""
    from lab.ike.endpoint import Settings
    from lab.ike.memnet import make_net, pair_configs
    from lab.ike.message import classify_udp

    out = []
    for settings, options in ((Settings(cookie_threshold=0), {}), (Settings(fragment_size=300),
                                                                  {"a_fragmentation": "force", "a_encap": True}),
                              (Settings(), {"a_proposals": "aes128-sha256-ecp256,aes128-sha256-x25519"})):
        net = make_net(*pair_configs(**options), settings=settings)
        a = net.endpoints["a"]
        a.initiate("s2s", net.now)
        net.settle()
        a.rekey_child(net.now, name="net")
        net.settle()
        a.rekey_ike(net.now, name="s2s")
        net.settle()
        a.terminate(net.now, name="s2s")
        net.settle()
        for _, _, d in net.log:
            out.append(classify_udp(d.dst[1], d.data)[1])
    return out


def setup_ike_message():
    from lab.ike.errors import ParseError
    from lab.ike.message import Message
    from tests.unit.ike_samples import sample_messages

    def one(data: bytes) -> None:
        message = Message.parse(data)
        message.serialize()
        message.unsupported_critical()

    seeds = _handshake_datagrams() + [m.serialize() for m in sample_messages()]
    return one, (ParseError,), seeds


def _inner_chains() -> list[bytes]:
    """Serialized inner payload chains (first payload type octet + chain) of every kind."""
    from lab.ike.payloads import serialize_chain
    from tests.unit.ike_samples import sample_messages

    out = []
    for message in sample_messages():
        if message.payloads and message.payloads[0].type_id not in (46, 53):
            first, chain = serialize_chain(message.payloads)
            out.append(bytes([first]) + chain)
    return out


def setup_ike_sk():
    """SK and SKF bodies under five ciphers: as they come (mostly failing the ICV), and sealed here
    with the right keys around any plaintext (padding, Pad Length and inner chain as the fuzzer
    makes them), so the code behind the ICV runs too."""
    from cryptography.hazmat.primitives import hashes, hmac
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    from lab.ike.const import EncrId, ExchangeType, IntegId
    from lab.ike.crypto import SkCipher
    from lab.ike.errors import CryptoError, IntegrityError, ParseError
    from lab.ike.message import Message
    from lab.ike.protect import DirectionKeys, Reassembly, ReassemblyError, decrypt, decrypt_fragment

    suites = [(EncrId.AES_GCM_16, 128, IntegId.NONE), (EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128),
              (EncrId.AES_CTR, 128, IntegId.HMAC_SHA1_96), (EncrId.CHACHA20_POLY1305, None, IntegId.NONE),
              (EncrId.AES_GCM_8, 256, IntegId.NONE)]
    ciphers = []
    for encr, bits, integ in suites:
        cipher = SkCipher(encr, bits, integ)
        keys = DirectionKeys(bytes(range(1, cipher.encr_key_size + 1)), bytes(range(2, cipher.integ_key_size + 2)))
        ciphers.append((cipher, keys))

    def seal(cipher: SkCipher, keys: DirectionKeys, iv: bytes, aad: bytes, plaintext: bytes) -> bytes:
        # RFC 7296 §3.14, RFC 5282 §4, RFC 7634 §2, RFC 3602, RFC 5930: done here with plain
        # `cryptography`, independently of lab.ike.crypto.sk
        e = keys.encr
        if cipher.encr_id == EncrId.CHACHA20_POLY1305:
            return iv + ChaCha20Poly1305(e[:32]).encrypt(e[32:] + iv, plaintext, aad)
        if cipher.encr_id in (EncrId.AES_GCM_16, EncrId.AES_GCM_8):
            sealed = AESGCM(e[:-4]).encrypt(e[-4:] + iv, plaintext, aad)
            return iv + sealed[:len(plaintext) + cipher.icv_size]
        if cipher.encr_id == EncrId.AES_CTR:
            mode = modes.CTR(e[-4:] + iv + b"\x00\x00\x00\x01")
            key = e[:-4]
        else:
            plaintext += bytes(-len(plaintext) % 16)
            mode, key = modes.CBC(iv), e
        encryptor = Cipher(algorithms.AES(key), mode).encryptor()
        body = encryptor.update(plaintext) + encryptor.finalize()
        mac = hmac.HMAC(keys.integ, hashes.SHA256() if cipher.integ_id == IntegId.HMAC_SHA2_256_128 else hashes.SHA1())
        mac.update(aad + iv + body)
        return iv + body + mac.finalize()[:cipher.icv_size]

    def one(data: bytes) -> None:
        take = Cursor(data)
        mode = take.pick(4)
        cipher, keys = ciphers[take.pick(len(ciphers))]
        fragment = mode >= 2
        number, total = take.pick(7), take.pick(7)
        inner_first = take.pick(256)
        body_in = take.rest()
        template = Message(b"\x01" * 8, b"\x02" * 8, ExchangeType.INFORMATIONAL, 7, True, False)
        kind, extra = (53, struct.pack("!HH", number, total)) if fragment else (46, b"")
        if mode in (1, 3):
            iv = bytes(cipher.iv_size)
            length = len(seal(cipher, keys, iv, b"", body_in))  # the body's length is known beforehand
            total_length = 28 + 4 + len(extra) + length
            aad = template.header(kind, total_length).serialize() + struct.pack("!BBH", inner_first, 0,
                                                                                 4 + len(extra) + length) + extra
            wire = aad + seal(cipher, keys, iv, aad, body_in)
        else:
            total_length = 28 + 4 + len(extra) + len(body_in)
            wire = (template.header(kind, total_length).serialize()
                    + struct.pack("!BBH", inner_first, 0, 4 + len(extra) + len(body_in)) + extra + body_in)
        try:
            message = Message.parse(wire)
        except ParseError:
            if mode in (1, 3) and len(body_in) < 4000:
                # a sealed body parses as a message unless the fuzzed fragment numbers are refused
                if not fragment or (number and total and number <= total):
                    raise
            return
        try:
            if fragment:
                piece = decrypt_fragment(wire, message, cipher, keys)
                reassembly = Reassembly(7, 4, 4096)
                try:
                    reassembly.add(message.encrypted, piece)
                except ReassemblyError:
                    pass
            else:
                decrypt(wire, message, cipher, keys)
        except IntegrityError:
            if mode in (1, 3):
                raise AssertionError("a message sealed with the right keys failed its ICV") from None
            raise

    seeds = []
    for chain in _inner_chains():
        for mode in (0, 1, 3):
            seeds.append(bytes([mode, 0, 1, 1, chain[0]]) + chain[1:] + b"\x00")
    return one, (ParseError, IntegrityError, CryptoError), seeds


def setup_ike_endpoint():
    """An established IKE SA (in memory) gets protected requests of any exchange, message ID and
    inner payloads (sealed with the peer's real keys, so its tasks run on them), and protected
    responses to a request it has out. Nothing may raise out of receive_datagram or the timers;
    whenever the SA is gone or rekeyed away a new pair is made."""

    from lab.ike.const import ExchangeType
    from lab.ike.endpoint import Settings
    from lab.ike.memnet import GW_A, GW_B, make_net, pair_configs
    from lab.ike.message import Message
    from lab.ike.states import IkeState

    state: dict = {}

    def fresh() -> None:
        net = make_net(*pair_configs(a_encap=True), settings=Settings(cookie_threshold=100))
        net.endpoints["a"].initiate("s2s", net.now)
        net.settle()
        state["net"] = net
        state["count"] = 0

    def pair():
        net = state.get("net")
        if net is None or state["count"] > 2000:
            fresh()
            net = state["net"]
        a, b = net.endpoints["a"], net.endpoints["b"]
        ike_a = next((s for s in a.by_id.values() if s.state == IkeState.ESTABLISHED and s.keys), None)
        ike_b = ike_a and b.sas.get(ike_a.spi_r)
        if ike_b is None or ike_b.state != IkeState.ESTABLISHED or ike_b.keys is None:
            fresh()
            return pair()
        return net, a, b, ike_a, ike_b

    exchanges = [ExchangeType.INFORMATIONAL, ExchangeType.CREATE_CHILD_SA, ExchangeType.IKE_AUTH, 37, 36, 99]

    def one(data: bytes) -> None:
        net, a, b, ike_a, ike_b = pair()
        state["count"] += 1
        take = Cursor(data)
        to_responder = take.pick(2) == 1
        exchange = exchanges[take.pick(len(exchanges))]
        shift = take.pick(40)
        mid_shift = shift - 2 if shift < 5 else 0  # mostly the expected message ID
        inner_first = take.pick(256)
        chain = take.rest()
        if to_responder:
            sender, receiver, message_id = ike_a, b, ike_b.tm.mid_in + mid_shift
            response = False
        else:
            if ike_a.tm.pending is None:
                a.rekey_child(net.now) or a.terminate_child(net.now) or None
                a.datagrams_to_send()
            if ike_a.tm.pending is None:
                return
            sender, receiver, message_id = ike_b, a, ike_a.tm.pending.message_id + mid_shift
            exchange = ike_a.tm.pending.task.exchange if mid_shift == 0 and exchange != 99 else exchange
            response = True
        template = Message(ike_a.spi_i, ike_a.spi_r, exchange, max(0, message_id) & 0xFFFFFFFF,
                           sender.is_initiator, response)
        cipher, keys = sender.cipher, sender.keys_out
        padding = bytes(cipher.pad_length(len(chain)))
        length = cipher.iv_size + len(chain) + len(padding) + 1 + cipher.icv_size
        aad = template.header(46, 28 + 4 + length).serialize() + struct.pack("!BBH", inner_first, 0, 4 + length)
        wire = aad + cipher.seal(keys.encr, keys.integ, bytes(cipher.iv_size), aad, chain, padding)
        src, dst = ((GW_A, 4500), (GW_B, 4500)) if to_responder else ((GW_B, 4500), (GW_A, 4500))
        receiver.receive_datagram(b"\x00\x00\x00\x00" + wire, src, dst, net.now)
        net.now += 0.01
        for endpoint in (a, b):
            endpoint.datagrams_to_send()
            endpoint.pop_trace()
            while endpoint.next_event() is not None:
                pass
        if state["count"] % 50 == 0:
            net.now += 60
            for endpoint in (a, b):
                endpoint.handle_timer(net.now)
                endpoint.datagrams_to_send()

    seeds = []
    for chain in _inner_chains():
        for exchange in (0, 1, 2):
            seeds.append(bytes([1, exchange, 9, chain[0]]) + chain[1:])
            seeds.append(bytes([0, exchange, 9, chain[0]]) + chain[1:])
    return one, (), seeds


def setup_esp():
    """ESP and AH inbound SAs of every kind (GCM, CBC+HMAC, NULL+HMAC, ChaCha20, AH; tunnel and
    transport; UDP-encapsulated; with selectors): packets as they come, and ESP packets sealed
    here with the SA's keys around any plaintext (padding, Pad Length, Next Header, inner packet as
    the fuzzer makes them), through unprotect, unprotect_datagram and the SAD."""
    from cryptography.hazmat.primitives import hashes, hmac
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    from lab.esp import EspDrop, InboundSA, IpsecProto, Mode, SADatabase, Selector, UdpEncap
    from lab.esp.ip import ipv4_fixup
    from lab.ike.const import EncrId, IntegId

    local, remote = "203.0.113.2", "198.51.100.1"
    selector = Selector.of(local="10.2.0.0-10.2.0.255", remote="10.1.0.0-10.1.0.255")
    kinds = [
        ("gcm", dict(encr_id=EncrId.AES_GCM_16, encr_key=bytes(range(20)), mode=Mode.TUNNEL)),
        ("cbc", dict(encr_id=EncrId.AES_CBC, encr_key=bytes(range(16)), integ_id=IntegId.HMAC_SHA2_256_128,
                     integ_key=bytes(range(32)), mode=Mode.TRANSPORT)),
        ("null", dict(encr_id=EncrId.NULL, integ_id=IntegId.HMAC_SHA1_96, integ_key=bytes(range(20)),
                      mode=Mode.TUNNEL, esn=True)),
        ("chacha", dict(encr_id=EncrId.CHACHA20_POLY1305, encr_key=bytes(range(36)), mode=Mode.TUNNEL,
                        encap=UdpEncap(4500, 4500))),
        ("ah", dict(protocol=IpsecProto.AH, integ_id=IntegId.HMAC_SHA2_256_128, integ_key=bytes(range(32)),
                    mode=Mode.TUNNEL)),
    ]

    def make(n: int, with_selectors: bool) -> InboundSA:
        name, options = kinds[n]
        return InboundSA(0x1000 + n, local=local, remote=remote, replay_window=32, name=name,
                         selectors=[selector] if with_selectors else (), **options)

    def seal(sa_kind: str, options: dict, spi: int, seq: int, plaintext: bytes) -> bytes:
        # RFC 4303 §2, RFC 4106 §3-§5, RFC 7634 §2, RFC 3602, RFC 4868: done here with plain
        # `cryptography`, independently of lab.esp
        header = struct.pack("!II", spi, seq)
        if sa_kind == "gcm":
            key = options["encr_key"]
            iv = b"\x07" * 8
            return header + iv + AESGCM(key[:16]).encrypt(key[16:] + iv, plaintext, header)
        if sa_kind == "chacha":
            key = options["encr_key"]
            iv = b"\x07" * 8
            return header + iv + ChaCha20Poly1305(key[:32]).encrypt(key[32:] + iv, plaintext, header)
        if sa_kind == "cbc":
            iv = b"\x07" * 16
            plaintext += bytes(-len(plaintext) % 16)
            encryptor = Cipher(algorithms.AES(options["encr_key"]), modes.CBC(iv)).encryptor()
            body = iv + encryptor.update(plaintext) + encryptor.finalize()
            mac = hmac.HMAC(options["integ_key"], hashes.SHA256())
            mac.update(header + body)
            return header + body + mac.finalize()[:16]
        mac = hmac.HMAC(options["integ_key"], hashes.SHA1())
        mac.update(header + plaintext + struct.pack("!I", 0))  # ESN high half 0 (RFC 4303 §3.3.2.1)
        return header + plaintext + mac.finalize()[:12]

    def outer(esp: bytes, udp: bool) -> bytes:
        if udp:
            esp = struct.pack("!HHHH", 4500, 4500, 8 + len(esp), 0) + esp
        header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(esp), 1, 0, 64, 17 if udp else 50, 0,
                                       bytes([198, 51, 100, 1]), bytes([203, 0, 113, 2])))
        return bytes(ipv4_fixup(header, 20 + len(esp), 17 if udp else 50)) + esp

    def one(data: bytes) -> None:
        take = Cursor(data)
        n = take.pick(len(kinds))
        mode = take.pick(4)
        seq = take.pick(41)
        sa = make(n, take.pick(2) == 1)
        body = take.rest()
        name, options = kinds[n]
        if mode == 0 or name == "ah":
            packets = [body]
        else:
            packets = [seal(name, options, sa.spi, seq, body)]
            if mode == 2:
                packets.append(packets[0])  # a replay
            if mode == 3:
                packets = [seal(name, options, sa.spi, s, body) for s in (seq + 40, seq, seq + 1, 2**31)]
        sad = SADatabase()
        sad.add(sa)
        for packet in packets:
            for call in (sa.unprotect, lambda p: sa.unprotect_datagram(outer(p, False)),
                         lambda p: sa.unprotect_datagram(outer(p, True)), sad.unprotect, sad.unprotect_datagram):
                try:
                    call(packet)
                except EspDrop:
                    pass

    seeds = []
    inner = bytes.fromhex("450000540001000040019f3e0a01000a0a02000a") + bytes(64)  # an echo request 10.1.0.10 -> 10.2.0.10
    for n in range(len(kinds)):
        for mode in (0, 1, 3):
            seeds.append(bytes([n, mode, 1, 1]) + inner + bytes([0, 1, 2, 2, 4]))  # padding 1 2, length 2, IPv4
    return one, (EspDrop,), seeds


def setup_tcp_stream():
    """The RFC 9329 stream framer (both sides of a stream) fed any octets in any pieces: it hands
    back frames that re-frame to what was read, or stops with a FramingError, never anything else;
    its IKE frames go on to the message parser, as in the daemon."""
    from lab.ike.errors import ParseError
    from lab.ike.message import Message
    from lab.esp.tcpencap import PREFIX, FramingError, StreamDecoder, frame_esp, frame_ike, frame_keepalive

    def one(data: bytes) -> None:
        take = Cursor(data)
        prefix = take.pick(2) == 1
        piece = 1 + take.pick(64)
        max_frame = (64, 1500, 10000)[take.pick(3)]
        stream = take.rest()
        decoder = StreamDecoder(expect_prefix=prefix, max_frame=max_frame)
        frames = []
        for at in range(0, len(stream), piece):
            frames += decoder.feed(stream[at:at + piece])
        decoder.close()
        again = b"".join(frame_ike(f.data) if f.kind == "ike" else frame_esp(f.data) if f.kind == "esp"
                         else frame_keepalive() for f in frames)
        start = len(PREFIX) if prefix else 0
        if stream[start:start + len(again)] != again or any(f.wire_length > max_frame for f in frames):
            raise AssertionError("a frame handed back is not what the stream held")
        if decoder.error is None and len(again) != max(0, len(stream) - start):
            raise AssertionError("the stream ended cleanly with octets unaccounted for")
        for frame in frames:
            if frame.kind == "ike":
                try:
                    Message.parse(frame.data)
                except ParseError:
                    pass
        if decoder.error is not None:
            raise decoder.error

    esp = struct.pack("!II", 0x1000, 1) + bytes(24)
    seeds = []
    for datagram in _handshake_datagrams()[:12]:
        seeds.append(bytes([1, 7, 2]) + PREFIX + frame_ike(datagram) + frame_esp(esp) + frame_keepalive())
        seeds.append(bytes([0, 63, 1]) + frame_ike(datagram))
        seeds.append(bytes([1, 5, 0]) + PREFIX + frame_esp(esp) + frame_ike(datagram))  # past a 64-octet limit
    return one, (FramingError,), seeds


def _workdir() -> Path:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    return Path(tempfile.mkdtemp(prefix="ipsec-lab-fuzz-", dir=base))


def setup_swanctl():
    from lab.conf.swanctl import ConfigError, parse_swanctl

    work = _workdir()
    (work / "include.conf").write_text("secrets { ike-x { secret = a-lab-only-psk } }\n")
    for sub in ("x509", "x509ca", "private"):
        (work / sub).mkdir()
    file = str(work / "swanctl.conf")

    def one(data: bytes) -> None:
        parse_swanctl(data.decode("utf-8", "replace"), file)

    seeds = [p.read_bytes() for p in sorted(REPO.glob("scenarios/*/hosts/*/swanctl*.conf"))]
    seeds += [p.read_bytes() for p in sorted((REPO / "tests/data/swanctl").rglob("*.conf"))]
    return one, (ConfigError,), seeds


def setup_scenario():
    from lab.net.scenario import ScenarioError, load

    work = _workdir() / "fuzzed"
    shutil.copytree(REPO / "scenarios/net2net-nat", work)
    for conf in REPO.glob("scenarios/*/hosts/*/*.conf"):
        target = work / "hosts" / conf.parent.name / conf.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(conf, target)
    file = work / "scenario.yaml"

    def one(data: bytes) -> None:
        file.write_bytes(data)
        load(work)

    seeds = [p.read_bytes() for p in sorted(REPO.glob("scenarios/*/scenario.yaml"))]
    return one, (ScenarioError,), seeds


def setup_decode():
    """Captures through decode_capture and analyze_capture (with the keys of the lab's own
    captures, so IKE and ESP decryption run): one input in eight as a whole file (pcap header
    and all, read by scapy), the rest as IP packets handed to the same loops as if read from a
    capture (scapy's own dissection is not what is tested, and it is slow)."""

    import lab.viz.analysis as analysis
    import lab.viz.decode as decode
    from lab.viz.decode import CaptureError
    from lab.viz.keys import load_keys

    work = _workdir()
    file = work / "capture.pcap"
    file.write_bytes(b"")
    keys = [load_keys(p) for p in sorted((REPO / "tests/data/forms").glob("*.keys"))]
    keys.append(load_keys(REPO / "tests/data/demo/keys"))
    read_frames = decode._read_frames
    given: list[bytes] = []

    def frames(path):
        if given:
            return ((n, 1_700_000_000.0 + n / 10, packet) for n, packet in enumerate(given, start=1))
        return read_frames(path)

    decode._read_frames = analysis._read_frames = frames

    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        whole = data[0] % 8 == 0
        key_tables = keys[data[1] % len(keys)]
        given.clear()
        if whole:
            file.write_bytes(data[2:])
        else:
            at = 2
            while at + 2 <= len(data):  # a 2-octet length (little-endian) before each packet
                length = struct.unpack_from("<H", data, at)[0] % 1601
                given.append(data[at + 2:at + 2 + length])
                at += 2 + length
        decode.decode_capture(file)
        analysis.analyze_capture(file, key_tables)

    seeds = []
    for capture in sorted((REPO / "tests/data").rglob("*.pcap")):
        seeds.append(b"\x00\x00" + capture.read_bytes()[:MAX_LEN["decode"] - 2])  # a whole file
        packets = _ip_packets(capture)
        for start in range(0, min(len(packets), 24), 6):
            body = b"".join(struct.pack("<H", len(p[:1600])) + p[:1600] for p in packets[start:start + 6])
            seeds.append(bytes([1, len(seeds) % len(keys)]) + body)
    return one, (CaptureError,), seeds


def _ip_packets(capture: Path) -> list[bytes]:
    from lab.viz.decode import _read_frames

    try:
        return [p for _, _, p in _read_frames(capture) if p is not None]
    except Exception:
        return []


# ================================================================ one target in this process


def _innermost_lab_frame(tb) -> str:
    where = "?"
    for frame in traceback.extract_tb(tb):
        if "/lab/" in frame.filename:
            where = f"{Path(frame.filename).relative_to(REPO)}:{frame.lineno}"
    return where


def worker(target: str, inputs: int, out: Path, timeout: int, seed: int) -> None:
    import atheris

    with atheris.instrument_imports(include=["lab"]):
        import lab.conf.swanctl  # noqa: F401
        import lab.esp  # noqa: F401
        import lab.esp.tcpencap  # noqa: F401
        import lab.ike.endpoint  # noqa: F401
        import lab.net.scenario  # noqa: F401
        import lab.viz.analysis  # noqa: F401
        import lab.viz.decode  # noqa: F401
    one, allowed, seeds = globals()[f"setup_{target}"]()
    out.mkdir(parents=True, exist_ok=True)
    corpus = _workdir() / "corpus"
    corpus.mkdir()
    for seed_input in seeds:
        seed_input = seed_input[:MAX_LEN[target]]
        (corpus / hashlib.sha1(seed_input).hexdigest()).write_bytes(seed_input)
    seen: set[tuple[str, str]] = set()

    def test_one_input(data: bytes) -> None:
        try:
            one(data)
        except allowed:
            pass
        except Exception as err:  # anything else is a crash: kept, and the fuzzing goes on
            key = (type(err).__name__, _innermost_lab_frame(err.__traceback__))
            if key in seen:
                return
            seen.add(key)
            name = f"crash-{hashlib.sha1(data).hexdigest()}"
            (out / name).write_bytes(data)
            (out / f"{name}.txt").write_text("".join(traceback.format_exception(err)))
            print(f"CRASH {target}: {key[0]} at {key[1]}: {err!s:.200} (input {out / name})", file=sys.stderr,
                  flush=True)

    argv = [sys.argv[0], str(corpus), f"-runs={inputs}", f"-max_len={MAX_LEN[target]}", f"-timeout={timeout}",
            f"-seed={seed}", f"-artifact_prefix={out}/", "-print_final_stats=1", "-rss_limit_mb=4096"]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


# ================================================================ the runs, side by side


def run_target(target: str, inputs: int, out: Path, timeout: int, seed: int) -> dict:
    started = time.monotonic()
    target_out = out / target
    if target_out.exists():
        shutil.rmtree(target_out)
    proc = subprocess.run([sys.executable, __file__, "--worker", target, "--inputs", str(inputs), "--out",
                           str(target_out), "--timeout", str(timeout), "--seed", str(seed)],
                          capture_output=True, text=True, cwd=REPO)
    log = proc.stderr
    runs = re.findall(r"Done (\d+) runs", log)
    status = re.findall(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)", log)
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", log))
    crashes = [line for line in log.splitlines() if line.startswith("CRASH ")]
    hangs = sorted(p.name for p in target_out.glob("timeout-*")) if target_out.exists() else []
    fatal = sorted(p.name for p in target_out.glob("oom-*")) if target_out.exists() else []
    done = int(runs[-1]) if runs else int(stats.get("number_of_executed_units", 0) or (status[-1][0] if status else 0))
    result = {"target": target, "inputs": done, "cov": int(status[-1][1]) if status else 0,
              "ft": int(status[-1][2]) if status else 0, "crashes": len(crashes) + len(hangs) + len(fatal),
              "details": crashes + [f"hang: {h}" for h in hangs] + [f"out of memory: {f}" for f in fatal],
              "seconds": round(time.monotonic() - started, 1), "exit": proc.returncode}
    if proc.returncode not in (0,) and not (hangs or fatal or crashes):
        result["details"].append(f"the fuzzer exited with {proc.returncode}: " + "\n".join(log.splitlines()[-15:]))
        result["crashes"] += 1
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per target (default 100000)")
    parser.add_argument("--target", action="append", choices=TARGETS, help="one target (repeatable; default all)")
    parser.add_argument("--out", default=str(REPO / "out" / "fuzz"), help="crashes go to OUT/<target>/")
    parser.add_argument("--timeout", type=int, default=20, help="seconds an input may take before it is a hang")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's seed (a run is repeatable)")
    parser.add_argument("--json", action="store_true", help="one JSON object per target")
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--worker", choices=TARGETS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.list:
        for name in TARGETS:
            doc = (globals()[f"setup_{name}"].__doc__ or "").strip().split("\n")[0]
            print(f"{name:14} {doc}")
        return 0
    if args.worker:
        worker(args.worker, args.inputs, Path(args.out), args.timeout, args.seed)
        return 0
    total_crashes = 0
    for target in args.target or TARGETS:
        result = run_target(target, args.inputs, Path(args.out), args.timeout, args.seed)
        total_crashes += result["crashes"]
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(f"{target}: {result['inputs']} inputs, coverage {result['cov']} edges / {result['ft']} features, "
                  f"{result['crashes']} crashes ({result['seconds']:g} s)", flush=True)
            for line in result["details"]:
                print(f"  {line}", flush=True)
    return 1 if total_crashes else 0


if __name__ == "__main__":
    sys.exit(main())
