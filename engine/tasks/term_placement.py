"""Putting a glossary's required translations where their source terms are.

The model translates a segment freely; each required term is then placed over the word the
model wrote for the source term: the source term itself left untranslated, the model's own
translation of the term (``renderings``, from translating the term alone), or a word sharing
the required translation's stem ("Lizenz" for "Lizenz-XQ"), inflections allowed. Of several
candidates the one nearest (by relative position) to the source occurrence wins. A term is
placed at most as often as its source term occurs; a copy tacked onto the end of the
translation is removed; a term that has nowhere to go is reported, never appended."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.tasks.glossary import GlossaryEntry

_INFLECTION = 3  # letters a candidate word may add to a rendering or stem ("Lizenz" -> "Lizenzen")
_MIN_STEM = 4
_SENTENCE_END = re.compile(r"[.!?;:](?=\s|$)")
_STEM = re.compile(r"^\w+", re.UNICODE)
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class TermResult:
    source: str
    target: str
    expected: int  # occurrences of the source term in the segment
    kept: int  # occurrences of the required translation the model wrote itself and kept
    placed: int  # occurrences placed over the model's word for the term
    removed: int  # copies tacked onto the end, taken out
    excess: int  # occurrences beyond ``expected`` the model wrote itself (left, reported)

    @property
    def missing(self) -> int:
        return max(0, self.expected - self.kept - self.placed)

    def problem(self) -> str:
        """A plain explanation when this term needs a reviewer's look, else ""."""
        if self.missing:
            found = self.kept + self.placed
            return (f"“{self.target}” (for “{self.source}”) could not be placed"
                    + (f" {self.missing} of {self.expected} times" if found else "")
                    + f": no word in the translation corresponds to “{self.source}”.")
        if self.excess:
            return (f"“{self.target}” appears {self.expected + self.excess} times but "
                    f"“{self.source}” only {self.expected} in the source.")
        return ""


@dataclass(frozen=True, slots=True)
class Placement:
    text: str
    terms: tuple[TermResult, ...]


def occurrences(term: str, text: str) -> list[tuple[int, int]]:
    """Whole-word, case-insensitive spans of ``term`` in ``text``."""
    return [m.span() for m in re.finditer(rf"(?<!\w){re.escape(term)}(?!\w)", text,
                                          re.IGNORECASE)]


def _inflected(stem: str, text: str) -> list[tuple[int, int]]:
    """Spans of words that are ``stem`` plus at most a few letters."""
    if not stem:
        return []
    pattern = rf"(?<!\w){re.escape(stem)}\w{{0,{_INFLECTION}}}(?!\w)"
    return [m.span() for m in re.finditer(pattern, text, re.IGNORECASE)]


def _compound_tails(stem: str, text: str) -> list[tuple[int, int]]:
    """Spans of ``stem`` (plus a few letters) closing a longer word, as in German compounds
    ("Urheberrechts|lizenz"): the part the required translation replaces."""
    if not stem:
        return []
    pattern = rf"(?<=\w{{3}}){re.escape(stem)}\w{{0,{_INFLECTION}}}(?!\w)"
    return [m.span() for m in re.finditer(pattern, text, re.IGNORECASE)]


def target_stem(target: str) -> str:
    """The leading word of a required translation when long enough to recognise it by."""
    match = _STEM.match(target)
    return match.group() if match and len(match.group()) >= _MIN_STEM else ""


def appended(source: str, text: str, entry: GlossaryEntry,
             targets: Sequence[str] = ()) -> list[tuple[int, int]]:
    """Occurrences of ``entry.target`` tacked onto the end rather than translated in place:
    in a trailing fragment after the last sentence end made only of required translations
    (``targets``, this entry's included), or as the last word when the source term sits in
    the first half of the source and the translation runs on for a while before it."""
    spans = occurrences(entry.target, text)
    if not spans:
        return []
    ends = [m.end() for m in _SENTENCE_END.finditer(text.rstrip())]
    last_end = ends[-1] if ends else -1
    tail = text[last_end + 1:] if last_end >= 0 else ""
    for term in {entry.target, *targets}:
        tail = re.sub(rf"(?<!\w){re.escape(term)}(?!\w)", " ", tail, flags=re.IGNORECASE)
    found = []
    if last_end >= 0 and not _WORD.search(tail):
        found = [s for s in spans if s[0] > last_end]
    stripped = text.rstrip(" .!?;:,\"'”)")
    sources = occurrences(entry.source, source)
    last = spans[-1]
    if (last not in found and last[1] == len(stripped) and sources
            and sources[-1][1] <= 0.5 * len(source) and len(_WORD.findall(text)) >= 8):
        found.append(last)
    return found


def _remove(text: str, spans: Sequence[tuple[int, int]]) -> str:
    for start, end in sorted(spans, reverse=True):
        text = text[:start].rstrip() + (" " if end < len(text) else "") + text[end:].lstrip()
    text = re.sub(r"\s+([.!?;:,])", r"\1", text)
    return text.strip()


def _candidates(entry: GlossaryEntry, text: str,
                renderings: Sequence[str]) -> list[tuple[int, int]]:
    spans = set(occurrences(entry.source, text))
    spans.update(_inflected(entry.source, text))
    for rendering in renderings:
        rendering = rendering.strip(" .!?;:,\"'“”„«»")
        if not rendering or rendering.lower() == entry.target.lower():
            continue
        spans.update(_inflected(rendering, text))
        if len(entry.source.split()) == 1:
            for word in _WORD.findall(rendering):
                if len(word) >= _MIN_STEM:
                    spans.update(_inflected(word, text))
    stem = target_stem(entry.target)
    spans.update(_inflected(stem, text))
    spans.update(_compound_tails(stem, text))
    return sorted(spans)


def _overlaps(span: tuple[int, int], others: Sequence[tuple[int, int]]) -> bool:
    return any(span[0] < b and a < span[1] for a, b in others)


def place_terms(source: str, text: str, entries: Sequence[GlossaryEntry],
                renderings: Mapping[str, Sequence[str]] | None = None) -> Placement:
    """``text`` with each entry's target placed where its source term occurs (see module)."""
    renderings = renderings or {}
    targets = [e.target for e in entries]
    results: list[TermResult] = []
    for entry in sorted(entries, key=lambda e: -len(e.source)):
        expected = len(occurrences(entry.source, source))
        tacked = appended(source, text, entry, targets)
        text = _remove(text, tacked) if tacked else text
        present = occurrences(entry.target, text)
        kept = min(len(present), expected)
        excess = max(0, len(present) - expected)
        placed = 0
        need = expected - kept
        if need > 0:
            taken = [s for t in targets for s in occurrences(t, text)]
            free = [c for c in _candidates(entry, text, renderings.get(entry.source, ()))
                    if not _overlaps(c, taken)]
            chosen = _nearest(source, text, entry, free, need)
            for start, end in sorted(chosen, reverse=True):
                joint = "-" if start and text[start - 1].isalnum() else ""
                text = text[:start] + joint + entry.target + text[end:]
            placed = len(chosen)
        results.append(TermResult(entry.source, entry.target, expected, kept, placed,
                                  len(tacked), excess))
    return Placement(text, tuple(results))


def _nearest(source: str, text: str, entry: GlossaryEntry,
             candidates: list[tuple[int, int]], need: int) -> list[tuple[int, int]]:
    """Up to ``need`` non-overlapping candidates for the source occurrences that no required
    translation in the text answers yet, in the same order as those occurrences and with the
    least total distance in relative position (a small dynamic programme)."""
    spans: list[tuple[int, int]] = []
    for span in sorted(candidates, key=lambda c: (c[0], -c[1])):
        if not _overlaps(span, spans):
            spans.append(span)
    if not spans or not text:
        return []
    wanted = [s[0] / max(1, len(source)) for s in occurrences(entry.source, source)]
    for position in (s[0] / len(text) for s in occurrences(entry.target, text)):
        if wanted:  # the translations already there answer the nearest source occurrences
            wanted.remove(min(wanted, key=lambda w: abs(w - position)))
    wanted = wanted[:need]
    if len(spans) <= len(wanted):
        return spans
    at = [c[0] / len(text) for c in spans]
    # cost[i][j]: best total distance placing the first i wanted among the first j spans.
    inf = float("inf")
    cost = [[0.0] * (len(spans) + 1)] + [[inf] * (len(spans) + 1) for _ in wanted]
    for i, position in enumerate(wanted, start=1):
        for j in range(i, len(spans) + 1):
            cost[i][j] = min(cost[i][j - 1], cost[i - 1][j - 1] + abs(at[j - 1] - position))
    chosen: list[tuple[int, int]] = []
    i, j = len(wanted), len(spans)
    while i:
        if cost[i][j] == cost[i][j - 1] and j > i:
            j -= 1
        else:
            chosen.append(spans[j - 1])
            i, j = i - 1, j - 1
    return chosen[::-1]
