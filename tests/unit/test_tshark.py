"""Our messages, written to a pcap on UDP 500 and UDP 4500, must dissect cleanly in tshark."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from lab.ike.message import Message, frame_udp
from lab.ike.payloads import PAYLOAD_CLASSES

from .ike_samples import sample_messages

TSHARK = shutil.which("tshark")


def _tshark(*args: str) -> str:
    if TSHARK is None:
        pytest.fail("tshark is missing: install Debian's tshark package (make setup does)")
    return subprocess.run([TSHARK, *args], check=True, capture_output=True, text=True, timeout=120).stdout


def test_samples_cover_every_payload_type():
    seen = {type(pl) for m in sample_messages() for pl in m.payloads}
    assert set(PAYLOAD_CLASSES.values()) <= seen


@pytest.mark.parametrize("port", [500, 4500])
def test_tshark_dissects_every_payload_without_errors(tmp_path, port):
    messages = sample_messages()
    frames = []
    for message in messages:
        src, dst = ("192.0.2.1", "192.0.2.2") if message.is_initiator else ("192.0.2.2", "192.0.2.1")
        frames.append(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src, dst=dst) / UDP(sport=port, dport=port)
                      / Raw(frame_udp(port, message.serialize())))
    pcap = tmp_path / f"every-payload-{port}.pcap"
    wrpcap(str(pcap), frames)

    verbose = _tshark("-r", str(pcap), "-V")
    assert "Malformed" not in verbose
    expert = _tshark("-r", str(pcap), "-q", "-z", "expert,error")
    assert "Errors (" not in expert, expert

    fields = _tshark("-r", str(pcap), "-T", "fields", "-e", "isakmp.exchangetype", "-e", "isakmp.messageid",
                     "-e", "isakmp.typepayload")
    rows = [line.split("\t") for line in fields.strip().splitlines()]
    assert len(rows) == len(messages)
    for row, message in zip(rows, messages):
        assert int(row[0]) == message.exchange
        assert int(row[1], 0) == message.message_id
        # tshark's payload types, in order, equal our chain (SK/SKF contents are opaque to it)
        # (tshark also lists proposal (2) and transform (3) substructures in this field)
        assert [int(t) for t in row[2].split(",") if int(t) not in (2, 3)] == [pl.type_id for pl in message.payloads]
    # and what tshark saw is what we parse back
    for message in messages:
        assert Message.parse(message.serialize()) == message


def test_tshark_dissects_an_ml_kem_ike_sa_init(tmp_path):
    """IKE_SA_INIT with ML-KEM-768 (draft-ietf-ipsecme-ikev2-mlkem) from two endpoints in memory:
    the 1184-octet encapsulation key and 1088-octet ciphertext dissect without errors."""
    from lab.ike.const import ExchangeType
    from lab.ike.memnet import make_net, pair_configs
    from lab.ike.message import classify_udp

    net = make_net(*pair_configs(proposals="aes256gcm16-prfsha384-mlkem768"))
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    frames = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=d.src[0], dst=d.dst[0])
              / UDP(sport=d.src[1], dport=d.dst[1]) / Raw(d.data)
              for _, _, d in net.log if Message.parse(classify_udp(d.dst[1], d.data)[1]).exchange
              == ExchangeType.IKE_SA_INIT]
    assert len(frames) == 2
    pcap = tmp_path / "mlkem-ike-sa-init.pcap"
    wrpcap(str(pcap), frames)
    assert "Malformed" not in _tshark("-r", str(pcap), "-V")
    assert "Errors (" not in _tshark("-r", str(pcap), "-q", "-z", "expert,error")
    fields = _tshark("-r", str(pcap), "-T", "fields", "-e", "isakmp.key_exchange.dh_group",
                     "-e", "isakmp.key_exchange.data")
    rows = [line.split("\t") for line in fields.strip().splitlines()]
    assert [(int(group), len(data) // 2) for group, data in rows] == [(36, 1184), (36, 1088)]
