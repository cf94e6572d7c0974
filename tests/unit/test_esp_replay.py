"""Anti-replay window (RFC 4303 §3.4.3, Appendix A) and ESN inference, alone and through SAs."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.esp import DropReason, EspDrop, InboundSA, OutboundSA, ReplayWindow
from lab.esp.replay import REPLAY, TOO_OLD
from lab.iana import EncrId

KEY = bytes(range(20))
SIZES = [32, 64, 1024, 4096]


def _feed(w: ReplayWindow, seq_lo: int) -> int:
    seq = w.check(seq_lo)
    if seq > 0:
        w.accept(seq)
    return seq


def _pair(window: int, *, esn: bool = False, start: int = 1) -> tuple[OutboundSA, InboundSA]:
    out = OutboundSA(0x5A5A0001, encr_id=EncrId.AES_GCM_16, encr_key=KEY, esn=esn, next_seq=start,
                     local="192.0.2.1", remote="192.0.2.2")
    inb = InboundSA(0x5A5A0001, encr_id=EncrId.AES_GCM_16, encr_key=KEY, esn=esn, replay_window=window,
                    highest_seq=start - 1, local="192.0.2.2", remote="192.0.2.1")
    return out, inb


PACKET = bytes.fromhex("4500001c000100004011f9ce0a0100010a020001") + bytes(8)


def _deliver(inb: InboundSA, esp: bytes) -> DropReason | None:
    try:
        inb.unprotect(esp)
    except EspDrop as exc:
        return exc.reason
    return None


@pytest.mark.parametrize("size", SIZES)
def test_window_edges(size: int) -> None:
    w = ReplayWindow(size)
    top = size + 10
    for s in range(1, top + 1):
        assert _feed(w, s) == s
    assert w.check(top) == REPLAY
    assert w.check(top - size + 1) == REPLAY
    assert w.check(top - size) == TOO_OLD
    assert w.check(1) == TOO_OLD
    assert w.check(0) == TOO_OLD
    assert w.check(top + 1) == top + 1


@pytest.mark.parametrize("size", SIZES)
def test_reordered_within_window_accepted_once(size: int) -> None:
    w = ReplayWindow(size)
    assert _feed(w, size) == size
    for s in range(size - 1, 0, -1):
        assert _feed(w, s) == s
    for s in range(1, size + 1):
        assert w.check(s) == REPLAY
    assert _feed(w, size + size // 2) == size + size // 2
    assert w.check(size // 2) == TOO_OLD
    assert w.check(size // 2 + 1) == REPLAY


@pytest.mark.parametrize("size", SIZES)
def test_big_jump_clears_window(size: int) -> None:
    w = ReplayWindow(size)
    _feed(w, 5)
    assert _feed(w, 5 + 10 * size) == 5 + 10 * size
    assert w.check(5 + 9 * size + 1) == 5 + 9 * size + 1
    assert w.check(5 + 9 * size) == TOO_OLD
    assert w.bitmap == 1


@pytest.mark.parametrize("size", SIZES)
def test_sa_counts_replay_and_too_old_exactly(size: int) -> None:
    out, inb = _pair(size)
    n = size + 20
    esp = [out.protect_payload(PACKET) for _ in range(n)]
    order = list(range(n - 1, -1, -1))
    outcomes = [_deliver(inb, esp[i]) for i in order]
    assert outcomes.count(None) == size
    assert outcomes.count(DropReason.TOO_OLD) == n - size
    for i in range(n - size, n):
        assert _deliver(inb, esp[i]) is DropReason.REPLAY
    assert inb.packets == size
    assert inb.drops[DropReason.REPLAY] == size
    assert inb.drops[DropReason.TOO_OLD] == n - size
    assert inb.drops[DropReason.AUTH_FAILED] == 0


def test_replay_check_happens_before_the_icv() -> None:
    out, inb = _pair(64)
    esp = out.protect_payload(PACKET)
    inb.unprotect(esp)
    forged = esp[:-1] + bytes([esp[-1] ^ 1])
    assert _deliver(inb, forged) is DropReason.REPLAY
    assert inb.drops[DropReason.AUTH_FAILED] == 0


def test_forged_packet_does_not_move_the_window() -> None:
    out, inb = _pair(64)
    esps = [out.protect_payload(PACKET) for _ in range(3)]
    far = bytearray(esps[0])
    far[4:8] = (1000).to_bytes(4, "big")
    assert _deliver(inb, bytes(far)) is DropReason.AUTH_FAILED
    assert inb.window.top == 0
    assert all(_deliver(inb, e) is None for e in esps)


def test_disabled_window_accepts_replays() -> None:
    out, inb = _pair(0)
    esp = out.protect_payload(PACKET)
    for _ in range(3):
        assert _deliver(inb, esp) is None
    assert inb.packets == 3


# -- ESN (RFC 4303 §2.2.1, Appendix A2)

B = 1 << 32


@pytest.mark.parametrize("size", [32, 64, 1024])
def test_esn_in_order_across_the_boundary(size: int) -> None:
    out, inb = _pair(size, esn=True, start=B - 3)
    for expected in range(B - 3, B + 5):
        esp = out.protect_payload(PACKET)
        assert int.from_bytes(esp[4:8], "big") == expected & 0xFFFFFFFF
        assert _deliver(inb, esp) is None
        assert inb.window.top == expected


@pytest.mark.parametrize("size", [32, 64, 1024])
def test_esn_late_packets_from_before_the_boundary(size: int) -> None:
    """Top is past 2^32 and low (case B): old low-32 values map to seq_hi - 1."""
    out, inb = _pair(size, esn=True, start=B - 4)
    esp = [out.protect_payload(PACKET) for _ in range(8)]
    assert _deliver(inb, esp[7]) is None
    assert inb.window.top == B + 3
    for i in range(6, -1, -1):
        assert _deliver(inb, esp[i]) is None
    for i in range(8):
        assert _deliver(inb, esp[i]) is DropReason.REPLAY
    assert inb.packets == 8


@pytest.mark.parametrize("size", [32, 64, 1024])
def test_esn_early_packets_from_after_the_boundary(size: int) -> None:
    """Top is just below 2^32 (case A): small low-32 values map to seq_hi + 1."""
    out, inb = _pair(size, esn=True, start=B - 10)
    esp = [out.protect_payload(PACKET) for _ in range(20)]
    assert _deliver(inb, esp[5]) is None
    assert _deliver(inb, esp[15]) is None
    assert inb.window.top == B + 5
    assert _deliver(inb, esp[12]) is None
    assert _deliver(inb, esp[3]) is None
    assert _deliver(inb, esp[15]) is DropReason.REPLAY
    assert inb.packets == 4


def test_esn_packet_older_than_the_window_fails_the_icv() -> None:
    """Appendix A2.2: a very old low-32 value is taken as the next subspace and cannot authenticate."""
    out, inb = _pair(64, esn=True, start=B + 1)
    esp = [out.protect_payload(PACKET) for _ in range(200)]
    assert _deliver(inb, esp[199]) is None
    assert _deliver(inb, esp[0]) is DropReason.AUTH_FAILED
    assert _deliver(inb, esp[135]) is DropReason.AUTH_FAILED
    assert _deliver(inb, esp[136]) is None


def test_esn_high_bits_are_in_the_icv_not_on_the_wire() -> None:
    out, _ = _pair(64, esn=True, start=(5 << 32) | 77)
    esp = out.protect_payload(PACKET)
    assert esp[4:8] == (77).to_bytes(4, "big")
    wrong_hi = InboundSA(0x5A5A0001, encr_id=EncrId.AES_GCM_16, encr_key=KEY, esn=True,
                         highest_seq=(4 << 32) | 76, local="192.0.2.2", remote="192.0.2.1")
    assert _deliver(wrong_hi, esp) is DropReason.AUTH_FAILED
    right_hi = InboundSA(0x5A5A0001, encr_id=EncrId.AES_GCM_16, encr_key=KEY, esn=True,
                         highest_seq=(5 << 32) | 76, local="192.0.2.2", remote="192.0.2.1")
    assert _deliver(right_hi, esp) is None


def _model(seqs: list[int], size: int) -> tuple[int, int, int]:
    seen: set[int] = set()
    top = 0
    accepted = replay = too_old = 0
    for s in seqs:
        if s > top:
            top = s
        elif top - s >= size:
            too_old += 1
            continue
        elif s in seen:
            replay += 1
            continue
        seen.add(s)
        accepted += 1
    return accepted, replay, too_old


@st.composite
def arrivals(draw, max_seq: int = 300):
    n = draw(st.integers(1, max_seq))
    seqs = draw(st.permutations(range(1, n + 1)))
    dups = draw(st.lists(st.integers(1, n), max_size=n))
    merged = list(seqs)
    for d in dups:
        merged.insert(draw(st.integers(0, len(merged))), d)
    return merged


@settings(max_examples=200, deadline=None)
@given(seqs=arrivals(), size=st.sampled_from(SIZES))
def test_window_matches_model(seqs: list[int], size: int) -> None:
    w = ReplayWindow(size)
    got = [_feed(w, s) for s in seqs]
    accepted, replay, too_old = _model(seqs, size)
    assert sum(1 for g in got if g > 0) == accepted
    assert got.count(REPLAY) == replay
    assert got.count(TOO_OLD) == too_old
    assert accepted <= len(set(seqs))


@settings(max_examples=60, deadline=None)
@given(seqs=arrivals(120), size=st.sampled_from([32, 64]))
def test_sa_matches_model(seqs: list[int], size: int) -> None:
    n = max(seqs)
    out, inb = _pair(size)
    esp = [out.protect_payload(PACKET) for _ in range(n)]
    for s in seqs:
        _deliver(inb, esp[s - 1])
    accepted, replay, too_old = _model(seqs, size)
    assert inb.packets == accepted
    assert inb.drops[DropReason.REPLAY] == replay
    assert inb.drops[DropReason.TOO_OLD] == too_old
    assert inb.drops[DropReason.AUTH_FAILED] == 0


@settings(max_examples=60, deadline=None)
@given(seqs=arrivals(120), size=st.sampled_from([32, 64]), offset=st.integers(0, 119))
def test_esn_sa_matches_model_across_the_boundary(seqs: list[int], size: int, offset: int) -> None:
    n = max(seqs)
    base = B - offset
    out, inb = _pair(size, esn=True, start=base)
    esp = [out.protect_payload(PACKET) for _ in range(n)]
    for s in seqs:
        _deliver(inb, esp[s - 1])
    accepted, replay, too_old = _model(seqs, size)
    assert inb.packets == accepted
    assert inb.drops[DropReason.REPLAY] == replay
    assert inb.drops[DropReason.TOO_OLD] + inb.drops[DropReason.AUTH_FAILED] == too_old


def test_window_size_is_validated() -> None:
    with pytest.raises(ValueError):
        ReplayWindow(-1)
    with pytest.raises(ValueError):
        ReplayWindow(64, highest_seq=B)
    ReplayWindow(64, esn=True, highest_seq=B)


def test_random_keys_do_not_matter() -> None:
    key = os.urandom(36)
    out = OutboundSA(9, encr_id=EncrId.AES_GCM_16, encr_key=key, local="192.0.2.1", remote="192.0.2.2")
    inb = InboundSA(9, encr_id=EncrId.AES_GCM_16, encr_key=key, replay_window=4096, local="192.0.2.2", remote="192.0.2.1")
    for _ in range(5000):
        inb.unprotect(out.protect_payload(PACKET))
    assert inb.window.top == 5000
    assert all(inb.window.received(s) for s in range(5000 - 4095, 5001))
    assert not inb.window.received(5000 - 4096)


# ---------------------------------------------------------------- edges the mutation run found untested


def test_default_size_and_the_sequence_number_spaces() -> None:
    # RFC 4303 §3.4.3: a window of 64 is the default; 32-bit or 64-bit (ESN) numbers
    assert ReplayWindow().size == 64
    ReplayWindow(64, highest_seq=B - 1)
    ReplayWindow(64, esn=True, highest_seq=(1 << 64) - 1)
    for bad, esn in ((-1, False), (-1, True), (1 << 64, True)):
        with pytest.raises(ValueError):
            ReplayWindow(64, esn=esn, highest_seq=bad)


def test_highest_seq_counts_as_received() -> None:
    # "as if that number had been the highest seen": it is a replay, the ones below are not
    w = ReplayWindow(32, highest_seq=100)
    assert w.check(100) == REPLAY
    assert w.check(99) == 99 and w.check(69) == 69 and w.check(68) == TOO_OLD
    assert not w.received(99) and w.received(100) and not w.received(101)
    assert ReplayWindow(32).check(1) == 1


def test_sequence_number_zero_is_never_accepted() -> None:
    # RFC 4303 §3.3.3: the first packet is number 1; 0 is never valid
    assert ReplayWindow(32).check(0) == TOO_OLD
    w = ReplayWindow(32)
    for seq in (1, 2, 5):
        w.accept(w.check(seq))
    assert w.check(0) == TOO_OLD


def test_window_state_stays_within_its_size() -> None:
    w = ReplayWindow(32)
    for seq in range(1, 200):
        w.accept(w.check(seq))
    assert w.bitmap.bit_length() <= 32
    assert w.received(199) and w.received(168) and not w.received(167)


def test_received_is_exact() -> None:
    w = ReplayWindow(32)
    for seq in (10, 12):
        w.accept(w.check(seq))
    assert [s for s in range(0, 14) if w.received(s)] == [10, 12]


def test_esn_inference_with_a_disabled_window() -> None:
    # RFC 4303 Appendix A2.2: without a window the inference still needs one (2^31 here)
    w = ReplayWindow(0, esn=True, highest_seq=B + 10)
    assert w.check(5) == B + 5  # a little older: same epoch
    assert w.check(20) == B + 20


def test_esn_inference_in_later_epochs() -> None:
    # case B with seq_hi >= 2: a packet a little older than the top belongs to the epoch before
    top = 2 * B + 10
    w = ReplayWindow(64, esn=True, highest_seq=top)
    assert w.check(B - 5) == 2 * B - 5
    assert w.check(11) == 2 * B + 11
    # the boundary of case B: seq_lo == tl - W + 1 (mod 2^32) is the epoch before, one below is this epoch
    bound = (10 - 64 + 1) % B
    assert w.check(bound) == B + bound == top - 63
    assert w.check(bound - 1) == 2 * B + bound - 1  # far ahead, in this epoch


def test_esn_inference_in_the_fourth_epoch_and_size_errors() -> None:
    top = 3 * B + 10
    w = ReplayWindow(64, esn=True, highest_seq=top)
    assert w.check(B - 5) == 3 * B - 5  # case B: the epoch before is 2, not 3 >> 1
    with pytest.raises(ValueError, match="negative"):
        ReplayWindow(-1)
