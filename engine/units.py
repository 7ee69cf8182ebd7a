"""Human-readable sizes for messages (decimal units, as file managers show them): the byte
formatter for every engine and app message. A top-level module that imports nothing, so
the document parser's child process uses it without importing ``engine.catalog`` (gguf and
numpy, about 0.4 s)."""

from __future__ import annotations


def format_bytes(n: float) -> str:
    """``98362432`` -> ``"98.4 MB"``. Decimal units so the figures match what users see."""
    if n < 1000:
        return f"{int(n)} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} TB"
