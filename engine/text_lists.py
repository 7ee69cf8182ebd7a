"""Comma-separated lists as users type them (labels, choices, banned words), shared by the
CLI and the app so both read ``a, b\\, c`` the same way."""

from __future__ import annotations


def split_items(text: str) -> list[str]:
    """Items between commas, as written (not stripped, empty ones kept); a backslash keeps
    the next character, so ``\\,`` is a comma inside an item."""
    items, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return items


def split_list(text: str) -> list[str]:
    """The non-empty items, stripped."""
    return [item.strip() for item in split_items(text) if item.strip()]


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}
_ESCAPED = {v: k for k, v in _ESCAPES.items()}


def unescape(text: str) -> str:
    """``\\n``, ``\\t`` and ``\\\\`` as a line break, a tab and a backslash (any other
    backslash is kept): how a one-line field or flag gives a text holding a line break."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def escape(text: str) -> str:
    """The inverse of ``unescape``."""
    return "".join("\\" + _ESCAPED[ch] if ch in _ESCAPED else ch for ch in text)
