"""Writing a translation as Markdown, plain text or Word, with the source's structure:
headings stay headings (``Heading n`` in Word), list items stay list items (``List Bullet``
/ ``List Number``).

Segments that need a reviewer's look (untranslated, a glossary term not placed, low
confidence) travel with the export: a "Review notes" list at the end of Markdown and plain
text, a Word comment on the paragraph in .docx."""

from __future__ import annotations

from pathlib import Path

from engine.documents import Block, BlockKind, Location
from engine.errors import BadRequestError
from engine.events import finish_sentence
from engine.tasks.translate import Segment, Translation

EXPORT_SUFFIXES = (".md", ".txt", ".docx")


REVIEW_AUTHOR = "Verso"


def segment_notes(segment: Segment) -> list[str]:
    """Plain explanations of what a reviewer should check in ``segment``."""
    notes = [f.message for f in segment.flags if f.kind != "prompt_echo"]
    stopped = finish_sentence(segment.finish_reason) if segment.translated else None
    if stopped:
        notes.append(f"{stopped[:-1]}, so the translation may be cut short.")
    if segment.low_confidence and not segment.untranslated and segment.text:
        notes.append("Low confidence: the model was unsure of this translation.")
    return notes


def _block_notes(translation: Translation) -> list[tuple[int, list[str]]]:
    """(block number from 1, notes) for each block with a segment that needs review."""
    out: list[tuple[int, list[str]]] = []
    for number, (first, _) in enumerate(translation.blocks(), start=1):
        notes = [n for s in translation.segments if s.block == first.block
                 for n in segment_notes(s)]
        if notes:
            out.append((number, notes))
    return out


def review_notes(translation: Translation) -> str:
    """The "Review notes" section ("" when nothing needs review)."""
    lines = [f"- Paragraph {number}: " + " ".join(notes)
             for number, notes in _block_notes(translation)]
    return "Review notes\n\n" + "\n".join(lines) + "\n" if lines else ""


def _block(segment: Segment, text: str) -> Block:
    return Block(segment.kind, text, Location(paragraph=segment.block + 1), segment.level,
                 segment.ordered)


def to_markdown(translation: Translation) -> str:
    parts: list[str] = []
    previous: BlockKind | None = None
    for segment, text in translation.blocks():
        tight = previous is segment.kind and segment.kind in (BlockKind.LIST_ITEM,
                                                               BlockKind.TABLE_ROW)
        if parts:
            parts.append("\n" if tight else "\n\n")
        parts.append(_block(segment, text).markdown())
        previous = segment.kind
    notes = review_notes(translation)
    return "".join(parts) + "\n" + (f"\n---\n\n## {notes}" if notes else "")


def to_text(translation: Translation) -> str:
    lines = []
    for segment, text in translation.blocks():
        if segment.kind is BlockKind.LIST_ITEM:
            text = "  " * max(0, segment.level - 1) + "- " + text
        lines.append(text)
    notes = review_notes(translation)
    return "\n\n".join(lines) + "\n" + (f"\n{notes}" if notes else "")


def to_docx(translation: Translation, path: str | Path) -> None:
    import docx

    document = docx.Document()
    notes = dict(_block_notes(translation))
    for number, (segment, text) in enumerate(translation.blocks(), start=1):
        match segment.kind:
            case BlockKind.HEADING:
                paragraph = document.add_heading(text, level=max(1, min(segment.level, 9)))
            case BlockKind.LIST_ITEM:
                style = "List Number" if segment.ordered else "List Bullet"
                if segment.level >= 2:
                    style += f" {min(segment.level, 3)}"
                paragraph = document.add_paragraph(text, style=style)
            case BlockKind.QUOTE:
                paragraph = document.add_paragraph(text, style="Quote")
            case _:
                paragraph = document.add_paragraph(text)
        if number in notes:
            runs = paragraph.runs or [paragraph.add_run("")]
            document.add_comment(runs, " ".join(notes[number]), author=REVIEW_AUTHOR,
                                 initials="V")
    document.save(str(path))


def export(translation: Translation, path: str | Path) -> Path:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".docx":
        to_docx(translation, path)
    elif suffix == ".md":
        path.write_text(to_markdown(translation), encoding="utf-8")
    elif suffix == ".txt":
        path.write_text(to_text(translation), encoding="utf-8")
    else:
        raise BadRequestError(f"Cannot export to {path.name}: use one of "
                              + ", ".join(EXPORT_SUFFIXES) + ".")
    return path
