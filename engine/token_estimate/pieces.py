"""What a sentencepiece piece is, for calibration: its class (the Unicode script of its first
letter, or digit, symbol, space, byte), its length in characters, and whether it starts a
word. The estimate is a weight per class, per character and per word start, so these must be
computed the same way when the model is trained and when it is used."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

WORD_START = "\u2581"  # sentencepiece's mark for a space before a piece
BYTE = "byte"
# Lines longer than this are encoded in windows (cut at a space where one is near), so one
# enormous line costs linear time and bounded memory.
MAX_LINE = 4096

# First words of Unicode character names that are not the script's own name.
_SCRIPT_ALIASES = {
    "CJK": "han", "IDEOGRAPHIC": "han", "KANGXI": "han",
    "HIRAGANA": "kana", "KATAKANA": "kana",
    "HANGUL": "hangul",
}


class Vocabulary(Protocol):
    """The part of ``sentencepiece.SentencePieceProcessor`` the estimate reads."""

    def get_piece_size(self) -> int: ...
    def id_to_piece(self, id: int) -> str: ...
    def is_byte(self, id: int) -> bool: ...
    def is_control(self, id: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class PieceInfo:
    cls: str
    chars: int
    word_start: bool
    utf8_bytes: int


def script_of(char: str) -> str:
    """The script of a letter, from the first word of its Unicode name (``LATIN SMALL LETTER
    A`` is latin); ``other`` where the character has no name."""
    name = unicodedata.name(char, "")
    if not name:
        return "other"
    words = name.split()
    if words[0] in ("FULLWIDTH", "HALFWIDTH") and len(words) > 1:
        return "fullwidth"
    return _SCRIPT_ALIASES.get(words[0], words[0].lower())


def piece_class(body: str) -> str:
    """The class of a piece's text (without its word-start mark)."""
    if not body:
        return "space"
    for char in body:
        if unicodedata.category(char)[0] in "LM":
            script = script_of(char)
            if script == "latin":
                if body.isascii():
                    return "latin"
                return "latin1" if max(map(ord, body)) <= 0xFF else "latin_ext"
            return script
    if any(unicodedata.category(char) == "Nd" for char in body):
        return "digit" if body.isascii() else "digit_other"
    return "symbol" if body.isascii() else "symbol_other"


def piece_infos(vocab: Vocabulary) -> list[PieceInfo]:
    """One ``PieceInfo`` per id of ``vocab``."""
    infos = []
    for index in range(vocab.get_piece_size()):
        piece = vocab.id_to_piece(index)
        if vocab.is_byte(index):
            infos.append(PieceInfo(BYTE, 1, False, 1))
            continue
        if vocab.is_control(index):
            infos.append(PieceInfo("control", 0, False, 0))
            continue
        body = piece.replace(WORD_START, " ")
        stripped = body.strip(" ")
        cls = piece_class(stripped)
        chars = len(body) if cls == "space" else len(stripped)
        infos.append(PieceInfo(cls, chars, piece.startswith(WORD_START) and cls != "space",
                               len(body.encode("utf-8"))))
    return infos


def lines_of(text: str) -> Iterator[str]:
    """The lines of ``text`` without their newlines, long ones in windows of at most
    ``MAX_LINE`` characters (cut after a space where there is one in the last quarter)."""
    for line in text.split("\n"):
        start = 0
        while len(line) - start > MAX_LINE:
            end = start + MAX_LINE
            cut = line.rfind(" ", start + MAX_LINE * 3 // 4, end)
            end = cut if cut > start else end
            yield line[start:end]
            start = end
        yield line[start:]


def clean(text: str) -> str:
    """``text`` with lone surrogates (which cannot be encoded) replaced by U+FFFD per byte."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text
