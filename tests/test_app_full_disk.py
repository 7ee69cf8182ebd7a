"""A chat whose history cannot be written (full disk): nothing is lost, the user is told, and
the reply is saved once there is space (fake engine; the store is made to fail as SQLite
does on a full disk)."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QMessageBox

import app.panels.chat_replies as chat_replies
from engine.store import StoreError
from engine.testing.fake_engine import FakeEngine

TIMEOUT_MS = 5_000
FULL = ("The disk is full, so the chat history could not be saved. Free some disk space and "
        "try again. (/data/verso.sqlite3: database or disk is full)")


def _dialogs(window) -> list[QMessageBox]:  # type: ignore[no-untyped-def]
    return [box for box in window.findChildren(QMessageBox) if box.isVisible()]


def _fill_disk(store, monkeypatch) -> dict[str, bool]:  # type: ignore[no-untyped-def]
    """Saving a reply fails as on a full disk while ``disk["full"]`` is True."""
    real_update = store.update_message_content
    disk = {"full": True}

    def update(*args, **kwargs):  # type: ignore[no-untyped-def]
        if disk["full"]:
            raise StoreError(FULL)
        return real_update(*args, **kwargs)

    monkeypatch.setattr(store, "update_message_content", update)
    return disk


def test_enter_on_a_full_disk_keeps_the_message_and_says_so(qtbot, fake_window, monkeypatch):
    window = fake_window(FakeEngine(replies=("Hi!",)))
    chat = window.chat
    chat.ensure_conversation()

    def full(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise StoreError(FULL)

    monkeypatch.setattr(window.store, "add_message", full)
    chat.composer.edit.setPlainText("Hello there")
    chat.send()  # a StoreError escaping the slot would fail the test (pytest-qt)
    assert chat.composer.text() == "Hello there"
    assert not chat.replies.busy
    assert "disk is full" in window.status.currentMessage()
    assert "still in the box" in window.status.currentMessage()
    qtbot.waitUntil(lambda: bool(_dialogs(window)), timeout=TIMEOUT_MS)
    assert "disk is full" in _dialogs(window)[0].text()
    assert "chat" not in window.bridge.engine.ops()


def test_a_reply_streamed_onto_a_full_disk_stays_and_is_saved_later(qtbot, fake_window,
                                                                    monkeypatch):
    monkeypatch.setattr(chat_replies, "SAVE_RETRY_MS", 50)
    reply = "Rivers: the Nile, the Amazon and the Yangtze."
    window = fake_window(FakeEngine(replies=(reply,), token_delay_s=0.002))
    store = window.store
    disk = _fill_disk(store, monkeypatch)
    with qtbot.waitSignal(window.chat.replies.reply_finished, timeout=TIMEOUT_MS) as blocker:
        window.chat.send("Name three rivers.")
    message_id = blocker.args[0]
    bubble = window.chat.view.bubble(message_id)
    assert bubble.text() == reply  # was: the bubble redrawn from the empty stored row
    assert store.get_message(message_id).content == ""
    assert "saves it as soon as there is space" in window.status.currentMessage()
    disk["full"] = False
    qtbot.waitUntil(lambda: store.get_message(message_id).content == reply,
                    timeout=TIMEOUT_MS)
    saved = store.get_message(message_id)
    assert saved.status == "complete" and saved.stats["generated_tokens"] > 0
    qtbot.waitUntil(lambda: "now saved" in window.status.currentMessage(), timeout=TIMEOUT_MS)


@pytest.mark.parametrize("step", ["create_conversation"])
def test_a_new_chat_on_a_full_disk_is_refused_cleanly(qtbot, fake_window, monkeypatch, step):
    window = fake_window(FakeEngine())

    def full(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise StoreError(FULL)

    monkeypatch.setattr(window.store, step, full)
    window.chat.send("Hello")
    assert "disk is full" in window.status.currentMessage()


def test_closing_with_a_reply_still_unsaved_asks_and_can_save_it_to_a_file(
        qtbot, fake_window, monkeypatch, tmp_path):
    monkeypatch.setattr(chat_replies, "SAVE_RETRY_MS", 60_000)  # no retry while we look
    reply = "The Danube flows through ten countries."
    window = fake_window(FakeEngine(replies=(reply,), token_delay_s=0.002))
    store = window.store
    _fill_disk(store, monkeypatch)
    with qtbot.waitSignal(window.chat.replies.reply_finished, timeout=TIMEOUT_MS) as blocker:
        window.chat.send("Tell me about the Danube.")
    message_id = blocker.args[0]
    answers = iter(["cancel", "retry", "save"])
    asked: list[int] = []
    monkeypatch.setattr(window, "ask_unsaved",
                        lambda count: asked.append(count) or next(answers))
    saved_to = tmp_path / "elsewhere" / "reply.md"
    saved_to.parent.mkdir()
    monkeypatch.setattr(window, "ask_save_path", lambda: saved_to)
    assert not window.close()  # "cancel": the window stays open, the reply on screen
    assert window.isVisible() and window.chat.view.bubble(message_id).text() == reply
    assert window.close()  # "retry" fails (still full), then "save" writes the file
    assert asked == [1, 1, 1]
    assert saved_to.read_text() == reply + "\n"


def test_closing_after_space_returned_asks_nothing(qtbot, fake_window, monkeypatch):
    monkeypatch.setattr(chat_replies, "SAVE_RETRY_MS", 60_000)
    window = fake_window(FakeEngine(replies=("Saved later.",), token_delay_s=0.002))
    store = window.store
    disk = _fill_disk(store, monkeypatch)
    with qtbot.waitSignal(window.chat.replies.reply_finished, timeout=TIMEOUT_MS) as blocker:
        window.chat.send("Hello")
    message_id = blocker.args[0]
    disk["full"] = False
    monkeypatch.setattr(window, "ask_unsaved", lambda count: pytest.fail("asked"))
    monkeypatch.setattr(store, "close", lambda: None)  # read the row after closing
    assert window.close()
    assert store.get_message(message_id).content == "Saved later."
