"""The receiver's anti-replay window (RFC 4303 §3.4.3, Appendix A), 32- or 64-bit.

`top` is the highest authenticated sequence number; bit i of `bitmap` says whether
top - i was received. `check` runs before the ICV (cheap rejection of replays), and
`accept` after it (only authenticated packets move the window).
"""
from __future__ import annotations

REPLAY = -1
TOO_OLD = -2

_SEQ32 = 1 << 32


class ReplayWindow:
    __slots__ = ("size", "esn", "top", "bitmap", "_mask", "_infer")

    def __init__(self, size: int = 64, *, esn: bool = False, highest_seq: int = 0) -> None:
        if size < 0:
            raise ValueError("the anti-replay window size cannot be negative")
        limit = (1 << 64) - 1 if esn else _SEQ32 - 1
        if not 0 <= highest_seq <= limit:
            raise ValueError(f"highest_seq {highest_seq} is outside the sequence number space")
        self.size = size
        self.esn = esn
        self.top = highest_seq
        self.bitmap = 1 if highest_seq else 0  # the highest seen was received (0 is no packet, RFC 4303 §3.3.3)
        self._mask = (1 << size) - 1
        # RFC 4303 Appendix A2.2: seq_hi inference needs a window; a disabled window infers with 2^31
        self._infer = size if size else 1 << 31

    def check(self, seq_lo: int) -> int:
        """The full sequence number for the received low 32 bits, or REPLAY / TOO_OLD."""
        top = self.top
        if self.esn:
            w = self._infer
            tl, th = top & 0xFFFFFFFF, top >> 32
            if tl >= w - 1:
                # RFC 4303 Appendix A2.2, case A
                seq = (th << 32 | seq_lo) if seq_lo >= tl - w + 1 else ((th + 1) << 32 | seq_lo)
            else:
                # RFC 4303 Appendix A2.2, case B
                if seq_lo >= (tl - w + 1) % _SEQ32:
                    if th == 0:
                        return TOO_OLD
                    seq = (th - 1) << 32 | seq_lo
                else:
                    seq = th << 32 | seq_lo
        else:
            seq = seq_lo
        if seq > top:
            return seq
        if seq == 0:
            # RFC 4303 §3.3.3: the first packet sent has sequence number 1
            return TOO_OLD
        if not self.size:
            return seq
        diff = top - seq
        if diff >= self.size:
            return TOO_OLD
        if (self.bitmap >> diff) & 1:
            return REPLAY
        return seq

    def accept(self, seq: int) -> None:
        """Record an authenticated sequence number (RFC 4303 §3.4.3: after the ICV check)."""
        top = self.top
        if seq > top:
            shift = seq - top
            self.bitmap = ((self.bitmap << shift) | 1) & self._mask if shift < self.size else 1
            self.top = seq
        elif self.size:
            self.bitmap |= 1 << (top - seq)

    def received(self, seq: int) -> bool:
        """Whether `seq` is marked in the window (for tests and `describe`)."""
        diff = self.top - seq
        return 0 <= diff < self.size and bool((self.bitmap >> diff) & 1)
