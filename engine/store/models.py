"""Plain data returned by the conversation store."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Literal

from engine.model_ref import ModelRef

Role = Literal["system", "user", "assistant"]
Status = Literal["complete", "streaming", "cancelled", "error"]

ROLES: Final[frozenset[str]] = frozenset({"system", "user", "assistant"})
STATUSES: Final[frozenset[str]] = frozenset({"complete", "streaming", "cancelled", "error"})


class _CurrentLeaf(Enum):
    CURRENT_LEAF = "current leaf"


# Default for ``add_message(parent_id=...)``: attach to the conversation's active leaf.
# ``None`` means "a new root", so a separate sentinel is needed.
CURRENT_LEAF: Final = _CurrentLeaf.CURRENT_LEAF
ParentRef = str | None | _CurrentLeaf


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    title: str
    created_at: float  # seconds since the epoch
    updated_at: float  # last activity (a message added); the list is sorted by it
    pinned: bool
    model: ModelRef | None
    system_prompt: str | None
    settings: dict[str, Any]  # per-conversation sampling settings
    current_leaf_id: str | None  # the visible thread is the path root -> this message
    deleted_at: float | None  # set while soft-deleted (undo possible until purged)

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    conversation_id: str
    parent_id: str | None
    role: Role
    content: str
    status: Status
    error: str | None
    stats: dict[str, Any] | None  # e.g. dataclasses.asdict(engine.events.Stats)
    model: str | None  # display name of the model that wrote it
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class SearchHit:
    conversation_id: str
    conversation_title: str
    message_id: str | None  # None when the title matched
    role: Role | None  # None when the title matched
    snippet: str  # matched terms wrapped in [ ]
