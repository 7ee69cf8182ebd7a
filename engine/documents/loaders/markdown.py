"""A line-based reader for the block structure of Markdown (CommonMark's common cases):
ATX and setext headings, fenced and indented code, lists, block quotes, pipe tables and
paragraphs. Inline markup is kept verbatim; it is part of the text a model should see."""

from __future__ import annotations

import re
from pathlib import Path

from engine.documents.builder import BlockBuilder
from engine.documents.limits import Limits
from engine.documents.loaders.files import read_bytes
from engine.documents.loaders.plain import BYTES_PER_CHAR
from engine.documents.model import BlockKind, Document, DocumentFormat
from engine.documents.textcodec import decode_text

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_ATX = re.compile(r"^ {0,3}(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(?P<bar>=+|-+)[ \t]*$")
_RULE = re.compile(r"^ {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_ITEM = re.compile(r"^(?P<indent>[ \t]*)(?P<marker>[-*+]|\d{1,9}[.)])(?:[ \t]+(?P<text>.*))?$")
_QUOTE = re.compile(r"^ {0,3}> ?(?P<text>.*)$")
_TABLE_SEPARATOR = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(?P<title>.+?)[ \t]*$", re.MULTILINE)


def _indent_width(indent: str) -> int:
    return len(indent.replace("\t", "    "))


def _table_cells(line: str) -> list[str]:
    body = line.strip()
    body = body.removeprefix("|")
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", body)]


class _Reader:
    def __init__(self, builder: BlockBuilder) -> None:
        self.builder = builder
        self.title: str | None = None
        self._lines: list[str] = []
        self._kind = BlockKind.PARAGRAPH
        self._level = 0
        self._ordered = False
        self._list_indents: list[int] = []

    def flush(self) -> None:
        if self._lines:
            self.builder.add(
                self._kind, "\n".join(self._lines), level=self._level, ordered=self._ordered
            )
        self._lines = []
        self._kind, self._level, self._ordered = BlockKind.PARAGRAPH, 0, False

    def heading(self, level: int, text: str) -> None:
        self.flush()
        self._list_indents = []
        if level == 1 and self.title is None and text.strip():
            self.title = " ".join(text.split())
        self.builder.add(BlockKind.HEADING, text, level=level)

    def item(self, indent: int, ordered: bool, text: str) -> None:
        self.flush()
        while self._list_indents and self._list_indents[-1] > indent:
            self._list_indents.pop()
        if not self._list_indents or self._list_indents[-1] < indent:
            self._list_indents.append(indent)
        self._kind, self._level, self._ordered = (
            BlockKind.LIST_ITEM, len(self._list_indents), ordered,
        )
        self._lines = [text]

    def read(self, text: str) -> None:
        lines = text.split("\n")
        i = _skip_front_matter(lines, self)
        while i < len(lines):
            i = self._line(lines, i)
        self.flush()

    def _line(self, lines: list[str], i: int) -> int:
        line = lines[i]
        if not line.strip():
            self.flush()
            return i + 1
        if fence := _FENCE.match(line):
            return self._code_fence(lines, i, fence)
        if heading := _ATX.match(line):
            self.heading(len(heading["hashes"]), heading["text"] or "")
            return i + 1
        if self._kind is BlockKind.PARAGRAPH and self._lines and (bar := _SETEXT.match(line)):
            text = "\n".join(self._lines)
            self._lines = []
            self.heading(1 if bar["bar"][0] == "=" else 2, text)
            return i + 1
        if _RULE.match(line):
            self.flush()
            return i + 1
        if item := _ITEM.match(line):
            marker = item["marker"]
            self.item(_indent_width(item["indent"]), marker[0].isdigit(), item["text"] or "")
            return i + 1
        if quote := _QUOTE.match(line):
            if self._kind is not BlockKind.QUOTE:
                self.flush()
                self._kind = BlockKind.QUOTE
            self._lines.append(quote["text"])
            return i + 1
        if line.lstrip().startswith("|"):
            return self._table(lines, i)
        indent = _indent_width(line[: len(line) - len(line.lstrip())])
        if indent >= 4 and not self._lines and not self._list_indents:
            return self._indented_code(lines, i)
        if self._kind is BlockKind.QUOTE:  # a line after a quote without '>' starts anew
            self.flush()
        if not self._lines:
            self._list_indents = [] if indent == 0 else self._list_indents
        self._lines.append(line.strip())
        return i + 1

    def _code_fence(self, lines: list[str], i: int, fence: re.Match[str]) -> int:
        self.flush()
        marker, strip = fence["fence"], len(fence["indent"])
        body: list[str] = []
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(marker) and not stripped.strip(marker[0]):
                i += 1
                break
            body.append(lines[i][strip:] if lines[i][:strip].isspace() else lines[i])
            i += 1
        self.builder.add(BlockKind.CODE, "\n".join(body))
        return i

    def _indented_code(self, lines: list[str], i: int) -> int:
        body: list[str] = []
        while i < len(lines) and (not lines[i].strip() or lines[i][:4].isspace()
                                  or lines[i].startswith("\t")):
            line = lines[i]
            body.append(line[1:] if line.startswith("\t") else line[4:])
            i += 1
        self.builder.add(BlockKind.CODE, "\n".join(body).rstrip("\n"))
        return i

    def _table(self, lines: list[str], i: int) -> int:
        self.flush()
        while i < len(lines) and lines[i].lstrip().startswith("|"):
            if not _TABLE_SEPARATOR.match(lines[i]):
                self.builder.add(BlockKind.TABLE_ROW, " | ".join(_table_cells(lines[i])))
            i += 1
        return i


def _skip_front_matter(lines: list[str], reader: _Reader) -> int:
    if not lines or lines[0].strip() != "---":
        return 0
    for end in range(1, min(len(lines), 200)):
        if lines[end].strip() in ("---", "..."):
            if found := _FRONT_MATTER_TITLE.search("\n".join(lines[1:end])):
                reader.title = found["title"].strip("'\"")
            return end + 1
    return 0


def parse_markdown(text: str, builder: BlockBuilder) -> str | None:
    """Add the blocks of ``text`` to ``builder``; return the title (front matter or first
    level-1 heading), if any."""
    reader = _Reader(builder)
    reader.read(text)
    return reader.title


def load(path: Path, name: str, limits: Limits) -> Document:
    data = read_bytes(
        path, name, min(limits.max_bytes, limits.max_chars * BYTES_PER_CHAR),
        " for text files",
    )
    decoded = decode_text(data, name)
    builder = BlockBuilder(name, limits.max_chars)
    title = parse_markdown(decoded.text, builder)
    return Document(
        source=str(path),
        name=name,
        format=DocumentFormat.MARKDOWN,
        blocks=builder.require_text(),
        title=title,
        encoding=decoded.encoding,
        notes=(decoded.note,) if decoded.note else (),
    )
