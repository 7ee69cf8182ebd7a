"""Token counts for a server that cannot tokenize (placeholder).

A conservative sentencepiece-based estimator replaces this module; until it lands,
``estimate_tokens`` assumes two bytes of UTF-8 per token, which overestimates English text
for the bundled models' tokenizers (about four bytes a token) and so never lets a chunk
outgrow a context."""

from __future__ import annotations


def estimate_tokens(text: str) -> int:
    """An upper estimate of the tokens of ``text`` under an unknown tokenizer (at least 1)."""
    return max(1, len(text.encode("utf-8")) // 2)
