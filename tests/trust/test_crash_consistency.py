"""Crash consistency: a process streaming replies, editing, deleting or importing into the
history database (``crash_worker.py``, the app's own store calls) is killed with SIGKILL at
a random moment, again and again on the same database; so is ``verso summarize`` and
``verso translate`` with the bundled model. After every kill the database passes
``PRAGMA integrity_check``, every write the process had seen commit is there, a streaming
reply lost at most the last second and a bit, and an interrupted job resumes from its
stored steps. A full disk (a 2 MiB tmpfs) gives a clear error, corrupts nothing, and
writing works again once space is freed."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.store import ConversationStore, StoreError
from tests.trust.crash_worker import reply_text

FAMILY = "Crash consistency"
WORKER = Path(__file__).with_name("crash_worker.py")
KILLS_PER_OPERATION = 48  # 4 operations: 192 kills, plus 10 of the CLI summarizing or translating
FAST_KILLS = 2
LOST_S = 2.5  # saves come every second; allow a busy machine's scheduling on top
STATE = {"visible": {"visible"}, "deleted": {"deleted", "absent"}, "purged": {"absent"}}
INTENT = {"deleting": "deleted", "undoing": "visible", "purging": "purged"}


def _integrity(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


def _facts(folder: Path) -> list[dict]:
    out = []
    for journal in sorted(folder.glob("journal-*.jsonl"), key=lambda p: int(p.stem[8:])):
        for line in journal.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line cut by the kill: never acknowledged
                out.append(json.loads(line))
    return out


def _check_stream(store: ConversationStore, facts: list[dict], killed_at: float) -> str:
    saved: dict[str, dict] = {}
    for fact in facts:
        if fact["op"] == "message":
            message = store.get_message(fact["id"])
            assert message is not None and message.content == fact["content"]
        elif fact["op"] == "reply":
            saved[fact["id"]] = {"seed": fact["seed"], "chars": 0, "at": fact["at"],
                                 "done": False}
        elif fact["op"] == "saved":
            saved[fact["id"]].update(chars=fact["chars"], at=fact["at"],
                                     done=fact.get("done", False))
    worst_lost = 0.0
    for message_id, s in saved.items():
        message = store.get_message(message_id)
        assert message is not None, "a reply the process had saved is gone"
        full = reply_text(s["seed"], 3000)
        assert full.startswith(message.content), "a stored reply is not what was streamed"
        assert len(message.content) >= s["chars"], "committed text is missing"
        if not s["done"]:
            worst_lost = max(worst_lost, killed_at - s["at"])
    last = list(saved.values())[-1] if saved else None
    if last and not last["done"]:
        assert killed_at - last["at"] <= LOST_S, f"lost {killed_at - last['at']:.1f} s"
    return f"{len(saved)} replies, the last {worst_lost:.2f} s unsaved"


def _numbered(text: str, prefix: str) -> int:
    match = re.match(rf"{prefix} (\d+)", text)
    return int(match.group(1)) if match else -1


def _check_edit(store: ConversationStore, facts: list[dict], killed_at: float) -> str:
    titles: dict[str, str] = {}
    contents: dict[str, str] = {}
    for fact in facts:
        if fact["op"] == "conversation":
            titles[fact["id"]] = fact["title"]
        elif fact["op"] == "message":
            contents[fact["id"]] = fact["content"]
    for conv_id, title in titles.items():
        conv = store.get_conversation(conv_id)
        assert conv is not None
        if conv.title != title:  # one write may have committed after the last journal line
            assert _numbered(conv.title, "title") == _numbered(title, "title") + 1 or (
                title == "edit me" and _numbered(conv.title, "title") == 0), (conv.title, title)
    for message_id, content in contents.items():
        message = store.get_message(message_id)
        assert message is not None
        if message.content != content:
            assert _numbered(message.content, "version") in (
                _numbered(content, "version") + 1, _numbered(content, "version")), \
                (message.content[:40], content[:40])
            assert message.content.startswith("version ")
    return f"{len(titles)} conversations, {len(contents)} messages as committed"


def _check_delete(store: ConversationStore, facts: list[dict], killed_at: float) -> str:
    """Each conversation must be in the state its last acknowledged write left, or, where a
    kill came between an intent and its acknowledgement, in the state that write makes. A
    deleted conversation may since have gone with a later process's purge of the bin."""
    committed: dict[str, str] = {}
    pending: dict[str, str | None] = {}
    for fact in facts:
        if fact["op"] in STATE:
            committed[fact["id"]] = fact["op"]
            pending[fact["id"]] = None
        elif fact["op"] in INTENT:
            pending[fact["id"]] = INTENT[fact["op"]]
    in_flight = 0
    for conv_id, state in committed.items():
        conv = store.get_conversation(conv_id)
        now = "absent" if conv is None else "deleted" if conv.deleted else "visible"
        allowed = set(STATE[state])
        if (intended := pending[conv_id]) is not None:
            allowed |= STATE[intended]
            in_flight += 1
        assert now in allowed, (conv_id, state, pending[conv_id], now)
    return (f"{len(committed)} conversations in their committed state "
            f"({in_flight} killed mid-write)")


def _check_import(store: ConversationStore, facts: list[dict], killed_at: float) -> str:
    imported = {f["id"] for f in facts if f["op"] == "imported"}
    visible = [c for c in store.list_conversations() if c.title == "to export"]
    for conv in visible:
        assert len(store.messages(conv.id)) == 2000, "a partly imported conversation is visible"
    assert imported <= {c.id for c in visible}, "an import that had finished is gone"
    return f"{len(visible)} complete copies visible, none partial"


CHECKS = {"stream": _check_stream, "edit": _check_edit, "delete": _check_delete,
          "import": _check_import}
KILL_WINDOW_S = {"stream": (0.5, 4.0), "edit": (0.3, 2.5), "delete": (0.3, 2.5),
                 "import": (1.0, 6.0)}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {op: tmp_path_factory.mktemp(f"crash-{op}") for op in CHECKS}


def _params() -> Iterator[object]:
    for op in CHECKS:
        for i in range(KILLS_PER_OPERATION):
            yield pytest.param(op, i, id=f"SIGKILL while {op}ing #{i + 1}",
                               marks=() if i < FAST_KILLS else (pytest.mark.long,))


@pytest.mark.parametrize(("op", "index"), list(_params()))
def test_sigkill_at_a_random_moment_loses_nothing_committed(
        op: str, index: int, folders: dict[str, Path], record_property) -> None:
    folder = folders[op]
    db = folder / "verso.sqlite3"
    journal = folder / f"journal-{index}.jsonl"
    rng = random.Random(hash((op, index)))
    proc = subprocess.Popen([sys.executable, str(WORKER), op, str(db), str(journal)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not journal.exists() or "started" not in journal.read_text():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.05)
    time.sleep(rng.uniform(*KILL_WINDOW_S[op]))
    assert proc.poll() is None, (proc.stderr.read().decode() if proc.stderr else "")
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    _integrity(db)
    with ConversationStore(db) as store:
        record_property("result", CHECKS[op](store, _facts(folder), killed_at))
        store.finish_interrupted()  # Verso starts again on it
        conv = store.create_conversation("after the crash")
        store.add_message(conv.id, "user", "still works")
        assert [m.content for m in store.messages(conv.id)] == ["still works"]
    _integrity(db)


# -------------------------------------------------------------------- the CLI's jobs

DOCUMENT = (
    "The lighthouse stood on a cliff above the northern harbour. Its keeper climbed the "
    "stairs every evening to light the lamp and wind the clockwork that turned the lens. "
) * 150


@pytest.mark.model
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("command", "index"), [
    *[pytest.param("summarize", i, id=f"SIGKILL during verso summarize #{i + 1}",
                   marks=() if i == 0 else (pytest.mark.long,)) for i in range(6)],
    *[pytest.param("translate", i, id=f"SIGKILL during verso translate #{i + 1}",
                   marks=(pytest.mark.long,)) for i in range(4)],
])
def test_a_killed_summary_or_translation_resumes(command: str, index: int, tmp_path: Path,
                                                 verso_home: Path, record_property) -> None:
    doc = tmp_path / "lighthouse.txt"
    doc.write_text(DOCUMENT if command == "summarize" else DOCUMENT[:len(DOCUMENT) // 6])
    argv = [sys.executable, "-m", "engine.cli", command, str(doc), "--json", "--threads", "2",
            "--parallel", "2"]
    if command == "translate":
        argv += ["--to", "fr"]
    rng = random.Random(index)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    step_seen = time.monotonic() + rng.uniform(3.0, 40.0)
    while time.monotonic() < step_seen and proc.poll() is None:
        time.sleep(0.1)
    finished_first = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    db = verso_home / "data" / "verso.sqlite3"
    stored = 0
    if db.exists():
        _integrity(db)
        conn = sqlite3.connect(db)
        stored = conn.execute("SELECT count(*) FROM job_steps").fetchone()[0]
        conn.close()
    again = subprocess.run(argv, capture_output=True, text=True, timeout=800)
    assert again.returncode == 0, again.stderr[-500:]
    result = json.loads(again.stdout)
    if command == "summarize":
        reused = len(result["steps_reused"])
        computed = len(result["steps_computed"])
    else:
        reused = result["segments_reused"]
        computed = len(result["segments"]) - reused
    record_property("result", f"{'finished before the kill; ' if finished_first else ''}"
                              f"{stored} steps stored at the kill; resumed: {reused} reused, "
                              f"{computed} computed")
    assert db.exists()
    assert reused >= stored, "steps stored before the kill were computed again"
    if command == "summarize":
        assert result["points"] or result.get("notes"), result
    _integrity(db)


# -------------------------------------------------------------------- a full disk

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("when", ["while streaming", "while importing"])
def test_a_full_disk_is_a_clear_error_corrupts_nothing_and_recovers(
        when: str, small_disk: Path, record_property) -> None:
    db = small_disk / "verso.sqlite3"
    store = ConversationStore(db)
    conv = store.create_conversation("before the disk filled")
    kept = store.add_message(conv.id, "user", "saved before the disk filled")
    ballast = small_disk / "ballast"
    with ballast.open("wb") as f:  # fill the disk but for ~64 KB
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    ballast.write_bytes(ballast.read_bytes()[:-65536])
    error: StoreError | None = None
    try:
        if when == "while streaming":
            reply = store.add_message(conv.id, "assistant", "", status="streaming")
            for n in range(1, 10_000):
                store.update_message_content(reply.id, reply_text(n, 50 * n))
        else:
            source = store.create_conversation("big")
            for i in range(5000):
                store.add_message(source.id, "user", reply_text(i, 60))
    except StoreError as exc:
        error = exc
    assert error is not None, "the disk never filled"
    assert "disk is full" in str(error) and "\n" not in str(error), str(error)
    record_property("result", str(error)[:150])
    store.close()
    _integrity(db)
    ballast.unlink()
    with ConversationStore(db) as again:
        message = again.get_message(kept.id)
        assert message is not None and message.content == "saved before the disk filled"
        again.add_message(conv.id, "user", "space again")
        assert again.thread(conv.id)[-1].content == "space again"
    _integrity(db)
    assert os.path.exists(db)
