"""Narrow unit tests of chat widgets and the rules behind them (no engine needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import QEvent, QPoint, Qt
from PySide6.QtGui import QHelpEvent
from PySide6.QtWidgets import QApplication, QToolTip

from app.conversation import build_request, stats_tooltip, title_from, versions
from app.settings import AppSettings
from app.widgets.composer import Composer
from app.widgets.message_bubble import MessageBubble
from app.widgets.status_bar import StatusBar
from engine.options import ContextPolicy
from engine.store import ConversationStore


def test_enter_sends_and_shift_enter_adds_a_line(qtbot):
    composer = Composer()
    qtbot.addWidget(composer)
    sent: list[str] = []
    composer.send_requested.connect(sent.append)
    qtbot.keyClicks(composer.edit, "first line")
    qtbot.keyClick(composer.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(composer.edit, "second")
    assert sent == []
    qtbot.keyClick(composer.edit, Qt.Key.Key_Return)
    assert sent == ["first line\nsecond"]
    composer.set_busy(True)
    qtbot.keyClick(composer.edit, Qt.Key.Key_Return)
    assert len(sent) == 1, "sent while a reply was streaming"


def test_context_meter_text_and_overflow_warning(qtbot):
    composer = Composer()
    qtbot.addWidget(composer)
    composer.set_meter(1234, 8192, limit=6144)
    assert composer.meter.text() == "1,234 / 8,192 tokens"
    assert composer.warning.isHidden()
    composer.set_meter(7000, 8192, limit=6144, policy="refuse")
    assert not composer.warning.isHidden() and "refuse" in composer.warning.text()
    assert "856" in composer.warning.text()
    composer.set_meter(7000, 8192, limit=6144, policy="drop_oldest")
    assert "oldest" in composer.warning.text()


def test_versions_titles_and_requests(tmp_path):
    store = ConversationStore(tmp_path / "db.sqlite3")
    conversation = store.create_conversation("t", system_prompt="Be brief.",
                                             settings={"sampling": {"top_k": 3}})
    user = store.add_message(conversation.id, "user", "hi")
    first = store.add_message(conversation.id, "assistant", "one")
    second = store.add_message(conversation.id, "assistant", "two", parent_id=user.id)
    found = versions(store.messages(conversation.id))
    assert found[first.id].label() == "1/2" and found[second.id].label() == "2/2"
    assert found[second.id].neighbour(-1) == first.id and found[second.id].neighbour(1) is None
    assert found[user.id].count == 1
    request = build_request(AppSettings(context_policy="drop_oldest",
                                        sampling={"temperature": 0.0}),
                            store.get_conversation(conversation.id),
                            store.thread(conversation.id)[:1])
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.session_id == conversation.id
    assert request.policy is ContextPolicy.DROP_OLDEST
    assert (request.sampling.temperature, request.sampling.top_k) == (0.0, 3)
    assert title_from("  Explain   the GGUF file format in detail please, with examples ") \
        .endswith("…")
    store.close()


def test_reply_tooltip_shows_stats(qtbot, tmp_path):
    store = ConversationStore(tmp_path / "db.sqlite3")
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", "hi")
    reply = store.add_message(conversation.id, "assistant", "hello", stats={
        "prompt_tokens": 40, "reused_tokens": 32, "evaluated_tokens": 8, "ttft_s": 0.125,
        "generation_tps": 61.5, "generated_tokens": 12, "finish_reason": "length"})
    bubble = MessageBubble(reply)
    qtbot.addWidget(bubble)
    bubble.resize(500, 200)
    bubble.show()
    viewport = bubble.body.segments()[0].viewport()
    QApplication.sendEvent(viewport, QHelpEvent(QEvent.Type.ToolTip, QPoint(5, 5),
                                                viewport.mapToGlobal(QPoint(5, 5))))
    assert QToolTip.isVisible() and "32 reused" in QToolTip.text(), "no stats on hover"
    tip = bubble.toolTip()
    assert "32 reused" in tip and "125 ms" in tip and "61.5 tok/s" in tip
    assert "Finish reason: length" in tip
    assert not bubble.continue_button.isHidden(), "a cut-off reply offers Continue"
    assert "Finish reason: stop" in stats_tooltip({"finish_reason": "stop"})
    store.close()


def test_error_reply_shows_retry(qtbot, tmp_path):
    store = ConversationStore(tmp_path / "db.sqlite3")
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", "hi")
    reply = store.add_message(conversation.id, "assistant", "partial", status="error",
                              error="The engine process was killed.")
    bubble = MessageBubble(reply)
    qtbot.addWidget(bubble)
    assert not bubble.error_box.isHidden()
    assert "killed" in bubble.error_label.text()
    retried: list[str] = []
    bubble.retry_requested.connect(retried.append)
    bubble.retry_button.click()
    assert retried == [reply.id]
    assert bubble.text() == "partial"
    store.close()


def test_status_bar_undo_runs_once(qtbot):
    bar = StatusBar()
    qtbot.addWidget(bar)
    calls: list[int] = []
    bar.show()
    bar.show_undo("Deleted", lambda: calls.append(1))
    bar.showMessage("Something else happened", 5000)
    assert bar.undo_button.isVisible() and bar.undo_label.text() == "Deleted"
    bar.undo_button.click()
    bar.undo_button.click()
    assert calls == [1] and not bar.undo_button.isVisible()
    bar.set_context(1500, 2048)
    assert bar.context_bar.format() == "1,500 / 2,048" and bar.context_bar.maximum() == 2048


def test_user_presets_are_saved_and_deleted_from_chat_settings(qtbot, monkeypatch):
    from PySide6.QtWidgets import QInputDialog, QMessageBox

    from app.presets import load_presets
    from app.widgets.conversation_settings import ConversationSettingsDialog

    def dialog() -> ConversationSettingsDialog:
        d = ConversationSettingsDialog("Chat", "Be brief.", None, {}, load_presets(), [])
        qtbot.addWidget(d)
        return d

    first = dialog()
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Terse", True))
    first.save_preset.click()
    assert first.delete_preset.isEnabled()  # the new preset is selected and is the user's
    assert any(p.name == "Terse" and p.user for p in load_presets())

    second = dialog()  # a later dialog sees the saved preset without a restart
    index = second.preset.findData("Terse")
    assert index >= 0
    second.preset.setCurrentIndex(1)  # a shipped preset cannot be deleted
    assert not second.delete_preset.isEnabled()
    second.preset.setCurrentIndex(index)
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: QMessageBox.StandardButton.Yes)
    second.delete_preset.click()
    assert second.preset.findData("Terse") == -1
    assert not any(p.name == "Terse" for p in load_presets())


_PRELOAD = """
import importlib.abc, sys, threading, time
from PySide6.QtWidgets import QApplication
app = QApplication([])
from app.widgets.constraint_editors import ConstraintsEditor
importers = []

class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "llama_cpp":
            importers.append(threading.current_thread().name)
        return None

sys.meta_path.insert(0, Spy())
editor = ConstraintsEditor()
deadline = time.monotonic() + 30
while "llama_cpp.llama_grammar" not in sys.modules and time.monotonic() < deadline:
    time.sleep(0.05)
print(importers)
"""


def test_the_schema_converter_loads_in_the_background_not_in_the_gui_thread():
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", _PRELOAD], env=env, capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "['verso-gbnf-preload']", out.stderr
