from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import paths
from engine.events import Stats
from engine.model_ref import ModelRef
from engine.store import (
    EXPORT_FORMAT,
    ConversationStore,
    Message,
    StoreError,
    db,
)
from engine.store.search import fts_query


class FakeClock:
    """Advances one second per reading so orderings are deterministic; ``frozen`` stops it."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.frozen = False

    def __call__(self) -> float:
        if not self.frozen:
            self.now += 1.0
        return self.now


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VERSO_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(home: Path, clock: FakeClock) -> Iterator[ConversationStore]:
    with ConversationStore(clock=clock) as s:
        yield s


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path)


def ids(messages: list[Message]) -> list[str]:
    return [m.id for m in messages]


def fts_in_sync(path: Path) -> None:
    with raw(path) as conn:  # raises sqlite3.DatabaseError if an index drifted
        conn.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
        conn.execute(
            "INSERT INTO conversations_fts (conversations_fts, rank) VALUES ('integrity-check', 1)"
        )


# Database and migrations ---------------------------------------------------------------------


def test_default_path_is_under_verso_home(store: ConversationStore, home: Path) -> None:
    assert store.path == paths.database_path()
    assert store.path.is_relative_to(home)
    assert store.path.exists()


def test_migrations_are_idempotent_and_wal_is_on(home: Path) -> None:
    with ConversationStore() as first:
        version = first.schema_version
        first.create_conversation("kept")
    with ConversationStore() as second:
        assert second.schema_version == version == db.MIGRATIONS[-1].version
        assert [c.title for c in second.list_conversations()] == ["kept"]
        conn = second._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == db.BUSY_TIMEOUT_MS
        assert db.migrate(conn) == version
    with raw(paths.database_path()) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [tuple(r) for r in rows] == [(m.version, m.name) for m in db.MIGRATIONS]


def test_older_database_is_migrated_forward(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = db.connect(path)
    assert db.migrate(conn, db.MIGRATIONS[:1]) == 1
    conn.execute(
        "INSERT INTO conversations (id, title, created_at, updated_at) "
        "VALUES ('c1', 'Old times', 1, 1)"
    )
    conn.execute(
        "INSERT INTO messages (id, conversation_id, role, content, created_at, updated_at) "
        "VALUES ('m1', 'c1', 'user', 'an ancient question', 1, 1)"
    )
    conn.close()

    with ConversationStore(path) as store:
        assert store.schema_version == db.MIGRATIONS[-1].version
        hits = store.search("ancient")
        assert [(h.conversation_id, h.message_id) for h in hits] == [("c1", "m1")]
        assert [h.conversation_id for h in store.search("times")] == ["c1"]


def test_failed_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        conn.execute("THIS IS NOT SQL")

    conn = db.connect(tmp_path / "x.sqlite3")
    with pytest.raises(sqlite3.OperationalError):
        db.migrate(conn, (*db.MIGRATIONS, db.Migration(99, "broken", broken)))
    assert not conn.in_transaction
    assert db.applied_versions(conn) == [m.version for m in db.MIGRATIONS]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half_done" not in tables
    conn.close()


def test_database_from_a_newer_verso_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    ConversationStore(path).close()
    with raw(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    with pytest.raises(StoreError, match="newer version"):
        ConversationStore(path)


# Conversations -----------------------------------------------------------------------------


def test_list_is_pinned_first_then_most_recent_activity(store: ConversationStore) -> None:
    a = store.create_conversation("a")
    b = store.create_conversation("b")
    c = store.create_conversation("c")
    assert [x.id for x in store.list_conversations()] == [c.id, b.id, a.id]

    store.add_message(a.id, "user", "hello")  # activity moves a to the top
    assert [x.id for x in store.list_conversations()] == [a.id, c.id, b.id]

    store.set_pinned(b.id, True)
    assert [x.id for x in store.list_conversations()] == [b.id, a.id, c.id]
    store.rename(c.id, "renamed")  # metadata edits do not reorder
    assert [x.id for x in store.list_conversations()] == [b.id, a.id, c.id]
    store.set_pinned(b.id, False)
    assert [x.id for x in store.list_conversations()] == [a.id, c.id, b.id]


def test_conversation_fields_persist(store: ConversationStore) -> None:
    conv = store.create_conversation(
        "Trip", system_prompt="Be brief.", model=ModelRef.local("llama.gguf"),
        settings={"temperature": 0.2},
    )
    assert conv == store.get_conversation(conv.id)
    assert len(conv.id) == 32 and int(conv.id, 16) >= 0

    store.rename(conv.id, "Trip to Lisbon")
    store.set_system_prompt(conv.id, None)
    store.set_model(conv.id, ModelRef.remote("http://127.0.0.1:8080/v1", "qwen"))
    store.set_settings(conv.id, {"temperature": 0.7, "top_k": 40})
    store.set_pinned(conv.id, True)

    with ConversationStore(store.path) as other:
        got = other.get_conversation(conv.id)
    assert got is not None
    assert (got.title, got.system_prompt, got.model, got.settings, got.pinned) == (
        "Trip to Lisbon",
        None,
        ModelRef.remote("http://127.0.0.1:8080/v1", "qwen"),
        {"temperature": 0.7, "top_k": 40},
        True,
    )
    assert store.get_conversation("missing") is None
    with pytest.raises(KeyError):
        store.rename("missing", "x")
    with pytest.raises(ValueError, match="settings"):
        store.set_settings(conv.id, {"bad": object()})
    assert store.get_conversation(conv.id) == got


def test_soft_delete_undo_and_purge(store: ConversationStore, clock: FakeClock) -> None:
    doomed = store.create_conversation("doomed")
    store.add_message(doomed.id, "user", "remember the zebra")
    store.add_message(doomed.id, "assistant", "zebra noted")
    kept = store.create_conversation("kept")
    store.add_message(kept.id, "user", "keep me")

    token = store.delete_conversation(doomed.id)
    assert [c.id for c in store.list_conversations()] == [kept.id]
    listed = {c.id: c for c in store.list_conversations(include_deleted=True)}
    assert listed[doomed.id].deleted

    restored = store.undo_delete(token)
    assert restored.id == doomed.id and not restored.deleted
    assert len(store.thread(doomed.id)) == 2
    assert {c.id for c in store.list_conversations()} == {doomed.id, kept.id}

    store.delete_conversation(doomed.id)
    assert store.purge_deleted(older_than_seconds=3600) == 0  # too recent
    clock.now += 7200
    assert store.purge_deleted(older_than_seconds=3600) == 1
    assert store.get_conversation(doomed.id) is None
    with pytest.raises(KeyError):
        store.undo_delete(token)
    with raw(store.path) as conn:
        assert conn.execute(
            "SELECT count(*) FROM messages WHERE conversation_id = ?", (doomed.id,)
        ).fetchone() == (0,)
    assert [m.content for m in store.thread(kept.id)] == ["keep me"]
    fts_in_sync(store.path)


# Message tree ------------------------------------------------------------------------------


def test_regenerate_creates_versions_and_select_branch_switches(store: ConversationStore) -> None:
    conv = store.create_conversation()
    user = store.add_message(conv.id, "user", "Name a colour")
    first = store.add_message(conv.id, "assistant", "Red")
    assert first.parent_id == user.id
    second = store.add_message(conv.id, "assistant", "Blue", parent_id=user.id)  # regenerate

    versions = store.siblings(second.id)
    assert ids(versions) == [first.id, second.id]
    assert (ids(versions).index(first.id) + 1, len(versions)) == (1, 2)
    assert (ids(versions).index(second.id) + 1, len(versions)) == (2, 2)
    assert ids(store.siblings(first.id)) == ids(versions)
    assert ids(store.thread(conv.id)) == [user.id, second.id]

    assert ids(store.select_branch(first.id)) == [user.id, first.id]
    assert ids(store.thread(conv.id)) == [user.id, first.id]
    assert store.get_conversation(conv.id).current_leaf_id == first.id  # type: ignore[union-attr]

    # Continue on the first version, then jump around: select_branch goes to the deepest leaf.
    follow_up = store.add_message(conv.id, "user", "Why?")
    answer = store.add_message(conv.id, "assistant", "Because.")
    assert follow_up.parent_id == first.id
    assert ids(store.select_branch(second.id)) == [user.id, second.id]
    assert ids(store.select_branch(first.id)) == [user.id, first.id, follow_up.id, answer.id]
    # From the user message, the newest child (the second version) is followed.
    assert ids(store.select_branch(user.id)) == [user.id, second.id]


def test_edit_and_resend_keeps_the_old_branch(store: ConversationStore) -> None:
    conv = store.create_conversation()
    u1 = store.add_message(conv.id, "user", "Hi")
    a1 = store.add_message(conv.id, "assistant", "Hello!")
    u2 = store.add_message(conv.id, "user", "Tell me a jkoe")
    a2 = store.add_message(conv.id, "assistant", "What is a jkoe?")

    edited = store.add_message(conv.id, "user", "Tell me a joke", parent_id=u2.parent_id)
    reply = store.add_message(conv.id, "assistant", "Knock knock.")
    assert ids(store.thread(conv.id)) == [u1.id, a1.id, edited.id, reply.id]
    assert ids(store.siblings(edited.id)) == [u2.id, edited.id]

    assert ids(store.select_branch(u2.id)) == [u1.id, a1.id, u2.id, a2.id]
    assert ids(store.select_branch(edited.id)) == [u1.id, a1.id, edited.id, reply.id]

    # Editing the very first message makes a second root.
    root_edit = store.add_message(conv.id, "user", "Hey", parent_id=None)
    assert ids(store.thread(conv.id)) == [root_edit.id]
    assert ids(store.siblings(u1.id)) == [u1.id, root_edit.id]
    assert len(store.messages(conv.id)) == 7


def test_branch_order_does_not_depend_on_clock_resolution(
    store: ConversationStore, clock: FakeClock
) -> None:
    clock.frozen = True  # coarse clocks (Windows) give equal timestamps
    conv = store.create_conversation()
    system = store.add_message(conv.id, "system", "You are terse.", parent_id=None)
    user = store.add_message(conv.id, "user", "Q", parent_id=None)
    replies = [
        store.add_message(conv.id, "assistant", f"A{i}", parent_id=user.id) for i in range(3)
    ]
    assert ids(store.siblings(replies[1].id)) == ids(replies)
    assert ids(store.siblings(user.id)) == [user.id]  # same parent, other role: not a version
    assert ids(store.select_branch(user.id)) == [user.id, replies[-1].id]
    assert ids(store.select_branch(system.id)) == [system.id]


def test_add_message_validation(store: ConversationStore) -> None:
    conv = store.create_conversation()
    other = store.create_conversation()
    foreign = store.add_message(other.id, "user", "elsewhere")
    with pytest.raises(ValueError, match="role"):
        store.add_message(conv.id, "robot", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="status"):
        store.add_message(conv.id, "user", "x", status="done")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="parent"):
        store.add_message(conv.id, "user", "x", parent_id=foreign.id)
    with pytest.raises(KeyError):
        store.add_message("missing", "user", "x")
    with pytest.raises(KeyError):
        store.update_message_content("missing", "x")
    assert store.messages(conv.id) == []
    assert store.get_conversation(conv.id).current_leaf_id is None  # type: ignore[union-attr]


def test_streaming_updates_survive_a_crash(home: Path) -> None:
    # A child process streams into the database and dies without closing anything.
    script = textwrap.dedent(
        """
        import os
        from engine.store import ConversationStore
        store = ConversationStore()
        conv = store.create_conversation("crashy")
        store.add_message(conv.id, "user", "Write a poem")
        reply = store.add_message(conv.id, "assistant", "", status="streaming", model="m.gguf")
        store.update_message_content(reply.id, "Roses are")
        store.update_message_content(reply.id, "Roses are red, violets")
        print(conv.id, reply.id, flush=True)
        os._exit(1)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    conv_id, reply_id = done.stdout.split()

    with ConversationStore() as store:
        last = store.thread(conv_id)[-1]
        assert (last.id, last.content, last.status) == (
            reply_id,
            "Roses are red, violets",
            "streaming",
        )
        assert [h.message_id for h in store.search("violets")] == [reply_id]
        assert store.search("Roses are red violets")[0].message_id == reply_id

        assert store.finish_interrupted() == 1
        recovered = store.get_message(reply_id)
        assert recovered is not None
        assert (recovered.status, recovered.content) == ("cancelled", "Roses are red, violets")
        assert recovered.error

        stats = Stats(generated_tokens=7, generation_tps=12.5)
        store.update_message_content(reply_id, "Roses are red, violets are blue", "complete", stats)
        store.update_message_content(reply_id, "Roses are red, violets are blue!")  # keeps rest
    with ConversationStore() as again:
        final = again.get_message(reply_id)
    assert final is not None
    assert final.content == "Roses are red, violets are blue!"
    assert final.status == "complete"
    assert final.stats == dataclasses.asdict(stats)
    assert final.model == "m.gguf"


def test_store_is_usable_from_several_threads(store: ConversationStore) -> None:
    errors: list[BaseException] = []
    second = ConversationStore(store.path)

    def work(target: ConversationStore, n: int) -> None:
        try:
            conv = target.create_conversation(f"thread {n}")
            for i in range(30):
                target.add_message(conv.id, "user" if i % 2 == 0 else "assistant", f"{n}-{i}")
        except BaseException as exc:
            errors.append(exc)

    workers = [
        threading.Thread(target=work, args=(store if n % 2 else second, n)) for n in range(6)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    second.close()
    assert errors == []
    conversations = store.list_conversations()
    assert len(conversations) == 6
    assert all(len(store.thread(c.id)) == 30 for c in conversations)


# Search ------------------------------------------------------------------------------------


def test_search_across_conversations(store: ConversationStore) -> None:
    one = store.create_conversation("Animals")
    store.add_message(one.id, "user", "The quick brown fox")
    two = store.create_conversation("Pancake recipes")
    store.add_message(two.id, "user", "Does the lazy dog like fox shaped pancakes?")
    store.add_message(two.id, "assistant", "Only at the café")

    fox = store.search("fox")
    assert {h.conversation_id for h in fox} == {one.id, two.id}
    assert all("[fox]" in h.snippet for h in fox)
    assert {h.conversation_title for h in fox} == {"Animals", "Pancake recipes"}

    assert [h.conversation_id for h in store.search("quick fox")] == [one.id]  # all terms
    title_hit = store.search("recipes")[0]
    assert (title_hit.conversation_id, title_hit.message_id) == (two.id, None)
    assert title_hit.snippet == "Pancake [recipes]"
    assert store.search("panc")[0].message_id is None  # prefix on the last term
    assert store.search("cafe")[0].conversation_id == two.id  # diacritics folded
    assert len(store.search("fox", limit=1)) == 1

    store.rename(two.id, "Breakfast")
    assert store.search("recipes") == []
    assert store.search("breakfast")[0].conversation_id == two.id

    token = store.delete_conversation(two.id)
    assert {h.conversation_id for h in store.search("fox")} == {one.id}
    assert store.search("breakfast") == []
    store.undo_delete(token)
    assert {h.conversation_id for h in store.search("fox")} == {one.id, two.id}

    edited = store.add_message(one.id, "assistant", "a ferret")
    store.update_message_content(edited.id, "a weasel")
    assert store.search("ferret") == []
    assert [h.message_id for h in store.search("weasel")] == [edited.id]
    fts_in_sync(store.path)


@pytest.mark.parametrize(
    ("query", "finds"),
    [
        ('foo"bar (', True),
        ('"', False),
        ("(", False),
        (")", False),
        ("AND", True),
        ("NOT fox", True),
        ("fox OR", False),
        ("NEAR(fox dog)", False),
        ("*", False),
        ("fox*", True),
        ("^fox", True),
        ("-fox", True),
        ("fox)", True),
        ("content:fox", False),
        ("{content}: fox", False),
        ("'; DROP TABLE messages; --", False),
        ("", False),
        ("   ", False),
        ("🦊", False),
        ("fox\x00", True),
        ("\x00", False),
    ],
)
def test_search_accepts_hostile_queries(store: ConversationStore, query: str, finds: bool) -> None:
    conv = store.create_conversation("Animals")
    message = store.add_message(conv.id, "user", 'The fox said foo"bar and AND NOT')
    hits = store.search(query)
    assert [h.message_id for h in hits] == ([message.id] if finds else [])
    assert len(store.messages(conv.id)) == 1


def test_fts_query_quotes_every_term() -> None:
    assert fts_query('foo"bar (') == '"foo""bar"*'
    assert fts_query("a b") == '"a" "b"*'
    assert fts_query(" ( ) ") is None


# Export / import ---------------------------------------------------------------------------


def build_branchy(store: ConversationStore) -> str:
    conv = store.create_conversation(
        "Branchy", system_prompt="Answer in French.", model=ModelRef.local("m.gguf", "ab" * 32),
        settings={"top_p": 0.9}
    )
    store.set_pinned(conv.id, True)
    u1 = store.add_message(conv.id, "user", "Hello")
    a1 = store.add_message(
        conv.id, "assistant", "Bonjour", stats=Stats(generated_tokens=2), model="m.gguf"
    )
    store.add_message(conv.id, "assistant", "Salut", parent_id=u1.id, status="cancelled")
    store.add_message(
        conv.id, "assistant", "", parent_id=u1.id, status="error", error="out of memory"
    )
    store.select_branch(a1.id)
    u2 = store.add_message(conv.id, "user", "Thanks")
    store.add_message(conv.id, "assistant", "De rien")
    store.add_message(conv.id, "user", "Merci", parent_id=u2.parent_id)  # edit
    store.add_message(conv.id, "assistant", "Avec plaisir")
    store.select_branch(u2.id)  # the active leaf is neither the newest nor the last message
    return conv.id


def tree_shape(store: ConversationStore, conversation_id: str) -> dict[str, Any]:
    """Everything about a conversation except its ids."""
    messages = store.messages(conversation_id)
    conv = store.get_conversation(conversation_id)
    assert conv is not None

    def node(m: Message) -> tuple[Any, ...]:
        kids = tuple(node(k) for k in messages if k.parent_id == m.id)
        fields = dataclasses.asdict(m)
        for key in ("id", "conversation_id", "parent_id"):
            del fields[key]
        return (tuple(sorted(fields.items(), key=lambda kv: kv[0])), kids)

    fields = dataclasses.asdict(conv)
    for key in ("id", "current_leaf_id", "deleted_at"):
        del fields[key]
    return {
        "conversation": fields,
        "roots": [node(m) for m in messages if m.parent_id is None],
        "thread": [(m.role, m.content) for m in store.thread(conversation_id)],
        "count": len(messages),
    }


def test_export_markdown(store: ConversationStore) -> None:
    conv_id = build_branchy(store)
    md = store.export_markdown(conv_id)
    assert md.startswith("# Branchy\n")
    assert "**System prompt**\n\nAnswer in French." in md
    expected = "**User**\n\nHello\n\n**Assistant**\n\nBonjour\n\n**User**\n\nThanks\n\n"
    assert expected + "**Assistant**\n\nDe rien\n" in md
    for inactive in ("Salut", "Merci", "Avec plaisir", "out of memory"):
        assert inactive not in md


def test_export_json_has_the_whole_tree(store: ConversationStore) -> None:
    conv_id = build_branchy(store)
    data = json.loads(json.dumps(store.export_json(conv_id)))
    assert (data["format"], data["version"]) == (EXPORT_FORMAT, 1)
    conv = data["conversation"]
    assert (conv["id"], conv["title"], conv["system_prompt"], conv["settings"]) == (
        conv_id,
        "Branchy",
        "Answer in French.",
        {"top_p": 0.9},
    )
    by_content = {m["content"]: m for m in data["messages"]}
    assert len(data["messages"]) == 8
    assert by_content["Salut"]["parent_id"] == by_content["Hello"]["id"]
    assert by_content["Salut"]["status"] == "cancelled"
    assert by_content[""]["error"] == "out of memory"
    assert by_content["Bonjour"]["stats"]["generated_tokens"] == 2
    assert conv["current_leaf_id"] == by_content["De rien"]["id"]
    assert all(isinstance(m["created_at"], float) for m in data["messages"])


def test_import_json_roundtrip(store: ConversationStore, tmp_path: Path) -> None:
    conv_id = build_branchy(store)
    text = json.dumps(store.export_json(conv_id))

    imported = store.import_json(text)
    assert imported.id != conv_id
    assert tree_shape(store, imported.id) == tree_shape(store, conv_id)
    assert set(ids(store.messages(imported.id))).isdisjoint(ids(store.messages(conv_id)))

    with ConversationStore(tmp_path / "elsewhere.sqlite3") as fresh:
        copy = fresh.import_json(json.loads(text))
        assert tree_shape(fresh, copy.id) == tree_shape(store, conv_id)
        # The imported tree still navigates like the original.
        hello = fresh.thread(copy.id)[0]
        versions = fresh.siblings(fresh.thread(copy.id)[1].id)
        assert [m.content for m in versions] == ["Bonjour", "Salut", ""]
        assert [m.content for m in fresh.select_branch(versions[1].id)] == ["Hello", "Salut"]
        assert hello.content == "Hello"
        assert [h.conversation_id for h in fresh.search("rien")] == [copy.id]

    again = store.import_json(text)
    assert again.id not in (conv_id, imported.id)


def malformed_exports(valid: dict[str, Any]) -> list[tuple[Any, str]]:
    def variant(change: Any) -> dict[str, Any]:
        data = json.loads(json.dumps(valid))
        change(data)
        return data

    first, second = valid["messages"][0]["id"], valid["messages"][1]["id"]

    def cycle(d: dict[str, Any]) -> None:
        d["messages"][0]["parent_id"] = second
        d["messages"][1]["parent_id"] = first
        d["conversation"]["current_leaf_id"] = None

    last = -1
    return [
        ("{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[]", "top level must be a JSON object"),
        ({}, "'format'"),
        (variant(lambda d: d.update(format="something else")), "'format'"),
        (variant(lambda d: d.update(version=99)), "newer"),
        (variant(lambda d: d.update(version="1")), "'version'"),
        (variant(lambda d: d.pop("conversation")), "missing field 'conversation'"),
        (variant(lambda d: d.update(messages={})), "'messages' must be list"),
        (variant(lambda d: d["messages"].append("oops")), "must be an object"),
        (variant(lambda d: d["messages"][last].pop("role")), "missing field 'role'"),
        (variant(lambda d: d["messages"][last].update(role="robot")), "unknown role"),
        (variant(lambda d: d["messages"][last].update(status="done")), "unknown status"),
        (variant(lambda d: d["messages"][last].update(content=42)), "'content' must be str"),
        (variant(lambda d: d["messages"][last].update(created_at=True)), "'created_at'"),
        (variant(lambda d: d["messages"][last].update(stats=[1, 2])), "'stats'"),
        (variant(lambda d: d["messages"][last].update(parent_id="nowhere")), "unknown parent"),
        (variant(lambda d: d["messages"][last].update(id=first)), "duplicate message id"),
        (variant(cycle), "cycle"),
        (variant(lambda d: d["conversation"].update(current_leaf_id="x")), "current_leaf_id"),
        (variant(lambda d: d["conversation"].update(title=None)), "'title' must be str"),
        (variant(lambda d: d["conversation"].update(settings="hot")), "'settings'"),
    ]


def test_malformed_import_raises_and_writes_nothing(store: ConversationStore) -> None:
    conv_id = build_branchy(store)
    valid = store.export_json(conv_id)
    with raw(store.path) as conn:
        before = conn.execute(
            "SELECT (SELECT count(*) FROM conversations), (SELECT count(*) FROM messages)"
        ).fetchone()
    for bad, reason in malformed_exports(valid):
        with pytest.raises(ValueError, match="Not a valid Verso conversation export") as info:
            store.import_json(bad)
        assert reason in str(info.value)
    with raw(store.path) as conn:
        after = conn.execute(
            "SELECT (SELECT count(*) FROM conversations), (SELECT count(*) FROM messages)"
        ).fetchone()
    assert after == before
    store.import_json(valid)  # the unchanged original is fine


# Disk full -------------------------------------------------------------------------------


def test_disk_full_raises_store_error_and_writes_nothing(store: ConversationStore) -> None:
    conv = store.create_conversation("small")
    store.add_message(conv.id, "user", "short")
    export = store.export_json(conv.id)
    export["messages"][0]["content"] = "x" * 2_000_000
    page_count = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {page_count + 2}")
    before = store.get_conversation(conv.id)

    with pytest.raises(StoreError, match="disk is full"):
        store.add_message(conv.id, "assistant", "y" * 2_000_000)
    with pytest.raises(StoreError, match="disk is full"):
        store.import_json(export)
    assert not store._conn.in_transaction
    assert [m.content for m in store.thread(conv.id)] == ["short"]
    assert store.get_conversation(conv.id) == before
    assert [c.id for c in store.list_conversations()] == [conv.id]

    store._conn.execute("PRAGMA max_page_count = 1073741823")
    store.add_message(conv.id, "assistant", "y" * 2_000_000)  # usable again
    assert len(store.thread(conv.id)) == 2
    fts_in_sync(store.path)


# Lock time -------------------------------------------------------------------------------


def _big_export(store: ConversationStore, messages: int) -> dict[str, Any]:
    conv = store.create_conversation("big")
    store.add_message(conv.id, "user", "seed")
    export = store.export_json(conv.id)
    template = export["messages"][0]
    export["messages"] = [
        {**template, "id": f"m{i}", "parent_id": f"m{i - 1}" if i else None,
         "content": f"message {i} " + "lorem ipsum dolor " * 40}
        for i in range(messages)
    ]
    export["conversation"]["current_leaf_id"] = f"m{messages - 1}"
    return export


def test_a_large_import_does_not_lock_out_another_writer(home: Path) -> None:
    """Another process's save waits at most for one import batch, not the whole import."""
    importer = ConversationStore(paths.database_path())
    other = ConversationStore(paths.database_path())
    export = _big_export(importer, 30_000)
    conv = other.create_conversation("typing while it imports")
    other._conn.execute("PRAGMA busy_timeout = 2000")  # stricter than Verso's 5 s
    done = threading.Event()
    failures: list[Exception] = []

    def run_import() -> None:
        try:
            importer.import_json(export)
        finally:
            done.set()

    worker = threading.Thread(target=run_import)
    worker.start()
    saved = 0
    while not done.is_set():
        try:
            other.add_message(conv.id, "user", f"note {saved}")
            saved += 1
        except StoreError as exc:
            failures.append(exc)
    worker.join()
    assert not failures, failures[0]
    assert saved > 0
    imported = [c for c in other.list_conversations() if c.title == "big"]
    assert sorted(len(other.thread(c.id)) for c in imported) == [1, 30_000]
    importer.close()
    other.close()


def test_an_import_that_fails_half_way_leaves_nothing(store: ConversationStore,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.store import conversations

    export = _big_export(store, 2_000)
    before = {c.id for c in store.list_conversations(include_deleted=True)}
    monkeypatch.setattr(conversations, "IMPORT_BATCH_ROWS", 100)
    batches = iter(range(1000))
    real = conversations._import_batches

    def failing(rows):
        for batch in real(rows):
            if next(batches) == 5:
                raise StoreError("The disk is full (injected)")
            yield batch

    monkeypatch.setattr(conversations, "_import_batches", failing)
    with pytest.raises(StoreError):
        store.import_json(export)
    assert {c.id for c in store.list_conversations(include_deleted=True)} == before
    with raw(store.path) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 1


def test_an_import_commits_in_short_transactions(store: ConversationStore) -> None:
    from engine.store import conversations

    export = _big_export(store, 3_000)
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    store.import_json(export)
    store._conn.set_trace_callback(None)
    # hidden conversation row, one transaction per batch of messages, then shown
    batches = -(-3_000 // conversations.IMPORT_BATCH_ROWS)
    assert statements.count("BEGIN IMMEDIATE") == statements.count("COMMIT") == batches + 2


def test_a_full_disk_while_saving_a_summary_step_names_what_was_lost(home: Path) -> None:
    from engine.store.jobs import JobStore

    with JobStore() as jobs:
        job = jobs.open_job("summarize", "hash", {})
        pages = jobs._conn.execute("PRAGMA page_count").fetchone()[0]
        jobs._conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(StoreError) as info:
            jobs.save_step(job.id, "map:0", {"notes": "n" * 2_000_000})
    assert "disk is full" in str(info.value)
    assert "summaries and translations" in str(info.value)
    assert "chat history" not in str(info.value)
