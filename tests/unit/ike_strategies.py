"""Hypothesis strategies producing well-formed IKEv2 payloads and messages."""
from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from lab.ike import payloads as p
from lab.ike.message import Message
from lab.ike.const import ExchangeType, NotifyType, TransformAttr, TransformType

blob = st.binary(max_size=64)
u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)

attributes = st.one_of(
    st.builds(p.TransformAttribute, st.integers(0, 0x7FFF), u16),
    st.builds(p.TransformAttribute, st.integers(0, 0x7FFF), st.binary(max_size=16)),
)
transforms = st.builds(
    p.Transform,
    st.sampled_from(list(TransformType)) | u8,
    u16,
    st.lists(attributes, max_size=2) | st.just([p.TransformAttribute(TransformAttr.KEY_LENGTH, 128)]),
)
proposals = st.builds(p.Proposal, u8, u8, st.sampled_from([b"", b"\x01\x02\x03\x04", bytes(8)]),
                      st.lists(transforms, max_size=5))

ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
selectors = st.one_of(
    st.builds(p.TrafficSelector, ipv4, ipv4, u8, u16, u16),
    st.builds(p.TrafficSelector, ipv6, ipv6, u8, u16, u16),
    st.builds(p.RawTrafficSelector, st.integers(9, 255), u8, st.binary(max_size=20)),
)


def _eap(code: int, ident: int, data: bytes) -> p.EAP:
    return p.EAP(message=bytes([code, ident]) + (4 + len(data)).to_bytes(2, "big") + data)


crit = st.booleans()
plain_payloads = st.one_of(
    st.builds(p.SA, proposals=st.lists(proposals, max_size=3), critical=crit),
    st.builds(p.KE, dh_group=u16, data=blob, critical=crit),
    st.builds(p.IDi, id_type=u8, data=blob, critical=crit),
    st.builds(p.IDr, id_type=u8, data=blob, critical=crit),
    st.builds(p.CERT, encoding=u8, data=blob, critical=crit),
    st.builds(p.CERTREQ, encoding=u8, data=blob, critical=crit),
    st.builds(p.AUTH, method=u8, data=blob, critical=crit),
    st.builds(p.Nonce, data=blob, critical=crit),
    st.builds(p.Notify, notify_type=st.sampled_from(list(NotifyType)) | u16, data=blob, protocol_id=u8,
              spi=st.sampled_from([b"", b"\xaa\xbb\xcc\xdd", bytes(8)]), critical=crit),
    st.builds(p.Delete, protocol_id=st.sampled_from([2, 3]),
              spis=st.lists(st.binary(min_size=4, max_size=4), max_size=4), critical=crit),
    st.builds(p.Delete, protocol_id=st.just(1), spis=st.just([]), critical=crit),
    st.builds(p.VendorID, data=blob, critical=crit),
    st.builds(p.TSi, selectors=st.lists(selectors, max_size=3), critical=crit),
    st.builds(p.TSr, selectors=st.lists(selectors, max_size=3), critical=crit),
    st.builds(p.CP, cfg_type=u8, attributes=st.lists(st.builds(p.CfgAttribute, st.integers(0, 0x7FFF), st.binary(max_size=16)), max_size=4), critical=crit),
    st.builds(_eap, u8, u8, st.binary(max_size=32)),
    st.builds(p.UnknownPayload, unknown_type=st.integers(1, 32) | st.integers(55, 255), data=blob, critical=crit),
)
encrypted_payloads = st.one_of(
    st.builds(p.SK, inner_first=u8, data=blob),
    st.builds(p.SKF, fragment_number=u16, total_fragments=u16, inner_first=u8, data=blob),
)


@st.composite
def payload_chains(draw):
    chain = draw(st.lists(plain_payloads, max_size=6))
    if draw(st.booleans()):
        chain.append(draw(encrypted_payloads))
    return chain


messages = st.builds(
    lambda spi_i, spi_r, exchange, mid, i, r, v, chain: Message(spi_i, spi_r, exchange, mid, i, r, chain, v),
    st.binary(min_size=8, max_size=8), st.binary(min_size=8, max_size=8),
    st.sampled_from(list(ExchangeType)) | u8, st.integers(0, 2**32 - 1), st.booleans(), st.booleans(), st.booleans(),
    payload_chains(),
)
