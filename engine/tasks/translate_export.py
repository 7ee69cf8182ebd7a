"""Writing a translation as Markdown, plain text or Word, with the source's structure:
headings stay headings (``Heading n`` in Word), list items stay list items (``List Bullet``
/ ``List Number``)."""

from __future__ import annotations

from pathlib import Path

from engine.documents import Block, BlockKind, Location
from engine.errors import BadRequestError
from engine.tasks.translate import Segment, Translation

EXPORT_SUFFIXES = (".md", ".txt", ".docx")


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
    return "".join(parts) + "\n"


def to_text(translation: Translation) -> str:
    lines = []
    for segment, text in translation.blocks():
        if segment.kind is BlockKind.LIST_ITEM:
            text = "  " * max(0, segment.level - 1) + "- " + text
        lines.append(text)
    return "\n\n".join(lines) + "\n"


def to_docx(translation: Translation, path: str | Path) -> None:
    import docx

    document = docx.Document()
    for segment, text in translation.blocks():
        match segment.kind:
            case BlockKind.HEADING:
                document.add_heading(text, level=max(1, min(segment.level, 9)))
            case BlockKind.LIST_ITEM:
                style = "List Number" if segment.ordered else "List Bullet"
                if segment.level >= 2:
                    style += f" {min(segment.level, 3)}"
                document.add_paragraph(text, style=style)
            case BlockKind.QUOTE:
                document.add_paragraph(text, style="Quote")
            case _:
                document.add_paragraph(text)
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
