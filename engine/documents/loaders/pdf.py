"""The text layer of a PDF, with paragraphs and headings recovered from the layout.

pypdf reports each text run with its position and font size. Runs are joined into lines
(pypdf marks line ends), lines into paragraphs where the vertical gap is wider than the
usual line pitch or the first line is indented, and lines set clearly larger than the body
text become headings (level by size rank)."""

from __future__ import annotations

import logging
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from engine.documents.builder import BlockBuilder
from engine.documents.errors import DocumentError, DocumentProblem
from engine.documents.limits import Limits, check_page_count
from engine.documents.loaders.files import read_bytes
from engine.documents.model import BlockKind, Document, DocumentFormat

HEADING_SIZE_RATIO = 1.15  # a line this much larger than the body text is a heading
PARAGRAPH_GAP_RATIO = 1.3  # a gap this much wider than the line pitch ends a paragraph
MAX_HEADING_CHARS = 200


@dataclass(slots=True)
class _Line:
    text: str = ""
    x: float = 0.0
    y: float = 0.0
    size: float = 0.0
    placed: bool = False


def _origin(tm: list[float], cm: list[float]) -> tuple[float, float]:
    x, y = tm[4], tm[5]
    return x * cm[0] + y * cm[2] + cm[4], x * cm[1] + y * cm[3] + cm[5]


def _vertical_scale(tm: list[float], cm: list[float]) -> float:
    """How tall one unit of text space is on the page (the font size given to Tf is often
    1, with the real size in the text matrix)."""
    c, d = tm[2], tm[3]
    return math.hypot(c * cm[0] + d * cm[2], c * cm[1] + d * cm[3])


@dataclass(slots=True)
class _PageLines:
    lines: list[_Line] = field(default_factory=list)
    current: _Line = field(default_factory=_Line)

    def visit(self, text: str, cm: list[float], tm: list[float], _font: Any, size: float) -> None:
        for n, part in enumerate(text.split("\n")):
            if n:
                self.end_line()
            if not part:
                continue
            line = self.current
            if part.strip():
                if not line.placed:
                    line.x, line.y = _origin(tm, cm)
                    line.placed = True
                line.size = max(line.size, abs(size) * _vertical_scale(tm, cm))
            line.text += part

    def end_line(self) -> None:
        if self.current.text.strip():
            self.current.text = " ".join(self.current.text.split())
            self.lines.append(self.current)
        self.current = _Line()


def _body_size(pages: list[list[_Line]]) -> float:
    weights: Counter[float] = Counter()
    for lines in pages:
        for line in lines:
            weights[round(line.size, 1)] += len(line.text)
    return weights.most_common(1)[0][0] if weights else 0.0


def _line_pitch(pages: list[list[_Line]], body: float) -> float:
    """The usual distance between two lines of body text (the lower quartile of the gaps,
    so that documents made mostly of one-line paragraphs still give the line pitch)."""
    gaps = [
        prev.y - line.y
        for lines in pages
        for prev, line in pairwise(lines)
        if abs(prev.size - body) < 0.5 and abs(line.size - body) < 0.5 and prev.y > line.y
    ]
    if len(gaps) < 4:
        return body * 1.4
    quartile = statistics.quantiles(gaps, n=4)[0]
    return min(quartile, body * 1.8)


def _left_margin(lines: list[_Line], body: float) -> float:
    xs = [round(line.x) for line in lines if abs(line.size - body) < 0.5]
    return Counter(xs).most_common(1)[0][0] if xs else 0.0


def _is_page_number(line: _Line, index: int, count: int) -> bool:
    text = line.text.strip().strip("-–— ").removeprefix("Page ").removeprefix("page ")
    return index in (0, count - 1) and text.isdigit() and len(text) <= 5


def _join(lines: list[str]) -> str:
    text = lines[0]
    for line in lines[1:]:
        hyphenated = text.endswith("-") and len(text) > 1 and text[-2].isalpha()
        text += line if hyphenated and line[:1].islower() else " " + line
    return text


class _Layout:
    def __init__(self, pages: list[list[_Line]]) -> None:
        self.body = _body_size(pages)
        self.pitch = _line_pitch(pages, self.body)
        sizes = sorted(
            {round(line.size, 1) for lines in pages for line in lines
             if line.size > self.body * HEADING_SIZE_RATIO},
            reverse=True,
        )
        self.heading_levels = {size: min(n + 1, 6) for n, size in enumerate(sizes)}

    def heading_level(self, line: _Line) -> int:
        if len(line.text) > MAX_HEADING_CHARS:
            return 0
        return self.heading_levels.get(round(line.size, 1), 0)

    def add_page(self, lines: list[_Line], builder: BlockBuilder) -> None:
        lines = [ln for n, ln in enumerate(lines) if not _is_page_number(ln, n, len(lines))]
        margin = _left_margin(lines, self.body)
        paragraph: list[str] = []
        level = 0
        prev: _Line | None = None
        for line in lines:
            line_level = self.heading_level(line)
            starts_new = (
                prev is None
                or line_level != level
                or (line_level == 0 and self._gap_breaks(prev, line, margin))
                or (line_level and abs(prev.size - line.size) > 0.5)
            )
            if starts_new and paragraph:
                self._emit(paragraph, level, builder)
                paragraph = []
            paragraph.append(line.text)
            level = line_level
            prev = line
        if paragraph:
            self._emit(paragraph, level, builder)

    def _gap_breaks(self, prev: _Line, line: _Line, margin: float) -> bool:
        gap = prev.y - line.y
        if gap <= 0 or gap > self.pitch * PARAGRAPH_GAP_RATIO:
            return True
        return line.x - margin > self.body * 0.8 and abs(prev.x - margin) < self.body * 0.5

    @staticmethod
    def _emit(lines: list[str], level: int, builder: BlockBuilder) -> None:
        if level:
            builder.add(BlockKind.HEADING, " ".join(lines), level=level)
        else:
            builder.add(BlockKind.PARAGRAPH, _join(lines))


def _open(path: Path, name: str, limits: Limits) -> Any:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    data = read_bytes(path, name, limits.max_bytes)
    if b"%PDF-" not in data[:1024]:
        raise DocumentError(
            name, DocumentProblem.CORRUPT, "this is not a PDF file (no %PDF header)"
        )
    if b"%%EOF" not in data[-4096:]:
        raise DocumentError(
            name,
            DocumentProblem.CORRUPT,
            "the PDF is incomplete (no end-of-file marker): it was probably cut off while "
            "downloading or copying",
        )
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            try:
                decrypted = reader.decrypt("")
            except DependencyError:
                raise DocumentError(
                    name,
                    DocumentProblem.ENCRYPTED,
                    "the PDF is encrypted with AES, which this installation cannot open",
                ) from None
            if not decrypted:
                raise DocumentError(
                    name,
                    DocumentProblem.ENCRYPTED,
                    "the PDF is password-protected; remove the password and try again",
                )
        return reader
    except FileNotDecryptedError:
        raise DocumentError(
            name,
            DocumentProblem.ENCRYPTED,
            "the PDF is password-protected; remove the password and try again",
        ) from None
    except PdfReadError as exc:
        raise DocumentError(
            name, DocumentProblem.CORRUPT, f"the PDF is damaged ({exc})"
        ) from None


def load(path: Path, name: str, limits: Limits) -> Document:
    from pypdf.errors import LimitReachedError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    reader = _open(path, name, limits)
    page_count = len(reader.pages)
    check_page_count(name, page_count, limits)
    if page_count == 0:
        raise DocumentError(name, DocumentProblem.EMPTY, "the PDF has no pages")
    pages: list[list[_Line]] = []
    chars = 0
    for number, page in enumerate(reader.pages, start=1):
        collector = _PageLines()
        try:
            page.extract_text(visitor_text=collector.visit)
        except MemoryError:
            raise
        except LimitReachedError:
            raise DocumentError(
                name,
                DocumentProblem.ARCHIVE_BOMB,
                f"page {number} would decompress to more than pypdf's safety limit "
                "(a decompression bomb?)",
            ) from None
        except Exception as exc:
            raise DocumentError(
                name,
                DocumentProblem.CORRUPT,
                f"the text of page {number} cannot be read ({type(exc).__name__}: {exc})",
            ) from None
        collector.end_line()
        pages.append(collector.lines)
        chars += sum(len(line.text) for line in collector.lines)
        if chars > limits.max_chars:
            raise DocumentError(
                name,
                DocumentProblem.TOO_LARGE,
                f"the document has more than {limits.max_chars:,} characters of text "
                f"(the limit), reached on page {number} of {page_count}",
            )
    if not any(pages):
        raise DocumentError(
            name,
            DocumentProblem.NO_TEXT_LAYER,
            "no text layer: this PDF looks scanned; OCR is not supported",
        )
    layout = _Layout(pages)
    builder = BlockBuilder(name, limits.max_chars, page=1)
    for number, lines in enumerate(pages, start=1):
        if number > 1:
            builder.page_break(number)
        layout.add_page(lines, builder)
    empty = [n for n, lines in enumerate(pages, start=1) if not lines]
    notes: tuple[str, ...] = ()
    if empty:
        notes = (f"{len(empty)} of {page_count} pages have no text layer (scanned or "
                 f"images only): {_page_list(empty)}.",)
    headings = [b for b in builder.blocks if b.kind is BlockKind.HEADING]
    return Document(
        source=str(path),
        name=name,
        format=DocumentFormat.PDF,
        blocks=builder.require_text(),
        title=_metadata_title(reader) or (headings[0].text if headings else None),
        page_count=page_count,
        notes=notes,
    )


def _metadata_title(reader: Any) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # a damaged info dictionary must not fail a readable PDF
        return None
    return str(title).strip() or None if title else None


def _page_list(pages: list[int]) -> str:
    shown = ", ".join(str(p) for p in pages[:20])
    return shown + (f" and {len(pages) - 20} more" if len(pages) > 20 else "")
