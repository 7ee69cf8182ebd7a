"""Model text as the chat view shows it: characters that would lay out or read differently
from what they are made visible or plain.

- ``\\r``, U+2028 and U+2029 break lines inside Qt's text blocks without passing through the
  Markdown splitter: a reply of 3,000 of them cost 110-220 ms per streamed append (Qt
  re-lays out every new line of the live block). Carriage returns are dropped and the two
  separators become newlines.
- Other C0 controls and DEL are shown as their Unicode control pictures (U+2400 + code).
- Bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069) can make text read
  backwards ("exe.txt" shown for "txt.exe", a link text that hides its target): they are
  shown as a visible ``[U+202E]`` instead of being applied.
- Combining marks past ``MAX_COMBINING`` in a row are not shown (``CombiningLimiter``): one
  letter carrying 60,000 of them ("Zalgo" text) took 49 ms to paint; no script stacks more
  than a handful.

The stored reply, copy and export keep the text exactly as the model wrote it.
"""

from __future__ import annotations

import unicodedata

_TABLE: dict[int, str | None] = {0x0D: None, 0x2028: "\n", 0x2029: "\n", 0x7F: "\u2421"}
for _code in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)):
    _TABLE[_code] = chr(0x2400 + _code)
for _code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)):
    _TABLE[_code] = f"[U+{_code:04X}]"


def for_display(text: str) -> str:
    """``text`` with line-breaking controls normalised and invisible controls shown."""
    return text.translate(_TABLE)


MAX_COMBINING = 16


class CombiningLimiter:
    """Drops combining marks past MAX_COMBINING in a row, across the chunks of a stream."""

    def __init__(self) -> None:
        self._run = 0  # marks in a row at the end of what was fed so far

    def feed(self, text: str) -> str:
        if not text:
            return text
        if max(text) < "\u0300":  # no mark possible: most replies, at no cost
            self._run = 0
            return text
        out: list[str] = []
        run = self._run
        for char in text:
            if char >= "\u0300" and unicodedata.combining(char):
                run += 1
                if run > MAX_COMBINING:
                    continue
            else:
                run = 0
            out.append(char)
        self._run = run
        return "".join(out)
