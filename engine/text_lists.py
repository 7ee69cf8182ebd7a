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
