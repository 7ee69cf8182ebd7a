"""A process that works on the history database the way the app does, to be killed with
SIGKILL at a random moment by ``test_crash_consistency``. After every write that returned,
it appends what is now committed to a journal (flushed and fsynced), so the test knows what
must survive; before a write whose outcome a kill would leave unknown (delete, undo, purge)
it journals the intent, so the test knows which of two states may be the committed one.

    python tests/trust/crash_worker.py OPERATION DATABASE JOURNAL

Operations: ``stream`` (a reply saved at least once a second as it streams, the app's
cadence), ``edit`` (renames and message edits), ``delete`` (delete, undo, purge),
``import`` (importing a 2,000-message export).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from engine.store import ConversationStore  # noqa: E402

SAVE_EVERY_S = 1.0
WORDS = ("alpha", "beta", "gamma", "delta", "river", "stone", "cloud", "lamp", "fern", "ink")


class Journal:
    def __init__(self, path: Path) -> None:
        self.file = path.open("a", encoding="utf-8")

    def write(self, **fact: object) -> None:
        self.file.write(json.dumps(fact) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())


def reply_text(seed: int, n_words: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def stream(store: ConversationStore, journal: Journal, rng: random.Random) -> None:
    while True:
        conv = store.create_conversation("streaming")
        user = store.add_message(conv.id, "user", "Tell me a long story.")
        journal.write(op="message", id=user.id, content=user.content)
        reply = store.add_message(conv.id, "assistant", "", status="streaming")
        seed = rng.randrange(1 << 30)
        full = reply_text(seed, 3000)
        journal.write(op="reply", id=reply.id, seed=seed, at=time.time())
        shown, last_save = 0, time.monotonic()
        while shown < len(full):
            shown = min(len(full), shown + rng.randint(2, 9))  # a token
            time.sleep(0.004)
            if time.monotonic() - last_save >= SAVE_EVERY_S:
                store.update_message_content(reply.id, full[:shown])
                journal.write(op="saved", id=reply.id, chars=shown, at=time.time())
                last_save = time.monotonic()
        store.update_message_content(reply.id, full, status="complete")
        journal.write(op="saved", id=reply.id, chars=len(full), at=time.time(), done=True)


def edit(store: ConversationStore, journal: Journal, rng: random.Random) -> None:
    conv = store.create_conversation("edit me")
    message = store.add_message(conv.id, "user", "first version")
    journal.write(op="conversation", id=conv.id, title=conv.title)
    journal.write(op="message", id=message.id, content=message.content)
    for n in range(1_000_000):
        title = f"title {n} " + reply_text(n, 5)
        store.rename(conv.id, title)
        journal.write(op="conversation", id=conv.id, title=title)
        content = f"version {n}: " + reply_text(n, rng.randint(1, 400))
        store.update_message_content(message.id, content)
        journal.write(op="message", id=message.id, content=content)


def delete(store: ConversationStore, journal: Journal, rng: random.Random) -> None:
    while True:
        conv = store.create_conversation("to delete")
        store.add_message(conv.id, "user", "delete me")
        journal.write(op="visible", id=conv.id)
        journal.write(op="deleting", id=conv.id)
        token = store.delete_conversation(conv.id)
        journal.write(op="deleted", id=conv.id)
        if rng.random() < 0.5:
            journal.write(op="undoing", id=conv.id)
            store.undo_delete(token)
            journal.write(op="visible", id=conv.id)
        else:
            journal.write(op="purging", id=conv.id)
            store.purge_deleted()
            journal.write(op="purged", id=conv.id)


def export_of_2000_messages(folder: Path) -> str:
    """Built in a store of its own: a kill while building it must leave nothing in the
    database under test, where a partial source would pass for a partial import."""
    scratch = folder / f"source-{os.getpid()}.sqlite3"
    with ConversationStore(scratch) as source_store:
        source = source_store.create_conversation("to export")
        for i in range(2000):
            source_store.add_message(source.id, "user" if i % 2 == 0 else "assistant",
                                     reply_text(i, 30))
        exported = json.dumps(source_store.export_json(source.id))
    for leftover in folder.glob(f"{scratch.name}*"):
        leftover.unlink()
    return exported


def import_many(store: ConversationStore, journal: Journal, rng: random.Random) -> None:
    exported = export_of_2000_messages(store.path.parent)
    journal.write(op="export_ready", messages=2000)
    while True:
        journal.write(op="import_started")
        conv = store.import_json(exported)
        journal.write(op="imported", id=conv.id, messages=2000)


OPERATIONS = {"stream": stream, "edit": edit, "delete": delete, "import": import_many}


def main() -> None:
    operation, database, journal_path = sys.argv[1:4]
    rng = random.Random(os.getpid())
    store = ConversationStore(Path(database))
    store.finish_interrupted()  # what the app does at start
    journal = Journal(Path(journal_path))
    journal.write(op="started", pid=os.getpid())
    OPERATIONS[operation](store, journal, rng)


if __name__ == "__main__":
    main()
