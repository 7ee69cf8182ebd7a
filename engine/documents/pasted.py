from __future__ import annotations

from engine.documents.builder import BlockBuilder
from engine.documents.limits import DEFAULT_MAX_CHARS
from engine.documents.loaders.markdown import parse_markdown
from engine.documents.loaders.plain import add_paragraphs
from engine.documents.model import Document, DocumentFormat


def document_from_text(
    text: str,
    *,
    name: str = "Pasted text",
    markdown: bool = False,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> Document:
    """A document from text the user pasted. It is already in memory and parsing it is
    linear, so it needs no child process. ``markdown`` reads headings, lists and code."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").removeprefix("\ufeff")
    builder = BlockBuilder(name, max_chars)
    title = parse_markdown(text, builder) if markdown else None
    if not markdown:
        add_paragraphs(text, builder)
    return Document(
        source="",
        name=name,
        format=DocumentFormat.PASTED,
        blocks=builder.require_text(),
        title=title,
    )
