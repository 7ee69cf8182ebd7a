"""Size limits checked before and during parsing, so a hostile or huge file fails with the
numbers instead of exhausting memory. Nothing is ever truncated silently: over a limit is
an error."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass

from engine.documents.errors import DocumentError, DocumentProblem
from engine.units import format_bytes

MB = 1024 * 1024
DEFAULT_MAX_BYTES = 200 * MB
DEFAULT_MAX_PAGES = 2000
DEFAULT_MAX_CHARS = 10_000_000


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES  # the file on disk
    max_pages: int = DEFAULT_MAX_PAGES
    max_chars: int = DEFAULT_MAX_CHARS  # extracted text
    # Markup is parsed in memory: a 50 MB one-line page peaked at 999 MB against the 1 GB
    # cap, 20 MB stays near 400 MB. Pages beyond this are rare.
    max_html_bytes: int = 20 * MB
    max_unpacked_bytes: int = 256 * MB  # a .docx's entries, uncompressed, together
    max_compression_ratio: float = 100.0  # per .docx entry; real ones stay below about 30
    max_archive_entries: int = 10_000
    # One XML part of a .docx, uncompressed: python-docx parses it into an lxml tree of about
    # 3.5x its size, so this keeps the parse far below the loader's memory cap. A 1,000-page
    # Word document's document.xml is about 15 MB.
    max_docx_xml_bytes: int = 48 * MB

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pages", "max_chars", "max_html_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


def check_file_size(name: str, size: int, limit: int, what: str = "") -> None:
    if size > limit:
        raise DocumentError(
            name,
            DocumentProblem.TOO_LARGE,
            f"the file is {format_bytes(size)}; the limit{what} is {format_bytes(limit)}",
        )


def check_page_count(name: str, pages: int, limits: Limits) -> None:
    if pages > limits.max_pages:
        raise DocumentError(
            name,
            DocumentProblem.TOO_LARGE,
            f"the document has {pages:,} pages; the limit is {limits.max_pages:,}",
        )


def check_archive(name: str, archive: zipfile.ZipFile, limits: Limits) -> None:
    """Refuse a decompression bomb from the central directory alone, before inflating
    anything. Declared sizes can be trusted as upper bounds: zipfile stops reading an entry
    at its declared size and fails its CRC check if the data was longer."""
    entries = archive.infolist()
    if len(entries) > limits.max_archive_entries:
        raise DocumentError(
            name,
            DocumentProblem.ARCHIVE_BOMB,
            f"the archive holds {len(entries):,} files; the limit is "
            f"{limits.max_archive_entries:,}",
        )
    total = 0
    for entry in entries:
        total += entry.file_size
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size > MB and ratio > limits.max_compression_ratio:
            raise DocumentError(
                name,
                DocumentProblem.ARCHIVE_BOMB,
                f"{entry.filename} would expand from {format_bytes(entry.compress_size)} to "
                f"{format_bytes(entry.file_size)} (ratio {ratio:,.0f}:1; the limit is "
                f"{limits.max_compression_ratio:,.0f}:1); this looks like a decompression bomb",
            )
    if total > limits.max_unpacked_bytes:
        raise DocumentError(
            name,
            DocumentProblem.ARCHIVE_BOMB,
            f"the archive would expand to {format_bytes(total)}; the limit is "
            f"{format_bytes(limits.max_unpacked_bytes)}",
        )
