"""lab.viz.style.wrap: lines no wider than asked, the same lines as measuring one character at a
time would give, and few measurements for a long unbroken word (a hex dump in a caption made
one figure take five minutes)."""
from __future__ import annotations

from lab.viz import style
from lab.viz.style import text_width, wrap


def _one_at_a_time(text: str, width: float, lines: int | None = None) -> list[str]:
    """The rule wrap follows, written the slow way (no RFC joining: the texts below have none)."""
    out: list[str] = []
    for word in " ".join(text.split()).split(" "):
        while text_width(word) > width and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and text_width(word[:cut]) > width:
                cut -= 1
            out.append(word[:cut])
            word = word[cut:]
        if out and text_width(f"{out[-1]} {word}") <= width:
            out[-1] = f"{out[-1]} {word}"
        else:
            out.append(word)
    if lines is not None and len(out) > lines:
        last = out[lines - 1]
        while last and text_width(last + " ...") > width:
            last = last[:-1]
        out = out[:lines - 1] + [last.rstrip() + " ..."]
    return out


TEXTS = [
    "IKE_AUTH request 1 carried IDi CERT AUTH SA TSi TSr, encrypted and integrity protected",
    "a 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123 hex word in a caption",
    "x",
    "WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW iiiiiiiiiiiiiiiiiiiiiiiiiiiii end",
]


def test_wrap_gives_the_lines_of_measuring_one_character_at_a_time():
    for text in TEXTS:
        for width in (0.3, 1.0, 2.5, 6.0):
            assert wrap(text, width) == _one_at_a_time(text, width), (text, width)
            assert wrap(text, width, lines=2) == _one_at_a_time(text, width, lines=2), (text, width)
            for line in wrap(text, width):
                assert len(line) == 1 or text_width(line) <= width, (line, width)


def test_a_long_unbroken_word_is_cut_with_few_measurements(monkeypatch):
    calls = []
    real = style.text_width

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(style, "text_width", counted)
    word = "0123456789abcdef" * 250                  # 4,000 characters, no space
    lines = wrap(word, 8.0)
    assert "".join(lines) == word and len(lines) > 10
    # one character at a time: over 3,900 measurements for the first line alone
    assert len(calls) < 40 * len(lines), len(calls)
    calls.clear()
    cut = wrap("word " * 2000, 8.0, lines=1)
    assert cut[0].endswith(" ...") and len(calls) < 2 * 2000 + 40, len(calls)   # two a word, then halving
