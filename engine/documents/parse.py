"""Choosing the loader for a file and turning whatever a parser raises into a
DocumentError. ``parse_file`` parses in the calling process: use ``load_document`` (which
runs it in a child process with limits) for files the user picked."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from engine.documents.errors import DocumentError, DocumentProblem
from engine.documents.limits import Limits, check_file_size
from engine.documents.model import Document, DocumentFormat

FORMATS: dict[str, DocumentFormat] = {
    ".txt": DocumentFormat.TEXT,
    ".text": DocumentFormat.TEXT,
    ".md": DocumentFormat.MARKDOWN,
    ".markdown": DocumentFormat.MARKDOWN,
    ".html": DocumentFormat.HTML,
    ".htm": DocumentFormat.HTML,
    ".xhtml": DocumentFormat.HTML,
    ".pdf": DocumentFormat.PDF,
    ".docx": DocumentFormat.DOCX,
}
SUPPORTED_EXTENSIONS = tuple(FORMATS)

_LOADERS = {
    DocumentFormat.TEXT: "engine.documents.loaders.plain",
    DocumentFormat.MARKDOWN: "engine.documents.loaders.markdown",
    DocumentFormat.HTML: "engine.documents.loaders.html_page",
    DocumentFormat.PDF: "engine.documents.loaders.pdf",
    DocumentFormat.DOCX: "engine.documents.loaders.word",
}
FORMAT_NAMES = {
    DocumentFormat.TEXT: "text",
    DocumentFormat.MARKDOWN: "Markdown",
    DocumentFormat.HTML: "HTML",
    DocumentFormat.PDF: "PDF",
    DocumentFormat.DOCX: "Word (.docx)",
    DocumentFormat.PASTED: "pasted text",
}
_HINTS = {
    ".doc": "old Word .doc files are not supported; save it as .docx",
    ".rtf": "RTF is not supported; save it as .docx or plain text",
    ".odt": "OpenDocument text is not supported; save it as .docx",
    ".epub": "EPUB is not supported yet",
}
_MESSAGE_LIMIT = 300


def detect_format(path: Path) -> DocumentFormat:
    suffix = path.suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    supported = ", ".join(SUPPORTED_EXTENSIONS)
    hint = _HINTS.get(suffix, f"{suffix or 'files without an extension'} is not supported")
    raise DocumentError(
        path.name, DocumentProblem.UNSUPPORTED, f"{hint} (Verso reads {supported})"
    )


def check_file(path: Path, limits: Limits) -> DocumentFormat:
    """The checks that need no parsing: type, existence, readability, size."""
    fmt = detect_format(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DocumentError(path.name, DocumentProblem.NOT_FOUND, "the file does not exist") \
            from None
    except OSError as exc:
        raise DocumentError(
            path.name, DocumentProblem.UNREADABLE, f"the file cannot be read ({exc.strerror})"
        ) from None
    if not path.is_file():
        raise DocumentError(path.name, DocumentProblem.UNREADABLE, "this is not a file")
    if not os.access(path, os.R_OK):
        raise DocumentError(
            path.name, DocumentProblem.UNREADABLE, "the file cannot be read (permission denied)"
        )
    if stat.st_size == 0:
        raise DocumentError(path.name, DocumentProblem.EMPTY, "the file is empty")
    check_file_size(path.name, stat.st_size, limits.max_bytes)
    return fmt


def parse_file(path: Path, limits: Limits | None = None) -> Document:
    limits = limits or Limits()
    path = path.absolute()
    fmt = check_file(path, limits)
    try:
        loader = importlib.import_module(_LOADERS[fmt])
        return loader.load(path, path.name, limits)
    except (DocumentError, MemoryError):
        raise
    except RecursionError:
        raise DocumentError(
            path.name,
            DocumentProblem.CORRUPT,
            f"the {FORMAT_NAMES[fmt]} file is nested too deeply to read",
        ) from None
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        if len(detail) > _MESSAGE_LIMIT:
            detail = detail[:_MESSAGE_LIMIT] + "…"
        raise DocumentError(
            path.name,
            DocumentProblem.CORRUPT,
            f"the {FORMAT_NAMES[fmt]} file could not be parsed ({detail})",
        ) from None
