"""Collects blocks in reading order and gives each its location: paragraph number, page,
and the path of enclosing headings. Every loader goes through it, so numbering and the
character limit behave the same for every format."""

from __future__ import annotations

from engine.documents.errors import DocumentError, DocumentProblem
from engine.documents.model import Block, BlockKind, Location


class BlockBuilder:
    def __init__(self, name: str, max_chars: int, page: int | None = None) -> None:
        self._name = name
        self._max_chars = max_chars
        self.page = page
        self._blocks: list[Block] = []
        self._headings: list[tuple[int, str]] = []
        self._path: tuple[str, ...] = ()  # shared by the blocks of a section
        self._paragraph = 0
        self.chars = 0

    def add(self, kind: BlockKind, text: str, *, level: int = 0, ordered: bool = False) -> None:
        """Add a block; blank text is dropped (``kind`` must not be PAGE_BREAK)."""
        # Code keeps its indentation; other blocks lose surrounding whitespace.
        text = text.strip("\r\n") if kind is BlockKind.CODE else text.strip()
        if not text.strip():
            return
        self.chars += len(text)
        if self.chars > self._max_chars:
            raise DocumentError(
                self._name,
                DocumentProblem.TOO_LARGE,
                f"the document has more than {self._max_chars:,} characters of text "
                f"(the limit)",
            )
        if kind is BlockKind.HEADING:
            level = max(1, level)
            while self._headings and self._headings[-1][0] >= level:
                self._headings.pop()
            self._headings.append((level, " ".join(text.split())))
            self._path = tuple(title for _, title in self._headings)
        self._paragraph += 1
        location = Location(paragraph=self._paragraph, page=self.page, heading_path=self._path)
        self._blocks.append(Block(kind, text, location, level=level, ordered=ordered))

    def page_break(self, page: int) -> None:
        self.page = page
        if self._blocks:
            location = Location(paragraph=self._paragraph, page=page, heading_path=self._path)
            self._blocks.append(Block(BlockKind.PAGE_BREAK, "", location))

    @property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(self._blocks)

    def require_text(self) -> tuple[Block, ...]:
        if not any(b.kind is not BlockKind.PAGE_BREAK for b in self._blocks):
            raise DocumentError(self._name, DocumentProblem.EMPTY, "the document has no text")
        blocks = list(self._blocks)
        while blocks and blocks[-1].kind is BlockKind.PAGE_BREAK:
            blocks.pop()
        return tuple(blocks)
