"""Sentence boundaries with character offsets, so a sentence can later be quoted verbatim
and located in its block.

Rules, in order of confidence: a blank line always ends a sentence; Chinese/Japanese and
other full stops that need no following space (。！？ । ။ ។ ። ؟ ۔) end one where they stand;
Latin-style . ! ? end one when followed by whitespace and a character that is not
lower-case, unless the word before the period is a known abbreviation or an initial; in
Thai and Lao, which have no sentence punctuation, a space between two letters ends one.
The spans cover every non-space character of the text, in order."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int  # exclusive; text[start:end] == self.text
    text: str


_CLOSERS = "\"'”’»)]}」』）】〕》〉›"
_LATIN_END = re.compile(rf"(?:[.!?…‼⁇⁈⁉]+)[{re.escape(_CLOSERS)}]*(?=\s)")
_WIDE_END = re.compile(rf"[{re.escape('。！？｡．︒﹒।॥။។៕።፧؟۔։།')}]+[{re.escape(_CLOSERS)}]*")
_BLANK_LINE = re.compile(r"\n[ \t\f\v]*\n\s*")
_THAI_SPACE = re.compile(r"(?<=[\u0E00-\u0EFF])[ \t]+(?=[\u0E00-\u0EFF])")
_WORD_BEFORE = re.compile(r"([^\s(\[{\"'“‘]+)$")
_NEXT_CHAR = re.compile(r"\s*(\S)")
_LONGEST_ABBREVIATION = 12
# Words that rarely end a sentence; ordinary words (no, sat, co) stay out.
_ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "mx", "dr", "prof", "sr", "jr", "st", "mt", "ft", "vs", "etc", "e.g",
    "i.e", "cf", "fig", "figs", "vol", "vols", "pp", "approx", "inc", "ltd", "corp", "dept",
    "gov", "jan", "feb", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon",
    "tue", "thu", "fri", "ave", "blvd", "rd", "sgt", "capt", "lt", "cmdr", "al", "u.s", "u.k",
    "a.m", "p.m", "viz", "resp",
})


def _is_abbreviation(text: str, period: int) -> bool:
    found = _WORD_BEFORE.search(text[max(0, period - _LONGEST_ABBREVIATION) : period])
    if not found:
        return False
    word = found[1].lower().rstrip(".")
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _latin_cuts(text: str) -> list[int]:
    cuts = []
    for match in _LATIN_END.finditer(text):
        following = _NEXT_CHAR.match(text, match.end())
        if not following or following[1].islower():
            continue
        if text[match.start()] == "." and match.group().count(".") == 1 and _is_abbreviation(
            text, match.start()
        ):
            continue
        cuts.append(match.end())
    return cuts


def sentence_cuts(text: str) -> list[int]:
    """Sorted offsets where a sentence ends (the text before an offset is one or more
    whole sentences)."""
    cuts = set(_latin_cuts(text))
    cuts.update(m.end() for m in _WIDE_END.finditer(text))
    cuts.update(m.start() for m in _BLANK_LINE.finditer(text))
    cuts.update(m.start() for m in _THAI_SPACE.finditer(text))
    return sorted(c for c in cuts if 0 < c < len(text))


def split_sentences(text: str) -> list[Span]:
    spans: list[Span] = []
    start = 0
    for cut in [*sentence_cuts(text), len(text)]:
        piece = text[start:cut]
        stripped = piece.strip()
        if stripped:
            first = start + (len(piece) - len(piece.lstrip()))
            spans.append(Span(first, first + len(stripped), stripped))
        start = cut
    return spans
