"""Markdown and JSON export, and validation of JSON imports. Pure functions: no database."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.model_ref import ModelRef
from engine.store.models import ROLES, STATUSES, Conversation, Message

EXPORT_FORMAT = "verso.conversation"
EXPORT_VERSION = 1

_LABELS = {"user": "**User**", "assistant": "**Assistant**", "system": "**System**"}


def render_markdown(conversation: Conversation, thread: Sequence[Message]) -> str:
    title = " ".join(conversation.title.split()) or "Untitled"
    parts = [f"# {title}"]
    if conversation.model:
        parts.append(f"*Model: {conversation.model.label}*")
    if conversation.system_prompt:
        parts.append(f"**System prompt**\n\n{conversation.system_prompt}")
    for message in thread:
        section = f"{_LABELS[message.role]}\n\n{message.content}"
        if message.status == "cancelled":
            section += "\n\n*(stopped before the end)*"
        elif message.status == "streaming":
            section += "\n\n*(incomplete)*"
        elif message.status == "error":
            section += f"\n\n*(error: {message.error or 'unknown'})*"
        parts.append(section)
    return "\n\n".join(parts) + "\n"


def build_export(conversation: Conversation, messages: Sequence[Message]) -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "conversation": {
            "id": conversation.id,
            "title": conversation.title,
            "created_at": conversation.created_at,
            "updated_at": conversation.updated_at,
            "pinned": conversation.pinned,
            "model": conversation.model.to_json() if conversation.model else None,
            "system_prompt": conversation.system_prompt,
            "settings": conversation.settings,
            "current_leaf_id": conversation.current_leaf_id,
        },
        "messages": [
            {
                "id": m.id,
                "parent_id": m.parent_id,
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "error": m.error,
                "stats": m.stats,
                "model": m.model,
                "created_at": m.created_at,
                "updated_at": m.updated_at,
            }
            for m in messages
        ],
    }


@dataclass(frozen=True, slots=True)
class ImportedMessage:
    id: str  # the id in the file; the store assigns a new one
    parent_id: str | None
    role: str
    content: str
    status: str
    error: str | None
    stats: dict[str, Any] | None
    model: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class ImportedConversation:
    title: str
    created_at: float
    updated_at: float
    pinned: bool
    model: ModelRef | None
    system_prompt: str | None
    settings: dict[str, Any]
    current_leaf_id: str | None
    messages: tuple[ImportedMessage, ...]  # every parent comes before its children


class _Invalid(ValueError):
    pass


def _get(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise _Invalid(f"{where}: missing field {key!r}")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise _Invalid(f"{where}: field {key!r} must be {names}, not {type(value).__name__}")
    return value


def _optional_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    return _get(obj, key, (str, type(None)), where) if key in obj else None


def _model(obj: Mapping[str, Any], where: str) -> ModelRef | None:
    """A model reference (``ModelRef.to_json``), or a bare path from older exports."""
    value = obj.get("model")
    if value is None or isinstance(value, str):
        return ModelRef.parse(value)
    if isinstance(value, Mapping) and isinstance(value.get("location"), str):
        try:
            return ModelRef.from_json(dict(value))
        except ValueError:
            pass
    raise _Invalid(f"{where}: field 'model' must be a model reference or a path")


def _parse_message(raw: Any, index: int) -> ImportedMessage:
    where = f"messages[{index}]"
    if not isinstance(raw, Mapping):
        raise _Invalid(f"{where} must be an object")
    role = _get(raw, "role", str, where)
    if role not in ROLES:
        raise _Invalid(f"{where}: unknown role {role!r}")
    status = raw.get("status", "complete")
    if status not in STATUSES:
        raise _Invalid(f"{where}: unknown status {status!r}")
    stats = _get(raw, "stats", (dict, type(None)), where) if "stats" in raw else None
    created_at = float(_get(raw, "created_at", (int, float), where))
    updated_at = raw.get("updated_at", created_at)
    if isinstance(updated_at, bool) or not isinstance(updated_at, int | float):
        raise _Invalid(f"{where}: field 'updated_at' must be a number")
    return ImportedMessage(
        id=_get(raw, "id", str, where),
        parent_id=_get(raw, "parent_id", (str, type(None)), where),
        role=role,
        content=_get(raw, "content", str, where),
        status=status,
        error=_optional_str(raw, "error", where),
        stats=stats,
        model=_optional_str(raw, "model", where),
        created_at=created_at,
        updated_at=float(updated_at),
    )


def _parents_first(messages: list[ImportedMessage]) -> tuple[ImportedMessage, ...]:
    by_id: dict[str, ImportedMessage] = {}
    for message in messages:
        if message.id in by_id:
            raise _Invalid(f"duplicate message id {message.id!r}")
        by_id[message.id] = message
    children: dict[str | None, list[ImportedMessage]] = {}
    for message in messages:
        if message.parent_id is not None and message.parent_id not in by_id:
            raise _Invalid(f"message {message.id!r} has unknown parent {message.parent_id!r}")
        children.setdefault(message.parent_id, []).append(message)
    # Breadth-first from the roots keeps siblings in file order; anything unreached is a cycle.
    ordered: list[ImportedMessage] = []
    queue = deque(children.get(None, []))
    while queue:
        message = queue.popleft()
        ordered.append(message)
        queue.extend(children.get(message.id, []))
    if len(ordered) != len(messages):
        raise _Invalid("the message parent links form a cycle")
    return tuple(ordered)


def parse_export(data: Mapping[str, Any] | str | bytes) -> ImportedConversation:
    """Validate a JSON export completely before anything is written. Raises ValueError with a
    message saying what is wrong."""
    try:
        return _parse(data)
    except _Invalid as exc:
        raise ValueError(f"Not a valid Verso conversation export: {exc}") from None


def _parse(data: Mapping[str, Any] | str | bytes) -> ImportedConversation:
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Invalid(f"the file is not JSON ({exc})") from None
    if not isinstance(data, Mapping):
        raise _Invalid("the top level must be a JSON object")
    if data.get("format") != EXPORT_FORMAT:
        raise _Invalid(f"'format' must be {EXPORT_FORMAT!r}")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _Invalid("'version' must be a positive integer")
    if version > EXPORT_VERSION:
        raise _Invalid(f"format version {version} is newer than this Verso understands")
    conv = _get(data, "conversation", dict, "top level")
    raw_messages = _get(data, "messages", list, "top level")
    where = "conversation"
    messages = _parents_first([_parse_message(raw, i) for i, raw in enumerate(raw_messages)])
    leaf = _get(conv, "current_leaf_id", (str, type(None)), where)
    if leaf is not None and leaf not in {m.id for m in messages}:
        raise _Invalid(f"current_leaf_id {leaf!r} is not one of the messages")
    created_at = float(_get(conv, "created_at", (int, float), where))
    return ImportedConversation(
        title=_get(conv, "title", str, where),
        created_at=created_at,
        updated_at=float(_get(conv, "updated_at", (int, float), where)),
        pinned=bool(_get(conv, "pinned", bool, where)) if "pinned" in conv else False,
        model=_model(conv, where),
        system_prompt=_optional_str(conv, "system_prompt", where),
        settings=_get(conv, "settings", dict, where) if "settings" in conv else {},
        current_leaf_id=leaf,
        messages=messages,
    )
