"""Turning a model's summary text into points that cite the chunks they came from.

The reduce prompt numbers its notes ``[n]`` and asks for those markers. A marker that names
no existing chunk is dropped and reported; a point with no valid marker is attributed to the
note it shares most words with, and marked ``inferred``. A point that mostly repeats an
earlier one is merged into it, keeping both points' citations."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.documents import split_sentences
from engine.tasks.support import content_words, is_supported
from engine.tasks.text_quality import drop_repeated_sentences, ngrams, words

_MARKER = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_CUT_MARKER = re.compile(r"\[[\d,;\s]*$")  # a marker the length limit cut off
_BULLET = re.compile(r"^\s*(?:[-*•+]|\d+[.)])\s+")
_ACTIONS = re.compile(r"^\W*action items?\W*$", re.IGNORECASE)
_HEADER = re.compile(r"^\W*(key points?|summary|bullet points?)\W*$", re.IGNORECASE)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class Note:
    text: str
    chunks: tuple[int, ...]  # 1-based chunk ids


@dataclass(frozen=True, slots=True)
class Point:
    text: str
    chunks: tuple[int, ...]
    kind: str = "point"  # "point" | "action"
    inferred: bool = False  # cited by word overlap, not by the model's markers
    support: float | None = None  # share of its content words in its chunks; None: unchecked

    @property
    def unsupported(self) -> bool:
        return self.support is not None and not is_supported(self.support)


def render_notes(notes: Sequence[Note]) -> str:
    return "\n".join(f"[{', '.join(map(str, n.chunks))}] {n.text}" for n in notes)


def without_markers(text: str) -> str:
    """``text`` without its ``[n]`` citation markers."""
    return _CUT_MARKER.sub("", _MARKER.sub("", text))


def _statements(text: str, paragraph: bool) -> list[tuple[str, str]]:
    """(kind, statement) pairs: bullet lines, or sentences of a paragraph."""
    out: list[tuple[str, str]] = []
    kind = "point"
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if _ACTIONS.match(stripped):
            kind = "action"
            continue
        if _HEADER.match(stripped):
            continue
        body = _BULLET.sub("", stripped)
        if paragraph:
            out += [(kind, s.text) for s in split_sentences(body)]
        else:
            out.append((kind, body))
    return out


def _overlap(a: str, b: str) -> float:
    wa, wb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    return len(wa & wb) / len(wa | wb) if wa and wb else 0.0


def cite(text: str, notes: Sequence[Note], existing: set[int],
         paragraph: bool = False) -> tuple[list[Point], list[int]]:
    """Points with validated citations, and the invalid marker numbers that were dropped."""
    points: list[Point] = []
    invalid: list[int] = []
    for kind, statement in _statements(text, paragraph):
        cited: list[int] = []
        for match in _MARKER.finditer(statement):
            for number in re.split(r"\s*[,;]\s*", match[1]):
                n = int(number)
                (cited if n in existing else invalid).append(n)
        clean = " ".join(_CUT_MARKER.sub("", _MARKER.sub("", statement)).split()).rstrip(" ,;")
        if not any(ch.isalpha() for ch in clean):  # only numbers or markers: not a statement
            continue
        inferred = False
        if not cited and notes:
            best = max(notes, key=lambda n: _overlap(clean, n.text))
            cited, inferred = list(best.chunks), True
        points.append(Point(drop_repeated_sentences(clean), tuple(sorted(set(cited))), kind,
                            inferred))
    return merge_repeats(points), invalid


REPEAT_WORDS = 0.8  # share of the shorter point's content words the other also has
REPEAT_TRIGRAMS = 0.6  # or share of its word triples


def is_repeat(a: str, b: str) -> bool:
    """Whether one of two statements mostly says what the other says."""
    wa, wb = set(content_words(a)), set(content_words(b))
    if not wa or not wb:
        return " ".join(words(a)) == " ".join(words(b))
    if len(wa & wb) / min(len(wa), len(wb)) >= REPEAT_WORDS and min(len(wa), len(wb)) >= 2:
        return True
    ta, tb = set(ngrams(words(a), 3)), set(ngrams(words(b), 3))
    return bool(ta and tb) and len(ta & tb) / min(len(ta), len(tb)) >= REPEAT_TRIGRAMS


def _union(kept: Point, repeat: Point) -> tuple[tuple[int, ...], bool]:
    """Citations of two merged points: the model's own markers win over inferred ones."""
    if kept.inferred != repeat.inferred:
        chosen = repeat if kept.inferred else kept
        return chosen.chunks, False
    return tuple(sorted({*kept.chunks, *repeat.chunks})), kept.inferred


def merge_repeats(points: Sequence[Point]) -> list[Point]:
    """Points with each one that mostly repeats an earlier point of the same kind merged
    into it: the longer wording, the earlier place, the citations of both."""
    merged: list[Point] = []
    for point in points:
        same = next((i for i, p in enumerate(merged)
                     if p.kind == point.kind and is_repeat(p.text, point.text)), None)
        if same is None:
            merged.append(point)
            continue
        kept = merged[same]
        chunks, inferred = _union(kept, point)
        text = point.text if len(point.text) > len(kept.text) else kept.text
        merged[same] = Point(text, chunks, kept.kind, inferred)
    return merged
