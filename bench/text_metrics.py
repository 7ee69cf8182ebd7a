"""Output quality measures shared by the benchmarks: repeated sentences and the share of
distinct word trigrams (1.0: no trigram twice; a looping output falls far below 0.8)."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+|\n+")
_WORD = re.compile(r"\w+")


def sentences(text: str) -> list[str]:
    """Sentences (and lines) as word sequences, case-folded, of at least 4 words."""
    out = []
    for part in _SENTENCE_END.split(text):
        words = _WORD.findall(part.casefold())
        if len(words) >= 4:
            out.append(" ".join(words))
    return out


def repeated_sentences(text: str) -> int:
    """Sentences that repeat an earlier one of the same text."""
    seen: set[str] = set()
    repeats = 0
    for s in sentences(text):
        repeats += s in seen
        seen.add(s)
    return repeats


def distinct_trigrams(text: str) -> float:
    words = _WORD.findall(text.casefold())
    grams = list(zip(words, words[1:], words[2:], strict=False))
    return len(set(grams)) / len(grams) if grams else 1.0
