"""Word .docx files through python-docx, after the zip container has been checked for a
decompression bomb. Body paragraphs and tables are read in order; headers, footers,
footnotes, comments and text boxes are not part of the text."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from engine.documents.builder import BlockBuilder
from engine.documents.errors import DocumentError, DocumentProblem
from engine.documents.limits import Limits, check_archive, check_file_size
from engine.documents.model import BlockKind, Document, DocumentFormat
from engine.units import format_bytes

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # compound file: old .doc or encrypted .docx
_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)
_LIST_STYLE = re.compile(r"^list\s*(bullet|number)(?:\s*(\d))?$", re.IGNORECASE)
_CODE_STYLES = frozenset({"code", "source code", "html preformatted", "macro text", "verbatim"})
_QUOTE_STYLES = frozenset({"quote", "intense quote", "block text"})
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _check_container(path: Path, name: str, limits: Limits) -> None:
    try:
        check_file_size(name, path.stat().st_size, limits.max_bytes)
        with path.open("rb") as handle:
            magic = handle.read(8)
    except OSError as exc:
        raise DocumentError(
            name, DocumentProblem.UNREADABLE, f"the file cannot be read ({exc.strerror})"
        ) from None
    if magic == _OLE_MAGIC:
        raise DocumentError(
            name,
            DocumentProblem.ENCRYPTED,
            "the file is password-protected, or is an old Word .doc renamed to .docx; "
            "remove the password or save it as .docx and try again",
        )
    try:
        with zipfile.ZipFile(path) as archive:
            check_archive(name, archive, limits)
            if "word/document.xml" not in archive.namelist():
                raise DocumentError(
                    name,
                    DocumentProblem.CORRUPT,
                    "the .docx has no word/document.xml: it is not a Word document",
                )
            _check_xml_parts(name, archive, limits)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise DocumentError(
            name,
            DocumentProblem.CORRUPT,
            f"the .docx is damaged: it is not a readable zip archive ({exc})",
        ) from None


_DOCTYPES = tuple("<!DOCTYPE".encode(codec) for codec in ("utf-8", "utf-16-le", "utf-16-be"))
_CHUNK = 1 << 20


def _check_xml_parts(name: str, archive: zipfile.ZipFile, limits: Limits) -> None:
    """Refuse XML parts too large to parse safely, and any DOCTYPE: Word never writes one,
    and a DOCTYPE is how entity-expansion bombs ("billion laughs") get in. Each part is read
    as a stream with the byte count checked as it inflates, not taken from the headers."""
    overlap = max(len(d) for d in _DOCTYPES) - 1
    for info in archive.infolist():
        if not info.filename.endswith((".xml", ".rels")):
            continue
        if info.file_size > limits.max_docx_xml_bytes:
            raise _xml_too_large(name, info.filename, info.file_size, limits)
        seen = 0
        tail = b""
        with archive.open(info) as part:
            while chunk := part.read(_CHUNK):
                seen += len(chunk)
                if seen > limits.max_docx_xml_bytes:
                    raise _xml_too_large(name, info.filename, seen, limits)
                window = tail + chunk
                if any(d in window for d in _DOCTYPES):
                    raise DocumentError(
                        name, DocumentProblem.CORRUPT,
                        f"{info.filename} declares a DOCTYPE, which Word documents never "
                        "contain (it can hide an entity-expansion bomb); the file was not read")
                tail = window[-overlap:]


def _xml_too_large(name: str, part: str, size: int, limits: Limits) -> DocumentError:
    return DocumentError(
        name, DocumentProblem.TOO_LARGE,
        f"{part} holds more than {format_bytes(size)} of XML; the limit is "
        f"{format_bytes(limits.max_docx_xml_bytes)} per part")


def _numbering_formats(document: Any) -> dict[tuple[str, str], str]:
    """(numId, ilvl) -> numFmt ("bullet", "decimal", ...), from the numbering part."""
    try:
        numbering = document.part.numbering_part.element
    except (KeyError, NotImplementedError, AttributeError):
        return {}
    abstract: dict[tuple[str, str], str] = {}
    for node in numbering.iter(f"{_W}abstractNum"):
        abstract_id = node.get(f"{_W}abstractNumId")
        for lvl in node.iter(f"{_W}lvl"):
            fmt = lvl.find(f"{_W}numFmt")
            if fmt is not None:
                abstract[(abstract_id, lvl.get(f"{_W}ilvl"))] = fmt.get(f"{_W}val", "")
    formats: dict[tuple[str, str], str] = {}
    for num in numbering.iter(f"{_W}num"):
        ref = num.find(f"{_W}abstractNumId")
        if ref is None:
            continue
        for (abstract_id, ilvl), fmt in abstract.items():
            if abstract_id == ref.get(f"{_W}val"):
                formats[(num.get(f"{_W}numId"), ilvl)] = fmt
    return formats


class _Reader:
    def __init__(self, document: Any, builder: BlockBuilder) -> None:
        self.document = document
        self.builder = builder
        self.title: str | None = None
        self._formats = _numbering_formats(document)

    def read(self) -> None:
        from docx.table import Table

        for item in self.document.iter_inner_content():
            if isinstance(item, Table):
                self._table(item)
            else:
                self._paragraph(item)

    def _paragraph(self, paragraph: Any) -> None:
        text = paragraph.text
        if not text.strip():
            return
        style = (paragraph.style.name if paragraph.style is not None else "") or ""
        lowered = style.strip().lower()
        if lowered == "title":
            self.title = self.title or " ".join(text.split())
            self.builder.add(BlockKind.HEADING, text, level=1)
        elif heading := _HEADING_STYLE.match(style.strip()):
            self.builder.add(BlockKind.HEADING, text, level=int(heading[1]))
        elif listed := self._list(paragraph, style):
            level, ordered = listed
            self.builder.add(BlockKind.LIST_ITEM, text, level=level, ordered=ordered)
        elif lowered in _CODE_STYLES:
            self.builder.add(BlockKind.CODE, text)
        elif lowered in _QUOTE_STYLES:
            self.builder.add(BlockKind.QUOTE, text)
        else:
            self.builder.add(BlockKind.PARAGRAPH, text)

    def _list(self, paragraph: Any, style: str) -> tuple[int, bool] | None:
        if styled := _LIST_STYLE.match(style.strip()):
            return int(styled[2] or 1), styled[1].lower() == "number"
        ppr = paragraph._p.pPr
        num_pr = ppr.numPr if ppr is not None else None
        if num_pr is None or num_pr.numId is None:
            return None
        num_id = str(num_pr.numId.val)
        ilvl = str(num_pr.ilvl.val) if num_pr.ilvl is not None else "0"
        if num_id == "0":  # numbering explicitly removed
            return None
        fmt = self._formats.get((num_id, ilvl), "bullet")
        return int(ilvl) + 1, fmt not in ("bullet", "none", "")

    def _table(self, table: Any) -> None:
        for row in table.rows:
            seen: set[int] = set()
            cells: list[str] = []
            for cell in row.cells:
                if id(cell._tc) in seen:  # a merged cell is returned once per grid column
                    continue
                seen.add(id(cell._tc))
                text = " ".join(cell.text.split())
                if text:
                    cells.append(text)
            if cells:
                self.builder.add(BlockKind.TABLE_ROW, " | ".join(cells))


def load(path: Path, name: str, limits: Limits) -> Document:
    _check_container(path, name, limits)
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DocumentError(
            name,
            DocumentProblem.CORRUPT,
            f"the .docx is damaged ({type(exc).__name__}: {exc})",
        ) from None
    builder = BlockBuilder(name, limits.max_chars)
    reader = _Reader(document, builder)
    reader.read()
    title = (document.core_properties.title or "").strip() or reader.title
    if title is None:
        headings = [b for b in builder.blocks if b.kind is BlockKind.HEADING]
        title = headings[0].text if headings else None
    return Document(
        source=str(path),
        name=name,
        format=DocumentFormat.DOCX,
        blocks=builder.require_text(),
        title=title,
    )
