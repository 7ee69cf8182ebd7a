"""Checking one segment's raw model output before it becomes the translation: echoed prompt
lines are stripped, glossary terms placed (``term_placement``), and an output still in the
source language, or a copy of the source, is flagged as untranslated. Every problem becomes
a ``ReviewFlag`` with a plain explanation for the panel, the export and the JSON."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from engine.tasks.glossary import GlossaryEntry
from engine.tasks.language import language_name, language_odds
from engine.tasks.prompt_echo import strip_echo
from engine.tasks.term_placement import TermResult, place_terms

UNTRANSLATED, GLOSSARY, ECHO, EMPTY = "untranslated", "glossary", "prompt_echo", "empty"
SOURCE_LANGUAGE_ODDS = 0.95  # P(source language | output), against the target language
COPY_SIMILARITY = 0.9  # character similarity to the source above which an output is a copy
_NOT_WORDS = re.compile(r"https?://\S+|www\.\S+|\S+@\S+|[\d\W_]+", re.UNICODE)
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)


@dataclass(frozen=True, slots=True)
class ReviewFlag:
    kind: str  # UNTRANSLATED | GLOSSARY | ECHO | EMPTY
    message: str


@dataclass(frozen=True, slots=True)
class Review:
    text: str
    flags: tuple[ReviewFlag, ...]
    leaked: tuple[str, ...]  # echoed prompt pieces removed from the output
    terms: tuple[TermResult, ...]


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def _translatable_words(text: str) -> list[str]:
    return _WORD.findall(_NOT_WORDS.sub(" ", text))


def _without(text: str, terms: Sequence[str]) -> str:
    for term in terms:
        text = re.sub(rf"(?<!\w){re.escape(term)}(?!\w)", " ", text, flags=re.IGNORECASE)
    return text


def untranslated_reason(source: str, output: str, source_language: str,
                        target_language: str, entries: Sequence[GlossaryEntry] = ()) -> str:
    """Why ``output`` is not a translation of ``source`` into the target language, or ""
    (glossary terms and their required translations are left out of both comparisons)."""
    if not _translatable_words(source) or source_language == target_language:
        return ""  # numbers, addresses, code-like text: copying them is right
    checked = _without(output, [e.target for e in entries])
    original = _without(source, [e.source for e in entries])
    similarity = SequenceMatcher(None, _normal(original), _normal(checked),
                                 autojunk=False).ratio()
    if similarity >= COPY_SIMILARITY and _translatable_words(original):
        return ("Untranslated: the output is a copy of the source "
                f"({similarity:.0%} the same).")
    if len(_translatable_words(checked)) < 2:
        return ""
    odds = language_odds(checked, source_language, target_language)
    if odds is not None and odds >= SOURCE_LANGUAGE_ODDS:
        return (f"Untranslated: the output is in {language_name(source_language)}, not "
                f"{language_name(target_language)}.")
    return ""


def review(source: str, raw: str, source_language: str, target_language: str,
           instructions: Sequence[str], labels: Sequence[str],
           entries: Sequence[GlossaryEntry],
           renderings: Mapping[str, Sequence[str]] | None = None) -> Review:
    echo = strip_echo(raw, instructions, source, labels)
    flags: list[ReviewFlag] = []
    if echo.removed:
        flags.append(ReviewFlag(ECHO, "The model repeated its instructions; removed: "
                                + " / ".join(f"“{r}”" for r in echo.removed)))
    if not echo.text:
        flags.append(ReviewFlag(EMPTY, "No translation: the model gave nothing else."))
        return Review("", tuple(flags), echo.removed, ())
    placement = place_terms(source, echo.text, entries, renderings)
    flags.extend(ReviewFlag(GLOSSARY, t.problem()) for t in placement.terms if t.problem())
    reason = untranslated_reason(source, placement.text, source_language, target_language,
                                 entries)
    if reason:
        flags.append(ReviewFlag(UNTRANSLATED, reason))
    return Review(placement.text, tuple(flags), echo.removed, placement.terms)
