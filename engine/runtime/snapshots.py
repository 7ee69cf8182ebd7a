"""Per-conversation KV snapshots, kept in a cache bounded in bytes (least recently used out).

Switching back to a conversation restores its sequence state with
``llama_state_seq_set_data`` (about a millisecond per few hundred tokens) instead of
re-evaluating its history (seconds).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_SNAPSHOT_BUDGET = 384 * 1024 * 1024


@dataclass(frozen=True)
class SessionHistory:
    """What is known to be in the KV cache for a session, as text and as tokens.

    Keeping the tokens (not only the text) lets the next turn extend them instead of
    re-tokenizing text that was generated as different tokens."""

    text: str = ""
    tokens: tuple[int, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    kv_tokens: tuple[int, ...]
    state: bytes
    history: SessionHistory
    kv_batched: int = 0

    @property
    def nbytes(self) -> int:
        return len(self.state) + 4 * len(self.kv_tokens)


class SnapshotCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[str, Snapshot] = OrderedDict()

    @property
    def used_bytes(self) -> int:
        return sum(s.nbytes for s in self._items.values())

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    def put(self, session_id: str, snapshot: Snapshot) -> None:
        self._items.pop(session_id, None)
        if snapshot.nbytes > self.budget_bytes:
            return
        self._items[session_id] = snapshot
        while self.used_bytes > self.budget_bytes:
            self._items.popitem(last=False)

    def take(self, session_id: str) -> Snapshot | None:
        """Remove and return the snapshot: once restored, the live KV cache is the truth."""
        return self._items.pop(session_id, None)

    def drop(self, session_id: str) -> None:
        self._items.pop(session_id, None)

    def clear(self) -> None:
        self._items.clear()
