"""lab.ike.radius against a real conversation with Debian's FreeRADIUS 3.2
(tests/data/radius/freeradius-eap-mschapv2.json, made by tests/data/radius/capture.py: our
EAP-MSCHAPv2 peer, FreeRADIUS as the EAP server) and against answers that lie."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
from pathlib import Path

import pytest
from pyrad.packet import AuthPacket

from lab.ike import radius
from lab.ike.eap import EapPacket

DATA = json.loads((Path(__file__).parents[1] / "data" / "radius" / "freeradius-eap-mschapv2.json").read_text())
SECRET = DATA["secret"].encode()
EXCHANGES = [(bytes.fromhex(e["request"]), bytes.fromhex(e["reply"])) for e in DATA["exchanges"]]
REQUEST, ACCEPT = EXCHANGES[-1]


def attributes_of(raw: bytes) -> list[tuple[int, bytes]]:
    out, at = [], 20
    while at < len(raw):
        kind, length = raw[at], raw[at + 1]
        out.append((kind, raw[at + 2:at + length]))
        at += length
    return out


def build(code: int, identifier: int, attrs: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes([k, len(v) + 2]) + v for k, v in attrs)
    return struct.pack("!BBH", code, identifier, 20 + len(body)) + bytes(16) + body


def sign(raw: bytes, request: bytes, secret: bytes = SECRET, ma_secret: bytes | None = None) -> bytes:
    """An answer signed as a server would: Message-Authenticator (RFC 3579 §3.2) with
    `ma_secret`, then the Response Authenticator (RFC 2865 §3) with `secret`."""
    request_auth = request[4:20]
    attrs = attributes_of(raw)
    if any(k == radius.MESSAGE_AUTHENTICATOR for k, _ in attrs):
        zeroed = [(k, bytes(16) if k == radius.MESSAGE_AUTHENTICATOR else v) for k, v in attrs]
        blank = build(raw[0], raw[1], zeroed)
        mac = hmac.new(ma_secret or secret, blank[:4] + request_auth + blank[20:], "md5").digest()
        attrs = [(k, mac if k == radius.MESSAGE_AUTHENTICATOR else v) for k, v in attrs]
    unsigned = build(raw[0], raw[1], attrs)
    digest = hashlib.md5(unsigned[:4] + request_auth + unsigned[20:] + secret).digest()
    return unsigned[:4] + digest + unsigned[20:]


def test_freeradius_conversation_parses_and_hands_out_the_msk_address_and_class():
    codes = []
    for request, answer in EXCHANGES:
        reply = radius.parse_reply(answer, request, SECRET)
        codes.append(reply.code)
        assert reply.eap is not None and EapPacket.parse(reply.eap)
        if reply.code == radius.ACCESS_CHALLENGE:
            assert reply.state  # RFC 2865 §5.24: the next request echoes it
    assert codes == [radius.ACCESS_CHALLENGE] * (len(EXCHANGES) - 1) + [radius.ACCESS_ACCEPT]
    accept = radius.parse_reply(ACCEPT, REQUEST, SECRET)
    # the MS-MPPE keys FreeRADIUS sent, decrypted, are the keys our EAP-MSCHAPv2 peer derived
    # (RFC 3079 §3.4): Recv-Key then Send-Key
    assert accept.msk == bytes.fromhex(DATA["peer_msk"])[:32]
    assert len(accept.recv_key) == 16 and len(accept.send_key) == 16
    assert accept.framed_ip == "10.3.0.7"
    assert accept.classes == [b"staff"]


def test_the_sign_helper_reproduces_freeradius():
    # the forged answers below are built like FreeRADIUS's, so only what a test changes differs
    assert sign(ACCEPT, REQUEST) == ACCEPT


def test_a_wrong_message_authenticator_is_refused():
    # Response Authenticator right, Message-Authenticator made with another secret
    forged = sign(ACCEPT, REQUEST, ma_secret=b"not-the-secret")
    with pytest.raises(radius.RadiusError, match="Message-Authenticator does not match"):
        radius.parse_reply(forged, REQUEST, SECRET)


def test_eap_message_without_message_authenticator_is_refused():
    attrs = [(k, v) for k, v in attributes_of(ACCEPT) if k != radius.MESSAGE_AUTHENTICATOR]
    with pytest.raises(radius.RadiusError, match="without Message-Authenticator"):
        radius.parse_reply(sign(build(ACCEPT[0], ACCEPT[1], attrs), REQUEST), REQUEST, SECRET)


def test_a_wrong_response_authenticator_is_refused():
    forged = ACCEPT[:4] + bytes([ACCEPT[4] ^ 1]) + ACCEPT[5:]
    with pytest.raises(radius.RadiusError, match="Response Authenticator"):
        radius.parse_reply(forged, REQUEST, SECRET)


def test_another_secret_is_refused():
    with pytest.raises(radius.RadiusError, match="another shared secret"):
        radius.parse_reply(ACCEPT, REQUEST, b"other")


def test_an_answer_to_another_request_is_refused():
    other_request, _ = EXCHANGES[0]
    with pytest.raises(radius.RadiusError):
        radius.parse_reply(ACCEPT, other_request, SECRET)


@pytest.mark.parametrize("cut", [1, 5, 30])
def test_truncated_answers_are_refused(cut):
    short = ACCEPT[:-cut]
    fixed_length = short[:2] + struct.pack("!H", len(short)) + short[4:]
    for raw in (short, fixed_length):
        with pytest.raises(radius.RadiusError):
            radius.parse_reply(raw, REQUEST, SECRET)


def test_an_attribute_length_past_the_end_is_refused():
    attrs = attributes_of(ACCEPT)
    raw = build(ACCEPT[0], ACCEPT[1], attrs)
    raw = raw[:20] + bytes([raw[20], 250]) + raw[22:]  # first attribute claims 250 octets
    with pytest.raises(radius.RadiusError, match="truncated"):
        radius.parse_reply(sign(ACCEPT, REQUEST)[:4] + raw[4:], REQUEST, SECRET)


def test_a_truncated_vendor_attribute_is_refused():
    attrs = [(k, v[:-3] if k == radius.VENDOR_SPECIFIC else v) for k, v in attributes_of(ACCEPT)]
    vsa = [v for k, v in attributes_of(ACCEPT) if k == radius.VENDOR_SPECIFIC]
    assert vsa
    with pytest.raises(radius.RadiusError, match="truncated sub-attribute|MS-MPPE"):
        radius.parse_reply(sign(build(ACCEPT[0], ACCEPT[1], attrs), REQUEST), REQUEST, SECRET)


def test_an_eap_message_shorter_than_its_packet_is_refused():
    attrs = [(k, v[:3] if k == radius.EAP_MESSAGE else v) for k, v in attributes_of(ACCEPT)]
    with pytest.raises(radius.RadiusError, match="EAP"):
        radius.parse_reply(sign(build(ACCEPT[0], ACCEPT[1], attrs), REQUEST), REQUEST, SECRET)


def rfc2548_encrypt(key: bytes, secret: bytes, request_authenticator: bytes, salt: bytes) -> bytes:
    # RFC 2548 §2.4.2, written out here apart from pyrad: P = len(key) + key + zero padding,
    # b(1) = MD5(S + R + A), c(i) = p(i) xor b(i), b(i) = MD5(S + c(i-1))
    plain = bytes([len(key)]) + key
    plain += bytes(-len(plain) % 16)
    out, last = b"", request_authenticator + salt
    for i in range(0, len(plain), 16):
        b = hashlib.md5(secret + last).digest()
        c = bytes(x ^ y for x, y in zip(plain[i:i + 16], b))
        out += c
        last = c
    return salt + out


@pytest.mark.parametrize("size", [16, 32, 40])
def test_mppe_key_decryption_against_the_rfc_construction(size):
    key, authenticator = os.urandom(size), os.urandom(16)
    value = rfc2548_encrypt(key, SECRET, authenticator, b"\x81\x23")
    assert radius.decrypt_mppe_key(value, SECRET, authenticator) == key
    try:  # another secret: refused by the length octet, or at least not the key
        assert radius.decrypt_mppe_key(value, b"x", authenticator) != key
    except radius.RadiusError:
        pass


def test_mppe_key_refusals():
    authenticator = os.urandom(16)
    with pytest.raises(radius.RadiusError, match="high bit"):
        radius.decrypt_mppe_key(rfc2548_encrypt(b"k" * 16, SECRET, authenticator, b"\x01\x23"), SECRET,
                                authenticator)
    with pytest.raises(radius.RadiusError, match="16-octet blocks"):
        radius.decrypt_mppe_key(b"\x80\x01" + bytes(15), SECRET, authenticator)
    # a length octet larger than the blocks: what a wrong secret usually gives
    value = rfc2548_encrypt(bytes(0), SECRET, authenticator, b"\x80\x01")
    forged = value[:2] + bytes([value[2] ^ 0xff]) + value[3:]
    with pytest.raises(radius.RadiusError, match="wrong shared secret"):
        radius.decrypt_mppe_key(forged, SECRET, authenticator)


def test_our_request_is_what_freeradius_took():
    # the same builder made the requests FreeRADIUS answered; FreeRADIUS drops a request with a
    # bad Message-Authenticator (RFC 3579 §3.2), and so does pyrad's check of it
    for request, _ in EXCHANGES:
        packet = AuthPacket(secret=SECRET, packet=request)
        assert packet.verify_message_authenticator()
        assert packet[radius.USER_NAME] == [DATA["user"].encode()]


def test_a_long_eap_packet_goes_in_consecutive_eap_messages():
    eap = EapPacket(2, 7, 13, os.urandom(600)).serialize()
    assert [len(p) for p in radius.split_eap(eap)] == [253, 253, 99]
    raw = radius.access_request(SECRET, 9, os.urandom(16), b"carol", eap, state=b"st")
    kinds = [k for k, _ in attributes_of(raw)]
    first = kinds.index(radius.EAP_MESSAGE)
    assert kinds[first:first + 3] == [radius.EAP_MESSAGE] * 3  # RFC 3579 §3.1: consecutive
    assert b"".join(v for k, v in attributes_of(raw) if k == radius.EAP_MESSAGE) == eap
    assert AuthPacket(secret=SECRET, packet=raw).verify_message_authenticator()


def test_accounting_stop_carries_counts_and_a_request_authenticator_over_zeros():
    raw = radius.accounting_request(SECRET, 7, radius.ACCT_STOP, b"sess-1", b"carol", framed_ip="10.3.0.7",
                                    classes=[b"staff"], input_octets=5 * 2**32 + 12, output_octets=99,
                                    input_packets=3, output_packets=4, session_time=61)
    attrs = dict(attributes_of(raw))
    assert raw[0] == radius.ACCOUNTING_REQUEST and raw[1] == 7
    assert attrs[radius.ACCT_STATUS_TYPE] == struct.pack("!I", 2)
    assert attrs[radius.ACCT_INPUT_OCTETS] == struct.pack("!I", 12)
    assert attrs[radius.ACCT_INPUT_GIGAWORDS] == struct.pack("!I", 5)  # RFC 2869 §5.1
    assert attrs[radius.ACCT_OUTPUT_OCTETS] == struct.pack("!I", 99)
    assert attrs[radius.ACCT_SESSION_TIME] == struct.pack("!I", 61)
    assert attrs[radius.CLASS] == b"staff" and attrs[radius.FRAMED_IP_ADDRESS] == bytes([10, 3, 0, 7])
    # RFC 2866 §3, computed here apart from pyrad
    assert raw[4:20] == hashlib.md5(raw[:4] + bytes(16) + raw[20:] + SECRET).digest()
    start = radius.accounting_request(SECRET, 8, radius.ACCT_START, b"sess-1", b"carol")
    assert radius.ACCT_INPUT_OCTETS not in dict(attributes_of(start))


def test_accounting_response_checked():
    request = radius.accounting_request(SECRET, 7, radius.ACCT_START, b"s", b"carol")
    header = bytes([radius.ACCOUNTING_RESPONSE, 7, 0, 20])
    good = header + hashlib.md5(header + request[4:20] + SECRET).digest()
    radius.check_accounting_response(good, request, SECRET)
    with pytest.raises(radius.RadiusError, match="Response Authenticator"):
        radius.check_accounting_response(good, request, b"other")
    with pytest.raises(radius.RadiusError, match="identifier"):
        radius.check_accounting_response(good[:1] + b"\x08" + good[2:], request, SECRET)
    with pytest.raises(radius.RadiusError, match="not Accounting-Response"):
        radius.check_accounting_response(b"\x02" + good[1:], request, SECRET)
