"""The parsed form of a document: an ordered list of typed blocks with their locations.

Blocks keep the text verbatim (no Markdown markers); ``Block.markdown`` adds the markers,
so a later step can quote a sentence exactly and still send structured Markdown to a model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import StrEnum


class DocumentFormat(StrEnum):
    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"
    PDF = "pdf"
    DOCX = "docx"
    PASTED = "pasted"


class BlockKind(StrEnum):
    HEADING = "heading"
    PARAGRAPH = "paragraph"
    LIST_ITEM = "list_item"
    QUOTE = "quote"
    CODE = "code"
    TABLE_ROW = "table_row"  # cells joined with " | "
    PAGE_BREAK = "page_break"  # empty text; the next blocks are on ``location.page``


@dataclass(frozen=True, slots=True)
class Location:
    """Where a block is, for citations.

    ``paragraph`` is the 1-based number of the block among the document's text blocks
    (headings, list items and table rows count, as in a word processor); ``heading_path``
    lists the enclosing headings, outermost first (a heading includes itself).
    """

    paragraph: int
    page: int | None = None
    heading_path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Block:
    kind: BlockKind
    text: str
    location: Location
    level: int = 0  # heading level 1-6, or list nesting depth from 1
    ordered: bool = False  # list items of a numbered list

    def markdown(self, start: int = 0, end: int | None = None) -> str:
        """Markdown for ``text[start:end]``: the opening marker only when the slice starts
        the block, the closing one only when it ends it; code slices are always fenced."""
        end = len(self.text) if end is None else end
        body = self.text[start:end]
        first, last = start == 0, end == len(self.text)
        match self.kind:
            case BlockKind.HEADING:
                body = " ".join(body.split())
                return f"{'#' * max(1, min(self.level, 6))} {body}" if first else body
            case BlockKind.LIST_ITEM:
                marker = "1. " if self.ordered else "- "
                return "  " * max(0, self.level - 1) + marker + body if first else body
            case BlockKind.QUOTE:
                return "\n".join("> " + line for line in body.split("\n"))
            case BlockKind.CODE:
                return f"```\n{body}\n```"
            case BlockKind.TABLE_ROW:
                return ("| " if first else "") + body + (" |" if last else "")
            case BlockKind.PAGE_BREAK:
                return ""
            case _:
                return body


@dataclass(frozen=True, slots=True)
class DocumentStats:
    pages: int | None  # None for formats without pages
    paragraphs: int  # text blocks, as counted by Location.paragraph
    headings: int
    characters: int  # characters of block text, without Markdown markers


BLOCK_SEPARATOR = "\n\n"
_TIGHT = (BlockKind.LIST_ITEM, BlockKind.TABLE_ROW)


def markdown_separator(previous: Block, following: Block) -> str:
    """Consecutive list items and table rows stay on consecutive lines, so that a list or
    a table reads as one; other blocks are separated by a blank line."""
    if previous.kind is following.kind and previous.kind in _TIGHT:
        return "\n"
    return BLOCK_SEPARATOR


@dataclass(frozen=True, slots=True)
class Document:
    source: str  # absolute path of the file, or "" for pasted text
    name: str  # file name, or the label given to pasted text
    format: DocumentFormat
    blocks: tuple[Block, ...]
    title: str | None = None
    page_count: int | None = None
    encoding: str | None = None  # for text formats: the encoding the bytes were read with
    notes: tuple[str, ...] = field(default=())  # things the user should know, e.g. a fallback

    @property
    def text_blocks(self) -> tuple[Block, ...]:
        return tuple(b for b in self.blocks if b.kind is not BlockKind.PAGE_BREAK)

    @property
    def stats(self) -> DocumentStats:
        blocks = self.text_blocks
        return DocumentStats(
            pages=self.page_count,
            paragraphs=len(blocks),
            headings=sum(b.kind is BlockKind.HEADING for b in blocks),
            characters=sum(len(b.text) for b in blocks),
        )

    @property
    def text(self) -> str:
        return BLOCK_SEPARATOR.join(b.text for b in self.text_blocks)

    def to_markdown(self) -> str:
        blocks = self.text_blocks
        parts = [blocks[0].markdown()] if blocks else []
        for previous, block in itertools.pairwise(blocks):
            parts += [markdown_separator(previous, block), block.markdown()]
        return "".join(parts)
