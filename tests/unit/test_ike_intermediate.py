"""RFC 9242 (IKE_INTERMEDIATE) and RFC 9370 (additional key exchanges) in memory, ours to ours:
one IKE_INTERMEDIATE exchange per additional key exchange, the keys updated after each, IntAuth in
the AUTH payload (checked here against a computation of our own from the wire), both roles, with
loss, retransmission and RFC 7383 fragmentation; a peer without additional key exchanges; a KE of
the wrong length; an IKE SA rekey with one IKE_FOLLOWUP_KE exchange per additional key exchange
(RFC 9370 §2.2.4), with loss and with wrong link data; the same for new and rekeyed CHILD SAs, their
KEYMAT checked against prf+ computed here."""
from __future__ import annotations

import hashlib
import hmac
import struct

import pytest

from lab.ike import payloads as pl
from lab.ike.const import DhGroup, ExchangeType, NotifyType
from lab.ike.message import Message, classify_udp
from lab.ike.protect import DirectionKeys, decrypt_fragment, decrypt_plain
from lab.ike.settings import Settings
from lab.ike.tasks import IkeIntermediate, IkeRekey

from .ike_net import make_net, pair_configs
from .test_ike_exchanges import _established, assert_child_rekeyed, assert_consistent, assert_ike_rekeyed, before, kinds

HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_ecp384"
PSK = b"a-lab-only-psk"


def _messages(net):
    out = []
    for _, sender, d in net.log:
        raw = classify_udp(d.dst[1], d.data)[1]
        out.append((sender, Message.parse(raw), raw))
    return out


def _hybrid_net(settings: Settings | None = None, **options):
    return make_net(*pair_configs(proposals=HYBRID, **options), settings=settings)


def _keys_by_generation(endpoint):
    log = sorted(endpoint.ike_key_log, key=lambda e: e["generation"])
    assert [e["generation"] for e in log] == list(range(len(log)))
    return [e["keys"] for e in log]


def _opens(keys, message: Message, raw: bytes) -> bytes | None:
    """The plaintext of one protected message (or fragment) under `keys`, None if its ICV does not verify."""
    from lab.ike.crypto import SkCipher
    cipher = SkCipher(20, 256, 0)  # aes256gcm16
    direction = DirectionKeys(keys.sk_ei, keys.sk_ai) if message.is_initiator else DirectionKeys(keys.sk_er, keys.sk_ar)
    try:
        if isinstance(message.encrypted, pl.SKF):
            return decrypt_fragment(raw, message, cipher, direction)
        return decrypt_plain(raw, message, cipher, direction)[1]
    except Exception:
        return None


def _generation_of_each(net, initiator: str):
    """For each protected message: (exchange, message ID, response, the key generation that opens it)."""
    generations = _keys_by_generation(net.endpoints[initiator])
    seen = []
    for _, message, raw in _messages(net):
        if message.exchange == ExchangeType.IKE_SA_INIT:
            continue
        opening = [n for n, keys in enumerate(generations) if _opens(keys, message, raw) is not None]
        seen.append((int(message.exchange), message.message_id, message.is_response, tuple(opening)))
    return sorted(set(seen))


@pytest.mark.parametrize("initiator", ["a", "b"])
def test_one_intermediate_exchange_per_additional_key_exchange(initiator):
    net = _hybrid_net()
    net.endpoints[initiator].initiate("s2s", net.now)
    net.settle()
    assert_consistent(net)
    for ike in _established(net):
        assert str(ike.algorithms) == HYBRID
        assert ike.intermediate_count == 2 and ike.key_generation == 2 and not ike.additional_pending
    messages = _messages(net)
    assert [int(m.exchange) for _, m, _ in messages if not isinstance(m.encrypted, pl.SKF) or
            m.encrypted.fragment_number == 1] == [34, 34, 43, 43, 43, 43, 35, 35]
    init_request, init_response = [(m, raw) for _, m, raw in messages if m.exchange == ExchangeType.IKE_SA_INIT]
    # IKE_SA_INIT stays small: only the X25519 share; both announce INTERMEDIATE_EXCHANGE_SUPPORTED (RFC 9242 §3.1)
    assert len(init_request[1]) < 400 and init_request[0].get(pl.KE).dh_group == DhGroup.CURVE25519
    for m, _ in (init_request, init_response):
        assert NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED in [p.notify_type for p in m.payloads
                                                               if isinstance(p, pl.Notify)]
    # RFC 9370 §2.2.2: each exchange is protected by the keys the one before it made, IKE_AUTH by the last
    assert _generation_of_each(net, initiator) == [
        (35, 3, False, (2,)), (35, 3, True, (2,)), (43, 1, False, (0,)), (43, 1, True, (0,)),
        (43, 2, False, (1,)), (43, 2, True, (1,))]


def _plain_of(net, initiator, exchange, message_id, response):
    """(first inner payload type, inner payloads in cleartext, the IKE header octets) of one message,
    its fragments reassembled."""
    generations = _keys_by_generation(net.endpoints[initiator])
    pieces, first, header = {}, 0, b""
    for _, m, raw in _messages(net):
        if m.exchange != exchange or m.message_id != message_id or m.is_response != response:
            continue
        for keys in generations:
            plain = _opens(keys, m, raw)
            if plain is not None:
                break
        else:
            raise AssertionError("message opens under no key generation")
        header = raw[:28]
        if isinstance(m.encrypted, pl.SKF):
            pieces[m.encrypted.fragment_number] = plain
            if m.encrypted.fragment_number == 1:
                first = m.encrypted.inner_first
        else:
            pieces[1], first = plain, m.encrypted.inner_first
    return first, b"".join(pieces[n] for n in sorted(pieces)), header


def _prf(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha384).digest()  # prfsha384


@pytest.mark.parametrize("fragment_size", [1280, 576])
def test_auth_covers_int_auth_computed_from_the_wire(fragment_size):
    # RFC 9242 §3.3.2, computed here from the captured messages and the exported keys of each generation
    net = _hybrid_net(Settings(export_keys=True, fragment_size=fragment_size))
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    assert_consistent(net)
    generations = _keys_by_generation(net.endpoints["a"])
    int_auth = {False: b"", True: b""}
    for message_id in (1, 2):
        for response in (False, True):
            first, plain, header = _plain_of(net, "a", ExchangeType.IKE_INTERMEDIATE, message_id, response)
            # IntAuth_A: the IKE header and the Encrypted payload header as if unfragmented, lengths without IV/ICV
            a = header[:16] + bytes([46]) + header[17:24] + struct.pack("!I", 28 + 4 + len(plain))
            a += struct.pack("!BBH", first, 0, 4 + len(plain))
            sk_p = generations[message_id - 1].sk_pr if response else generations[message_id - 1].sk_pi
            int_auth[response] = _prf(sk_p, int_auth[response] + a + plain)
    messages = _messages(net)
    init_request = next(raw for _, m, raw in messages if m.exchange == ExchangeType.IKE_SA_INIT and not m.is_response)
    nonce_r = next(m for _, m, _ in messages if m.exchange == ExchangeType.IKE_SA_INIT and m.is_response).get(pl.Nonce)
    first, plain, _ = _plain_of(net, "a", ExchangeType.IKE_AUTH, 3, False)
    inner = pl.parse_chain(plain, first, 0)
    idi = next(p for p in inner if isinstance(p, pl.IDi))
    auth = next(p for p in inner if isinstance(p, pl.AUTH))
    octets = (init_request + nonce_r.data + _prf(generations[2].sk_pi, idi.body())
              + int_auth[False] + int_auth[True] + struct.pack("!I", 3))
    assert auth.data == _prf(_prf(PSK, b"Key Pad for IKEv2"), octets)
    if fragment_size == 576:
        # RFC 7383 applies to IKE_INTERMEDIATE: the ML-KEM key and ciphertext go in fragments, both ways
        fragmented = {(m.message_id, m.is_response) for _, m, _ in messages
                      if m.exchange == ExchangeType.IKE_INTERMEDIATE and isinstance(m.encrypted, pl.SKF)}
        assert fragmented == {(1, False), (1, True)}


@pytest.mark.parametrize("initiator", ["a", "b"])
@pytest.mark.parametrize("fragment_size", [1280, 576])
def test_loss_and_retransmission(initiator, fragment_size):
    net = _hybrid_net(Settings(export_keys=True, fragment_size=fragment_size))
    lost: set[tuple[int, int, bool, int]] = set()

    def drop(name, datagram):
        m = Message.parse(classify_udp(datagram.dst[1], datagram.data)[1])
        number = m.encrypted.fragment_number if isinstance(m.encrypted, pl.SKF) else 1
        key = (int(m.exchange), m.message_id, m.is_response, number)
        # the first response of IKE_INTERMEDIATE 1 (its last fragment), the first request of 2 and of IKE_AUTH
        wanted = {(43, 1, True, m.encrypted.total_fragments if isinstance(m.encrypted, pl.SKF) else 1),
                  (43, 2, False, 1), (35, 3, False, 1)}
        if key in wanted and key not in lost:
            lost.add(key)
            return True
        return False

    net.drop = drop
    net.endpoints[initiator].initiate("s2s", net.now)
    net.settle(horizon=60)
    assert len(lost) == 3
    # the responder answers the retransmitted request of 1 from its cache, under the keys before the update
    assert_consistent(net, allowed_drops=("unexpected response",))
    responder = "b" if initiator == "a" else "a"
    assert net.endpoints[responder].stats["responses_resent"] >= 1
    for ike in _established(net):
        assert ike.key_generation == 2


@pytest.mark.parametrize("cut", [-1, 1])
def test_ke_of_the_wrong_length_in_ike_intermediate_is_invalid_syntax(monkeypatch, cut):
    real = IkeIntermediate.build_i

    def broken(self, ike, now):
        (ke,) = real(self, ike, now)
        return [pl.KE(dh_group=ke.dh_group, data=ke.data[:cut] if cut < 0 else ke.data + bytes(cut))]

    monkeypatch.setattr(IkeIntermediate, "build_i", broken)
    net = _hybrid_net()
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    events = net.events("a")
    assert kinds(events)[0] == "NegotiationFailed"
    assert events[0].exchange == "IKE_INTERMEDIATE" and "INVALID_SYNTAX" in events[0].reason
    notes = [r for r in net.endpoints["b"].pop_trace() if "encapsulation key must be 1184 octets" in str(r)]
    assert notes
    assert not [s for s in net.endpoints["a"].by_id.values()]


@pytest.mark.parametrize("a_proposals, b_proposals, outcome", [
    # RFC 9370 §2.2.1: optional additional key exchanges fall away at a peer without them, either role
    ("aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none", "aes256gcm16-prfsha384-x25519", "up"),
    ("aes256gcm16-prfsha384-x25519", "aes256gcm16-prfsha384-x25519-ke1_none-ke1_mlkem768", "up"),
    # a required one fails with NO_PROPOSAL_CHOSEN
    ("aes256gcm16-prfsha384-x25519-ke1_mlkem768", "aes256gcm16-prfsha384-x25519", "NO_PROPOSAL_CHOSEN"),
    ("aes256gcm16-prfsha384-x25519", "aes256gcm16-prfsha384-x25519-ke1_mlkem768", "NO_PROPOSAL_CHOSEN"),
])
def test_a_peer_without_additional_key_exchanges(a_proposals, b_proposals, outcome):
    conf_a, _ = pair_configs(proposals=a_proposals)
    _, conf_b = pair_configs(proposals=b_proposals)
    net = make_net(conf_a, conf_b)
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    exchanges = {int(m.exchange) for _, m, _ in _messages(net)}
    assert ExchangeType.IKE_INTERMEDIATE not in exchanges
    if outcome == "up":
        assert_consistent(net)
        assert all(ike.algorithms.additional == () for ike in _established(net))
    else:
        events = net.events("a")
        assert kinds(events)[0] == "NegotiationFailed" and outcome in events[0].reason


def _rekey_exchanges(net, since: int):
    """(exchange, response, sender) of each message since log entry `since`, a fragmented one once."""
    out, seen = [], set()
    for sender, m, _ in _messages(net)[since:]:
        key = (m.message_id, m.is_response, sender)
        if key not in seen:
            seen.add(key)
            out.append((int(m.exchange), m.is_response, sender))
    return out


@pytest.mark.parametrize("initiator", ["a", "b"])
def test_ike_rekey_runs_one_followup_ke_per_additional_key_exchange(monkeypatch, initiator):
    # RFC 9370 §2.2.4: CREATE_CHILD_SA with the first KE, then IKE_FOLLOWUP_KE for ke1_ and ke2_
    finished = []
    real = IkeRekey._finish_i

    def spy(self, ike, now):
        finished.append((self, ike.keys.sk_d))
        real(self, ike, now)

    monkeypatch.setattr(IkeRekey, "_finish_i", spy)
    net = _hybrid_net()
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    old = before(net)
    since = len(net.log)
    responder = "b" if initiator == "a" else "a"
    assert net.endpoints[initiator].rekey_ike(net.now, name="s2s") == 1
    net.settle()
    assert_ike_rekeyed(net, old)
    assert _rekey_exchanges(net, since)[:6] == [(36, False, initiator), (36, True, responder),
                                                (44, False, initiator), (44, True, responder),
                                                (44, False, initiator), (44, True, responder)]
    for ike in _established(net):
        assert str(ike.algorithms) == HYBRID
    # SKEYSEED = prf(SK_d, SK(0) | Ni | Nr | SK(1) | SK(2)), with the old SA's PRF (sha384), computed here on its own
    (task, sk_d_old), = finished
    assert len(task.additional) == 2 and len(task.additional[0]) == 32 and len(task.additional[1]) == 48
    expected = hmac.new(sk_d_old, task.shared + task.nonce + task.nonce_r + task.additional[0] + task.additional[1],
                        hashlib.sha384).digest()
    ike_i = _established(net)[0 if initiator == "a" else 1]
    assert ike_i.keys.skeyseed == expected


@pytest.mark.parametrize("lose", [(44, False), (44, True), (36, True)])
def test_ike_rekey_with_followup_ke_survives_a_lost_message(lose):
    net = _hybrid_net()
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    old = before(net)
    lost = []

    def drop(name, datagram):
        m = Message.parse(classify_udp(datagram.dst[1], datagram.data)[1])
        if (int(m.exchange), m.is_response) == lose and not lost:
            lost.append(m.message_id)
            return True
        return False

    net.drop = drop
    assert net.endpoints["a"].rekey_ike(net.now, name="s2s") == 1
    net.settle(horizon=60)
    assert lost
    assert_ike_rekeyed(net, old)
    assert net.endpoints["b"].stats["responses_resent"] >= (1 if lose[1] else 0)


def test_followup_ke_with_wrong_link_data_is_state_not_found(monkeypatch):
    real = IkeRekey._build_followup_i

    def broken(self, ike):
        notify, ke = real(self, ike)
        return [pl.Notify(notify_type=notify.notify_type, data=bytes(b ^ 1 for b in notify.data)), ke]

    monkeypatch.setattr(IkeRekey, "_build_followup_i", broken)
    net = _hybrid_net()
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    net.events("a")
    old = before(net)
    assert net.endpoints["a"].rekey_ike(net.now, name="s2s") == 1
    net.settle()
    events = net.events("a")
    assert kinds(events) == ["NegotiationFailed"] and "STATE_NOT_FOUND" in events[0].reason
    assert [r for r in net.endpoints["b"].pop_trace() if r.get("what") == "followup_ke_refused"]
    assert_consistent(net)
    assert before(net) == old


def test_ike_rekey_with_optional_additional_key_exchanges_keeps_them():
    proposals = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none"
    conf_a, _ = pair_configs(proposals=proposals)
    _, conf_b = pair_configs(proposals=proposals)
    net = make_net(conf_a, conf_b)
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    assert all(ike.intermediate_count == 1 for ike in _established(net))
    old = before(net)
    since = len(net.log)
    assert net.endpoints["a"].rekey_ike(net.now, name="s2s") == 1
    net.settle()
    assert_ike_rekeyed(net, old)
    assert all(str(ike.algorithms) == "aes256gcm16-prfsha384-x25519-ke1_mlkem768" for ike in _established(net))
    assert [e for e, _, _ in _rekey_exchanges(net, since)].count(44) == 2


def test_a_responder_without_them_takes_a_rekey_without_the_optional_ones():
    # RFC 9370 §2.2.1: the optional additional key exchange falls away, no IKE_FOLLOWUP_KE runs
    conf_a, _ = pair_configs(proposals="aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none")
    _, conf_b = pair_configs(proposals="aes256gcm16-prfsha384-x25519-ke1_none-ke1_mlkem768")
    net = make_net(conf_a, conf_b)
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    assert all(ike.algorithms.additional == () for ike in _established(net))
    old = before(net)
    since = len(net.log)
    assert net.endpoints["a"].rekey_ike(net.now, name="s2s") == 1
    net.settle()
    assert_ike_rekeyed(net, old)
    assert all(ike.algorithms.additional == () for ike in _established(net))
    assert 44 not in [e for e, _, _ in _rekey_exchanges(net, since)]


# ---------------------------------------------------------------- CHILD SAs (RFC 9370 §2.2.4)

CHILD_ESP = "aes128gcm16-x25519-ke1_ecp384-ke2_mlkem768"


def _child_net(**options):
    net = make_net(*pair_configs(proposals=HYBRID, esp=CHILD_ESP, **options))
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    net.events("a"), net.events("b")
    return net


def _keymat_by_hand(task, sk_d: bytes, length: int) -> bytes:
    # RFC 9370 §2.2.4: KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n)), the IKE SA's PRF (sha384)
    seed = task.shared + task.nonce + task.nonce_r + b"".join(task.additional)
    out, t, n = b"", b"", 1
    while len(out) < length:
        t = hmac.new(sk_d, t + seed + bytes([n]), hashlib.sha384).digest()
        out, n = out + t, n + 1
    return out[:length]


@pytest.mark.parametrize("initiator", ["a", "b"])
def test_child_rekey_runs_one_followup_ke_per_additional_key_exchange(monkeypatch, initiator):
    from lab.ike.tasks import ChildCreate
    installed = []
    real = ChildCreate._install_i

    def spy(self, ike, now):
        installed.append((self, ike.keys.sk_d))
        real(self, ike, now)

    monkeypatch.setattr(ChildCreate, "_install_i", spy)
    net = _child_net()
    # RFC 9370 §2.2.4: no additional key exchange in IKE_AUTH's CHILD SA
    ike_a, _ = _established(net)
    assert [str(c.algorithms) for c in ike_a.children] == ["aes128gcm16-noesn"]
    old = before(net)
    since = len(net.log)
    responder = "b" if initiator == "a" else "a"
    assert net.endpoints[initiator].rekey_child(net.now, "net") == 1
    net.settle()
    assert_child_rekeyed(net, old)
    assert _rekey_exchanges(net, since)[:6] == [(36, False, initiator), (36, True, responder),
                                                (44, False, initiator), (44, True, responder),
                                                (44, False, initiator), (44, True, responder)]
    ike_a, _ = _established(net)
    (child,) = [c for c in ike_a.children if c.state.name == "INSTALLED"]
    assert str(child.algorithms) == CHILD_ESP + "-noesn"
    (task, sk_d), = installed
    assert len(task.additional) == 2 and len(task.additional[0]) == 48 and len(task.additional[1]) == 32
    keymat = _keymat_by_hand(task, sk_d, 40)
    ike_i = _established(net)[0 if initiator == "a" else 1]
    (new_i,) = [c for c in ike_i.children if c.state.name == "INSTALLED"]
    assert (new_i.keys_out.encr, new_i.keys_in.encr) == (keymat[:20], keymat[20:40])


def test_new_child_sa_with_followup_ke_both_sides_agree():
    net = _child_net()
    # a second CHILD SA of the same config, asked for by the responder of the IKE SA
    net.endpoints["b"].create_child(net.now, _established(net)[1].unique_id, "net")
    net.settle()
    assert_consistent(net, children=2)
    assert sorted(str(c.algorithms) for c in _established(net)[0].children) == sorted(["aes128gcm16-noesn", CHILD_ESP + "-noesn"])


@pytest.mark.parametrize("lose", [(44, False), (44, True), (36, True)])
def test_child_rekey_with_followup_ke_survives_a_lost_message(lose):
    net = _child_net()
    old = before(net)
    lost = []

    def drop(name, datagram):
        m = Message.parse(classify_udp(datagram.dst[1], datagram.data)[1])
        if (int(m.exchange), m.is_response) == lose and not lost:
            lost.append(m.message_id)
            return True
        return False

    net.drop = drop
    assert net.endpoints["a"].rekey_child(net.now, "net") == 1
    net.settle(horizon=60)
    assert lost
    assert_child_rekeyed(net, old)
    assert net.endpoints["b"].stats["responses_resent"] >= (1 if lose[1] else 0)


def test_child_followup_ke_with_wrong_link_data_is_state_not_found(monkeypatch):
    from lab.ike.tasks import ChildCreate
    real = ChildCreate.build_i

    def broken(self, ike, now):
        out = real(self, ike, now)
        if self.link:
            notify, ke = out
            return [pl.Notify(notify_type=notify.notify_type, data=bytes(b ^ 1 for b in notify.data)), ke]
        return out

    monkeypatch.setattr(ChildCreate, "build_i", broken)
    net = _child_net()
    old = before(net)
    assert net.endpoints["a"].rekey_child(net.now, "net") == 1
    net.settle()
    events = net.events("a")
    assert "NegotiationFailed" in kinds(events)
    assert "STATE_NOT_FOUND" in next(e for e in events if type(e).__name__ == "NegotiationFailed").reason
    assert [r for r in net.endpoints["b"].pop_trace() if r.get("what") == "followup_ke_refused"]
    # the old CHILD SA stays, nothing half-made on either side
    assert_consistent(net)
    assert before(net) == old


@pytest.mark.parametrize("initiator", ["a", "b"])
def test_child_rekey_keeps_its_additional_key_exchanges_in_an_ike_sa_without_them(initiator):
    """An IKE SA made without additional key exchanges (no IKE_INTERMEDIATE announced, as strongSwan 6
    does then) rekeys a CHILD SA whose esp_proposals require them with IKE_FOLLOWUP_KE all the same:
    leaving them out of the proposal would give the new CHILD SA less than its configuration asks for."""
    net = make_net(*pair_configs(proposals="aes256gcm16-prfsha384-x25519", esp=CHILD_ESP))
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    assert not any(ike.peer_intermediate for ike in _established(net))
    old = before(net)
    since = len(net.log)
    assert net.endpoints[initiator].rekey_child(net.now, "net") == 1
    net.settle()
    assert_child_rekeyed(net, old)
    assert [e for e, response, _ in _rekey_exchanges(net, since) if not response][:3] == [36, 44, 44]
    assert {str(c.algorithms) for ike in _established(net) for c in ike.children} == {CHILD_ESP + "-noesn"}
