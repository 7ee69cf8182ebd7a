"""Segmenting text without sentence breaks is linear in its length (it used to re-count the
whole remaining text for every slice: 1 MB of "word word ..." took minutes)."""

from __future__ import annotations

import re

from engine.documents import document_from_text, segment

_PIECE = re.compile(r"\s*\S+")


class CountingCounter:
    """One token per word (with its leading space); remembers how many characters it read."""

    def __init__(self) -> None:
        self.chars = 0

    def __call__(self, text: str) -> int:
        self.chars += len(text)
        return len(_PIECE.findall(text))


def _chars_counted(words: int, budget: int = 128) -> tuple[int, int]:
    text = "word " * words
    counter = CountingCounter()
    chunks = segment(document_from_text(text), counter, budget)
    assert all(c.token_count <= budget for c in chunks)
    assert sum(c.token_count for c in chunks) >= words
    return counter.chars, len(text)


def test_text_without_sentence_breaks_is_segmented_in_linear_time():
    small, _ = _chars_counted(20_000)
    large, large_len = _chars_counted(80_000)
    assert large / small < 4 * 1.25  # 4x the text, about 4x the work (quadratic: 16x)
    assert large < 40 * large_len


def test_whitespace_heavy_text_is_linear_too():
    """Many characters per token (PDF text padded with spaces) must not fall back to
    counting the whole rest of the text for every slice."""
    def counted(words: int) -> int:
        counter = CountingCounter()
        segment(document_from_text(("word" + " " * 40) * words), counter, 128)
        return counter.chars

    assert counted(8_000) / counted(2_000) < 4 * 1.25


def test_a_cut_never_separates_a_thai_or_indic_vowel_from_its_letter():
    import unicodedata

    text = "กิน" * 400 + " " + "नमस्ते दुनिया" * 60  # SARA I (Mn), Devanagari signs (Mc, Mn)
    chunks = segment(document_from_text(text), len, 50)  # one token per character
    assert len(chunks) > 10
    for chunk in chunks:
        first = chunk.text.lstrip()[:1]
        assert first and unicodedata.category(first)[0] != "M", chunk.text[:10]
