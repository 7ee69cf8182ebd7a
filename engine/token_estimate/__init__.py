"""A conservative token count for servers that cannot tokenize (Ollama, generic
OpenAI-compatible endpoints), for chunking documents and the chat context bar.

``estimate_tokens(text)`` weighs the pieces of a small sentencepiece model shipped in
``assets/token_estimate/`` (trained by ``packaging/train_token_estimator.py`` on
multilingual text, code and numbers) so that it is at most a few per cent below the real
count of SmolLM2's and Gemma 3's tokenizers for the held-out texts of every script it was
calibrated on; it overestimates instead, most for scripts one of them tokenizes well and the
other badly. Its figures are in the README ("Token estimates")."""

from __future__ import annotations

from engine.token_estimate.estimator import TokenEstimator, default_estimator

__all__ = ["TokenEstimator", "estimate_tokens"]


def estimate_tokens(text: str) -> int:
    """Estimated tokens in ``text`` (0 for the empty text); no special tokens counted."""
    return default_estimator().estimate(text)
