"""`ipsec-lab decode` on synthetic captures (the strongSwan capture is in tests/interop)."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, Ether
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, wrpcap

from lab.cli import main
from lab.ike.message import frame_udp
from lab.viz.decode import decode_capture, decode_pcap

from .ike_samples import sample_messages

ETH = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def _frames():
    messages = sample_messages()
    frames = []
    for index, message in enumerate(messages):
        port = 500 if index < 2 else 4500
        frames.append(Ether(**ETH) / IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=port, dport=port)
                      / Raw(frame_udp(port, message.serialize())))
    frames.append(Ether(**ETH) / IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=4500, dport=4500) / Raw(b"\xff"))
    frames.append(Ether(**ETH) / IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=4500, dport=4500)
                  / Raw(b"\xc1\xa2\xb3\xd4" + bytes(60)))
    # an IKE_AUTH larger than the MTU, in IP fragments (what RFC 7383 exists to avoid)
    big = IP(src="192.0.2.1", dst="198.51.100.7", id=77) / UDP(sport=500, dport=500) / Raw(messages[2].serialize())
    frames += [Ether(**ETH) / piece for piece in fragment(big, fragsize=256)]
    frames.append(Ether(**ETH) / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=61000, dport=500)
                  / Raw(messages[0].serialize()))
    frames.append(Ether(**ETH) / IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=500, dport=500)
                  / Raw(messages[0].serialize()[:40]))  # truncated
    return messages, frames


def test_decode_lists_every_ike_message(tmp_path):
    messages, frames = _frames()
    pcap = tmp_path / "mixed.pcap"
    wrpcap(str(pcap), frames)
    summary = decode_capture(pcap)
    decoded = summary.messages
    assert summary.keepalives == 1 and summary.esp_in_udp == 1
    assert len(decoded) == len(messages) + 3
    for got, sent in zip(decoded, messages):
        assert got.error is None
        assert (got.exchange, got.message_id, got.is_initiator, got.is_response) == (
            sent.exchange, sent.message_id, sent.is_initiator, sent.is_response)
        assert got.spi_i == sent.spi_i.hex() and got.spi_r == sent.spi_r.hex()
    assert decoded[0].payloads[:3] == ["SA", "KE", "Ni"]
    assert decoded[1].payloads == ["SA", "KE", "Nr", "CERTREQ"]
    assert decoded[5].payloads == ["SK(40 octets)"]
    assert decoded[6].payloads == ["SKF(1/2, 88 octets)"]
    reassembled, ipv6, truncated = decoded[-3:]
    assert reassembled.exchange_name == "IKE_AUTH" and reassembled.error is None
    assert reassembled.frame == len(frames) - 2  # reported at its last fragment, as tshark does
    assert (ipv6.src, ipv6.sport, ipv6.exchange_name) == ("2001:db8::1", 61000, "IKE_SA_INIT")
    assert truncated.error and "offset" in truncated.error


def test_decode_reads_pcapng_and_linux_cooked(tmp_path):
    messages = sample_messages()
    pcapng = tmp_path / "cooked.pcapng"
    with PcapNgWriter(str(pcapng)) as writer:
        for message in messages[:2]:
            writer.write(CookedLinux() / IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=500, dport=500)
                         / Raw(message.serialize()))
    assert [m.exchange_name for m in decode_pcap(pcapng)] == ["IKE_SA_INIT", "IKE_SA_INIT"]


def test_decode_cli_text_json_and_errors(tmp_path, capsys):
    _, frames = _frames()
    pcap = tmp_path / "mixed.pcap"
    wrpcap(str(pcap), frames)
    assert main(["decode", str(pcap)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("#1 ") and "IKE_SA_INIT initiator request mid=0" in out[0]
    assert "192.0.2.1:500 -> 198.51.100.7:500" in out[0]
    assert out[-1] == "12 IKE messages, 1 ESP-in-UDP packets, 1 NAT-keepalives, 1 not valid IKE"
    assert main(["decode", "--json", str(pcap)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[2]["payloads"][0] == "IDi" and rows[2]["dport"] == 4500
    assert main(["decode", str(tmp_path / "missing.pcap")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "text.pcap").write_text("hello")
    assert main(["decode", str(tmp_path / "text.pcap")]) == 2
    assert "not a pcap or pcapng capture" in capsys.readouterr().err


def test_decode_matches_tshark_on_synthetic_capture(tmp_path):
    if shutil.which("tshark") is None:
        pytest.fail("tshark is missing: install Debian's tshark package (make setup does)")
    _, frames = _frames()
    pcap = tmp_path / "mixed.pcap"
    wrpcap(str(pcap), frames[:-1])  # tshark and we both reject the truncated one, differently
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", "isakmp", "-T", "fields", "-e", "frame.number",
                          "-e", "isakmp.ispi", "-e", "isakmp.rspi", "-e", "isakmp.exchangetype",
                          "-e", "isakmp.messageid"], capture_output=True, text=True, check=True).stdout
    theirs = [tuple(line.split("\t")) for line in out.strip().splitlines()]
    ours = [(str(m.frame), m.spi_i, m.spi_r, str(m.exchange), f"0x{m.message_id:08x}") for m in decode_pcap(pcap)]
    assert ours == theirs
