"""A glossary: source terms and the translation each one must get.

Which entries apply to a segment is decided here (whole-word, case-insensitive match in the
source); the translation is then enforced while decoding (``BatchItem.required``)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import BadRequestError


@dataclass(frozen=True, slots=True)
class GlossaryEntry:
    source: str
    target: str


@dataclass(frozen=True, slots=True)
class Glossary:
    entries: tuple[GlossaryEntry, ...] = ()

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Glossary:
        entries = []
        for source, target in pairs:
            source, target = source.strip(), target.strip()
            if not source or not target:
                raise BadRequestError("A glossary entry needs both a term and its translation.")
            entries.append(GlossaryEntry(source, target))
        return cls(tuple(entries))

    def applicable(self, text: str) -> tuple[GlossaryEntry, ...]:
        """Entries whose term occurs in ``text``, longest terms first."""
        found = [e for e in self.entries
                 if re.search(rf"(?<!\w){re.escape(e.source)}(?!\w)", text, re.IGNORECASE)]
        return tuple(sorted(found, key=lambda e: -len(e.source)))

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["term", "translation"])
        writer.writerows((e.source, e.target) for e in self.entries)
        return buffer.getvalue()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_csv(), encoding="utf-8")


def parse_csv(text: str) -> Glossary:
    """Two columns, term and translation; a header row ``term,translation`` is optional."""
    rows = [r for r in csv.reader(io.StringIO(text.lstrip("\ufeff"))) if any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["term", "translation"]:
        rows = rows[1:]
    for number, row in enumerate(rows, start=1):
        if len(row) < 2:
            raise BadRequestError(f"Glossary row {number} needs two columns: term,translation.")
    return Glossary.from_pairs((r[0], r[1]) for r in rows)


def load_csv(path: str | Path) -> Glossary:
    try:
        return parse_csv(Path(path).read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise BadRequestError(f"Cannot read the glossary {path}: {exc}") from exc


def adherence(pairs: Iterable[tuple[str, str]], glossary: Glossary) -> float:
    """Share of (source, translation) pairs where every applicable term's translation
    appears in the translation; 1.0 when no term applies anywhere."""
    required = hit = 0
    for source, translation in pairs:
        for entry in glossary.applicable(source):
            required += 1
            hit += entry.target in translation
    return hit / required if required else 1.0
