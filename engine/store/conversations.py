"""The conversation repository: conversations, their message trees, search, export/import.

Thread safety: one ``ConversationStore`` owns a single SQLite connection opened with
``check_same_thread=False``; every public method takes an internal re-entrant lock for its
whole duration, so one store object may be shared by the GUI thread and worker threads and
each call is atomic with respect to the others. Several store objects (or processes) on the
same file coordinate through SQLite's own locking (WAL mode, ``busy_timeout``).

Messages form a tree (``parent_id``) so a reply can have several versions (regenerate) and a
user turn can be edited without losing the old branch. ``Conversation.current_leaf_id``
selects the visible thread: the path from the root to that message.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from engine import paths
from engine.model_ref import ModelRef
from engine.store import db
from engine.store.export import build_export, parse_export, render_markdown
from engine.store.models import (
    CURRENT_LEAF,
    ROLES,
    STATUSES,
    Conversation,
    Message,
    ParentRef,
    Role,
    SearchHit,
    Status,
)
from engine.store.search import fts_query

_CONVERSATION_COLUMNS = (
    "id, title, created_at, updated_at, pinned, model, system_prompt, settings_json, "
    "current_leaf_id, deleted_at"
)
_MESSAGE_COLUMNS = (
    "id", "conversation_id", "parent_id", "role", "content", "status", "error", "stats_json",
    "model", "created_at", "updated_at",
)  # fmt: skip
_SNIPPET_TOKENS = 12
INTERRUPTED_ERROR = "Verso closed before this reply was finished."


IMPORT_BATCH_ROWS = 500
IMPORT_BATCH_CHARS = 2_000_000  # message text per import transaction


def _import_batches(rows: list[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    chars = 0
    for row in rows:
        batch.append(row)
        chars += len(row[4] or "")
        if len(batch) >= IMPORT_BATCH_ROWS or chars >= IMPORT_BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _columns(alias: str) -> str:
    return ", ".join(f"{alias}.{name}" for name in _MESSAGE_COLUMNS)


def _new_id() -> str:
    return uuid.uuid4().hex


def _json_object(value: Mapping[str, Any] | Any, what: str) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping, not {type(value).__name__}")
    try:
        return json.dumps(dict(value), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from None


def _ref(model: ModelRef | None) -> str | None:
    return model.dumps() if model is not None else None


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"],
        title=row["title"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        pinned=bool(row["pinned"]),
        model=ModelRef.parse(row["model"]),
        system_prompt=row["system_prompt"],
        settings=json.loads(row["settings_json"]),
        current_leaf_id=row["current_leaf_id"],
        deleted_at=row["deleted_at"],
    )


def _message(row: sqlite3.Row) -> Message:
    stats = row["stats_json"]
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        parent_id=row["parent_id"],
        role=row["role"],
        content=row["content"],
        status=row["status"],
        error=row["error"],
        stats=json.loads(stats) if stats is not None else None,
        model=row["model"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class ConversationStore:
    def __init__(
        self, path: str | Path | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._path = Path(path) if path is not None else paths.database_path()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.RLock()
        with db.translate_errors(self._path):
            self._conn = db.connect(self._path)
            try:
                self._schema_version = db.migrate(self._conn)
            except BaseException:
                self._conn.close()
                raise

    @property
    def path(self) -> Path:
        return self._path

    @property
    def schema_version(self) -> int:
        return self._schema_version

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock, db.translate_errors(self._path):
            yield self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back entirely on any error (SQLite may already have
        rolled it back itself, e.g. when the disk is full)."""
        with self._lock, db.translate_errors(self._path):
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # Conversations -----------------------------------------------------------------------

    def create_conversation(
        self,
        title: str = "New chat",
        system_prompt: str | None = None,
        model: ModelRef | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Conversation:
        settings_json = _json_object(settings or {}, "settings")
        conversation_id = _new_id()
        now = self._clock()
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO conversations ({_CONVERSATION_COLUMNS}) "
                "VALUES (?, ?, ?, ?, 0, ?, ?, ?, NULL, NULL)",
                (conversation_id, title, now, now, _ref(model), system_prompt, settings_json),
            )
        return Conversation(
            id=conversation_id,
            title=title,
            created_at=now,
            updated_at=now,
            pinned=False,
            model=model,
            system_prompt=system_prompt,
            settings=json.loads(settings_json),
            current_leaf_id=None,
            deleted_at=None,
        )

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        with self._locked() as conn:
            row = conn.execute(
                f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = ?",
                (conversation_id,),
            ).fetchone()
        return _conversation(row) if row is not None else None

    def list_conversations(self, include_deleted: bool = False) -> list[Conversation]:
        """Pinned first, then most recent activity first."""
        where = "" if include_deleted else "WHERE deleted_at IS NULL"
        with self._locked() as conn:
            rows = conn.execute(
                f"SELECT {_CONVERSATION_COLUMNS} FROM conversations {where} "
                "ORDER BY pinned DESC, updated_at DESC, seq DESC"
            ).fetchall()
        return [_conversation(row) for row in rows]

    def _update_conversation(self, conversation_id: str, assignments: str, *values: Any) -> None:
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE conversations SET {assignments} WHERE id = ?", (*values, conversation_id)
            )
            if cursor.rowcount == 0:
                raise KeyError(f"no conversation {conversation_id!r}")

    # Metadata edits do not count as activity: they leave updated_at (the list order) alone.

    def rename(self, conversation_id: str, title: str) -> None:
        self._update_conversation(conversation_id, "title = ?", title)

    def set_pinned(self, conversation_id: str, pinned: bool) -> None:
        self._update_conversation(conversation_id, "pinned = ?", int(bool(pinned)))

    def set_system_prompt(self, conversation_id: str, system_prompt: str | None) -> None:
        self._update_conversation(conversation_id, "system_prompt = ?", system_prompt)

    def set_model(self, conversation_id: str, model: ModelRef | None) -> None:
        self._update_conversation(conversation_id, "model = ?", _ref(model))

    def set_settings(self, conversation_id: str, settings: Mapping[str, Any]) -> None:
        self._update_conversation(
            conversation_id, "settings_json = ?", _json_object(settings, "settings")
        )

    def delete_conversation(self, conversation_id: str) -> str:
        """Soft delete; returns the token for ``undo_delete`` (the conversation id)."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE conversations SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                (self._clock(), conversation_id),
            )
            exists = (
                cursor.rowcount > 0
                or conn.execute(
                    "SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)
                ).fetchone()
            )
            if not exists:
                raise KeyError(f"no conversation {conversation_id!r}")
        return conversation_id

    def undo_delete(self, token: str) -> Conversation:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE conversations SET deleted_at = NULL "
                "WHERE id = ? AND deleted_at IS NOT NULL",
                (token,),
            )
            if cursor.rowcount == 0:
                raise KeyError(f"no deleted conversation {token!r} (already purged?)")
            row = conn.execute(
                f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", (token,)
            ).fetchone()
        return _conversation(row)

    def purge_deleted(self, older_than_seconds: float = 0.0) -> int:
        """Permanently remove conversations soft-deleted at least ``older_than_seconds`` ago
        (with their messages); returns how many were removed."""
        cutoff = self._clock() - older_than_seconds
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at <= ?",
                (cutoff,),
            )
            return cursor.rowcount

    # Messages ----------------------------------------------------------------------------

    def add_message(
        self,
        conversation_id: str,
        role: Role,
        content: str,
        parent_id: ParentRef = CURRENT_LEAF,
        status: Status = "complete",
        *,
        model: str | None = None,
        stats: Mapping[str, Any] | Any | None = None,
        error: str | None = None,
    ) -> Message:
        """Append a message and make it the active leaf. ``parent_id`` defaults to the current
        leaf; pass the user message to regenerate a reply, or the parent of a user message
        to edit it (both create siblings), or ``None`` for a new root."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        stats_json = _json_object(stats, "stats") if stats is not None else None
        message_id = _new_id()
        now = self._clock()
        with self._write() as conn:
            row = conn.execute(
                "SELECT current_leaf_id FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"no conversation {conversation_id!r}")
            parent = row["current_leaf_id"] if parent_id is CURRENT_LEAF else parent_id
            if parent is not None:
                owner = conn.execute(
                    "SELECT conversation_id FROM messages WHERE id = ?", (parent,)
                ).fetchone()
                if owner is None or owner[0] != conversation_id:
                    raise ValueError(f"parent {parent!r} is not a message of this conversation")
            conn.execute(
                f"INSERT INTO messages ({', '.join(_MESSAGE_COLUMNS)}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (message_id, conversation_id, parent, role, content, status, error,
                 stats_json, model, now, now),
            )  # fmt: skip
            conn.execute(
                "UPDATE conversations SET current_leaf_id = ?, updated_at = ? WHERE id = ?",
                (message_id, now, conversation_id),
            )
        return Message(
            id=message_id,
            conversation_id=conversation_id,
            parent_id=parent,
            role=role,
            content=content,
            status=status,
            error=error,
            stats=json.loads(stats_json) if stats_json is not None else None,
            model=model,
            created_at=now,
            updated_at=now,
        )

    def update_message_content(
        self,
        message_id: str,
        content: str,
        status: Status | None = None,
        stats: Mapping[str, Any] | Any | None = None,
        error: str | None = None,
    ) -> None:
        """Replace the text of a (streaming) message; ``None`` leaves status, stats and error
        unchanged. A single UPDATE, cheap enough to call every second while streaming."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        stats_json = _json_object(stats, "stats") if stats is not None else None
        with self._locked() as conn:  # one statement: atomic without an explicit transaction
            cursor = conn.execute(
                "UPDATE messages SET content = ?, status = COALESCE(?, status), "
                "stats_json = COALESCE(?, stats_json), error = COALESCE(?, error), "
                "updated_at = ? WHERE id = ?",
                (content, status, stats_json, error, self._clock(), message_id),
            )
        if cursor.rowcount == 0:
            raise KeyError(f"no message {message_id!r}")

    def finish_interrupted(self) -> int:
        """Mark replies left 'streaming' by a crash as 'cancelled' (their partial text is kept).
        Call once at startup, before any generation begins; returns how many were fixed."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE messages SET status = 'cancelled', error = COALESCE(error, ?) "
                "WHERE status = 'streaming'",
                (INTERRUPTED_ERROR,),
            )
            return cursor.rowcount

    def get_message(self, message_id: str) -> Message | None:
        with self._locked() as conn:
            row = conn.execute(
                f"SELECT {_columns('m')} FROM messages m WHERE m.id = ?", (message_id,)
            ).fetchone()
        return _message(row) if row is not None else None

    def messages(self, conversation_id: str) -> list[Message]:
        """Every message of the conversation (all branches), oldest first."""
        with self._locked() as conn:
            rows = conn.execute(
                f"SELECT {_columns('m')} FROM messages m WHERE m.conversation_id = ? "
                "ORDER BY m.created_at, m.seq",
                (conversation_id,),
            ).fetchall()
        return [_message(row) for row in rows]

    def _path_to(self, conn: sqlite3.Connection, leaf_id: str | None) -> list[Message]:
        if leaf_id is None:
            return []
        rows = conn.execute(
            f"""
            WITH RECURSIVE path (id, depth) AS (
                SELECT id, 0 FROM messages WHERE id = ?
                UNION ALL
                SELECT m.parent_id, path.depth + 1 FROM messages m JOIN path ON m.id = path.id
                WHERE m.parent_id IS NOT NULL
            )
            SELECT {_columns("m")} FROM path JOIN messages m ON m.id = path.id
            ORDER BY path.depth DESC
            """,
            (leaf_id,),
        ).fetchall()
        return [_message(row) for row in rows]

    def thread(self, conversation_id: str) -> list[Message]:
        """The visible thread: root to the active leaf."""
        with self._locked() as conn:
            row = conn.execute(
                "SELECT current_leaf_id FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"no conversation {conversation_id!r}")
            return self._path_to(conn, row["current_leaf_id"])

    def children(self, message_id: str) -> list[Message]:
        with self._locked() as conn:
            rows = conn.execute(
                f"SELECT {_columns('m')} FROM messages m WHERE m.parent_id = ? "
                "ORDER BY m.created_at, m.seq",
                (message_id,),
            ).fetchall()
        return [_message(row) for row in rows]

    def siblings(self, message_id: str) -> list[Message]:
        """The versions of a message: same parent and role, oldest first, the message itself
        included ("version i/n" is its index + 1 of len())."""
        with self._locked() as conn:
            rows = conn.execute(
                f"""
                SELECT {_columns("s")} FROM messages m JOIN messages s
                    ON s.conversation_id = m.conversation_id
                    AND s.parent_id IS m.parent_id AND s.role = m.role
                WHERE m.id = ? ORDER BY s.created_at, s.seq
                """,
                (message_id,),
            ).fetchall()
        if not rows:
            raise KeyError(f"no message {message_id!r}")
        return [_message(row) for row in rows]

    def select_branch(self, message_id: str) -> list[Message]:
        """Show the branch through ``message_id``: the active leaf becomes its deepest
        descendant, following the newest child at each step. Returns the new thread."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT conversation_id FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"no message {message_id!r}")
            leaf = message_id
            while child := conn.execute(
                "SELECT id FROM messages WHERE parent_id = ? "
                "ORDER BY created_at DESC, seq DESC LIMIT 1",
                (leaf,),
            ).fetchone():
                leaf = child[0]
            conn.execute(
                "UPDATE conversations SET current_leaf_id = ? WHERE id = ?",
                (leaf, row["conversation_id"]),
            )
            return self._path_to(conn, leaf)

    # Search ------------------------------------------------------------------------------

    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Title matches first, then message matches by relevance; deleted conversations are
        left out. Any user text is accepted (see ``search.fts_query``)."""
        match = fts_query(query)
        if match is None or limit <= 0:
            return []
        with self._locked() as conn:
            titles = conn.execute(
                """
                SELECT c.id, c.title, highlight(conversations_fts, 0, '[', ']') AS snippet
                FROM conversations_fts JOIN conversations c ON c.seq = conversations_fts.rowid
                WHERE conversations_fts MATCH ? AND c.deleted_at IS NULL
                ORDER BY rank LIMIT ?
                """,
                (match, limit),
            ).fetchall()
            messages = conn.execute(
                f"""
                SELECT m.id, m.conversation_id, m.role, c.title,
                    snippet(messages_fts, 0, '[', ']', '…', {_SNIPPET_TOKENS}) AS snippet
                FROM messages_fts
                JOIN messages m ON m.seq = messages_fts.rowid
                JOIN conversations c ON c.id = m.conversation_id
                WHERE messages_fts MATCH ? AND c.deleted_at IS NULL
                ORDER BY rank LIMIT ?
                """,
                (match, limit - len(titles)),
            ).fetchall()
        hits = [SearchHit(row["id"], row["title"], None, None, row["snippet"]) for row in titles]
        hits += [
            SearchHit(row["conversation_id"], row["title"], row["id"], row["role"], row["snippet"])
            for row in messages
        ]
        return hits

    # Export / import ---------------------------------------------------------------------

    def _existing(self, conversation_id: str) -> Conversation:
        conversation = self.get_conversation(conversation_id)
        if conversation is None:
            raise KeyError(f"no conversation {conversation_id!r}")
        return conversation

    def export_markdown(self, conversation_id: str) -> str:
        """Title, system prompt and the visible thread."""
        with self._lock:
            return render_markdown(self._existing(conversation_id), self.thread(conversation_id))

    def export_json(self, conversation_id: str) -> dict[str, Any]:
        """The whole tree (every branch) and the conversation's fields; ``json.dumps`` it."""
        with self._lock:
            return build_export(self._existing(conversation_id), self.messages(conversation_id))

    def import_json(self, data: Mapping[str, Any] | str | bytes) -> Conversation:
        """Create a new conversation from ``export_json`` output (dict or JSON text). Ids are
        new; the tree, branches, active leaf, contents and timestamps are kept. Raises
        ValueError for malformed input; nothing is written unless all of it is."""
        imported = parse_export(data)
        conversation_id = _new_id()
        new_ids = {m.id: _new_id() for m in imported.messages}
        leaf = new_ids[imported.current_leaf_id] if imported.current_leaf_id else None
        conversation_row = (
            conversation_id, imported.title, imported.created_at, imported.updated_at,
            int(imported.pinned), _ref(imported.model), imported.system_prompt,
            _json_object(imported.settings, "settings"), leaf,
        )  # fmt: skip
        message_rows = [
            (new_ids[m.id], conversation_id,
             new_ids[m.parent_id] if m.parent_id is not None else None,
             m.role, m.content, m.status, m.error,
             _json_object(m.stats, "stats") if m.stats is not None else None,
             m.model, m.created_at, m.updated_at)
            for m in imported.messages
        ]  # fmt: skip
        # Written hidden (soft-deleted) in short transactions, then shown in one: a large
        # import never holds the write lock for seconds (another process's save would wait
        # and fail), and a failed one leaves nothing visible.
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO conversations ({_CONVERSATION_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*conversation_row, self._clock()),
            )
        try:
            for batch in _import_batches(message_rows):
                started = time.monotonic()
                with self._write() as conn:
                    conn.executemany(
                        f"INSERT INTO messages ({', '.join(_MESSAGE_COLUMNS)}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        batch,
                    )
                # SQLite's lock is not fair: a writer waiting in its busy handler polls now
                # and then and would keep missing a lock retaken at once. Leave it a gap.
                time.sleep(min(0.05, (time.monotonic() - started) / 2))
            with self._write() as conn:
                conn.execute("UPDATE conversations SET deleted_at = NULL WHERE id = ?",
                             (conversation_id,))
                row = conn.execute(
                    f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = ?",
                    (conversation_id,),
                ).fetchone()
        except BaseException:
            # If even this fails, the hidden rows go with purge_deleted.
            with suppress(db.StoreError), self._write() as conn:
                conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            raise
        return _conversation(row)
