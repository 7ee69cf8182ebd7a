"""Plain text: paragraphs are separated by blank lines; line breaks inside a paragraph are
kept, since they may be verse, addresses or hard-wrapped prose."""

from __future__ import annotations

import re
from pathlib import Path

from engine.documents.builder import BlockBuilder
from engine.documents.limits import Limits
from engine.documents.loaders.files import read_bytes
from engine.documents.model import BlockKind, Document, DocumentFormat
from engine.documents.textcodec import decode_text

_BLANK_LINE = re.compile(r"\n[ \t\f\v]*\n")

# UTF-8 needs at most 4 bytes a character (UTF-16 and UTF-32 also fit), so a larger file is
# certainly over the character limit and is refused before it is read.
BYTES_PER_CHAR = 4


def add_paragraphs(text: str, builder: BlockBuilder) -> None:
    for paragraph in _BLANK_LINE.split(text):
        builder.add(BlockKind.PARAGRAPH, paragraph)


def load(path: Path, name: str, limits: Limits) -> Document:
    data = read_bytes(
        path, name, min(limits.max_bytes, limits.max_chars * BYTES_PER_CHAR),
        " for text files",
    )
    decoded = decode_text(data, name)
    builder = BlockBuilder(name, limits.max_chars)
    add_paragraphs(decoded.text, builder)
    return Document(
        source=str(path),
        name=name,
        format=DocumentFormat.TEXT,
        blocks=builder.require_text(),
        encoding=decoded.encoding,
        notes=(decoded.note,) if decoded.note else (),
    )
