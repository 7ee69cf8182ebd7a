"""What ``ContextPolicy.DROP_OLDEST`` drops, shared by every backend that applies it."""

from __future__ import annotations

from collections.abc import Sequence

from engine.options import ChatMessage


def oldest_turn(messages: Sequence[ChatMessage]) -> list[int] | None:
    """Indices of the oldest user turn and the replies that follow it, never the system
    prompt and never the final message."""
    first = next((i for i, m in enumerate(messages) if m.role != "system"), None)
    if first is None or first >= len(messages) - 1:
        return None
    end = first + 1
    while end < len(messages) - 1 and messages[end].role != "user":
        end += 1
    return list(range(first, end))
