"""The chat panel end to end, with the real default model in a real engine process."""

from __future__ import annotations

import copy
import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from app.presets import load_presets
from app.settings import AppSettings
from app.window import MainWindow
from engine.events import Done, Error, ErrorKind, FinishReason

GREEDY = {"temperature": 0.0, "top_k": 1, "max_tokens": 24, "seed": 1}
REPLY_TIMEOUT_MS = 60_000


@pytest.fixture
def make_window(qtbot, smol_path):
    windows: list[MainWindow] = []

    def make(settings: AppSettings | None = None, **overrides) -> MainWindow:  # type: ignore[no-untyped-def]
        if settings is None:
            settings = AppSettings(n_ctx=1024, n_threads=1, model_path=str(smol_path),
                                   sampling=dict(GREEDY))
        for key, value in overrides.items():
            setattr(settings, key, value)
        window = MainWindow(settings=settings)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        qtbot.waitUntil(lambda: window.bridge.loaded is not None, timeout=REPLY_TIMEOUT_MS)
        return window

    yield make
    for window in windows:
        window.shutdown()


def send(qtbot, window: MainWindow, text: str) -> tuple[str, Done | Error]:
    """Type ``text`` and press Enter; wait for the reply to end."""
    with qtbot.waitSignal(window.chat.replies.reply_finished,
                          timeout=REPLY_TIMEOUT_MS) as blocker:
        window.chat.composer.edit.setPlainText(text)
        qtbot.keyClick(window.chat.composer.edit, Qt.Key.Key_Return)
    message_id, event = blocker.args
    return message_id, event


def wait_reply(qtbot, window: MainWindow, action) -> tuple[str, Done | Error]:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(window.chat.replies.reply_finished,
                          timeout=REPLY_TIMEOUT_MS) as blocker:
        action()
    return blocker.args[0], blocker.args[1]


def test_send_streams_a_markdown_reply_and_stores_it(qtbot, make_window):
    window = make_window()
    chunks: list[str] = []
    window.chat.replies.reply_started.connect(lambda _id, job: job.text.connect(chunks.append))
    message_id, done = send(qtbot, window, "List three fruits.")
    assert isinstance(done, Done) and done.text
    assert len(chunks) > 1, "the reply did not stream"
    assert "".join(chunks) == done.text
    stored = window.store.get_message(message_id)
    assert stored.status == "complete" and stored.content == done.text
    assert stored.stats["prompt_tokens"] > 0
    assert stored.stats["finish_reason"] == done.finish_reason.value
    bubble = window.chat.view.bubble(message_id)
    assert bubble.text() == done.text
    assert "Prompt:" in bubble.toolTip() and "tok/s" in bubble.toolTip()
    assert window.chat.composer.text() == ""
    qtbot.waitUntil(lambda: "/ 1,024 tokens" in window.chat.composer.meter.text())
    assert window.status.context_bar.maximum() == 1024
    assert "tok/s" in window.status.speed_label.text()
    (conversation,) = window.store.list_conversations()
    assert conversation.title == "List three fruits."


def test_stop_keeps_the_partial_reply_saved_while_streaming_then_continue(qtbot, make_window):
    window = make_window()
    window.settings.sampling["max_tokens"] = 600
    window.chat.composer.edit.setPlainText("Write a long story about a lighthouse keeper.")
    qtbot.keyClick(window.chat.composer.edit, Qt.Key.Key_Return)
    replies = window.chat.replies
    qtbot.waitUntil(lambda: replies.active is not None)
    message_id = replies.active.message_id
    saved = lambda: window.store.get_message(message_id)  # noqa: E731
    qtbot.waitUntil(lambda: saved().status == "streaming" and len(saved().content) > 0,
                    timeout=REPLY_TIMEOUT_MS)
    with qtbot.waitSignal(replies.reply_finished, timeout=REPLY_TIMEOUT_MS) as blocker:
        qtbot.keyClick(window.chat.composer.edit, Qt.Key.Key_Escape)
    done = blocker.args[1]
    assert isinstance(done, Done) and done.finish_reason == FinishReason.CANCELLED
    stopped = saved()
    assert stopped.status == "cancelled" and stopped.content == done.text != ""
    bubble = window.chat.view.bubble(message_id)
    assert not bubble.continue_button.isHidden()
    window.settings.sampling["max_tokens"] = 16
    _, more = wait_reply(qtbot, window, bubble.continue_button.click)
    assert isinstance(more, Done)
    continued = saved()
    assert continued.content == stopped.content + more.text
    assert len(continued.content) > len(stopped.content)
    assert window.chat.view.bubble(message_id).text() == continued.content


def test_regenerate_keeps_versions_and_navigates_them(qtbot, make_window):
    window = make_window()
    first_id, _ = send(qtbot, window, "Name a colour.")
    bubble = window.chat.view.bubble(first_id)
    second_id, done = wait_reply(qtbot, window, bubble.regenerate_button.click)
    assert isinstance(done, Done) and second_id != first_id
    view = window.chat.view
    assert view.bubble(first_id) is None
    latest = view.bubble(second_id)
    assert latest.version_label.text() == "2/2" and not latest.version_label.isHidden()
    latest.prev_button.click()
    older = view.bubble(first_id)
    assert older is not None and older.version_label.text() == "1/2"
    assert view.bubble(second_id) is None
    assert window.store.thread(window.chat.conversation_id)[-1].id == first_id
    older.next_button.click()
    assert view.bubble(second_id).version_label.text() == "2/2"
    assert [m.id for m in window.store.siblings(second_id)] == [first_id, second_id]


def test_edit_and_resend_keeps_the_old_branch(qtbot, make_window):
    window = make_window()
    old_reply, _ = send(qtbot, window, "Say hello.")
    view = window.chat.view
    old_user = view.bubbles()[0]
    old_user.edit_button.click()
    assert not old_user.edit_box.isHidden()
    old_user.editor.setPlainText("Say goodbye.")
    new_reply, done = wait_reply(qtbot, window, old_user.save_edit_button.click)
    assert isinstance(done, Done)
    users = [b for b in view.bubbles() if b.role == "user"]
    assert [b.text() for b in users] == ["Say goodbye."]
    assert users[0].version_label.text() == "2/2"
    users[0].prev_button.click()
    texts = [(b.role, b.message_id) for b in view.bubbles()]
    assert texts[0][0] == "user" and view.bubbles()[0].text() == "Say hello."
    assert texts[1] == ("assistant", old_reply)
    view.bubbles()[0].next_button.click()
    assert view.bubbles()[0].text() == "Say goodbye."
    assert view.bubbles()[1].message_id == new_reply


def test_delete_undo_search_export_import(qtbot, make_window, tmp_path):
    window = make_window()
    chat = window.chat
    send(qtbot, window, "Tell me about the zebra.")
    zebra = chat.conversation_id
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert chat.conversation_id is None and chat.view.bubbles() == []
    send(qtbot, window, "Tell me about the ocean.")
    ocean = chat.conversation_id
    assert chat.conversations.ids() == [ocean, zebra], "not sorted by last activity"

    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert chat.conversations.search.hasFocus()
    qtbot.keyClicks(chat.conversations.search, "zebra")
    qtbot.waitUntil(lambda: chat.conversations.ids() and set(chat.conversations.ids()) == {zebra})
    item = chat.conversations.list.item(0)
    chat.conversations.list.itemClicked.emit(item)
    assert chat.conversation_id == zebra
    chat.search("")

    chat.delete_conversation(zebra)
    assert zebra not in chat.conversations.ids()
    assert window.store.search("zebra") == []
    assert window.status.undo_button.isVisible()
    assert "Tell me about the zebra" in window.status.undo_label.text()
    window.status.undo_button.click()
    assert zebra in chat.conversations.ids()
    assert window.store.search("zebra")

    chat.set_pinned(ocean, False)
    chat.set_pinned(zebra, True)
    assert chat.conversations.ids()[0] == zebra
    chat.rename_conversation(zebra, "Stripes")
    assert window.store.get_conversation(zebra).title == "Stripes"

    markdown = chat.export_conversation(zebra, "markdown", str(tmp_path / "z.md"))
    assert "Tell me about the zebra." in markdown.read_text()
    exported = chat.export_conversation(zebra, "json", str(tmp_path / "z.json"))
    data = json.loads(exported.read_text())
    imported = chat.import_conversation(str(exported))
    assert imported is not None and imported.id != zebra
    assert chat.conversation_id == imported.id
    assert [m.content for m in window.store.thread(imported.id)] == \
        [m["content"] for m in data["messages"]]


def test_restarting_the_app_keeps_everything(qtbot, make_window):
    first = make_window()
    reply_a, _ = send(qtbot, first, "Name a planet.")
    reply_b, _ = wait_reply(qtbot, first, first.chat.view.bubble(reply_a).regenerate_button.click)
    conversation = first.chat.conversation_id
    first.chat.rename_conversation(conversation, "Planets")
    first.chat.set_pinned(conversation, True)
    before = first.store.thread(conversation)
    changed = copy.deepcopy(first.settings)
    changed.theme = "dark"
    first.apply_settings(changed)
    first.close()
    assert not first.bridge.engine.local.alive()

    second = make_window(AppSettings.load())
    assert second.settings.sampling == GREEDY and second.settings.theme == "dark"
    assert second.theme.scheme == "dark"
    chat = second.chat
    assert chat.conversation_id == conversation, "the last chat was not reopened"
    assert chat.title.text() == "Planets"
    stored = second.store.get_conversation(conversation)
    assert stored.pinned and stored.title == "Planets"
    assert [(m.id, m.content, m.status) for m in second.store.thread(conversation)] == \
        [(m.id, m.content, m.status) for m in before]
    bubble = chat.view.bubble(reply_b)
    assert bubble.text() == before[-1].content
    assert bubble.version_label.text() == "2/2"
    assert "Prompt:" in bubble.toolTip()
    _, done = send(qtbot, second, "And another one?")
    assert isinstance(done, Done)


def test_engine_killed_mid_reply_then_retry_and_next_message(qtbot, make_window):
    window = make_window()
    window.settings.sampling["max_tokens"] = 600
    chunks: list[str] = []
    window.chat.replies.reply_started.connect(lambda _id, job: job.text.connect(chunks.append))
    window.chat.composer.edit.setPlainText("Write a long poem about rivers.")
    with qtbot.waitSignal(window.chat.replies.reply_finished,
                          timeout=REPLY_TIMEOUT_MS) as blocker:
        qtbot.keyClick(window.chat.composer.edit, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: len(chunks) >= 5, timeout=REPLY_TIMEOUT_MS)
        window.bridge.kill_engine()
    message_id, error = blocker.args
    assert isinstance(error, Error) and error.kind == ErrorKind.ENGINE_CRASHED
    stored = window.store.get_message(message_id)
    assert stored.status == "error" and stored.content and stored.error
    assert stored.content.startswith("".join(chunks)[:20])
    bubble = window.chat.view.bubble(message_id)
    assert not bubble.error_box.isHidden() and "engine" in bubble.error_label.text().lower()
    assert bubble.text() == stored.content
    window.settings.sampling["max_tokens"] = 16
    retry_id, retried = wait_reply(qtbot, window, bubble.retry_button.click)
    assert isinstance(retried, Done) and retry_id != message_id
    assert window.store.get_message(retry_id).status == "complete"
    assert window.chat.view.bubble(retry_id).version_label.text() == "2/2"
    assert window.store.get_message(message_id).content == stored.content
    _, after = send(qtbot, window, "Thanks!")
    assert isinstance(after, Done) and after.text
    assert window.bridge.engine.local.restarts >= 1


def test_switching_conversations_reuses_the_kv_cache(qtbot, make_window):
    window = make_window()
    chat = window.chat
    send(qtbot, window, "What is the capital of France?")
    first = chat.conversation_id
    chat.new_chat()
    send(qtbot, window, "What is two plus two?")
    chat.open_conversation(first)
    assert chat.conversation_id == first
    message_id, done = send(qtbot, window, "And of Spain?")
    assert isinstance(done, Done)
    assert done.stats.reused_tokens > 0
    assert done.stats.restored_snapshot
    stats = window.store.get_message(message_id).stats
    assert stats["reused_tokens"] == done.stats.reused_tokens
    tip = chat.view.bubble(message_id).toolTip()
    assert f"{done.stats.reused_tokens:,} reused" in tip


def test_context_overflow_is_never_silent(qtbot, make_window):
    window = make_window(n_ctx=256)
    chat = window.chat
    long_text = "Please summarise this text: " + "the quick brown fox jumps. " * 60
    chat.composer.edit.setPlainText(long_text)
    qtbot.waitUntil(lambda: not chat.composer.warning.isHidden(), timeout=10_000)
    assert "refuse" in chat.composer.warning.text()
    assert "/ 256 tokens" in chat.composer.meter.text()
    message_id, error = wait_reply(qtbot, window, chat.send)
    assert isinstance(error, Error) and error.kind == ErrorKind.CONTEXT_OVERFLOW
    bubble = chat.view.bubble(message_id)
    assert not bubble.error_box.isHidden() and "tokens" in bubble.error_label.text()

    chat.new_chat()
    window.settings.context_policy = "drop_oldest"
    turn = "Remember these words: " + "apple river stone cloud. " * 14
    for _ in range(3):
        message_id, done = send(qtbot, window, turn)
        assert isinstance(done, Done)
        if done.stats.dropped_messages:
            break
    assert done.stats.dropped_messages > 0
    bubble = chat.view.bubble(message_id)
    assert not bubble.notice_label.isHidden()
    assert "oldest" in bubble.notice_label.text()


def test_copy_last_reply_shortcut_and_chat_settings(qtbot, make_window):
    window = make_window()
    _, plain = send(qtbot, window, "Hi")
    QGuiApplication.clipboard().clear()
    qtbot.keyClick(window, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier
                   | Qt.KeyboardModifier.ShiftModifier)
    assert QGuiApplication.clipboard().text() == plain.text
    chat = window.chat
    preset = next(p for p in load_presets() if p.name == "Programming helper")
    chat.new_chat()
    chat.apply_chat_settings(chat.ensure_conversation().id, system_prompt=preset.system_prompt,
                             model=None, sampling={"max_tokens": 8})
    _, done = send(qtbot, window, "Hi")
    assert isinstance(done, Done)
    assert done.stats.generated_tokens <= 8
    assert done.stats.prompt_tokens > plain.stats.prompt_tokens + 20
    stored = window.store.get_conversation(chat.conversation_id)
    assert stored.system_prompt == preset.system_prompt
    assert stored.settings["sampling"] == {"max_tokens": 8}


def test_model_load_shows_progress_and_can_be_cancelled(qtbot, smol_path):
    window = MainWindow(settings=AppSettings(n_ctx=1024, n_threads=1), autoload=False)
    qtbot.addWidget(window)
    try:
        assert window.picker.combo.placeholderText() == "No model loaded"
        qtbot.waitUntil(lambda: any(e.path == smol_path for e in window.picker.entries))
        entry_text = window.picker.combo.itemText(window.picker.combo.findData(str(smol_path)))
        assert "Q4_1" in entry_text and "MB" in entry_text and "RAM" in entry_text
        with qtbot.waitSignal(window.bridge.load_cancelled, timeout=REPLY_TIMEOUT_MS):
            window.load_model(str(smol_path))
            assert not window.picker.progress.isHidden()
            assert not window.picker.cancel_button.isHidden()
            window.picker.cancel_button.click()
        assert window.bridge.loaded is None and window.bridge.loading is None
        assert window.picker.progress.isHidden()
        with qtbot.waitSignal(window.bridge.model_loaded, timeout=REPLY_TIMEOUT_MS):
            window.load_model(str(smol_path))
        assert window.status.model_label.text() == window.bridge.loaded.name
        assert window.picker.combo.currentData() == str(smol_path)
    finally:
        window.shutdown()


def test_a_chat_with_its_own_model_loads_it_before_replying(qtbot, make_window, gemma_path,
                                                            verso_home):
    models = verso_home / "models"
    models.mkdir(exist_ok=True)
    (models / gemma_path.name).symlink_to(gemma_path)
    window = make_window()
    qtbot.waitUntil(lambda: len(window.picker.entries) == 2)
    chat = window.chat
    conversation = chat.ensure_conversation()
    gemma = str(models / gemma_path.name)
    chat.apply_chat_settings(conversation.id, system_prompt=None, model=gemma,
                             sampling={"max_tokens": 6})
    assert "model: gemma" in chat.subtitle.text()
    with qtbot.waitSignal(window.bridge.model_loaded, timeout=REPLY_TIMEOUT_MS):
        message_id, done = send(qtbot, window, "Hello")
    assert isinstance(done, Done) and done.stats.generated_tokens <= 6
    assert window.bridge.loaded.local_path == gemma
    assert window.picker.combo.currentData() == gemma
    assert window.store.get_message(message_id).model == window.bridge.loaded.name
