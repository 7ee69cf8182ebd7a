"""SQLite connection setup, versioned schema migrations and error translation.

Migrations are append-only: never edit one that has shipped, add a new one. Each runs in its
own ``BEGIN IMMEDIATE`` transaction together with its row in ``schema_migrations``, so a
failure leaves the database at the previous version. ``foreign_keys`` cannot be changed inside
a transaction; a future migration that rebuilds a table must switch it off around itself.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.errors import VersoError

BUSY_TIMEOUT_MS = 5000


class StoreError(VersoError):
    """The history database cannot be used (disk full, I/O error, read-only, locked, corrupt,
    or written by a newer Verso). The message is written for the user."""


_USER_MESSAGES: dict[int, str] = {
    sqlite3.SQLITE_FULL: "The disk is full, so {what} could not be saved. "
    "Free some disk space and try again.",
    sqlite3.SQLITE_IOERR: "{What} could not be read or written (disk I/O error).",
    sqlite3.SQLITE_READONLY: "The database holding {what} is read-only.",
    sqlite3.SQLITE_CANTOPEN: "The database holding {what} could not be opened.",
    sqlite3.SQLITE_BUSY: "The database holding {what} is busy (is Verso running twice?).",
    sqlite3.SQLITE_LOCKED: "The database holding {what} is locked.",
    sqlite3.SQLITE_CORRUPT: "The database holding {what} is damaged.",
    sqlite3.SQLITE_NOTADB: "The file holding {what} is not a Verso database.",
}
CHAT_HISTORY = "the chat history"
JOB_PROGRESS = "the progress of summaries and translations"


@contextmanager
def translate_errors(path: Path | str, what: str = CHAT_HISTORY) -> Iterator[None]:
    """Turn environmental SQLite failures into ``StoreError`` naming ``what`` was being
    saved; programming errors (bad SQL, constraint violations) propagate unchanged."""
    try:
        yield
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        message = _USER_MESSAGES.get(code & 0xFF) if isinstance(code, int) else None
        if message is None:
            raise
        text = message.format(what=what, What=what[:1].upper() + what[1:])
        raise StoreError(f"{text} ({path}: {exc})") from exc


def connect(path: Path | str) -> sqlite3.Connection:
    """Autocommit connection (transactions are explicit) usable from any thread; the caller
    serialises access."""
    conn = sqlite3.connect(
        str(path),
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL survives an application crash; only a power cut can lose the
        # last transactions.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None]


def _statements(*sql: str) -> Callable[[sqlite3.Connection], None]:
    # Statements run one by one: executescript() would commit the migration's transaction.
    def apply(conn: sqlite3.Connection) -> None:
        for statement in sql:
            conn.execute(statement)

    return apply


_CORE_TABLES = _statements(
    """
    CREATE TABLE conversations (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        pinned INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1)),
        model TEXT,
        system_prompt TEXT,
        settings_json TEXT NOT NULL DEFAULT '{}',
        current_leaf_id TEXT,
        deleted_at REAL
    )
    """,
    "CREATE INDEX conversations_listing ON conversations (deleted_at, pinned, updated_at)",
    """
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        parent_id TEXT REFERENCES messages (id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'complete'
            CHECK (status IN ('complete', 'streaming', 'cancelled', 'error')),
        error TEXT,
        stats_json TEXT,
        model TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )
    """,
    "CREATE INDEX messages_by_conversation ON messages (conversation_id, created_at)",
    "CREATE INDEX messages_by_parent ON messages (parent_id, created_at)",
)

# External-content FTS5 indexes keyed by the stable INTEGER PRIMARY KEY (a plain rowid may
# be renumbered by VACUUM), kept in sync by triggers.
_FULL_TEXT_SEARCH = _statements(
    """
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        content, content = 'messages', content_rowid = 'seq',
        tokenize = 'unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts (rowid, content) VALUES (new.seq, new.content);
    END
    """,
    """
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content)
            VALUES ('delete', old.seq, old.content);
    END
    """,
    """
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages
    WHEN old.content IS NOT new.content BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content)
            VALUES ('delete', old.seq, old.content);
        INSERT INTO messages_fts (rowid, content) VALUES (new.seq, new.content);
    END
    """,
    """
    CREATE VIRTUAL TABLE conversations_fts USING fts5(
        title, content = 'conversations', content_rowid = 'seq',
        tokenize = 'unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER conversations_fts_insert AFTER INSERT ON conversations BEGIN
        INSERT INTO conversations_fts (rowid, title) VALUES (new.seq, new.title);
    END
    """,
    """
    CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations BEGIN
        INSERT INTO conversations_fts (conversations_fts, rowid, title)
            VALUES ('delete', old.seq, old.title);
    END
    """,
    """
    CREATE TRIGGER conversations_fts_update AFTER UPDATE OF title ON conversations
    WHEN old.title IS NOT new.title BEGIN
        INSERT INTO conversations_fts (conversations_fts, rowid, title)
            VALUES ('delete', old.seq, old.title);
        INSERT INTO conversations_fts (rowid, title) VALUES (new.seq, new.title);
    END
    """,
    # Index whatever an older database already holds.
    "INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')",
    "INSERT INTO conversations_fts (conversations_fts) VALUES ('rebuild')",
)

# Document jobs (summarize, translate): settings and per-step results, so a cancelled or
# crashed job resumes where it stopped.
_JOBS = _statements(
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        inputs_hash TEXT NOT NULL,
        settings_json TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'cancelled', 'failed', 'done')),
        result_json TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )
    """,
    """
    CREATE TABLE job_steps (
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        step TEXT NOT NULL,
        result_json TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (job_id, step)
    )
    """,
)

# What a document job needs to run again without the user re-opening its files: a title, the
# sources (paths, or the pasted text itself) and the settings (``recipe_json``), and how many
# steps the job has in all, for "3 of 7 steps" in the list of interrupted jobs.
_JOB_RECIPES = _statements(
    "ALTER TABLE jobs ADD COLUMN title TEXT",
    "ALTER TABLE jobs ADD COLUMN recipe_json TEXT",
    "ALTER TABLE jobs ADD COLUMN steps_total INTEGER",
    "CREATE INDEX jobs_by_kind ON jobs (kind, status, updated_at)",
)



def _model_references(conn: sqlite3.Connection) -> None:
    """Conversations and job recipes recorded their model as a bare file path; it becomes
    ``ModelRef`` JSON (a local file whose content hash is unknown until it is loaded again).
    Job ids do not change (``ModelRef.identity`` of a path-only reference is that path).
    ``messages.model`` is the display name of the model that wrote a reply and stays."""
    from engine.model_ref import ModelRef

    def ref_json(value: str | None) -> str | None:
        ref = ModelRef.parse(value)
        return ref.dumps() if ref is not None else None

    rows = conn.execute("SELECT seq, model FROM conversations WHERE model IS NOT NULL "
                        "AND model != ''").fetchall()
    for seq, model in rows:
        conn.execute("UPDATE conversations SET model = ? WHERE seq = ?", (ref_json(model), seq))
    for job_id, recipe_json in conn.execute(
            "SELECT id, recipe_json FROM jobs WHERE recipe_json IS NOT NULL").fetchall():
        try:
            recipe = json.loads(recipe_json)
        except ValueError:
            continue
        if isinstance(recipe, dict) and isinstance(recipe.get("model"), str):
            ref = ModelRef.parse(recipe["model"])
            recipe["model"] = ref.to_json() if ref is not None else None
            conn.execute("UPDATE jobs SET recipe_json = ? WHERE id = ?",
                         (json.dumps(recipe), job_id))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "core tables", _CORE_TABLES),
    Migration(2, "full-text search", _FULL_TEXT_SEARCH),
    Migration(3, "document jobs", _JOBS),
    Migration(4, "job recipes", _JOB_RECIPES),
    Migration(5, "model references", _model_references),
)


def applied_versions(conn: sqlite3.Connection) -> list[int]:
    rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    return [row[0] for row in rows]


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the schema up to the last of ``migrations``; returns the resulting version.
    Safe to call on every open and from several processes at once."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError("migration versions must be unique and in ascending order")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    applied = set(applied_versions(conn))
    newest_known = versions[-1] if versions else 0
    if applied and max(applied) > newest_known:
        raise StoreError(
            f"The chat history database was written by a newer version of Verso "
            f"(schema {max(applied)}, this version understands up to {newest_known}). "
            f"Update Verso to open it."
        )
    for migration in migrations:
        if migration.version in applied:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while we waited for the write lock.
            done = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
            ).fetchone()
            if done is None:
                migration.apply(conn)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return max(applied_versions(conn), default=0)
