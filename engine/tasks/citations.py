"""Turning a model's summary text into points that cite the chunks they came from.

The reduce prompt numbers its notes ``[n]`` and asks for those markers. A marker that names
no existing chunk is dropped and reported; a point with no valid marker is attributed to the
note it shares most words with, and marked ``inferred``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.documents import split_sentences

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


def render_notes(notes: Sequence[Note]) -> str:
    return "\n".join(f"[{', '.join(map(str, n.chunks))}] {n.text}" for n in notes)


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
        same = next((i for i, p in enumerate(points)
                     if p.kind == kind and p.text.casefold() == clean.casefold()), None)
        if same is not None:  # a small model repeating itself: one point, both citations
            if cited:
                earlier = points[same]
                chunks = tuple(sorted({*earlier.chunks, *cited})) if not earlier.inferred \
                    else tuple(sorted(set(cited)))
                points[same] = Point(earlier.text, chunks, kind, False)
            continue
        inferred = False
        if not cited and notes:
            best = max(notes, key=lambda n: _overlap(clean, n.text))
            cited, inferred = list(best.chunks), True
        points.append(Point(clean, tuple(sorted(set(cited))), kind, inferred))
    return points, invalid
