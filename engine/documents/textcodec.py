"""Decoding the bytes of a text file: a BOM wins, then strict UTF-8, then BOM-less UTF-16
recognised by its zero bytes, then Windows-1252 with a note (every byte decodes, so the
note is what tells the user the guess may be wrong)."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from engine.documents.errors import DocumentError, DocumentProblem

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclass(frozen=True, slots=True)
class DecodedText:
    text: str
    encoding: str
    note: str | None = None


def _bom(data: bytes) -> tuple[str, int] | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, len(bom)
    return None


def _utf16_without_bom(data: bytes) -> str | None:
    sample = data[:4096]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
        return "utf-16-be"
    return None


def _looks_binary(text: str) -> bool:
    sample = text[:8192]
    controls = sum(1 for c in sample if ord(c) < 32 and c not in "\t\n\r\f\v\x1b")
    return "\x00" in sample or controls > 0.05 * max(len(sample), 1)


def _normalize(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def decode_text(data: bytes, name: str) -> DecodedText:
    found = _bom(data)
    if found:
        encoding, skip = found
        try:
            return DecodedText(_normalize(data[skip:].decode(encoding)), encoding)
        except UnicodeDecodeError as exc:
            raise DocumentError(
                name,
                DocumentProblem.CORRUPT,
                f"the file starts with a {encoding} byte-order mark but is not valid "
                f"{encoding} (byte {exc.start + skip:,})",
            ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if _looks_binary(text):
            raise DocumentError(
                name, DocumentProblem.NOT_TEXT, "the file holds binary data, not text"
            )
        return DecodedText(_normalize(text), "utf-8")
    utf16 = _utf16_without_bom(data)
    if utf16:
        try:
            return DecodedText(_normalize(data.decode(utf16)), utf16)
        except UnicodeDecodeError:
            pass
    try:
        text, encoding = data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        text, encoding = data.decode("latin-1"), "latin-1"
    if _looks_binary(text):
        raise DocumentError(name, DocumentProblem.NOT_TEXT, "the file holds binary data, not text")
    note = (
        f"The file is not valid UTF-8; it was read as {encoding} "
        "(Western European). Check accented characters."
    )
    return DecodedText(_normalize(text), encoding, note)
