"""HTML through the standard library's tokenizer: it never fetches anything (no images,
stylesheets, frames or scripts), and entities are decoded by the parser itself."""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser
from pathlib import Path

from engine.documents.builder import BlockBuilder
from engine.documents.limits import Limits
from engine.documents.loaders.files import read_bytes
from engine.documents.model import BlockKind, Document, DocumentFormat
from engine.documents.textcodec import DecodedText, decode_text

# Elements whose content is never text for a reader.
_SKIPPED = frozenset({
    "script", "style", "noscript", "template", "svg", "math", "iframe", "object",
    "canvas", "select", "datalist",
})
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCKS = frozenset({
    "p", "div", "section", "article", "main", "header", "footer", "nav", "aside", "form",
    "figure", "figcaption", "address", "details", "summary", "dl", "dt", "dd", "fieldset",
    "center", "body", "hr", "caption", "legend",
})
_LISTS = frozenset({"ul", "ol", "menu"})
_SPACE = re.compile(r"\s+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


class _PageReader(HTMLParser):
    def __init__(self, builder: BlockBuilder) -> None:
        super().__init__(convert_charrefs=True)
        self.builder = builder
        self.title: str | None = None
        self.first_h1: str | None = None
        self._skip: list[str] = []
        self._in_title = False
        self._title_parts: list[str] = []
        self._parts: list[str] = []
        self._kind = BlockKind.PARAGRAPH
        self._level = 0
        self._ordered = False
        self._lists: list[bool] = []  # open lists, True when ordered
        self._items: list[tuple[int, bool]] = []  # open list items: (depth, ordered)
        self._quote = 0
        self._pre = 0
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    # -- blocks

    def _reset(self) -> None:
        """The kind of the next block follows from the open containers."""
        self._level, self._ordered = 0, False
        if self._pre:
            self._kind = BlockKind.CODE
        elif self._items:
            self._kind = BlockKind.LIST_ITEM
            self._level, self._ordered = self._items[-1]
        elif self._quote:
            self._kind = BlockKind.QUOTE
        else:
            self._kind = BlockKind.PARAGRAPH

    def flush(self) -> None:
        text = "".join(self._parts)
        if self._kind is not BlockKind.CODE:
            text = re.sub(r" ?\n ?", "\n", re.sub(r" {2,}", " ", text)).strip()
        if text.strip():
            self.builder.add(self._kind, text, level=self._level, ordered=self._ordered)
            if self._kind is BlockKind.HEADING and self._level == 1 and self.first_h1 is None:
                self.first_h1 = " ".join(text.split())
        self._parts = []
        self._reset()

    def _close_items(self) -> None:
        while self._items and self._items[-1][0] >= max(len(self._lists), 1):
            self._items.pop()

    # -- parser callbacks

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_parts.append(data)
            return
        if self._skip:
            return
        text = data if self._pre else _SPACE.sub(" ", data)
        (self._cell if self._cell is not None else self._parts).append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip:
            if tag in _SKIPPED:
                self._skip.append(tag)
            return
        if tag == "title":
            self._in_title = True
        elif tag in _SKIPPED:
            self._skip.append(tag)
        elif tag == "br":
            self._newline()
        elif tag in ("td", "th"):
            self._end_cell()
            if self._row is None:
                self.flush()
                self._row = []
            self._cell = []
        elif tag == "tr":
            self._end_row()
            self.flush()
            self._row = []
        elif self._cell is not None:
            if tag in _BLOCKS or tag in _HEADINGS or tag in ("li", "pre", "table"):
                self._cell.append(" ")
        elif tag in _HEADINGS:
            self.flush()
            self._kind, self._level = BlockKind.HEADING, _HEADINGS[tag]
        elif tag in _LISTS:
            self.flush()
            self._lists.append(tag == "ol")
        elif tag == "li":
            self.flush()
            self._close_items()
            self._items.append((max(len(self._lists), 1), bool(self._lists and self._lists[-1])))
            self._reset()
        elif tag == "pre":
            self.flush()
            self._pre += 1
            self._reset()
        elif tag == "blockquote":
            self.flush()
            self._quote += 1
            self._reset()
        elif tag in _BLOCKS or tag == "table":
            self.flush()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIPPED:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            if self.title is None:
                self.title = " ".join("".join(self._title_parts).split()) or None
            return
        if self._skip:
            if tag == self._skip[-1]:
                self._skip.pop()
            return
        if tag in ("td", "th"):
            self._end_cell()
        elif tag in ("tr", "table"):
            self._end_row()
        elif self._cell is not None:
            return
        elif tag in _HEADINGS or tag in _BLOCKS:
            self.flush()
        elif tag == "li":
            self.flush()
            if self._items:
                self._items.pop()
            self._reset()
        elif tag in _LISTS:
            self.flush()
            self._close_items()
            if self._lists:
                self._lists.pop()
            self._reset()
        elif tag == "pre":
            self.flush()
            self._pre = max(0, self._pre - 1)
            self._reset()
        elif tag == "blockquote":
            self.flush()
            self._quote = max(0, self._quote - 1)
            self._reset()

    def _newline(self) -> None:
        if self._cell is not None:
            self._cell.append(" ")
        else:
            self._parts.append(" " if self._kind is BlockKind.HEADING else "\n")

    def _end_cell(self) -> None:
        if self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
        self._cell = None

    def _end_row(self) -> None:
        self._end_cell()
        if self._row is not None:
            cells = [cell for cell in self._row if cell]
            if cells:
                self.builder.add(BlockKind.TABLE_ROW, " | ".join(cells))
        self._row = None

    def close(self) -> None:
        super().close()
        self._end_row()
        self.flush()


def _decode(data: bytes, name: str) -> DecodedText:
    declared = _META_CHARSET.search(data[:4096])
    if declared and not data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE,
                                         codecs.BOM_UTF16_BE)):
        try:
            encoding = codecs.lookup(declared[1].decode("ascii")).name
            if encoding != "utf-8":
                return DecodedText(data.decode(encoding).replace("\r\n", "\n"), encoding)
        except (LookupError, UnicodeDecodeError):
            pass
    return decode_text(data, name)


def load(path: Path, name: str, limits: Limits) -> Document:
    data = read_bytes(path, name, min(limits.max_bytes, limits.max_html_bytes), " for HTML")
    decoded = _decode(data, name)
    builder = BlockBuilder(name, limits.max_chars)
    reader = _PageReader(builder)
    reader.feed(decoded.text)
    reader.close()
    return Document(
        source=str(path),
        name=name,
        format=DocumentFormat.HTML,
        blocks=builder.require_text(),
        title=reader.title or reader.first_h1,
        encoding=decoded.encoding,
        notes=(decoded.note,) if decoded.note else (),
    )
