"""Finding and removing the parts of a prompt a small model copies into its answer.

A translation prompt holds the text to translate plus instruction lines ("Translate the
English text below into German.", "Glossary: License = Lizenz-XQ") and labels ("German:").
Small models sometimes repeat those lines instead of, or besides, translating. An echo is a
run of at least ``MIN_RUN`` words that follows an instruction line word for word (case and
punctuation aside) and does not occur in the text being translated, so a translation that
merely uses a glossary term, or quotes the source, is left alone."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

MIN_RUN = 3  # words in a row shared with an instruction line
_WORD = re.compile(r"\w+", re.UNICODE)
_TRAILING = re.compile(r"[\s:;,.=→>\-–—]*")
_LEADING_JUNK = re.compile(r"^[\s:;,.=→>\-–—]+")
# What is left of an introduction once its echoed words are gone ("of ... would be:").
_LEAD_IN = re.compile(r"^\W*(?:\w+\W+){0,4}?\w*\s*:\s+")


@dataclass(frozen=True, slots=True)
class Echo:
    text: str  # the cleaned text
    removed: tuple[str, ...]  # the echoed pieces, as they appeared


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(text)]


def _ngrams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _echo_span(text: str, line: str, source_grams: set[tuple[str, ...]]) -> tuple[int, int] | None:
    """Character span of the first echo of ``line`` in ``text``, or None."""
    words = _words(text)
    line_words = [w for w, _, _ in _words(line)]
    if len(line_words) < MIN_RUN or len(words) < MIN_RUN:
        return None
    out_words = [w for w, _, _ in words]
    matcher = SequenceMatcher(None, out_words, line_words, autojunk=False)
    runs = [b for b in matcher.get_matching_blocks() if b.size >= MIN_RUN
            and tuple(out_words[b.a:b.a + MIN_RUN]) not in source_grams]
    if not runs:
        return None
    first = last = runs[0]
    for block in runs[1:]:  # later runs of the same line close to the first join its span
        if block.a - (last.a + last.size) <= 2:
            last = block
    start = words[first.a][1]
    end = words[last.a + last.size - 1][2]
    end += _TRAILING.match(text, end).end() - end  # type: ignore[union-attr]
    return start, end


def label_pattern(labels: Iterable[str]) -> re.Pattern[str]:
    """``Label:`` prefixes (one or more) at the start of an answer, e.g. ``German:``."""
    names = "|".join(sorted((re.escape(x) for x in labels if x), key=len, reverse=True))
    return re.compile(rf"^\s*(?:(?:{names})\s*:\s*)+", re.IGNORECASE)


def strip_echo(text: str, instructions: Sequence[str], source: str,
               labels: Iterable[str] = ()) -> Echo:
    """``text`` without echoed ``instructions`` (each a line of the prompt other than the
    text to translate) and without leading ``labels`` such as the target language's name."""
    source_grams = _ngrams([w for w, _, _ in _words(source)], MIN_RUN)
    removed: list[str] = []
    cleaned = text
    changed = True
    at_start = False
    while changed:
        changed = False
        for line in instructions:
            span = _echo_span(cleaned, line, source_grams)
            if span is not None:
                removed.append(cleaned[span[0]:span[1]].strip())
                at_start = at_start or not cleaned[:span[0]].strip(" \"'“”„:")
                cleaned = cleaned[:span[0]] + cleaned[span[1]:]
                changed = True
    if at_start and (lead := _LEAD_IN.match(cleaned)) and lead.end() < len(cleaned):
        removed.append(lead.group().strip())
        cleaned = cleaned[lead.end():]
    pattern = label_pattern(labels) if labels else None
    if pattern is not None and (match := pattern.match(cleaned)):
        removed.append(match.group().strip())
        cleaned = cleaned[match.end():]
    if removed:
        cleaned = _LEADING_JUNK.sub("", " ".join(cleaned.split()))
    return Echo(cleaned.strip(), tuple(removed))
