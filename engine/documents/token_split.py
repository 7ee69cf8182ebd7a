"""Cutting a sentence that alone exceeds the token budget. Token boundaries are found by
counting prefixes (the counter is the only view of the tokenizer), then the cut moves back
to a space or a clause mark when one is near, and never separates a mark from its letter
(Thai vowels and tones, Indic vowel signs, accents)."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from engine.documents.model import Block

_SOFT_BREAKS = "，、；：,;:)）」』"
_LOOK_BACK = 0.25  # how far back (share of the slice) to look for a nicer cut
# A window this many characters per budget token decides whether the rest can still fit, so
# each step counts O(budget) characters instead of the whole remaining text (which made text
# without sentence breaks quadratic: 1 MB took minutes). A window whose text averages more
# characters per token than this (runs of spaces) is doubled until it does not fit.
_WINDOW_CHARS_PER_TOKEN = 16


def _longest_fit(
    block: Block, start: int, end: int, count: Callable[[str], int], budget: int
) -> int:
    """The largest m (start < m < end) with count(block.markdown(start, m)) <= budget,
    knowing the whole range does not fit. Counts are close to monotonic in m, which is all
    the search needs (the result is checked by the caller). The probes interpolate on the
    counts (tokens grow about linearly with characters), bisecting when that stalls, so a
    cut costs a few counts of about the slice's length."""
    lo, lo_tokens = start + 1, 0
    hi = min(end, start + budget * 4)
    hi_tokens = count(block.markdown(start, hi))
    while hi < end and hi_tokens <= budget:
        lo, lo_tokens = hi, hi_tokens
        hi = min(end, start + (hi - start) * 2)
        hi_tokens = count(block.markdown(start, hi))
    while hi - lo > 1:
        guess = lo + (hi - lo) * (budget + 0.5 - lo_tokens) / max(1, hi_tokens - lo_tokens)
        mid = min(hi - 1, max(lo + 1, int(guess)))
        if hi - lo > 8 and not lo + (hi - lo) // 8 <= mid <= hi - (hi - lo) // 8:
            mid = (lo + hi) // 2 if mid in (lo + 1, hi - 1) else mid
        tokens = count(block.markdown(start, mid))
        if tokens <= budget:
            lo, lo_tokens = mid, tokens
        else:
            hi, hi_tokens = mid, tokens
    return lo


def _nicer_cut(text: str, start: int, cut: int) -> int:
    floor = cut - int((cut - start) * _LOOK_BACK)
    for i in range(cut - 1, max(floor, start + 1) - 1, -1):
        if text[i].isspace() or text[i - 1] in _SOFT_BREAKS:
            return i
    return _not_inside_a_cluster(text, start, cut)


def _joins_previous(char: str) -> bool:
    """A mark (Thai vowels and tones, Indic vowel signs, accents), a zero-width joiner or a
    variation selector: a cut before it would separate it from its letter."""
    return unicodedata.category(char)[0] == "M" or char in "\u200d\ufe0e\ufe0f"


def _not_inside_a_cluster(text: str, start: int, cut: int) -> int:
    while cut > start + 1 and cut < len(text) and _joins_previous(text[cut]):
        cut -= 1
    return cut


def split_to_budget(
    block: Block, start: int, end: int, count: Callable[[str], int], budget: int,
    on_cut: Callable[[int], None] | None = None,
) -> list[tuple[int, int, int]]:
    """Slices (start, end, tokens) of block.text[start:end], each within ``budget``; the
    work is linear in the length of the text. ``on_cut`` gets each cut's offset (progress
    through a long block)."""
    text = block.text
    slices: list[tuple[int, int, int]] = []
    while start < end:
        window = min(end, start + budget * _WINDOW_CHARS_PER_TOKEN)
        tokens = count(block.markdown(start, window))
        while tokens <= budget and window < end:  # rare: very few tokens per character
            window = min(end, start + (window - start) * 2)
            tokens = count(block.markdown(start, window))
        if tokens <= budget:
            slices.append((start, end, tokens))
            break
        fit = _longest_fit(block, start, end, count, budget)
        cut = _nicer_cut(text, start, fit)
        stop = cut
        while stop > start + 1 and text[stop - 1].isspace():
            stop -= 1
        tokens = count(block.markdown(start, stop))
        if tokens > budget:  # the nicer cut counted more; keep the exact fit
            stop = cut = _not_inside_a_cluster(text, start, fit)
            tokens = count(block.markdown(start, stop))
        slices.append((start, stop, tokens))
        if on_cut is not None:
            on_cut(cut)
        start = cut
        while start < end and text[start].isspace():
            start += 1
    return slices
