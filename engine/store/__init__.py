"""Durable chat history: conversations with branching message trees in SQLite.

See ``conversations.ConversationStore`` for the API and its threading rules."""

from engine.store.conversations import ConversationStore
from engine.store.db import StoreError
from engine.store.export import EXPORT_FORMAT, EXPORT_VERSION
from engine.store.models import CURRENT_LEAF, Conversation, Message, Role, SearchHit, Status

__all__ = [
    "CURRENT_LEAF",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "Conversation",
    "ConversationStore",
    "Message",
    "Role",
    "SearchHit",
    "Status",
    "StoreError",
]
