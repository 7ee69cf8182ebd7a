"""Turning what the user typed into a safe FTS5 query."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w", re.UNICODE)


def fts_query(text: str) -> str | None:
    """Every whitespace-separated term becomes a quoted FTS5 string (so operators, brackets,
    quotes and column filters typed by the user are plain text); terms are ANDed and the last
    one also matches as a prefix, for search-as-you-type. Returns None when nothing is
    searchable (only punctuation or blanks)."""
    terms = [term for term in text.replace("\x00", " ").split() if _WORD.search(term)]
    if not terms:
        return None
    quoted = ['"' + term.replace('"', '""') + '"' for term in terms]
    quoted[-1] += "*"
    return " ".join(quoted)
