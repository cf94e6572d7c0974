"""IKEv2 message codec: round trips, total parsing, RFC 7296 §2.5 unknown payloads."""
from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.ike import payloads as p
from lab.ike.const import ExchangeType, NotifyType, PayloadType
from lab.ike.errors import ParseError
from lab.ike.message import Datagram, Message, classify_udp, frame_udp

from .ike_strategies import messages, plain_payloads, encrypted_payloads



def many(n: int):
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_error(data: bytes) -> Message | None:
    try:
        return Message.parse(data)
    except ParseError as err:
        assert 0 <= err.offset <= len(data) + 0x10000, err
        assert err.reason
        return None


@many(2000)
@given(plain_payloads | encrypted_payloads)
def test_every_payload_type_round_trips(payload):
    message = Message(b"\x01" * 8, b"\x02" * 8, ExchangeType.IKE_AUTH, 1, True, False, [payload])
    assert Message.parse(message.serialize()) == message


@many(3000)
@given(messages)
def test_message_round_trip(message):
    data = message.serialize()
    again = Message.parse(data)
    assert again == message
    assert again.serialize() == data


@many(10000)
@given(messages, st.data())
def test_parse_is_total_on_mutated_messages(message, data):
    wire = bytearray(message.serialize())
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        where = data.draw(st.integers(0, max(len(wire) - 1, 0)))
        if kind == "flip" and wire:
            wire[where] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and wire:
            wire[where] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del wire[where:]
        elif kind == "insert":
            wire[where:where] = data.draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and wire:
            del wire[where:where + data.draw(st.integers(1, 8))]
    # keep the header's length right half of the time so the payload parsers get exercised
    if len(wire) >= 28 and data.draw(st.booleans()):
        wire[24:28] = len(wire).to_bytes(4, "big")
    _parse_or_error(bytes(wire))


@many(10000)
@given(st.binary(max_size=300))
def test_parse_is_total_on_random_bytes(raw):
    wire = bytearray(raw)
    if len(wire) >= 28:
        wire[17] = 0x20
        wire[24:28] = len(wire).to_bytes(4, "big")
    _parse_or_error(bytes(wire))


def test_parse_error_names_offset_and_reason():
    message = Message(bytes(8), bytes(8), ExchangeType.IKE_SA_INIT, 0, True, False,
                      [p.Nonce(data=b"n" * 32), p.KE(dh_group=31, data=b"k" * 32)])
    wire = bytearray(message.serialize())
    wire[28 + 2:28 + 4] = (0xFFFF).to_bytes(2, "big")  # Nonce length runs past the end
    with pytest.raises(ParseError) as err:
        Message.parse(bytes(wire))
    assert err.value.offset == 30
    assert "runs past the end" in err.value.reason
    with pytest.raises(ParseError, match="offset 10: IKE header needs 28 octets"):
        Message.parse(bytes(10))
    wire = bytearray(message.serialize())
    wire[17] = 0x30
    with pytest.raises(ParseError, match="major version 3"):
        Message.parse(bytes(wire))


def test_proposal_substructure_errors():
    sa = p.SA(proposals=[p.Proposal(1, 1, b"", [p.Transform(1, 12), p.Transform(2, 5)])])
    body = bytearray(sa.body())
    body[7] = 3  # transform count says 3, holds 2
    with pytest.raises(ParseError, match="says 3 transforms, holds 2"):
        p.SA.parse_body(bytes(body), 0)
    body = bytearray(sa.body())
    body[0] = 2  # only proposal marked "more follow"
    with pytest.raises(ParseError, match="last proposal not marked last"):
        p.SA.parse_body(bytes(body), 0)


def test_unknown_payloads_follow_critical_bit():
    # RFC 7296 §2.5: unknown non-critical payloads are skipped, critical ones reject the message
    message = Message(bytes(8), bytes(8), ExchangeType.INFORMATIONAL, 2, True, False, [
        p.UnknownPayload(unknown_type=200, data=b"ignored"),
        p.Notify(notify_type=NotifyType.INITIAL_CONTACT),
        p.UnknownPayload(unknown_type=201, data=b"must-understand", critical=True),
    ])
    parsed = Message.parse(message.serialize())
    assert parsed.unsupported_critical() == [201]
    assert parsed.get(p.Notify).notify_type == NotifyType.INITIAL_CONTACT
    assert Message.parse(Message(bytes(8), bytes(8), 37, 2, True, False,
                                 [p.UnknownPayload(unknown_type=200)]).serialize()).unsupported_critical() == []


def test_sk_payload_next_field_names_inner_first_payload():
    message = Message(b"i" * 8, b"r" * 8, ExchangeType.IKE_AUTH, 1, True, False,
                      [p.SK(inner_first=PayloadType.IDi, data=b"\x00" * 40)])
    wire = message.serialize()
    assert wire[16] == PayloadType.SK
    assert wire[28] == PayloadType.IDi  # §3.14: SK's Next Payload is the first inner payload
    with pytest.raises(ValueError, match="must be the last"):
        Message(b"i" * 8, b"r" * 8, 35, 1, True, False,
                [p.SK(inner_first=35, data=b""), p.Nonce(data=b"x")]).serialize()
    # bytes after SK are a parse error, not a silently ignored tail
    bad = bytearray(wire + b"\x00" * 4)
    bad[24:28] = len(bad).to_bytes(4, "big")
    with pytest.raises(ParseError, match="follow the Encrypted payload"):
        Message.parse(bytes(bad))


def test_traffic_selector_text_and_wire():
    ts = p.TrafficSelector(ipaddress.ip_address("10.1.0.0"), ipaddress.ip_address("10.1.0.255"))
    assert str(ts) == "10.1.0.0/24"
    assert ts.serialize().hex() == "07000010" "0000ffff" "0a010000" "0a0100ff"
    single = p.TrafficSelector(ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.1"), 17, 500, 500)
    assert str(single) == "192.0.2.1[17/500]"


def test_udp_4500_demultiplexing():
    # RFC 3948 §2.2: keepalive, non-ESP marker, ESP
    assert classify_udp(4500, b"\xff") == (Datagram.KEEPALIVE, b"\xff")
    assert classify_udp(4500, b"\x00\x00\x00\x00IKE") == (Datagram.IKE, b"IKE")
    assert classify_udp(4500, b"\x12\x34\x56\x78esp") == (Datagram.ESP, b"\x12\x34\x56\x78esp")
    assert classify_udp(500, b"\x00\x00\x00\x00x") == (Datagram.IKE, b"\x00\x00\x00\x00x")
    assert frame_udp(4500, b"m") == b"\x00\x00\x00\x00m" and frame_udp(500, b"m") == b"m"


def test_summary_line():
    message = Message(bytes(8), bytes(8), ExchangeType.IKE_SA_INIT, 0, True, False, [
        p.SA(), p.KE(dh_group=31, data=b"k" * 32), p.Nonce(data=b"n" * 32),
        p.Notify(notify_type=NotifyType.NAT_DETECTION_SOURCE_IP, data=bytes(20))])
    assert message.summary() == "IKE_SA_INIT request 0 [ SA KE Ni N(NAT_DETECTION_SOURCE_IP) ]"
