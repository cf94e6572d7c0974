"""EAP-TLS framing (RFC 5216 §2.1.5, §3.1) between our peer and server methods driven directly:
a flight too long for one packet goes out in fragments; the first carries the L flag and the
flight's whole TLS length, every one but the last the M flag, and the other side acknowledges
each with an empty packet. The TLS records are read back with pyOpenSSL's own parser by the
methods themselves (a handshake that completes and yields the same MSK on both sides)."""
from __future__ import annotations

import struct

from lab.ike.eap.tls import FLAG_L, FLAG_M, FLAG_S, FRAGMENT_SIZE, TlsPeer, TlsServer
from lab.ike.memnet import make_pki, make_user_cert


def _methods():
    pki = make_pki("ecdsa", chain_padding=3000)  # an intermediate of over 3000 octets: several fragments
    user_cert, user_key = make_user_cert(pki)
    server_cert, server_key = pki["gwb.lab"]
    peer = TlsPeer(user_cert, [pki["intermediate"]], user_key, lambda chain: None)
    server = TlsServer(server_cert, [pki["intermediate"]], server_key, lambda chain: None)
    return peer, server


def _flights(packets: list[bytes]) -> list[list[bytes]]:
    """The packets of one side with data, grouped into flights (a flight ends without M)."""
    flights, current = [], []
    for packet in packets:
        if len(packet) == 1 and not packet[0] & (FLAG_L | FLAG_M | FLAG_S):
            continue  # an acknowledgement
        current.append(packet)
        if not packet[0] & FLAG_M:
            flights.append(current)
            current = []
    assert not current, "a flight that never ended"
    return flights


def test_fragmented_flights_carry_l_on_the_first_and_m_on_all_but_the_last():
    peer, server = _methods()
    from_server, from_peer = [server.initiate(1)], []
    assert from_server[0] == bytes([FLAG_S])
    for identifier in range(2, 60):
        answer = peer.process(identifier, from_server[-1])
        from_peer.append(answer)
        reply = server.process(identifier, answer)
        if reply is None:
            break
        from_server.append(reply)
    else:
        raise AssertionError("the EAP-TLS conversation did not end")
    assert peer.msk is not None and peer.msk == server.msk and len(peer.msk) == 64  # RFC 5216 §2.3
    for side, packets in (("server", from_server[1:]), ("peer", from_peer)):
        flights = _flights(packets)
        assert any(len(f) > 1 for f in flights), f"no {side} flight was fragmented"
        for flight in flights:
            first = flight[0]
            assert first[0] & FLAG_L, f"{side}: the first fragment lacks the L flag"
            (total,) = struct.unpack("!I", first[1:5])
            data = [first[5:]] + [p[1:] for p in flight[1:]]
            assert total == sum(len(d) for d in data), f"{side}: the TLS Message Length is not the flight's"
            for packet in flight[1:]:
                assert not packet[0] & FLAG_L, f"{side}: L on a later fragment"
            assert [bool(p[0] & FLAG_M) for p in flight] == [True] * (len(flight) - 1) + [False]
            assert all(len(d) <= FRAGMENT_SIZE for d in data)
