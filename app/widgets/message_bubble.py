"""One message in the chat: its text, version navigator, actions, stats and errors."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.conversation import Version, stats_tooltip, trimmed_notice
from app.widgets.markdown_view import MarkdownBody
from app.widgets.safe_text import SafeTextBrowser
from engine.events import finish_sentence
from engine.store import Message

_ROLE_NAMES = {"user": "You", "assistant": "Assistant", "system": "System"}


def _tool_button(text: str, tip: str) -> QPushButton:
    button = QPushButton(text)
    button.setObjectName("bubbleAction")
    button.setToolTip(tip)
    button.setCursor(Qt.CursorShape.PointingHandCursor)
    button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
    return button


class MessageBubble(QFrame):
    copied = Signal(str)
    regenerate_requested = Signal(str)
    continue_requested = Signal(str)
    retry_requested = Signal(str)
    edit_submitted = Signal(str, str)
    version_requested = Signal(str)

    def __init__(self, message: Message, version: Version | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.message = message
        self.message_id = message.id
        self.role = message.role
        self.streaming = False
        self._version = version
        self.setObjectName("userBubble" if message.role == "user" else "assistantBubble")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Maximum)

        self.role_label = QLabel(_ROLE_NAMES.get(message.role, message.role))
        self.role_label.setObjectName("bubbleRole")
        self.prev_button = _tool_button("‹", "Previous version")
        self.version_label = QLabel()
        self.version_label.setObjectName("bubbleVersion")
        self.next_button = _tool_button("›", "Next version")
        self.prev_button.clicked.connect(lambda: self._go(-1))
        self.next_button.clicked.connect(lambda: self._go(1))
        self.stats_label = QLabel()
        self.stats_label.setObjectName("bubbleStats")
        self.copy_button = _tool_button("Copy", "Copy this message")
        self.copy_button.clicked.connect(self.copy_text)
        self.edit_button = _tool_button("Edit", "Edit this message and send it again")
        self.edit_button.clicked.connect(self.start_edit)
        self.regenerate_button = _tool_button("Regenerate", "Write a new version of this "
                                              "reply (earlier versions are kept)")
        self.regenerate_button.clicked.connect(
            lambda: self.regenerate_requested.emit(self.message_id))
        self.continue_button = _tool_button("Continue", "Continue this reply where it stopped")
        self.continue_button.clicked.connect(
            lambda: self.continue_requested.emit(self.message_id))

        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.setSpacing(4)
        header.addWidget(self.role_label)
        header.addWidget(self.prev_button)
        header.addWidget(self.version_label)
        header.addWidget(self.next_button)
        header.addStretch(1)
        header.addWidget(self.stats_label)
        for button in (self.copy_button, self.edit_button, self.regenerate_button,
                       self.continue_button):
            header.addWidget(button)

        if message.role == "assistant":
            self.body: MarkdownBody | SafeTextBrowser = MarkdownBody()
        else:
            self.body = SafeTextBrowser()
            self.body.setObjectName("plainMessage")
        self.notice_label = QLabel()
        self.notice_label.setObjectName("bubbleNotice")
        self.notice_label.setWordWrap(True)
        self.error_label = QLabel()
        self.error_label.setObjectName("bubbleError")
        self.error_label.setWordWrap(True)
        self.error_label.setTextFormat(Qt.TextFormat.PlainText)
        self.retry_button = _tool_button("Retry", "Try this reply again")
        self.retry_button.setObjectName("retryButton")
        self.retry_button.clicked.connect(lambda: self.retry_requested.emit(self.message_id))
        error_row = QHBoxLayout()
        error_row.addWidget(self.error_label, 1)
        error_row.addWidget(self.retry_button, 0, Qt.AlignmentFlag.AlignTop)
        self.error_box = QFrame()
        self.error_box.setObjectName("errorBox")
        self.error_box.setLayout(error_row)

        self.editor = QPlainTextEdit()
        self.editor.setObjectName("editMessage")
        self.save_edit_button = QPushButton("Save and send")
        self.save_edit_button.setObjectName("primaryButton")
        self.cancel_edit_button = QPushButton("Cancel")
        self.save_edit_button.clicked.connect(self._submit_edit)
        self.cancel_edit_button.clicked.connect(self.cancel_edit)
        edit_buttons = QHBoxLayout()
        edit_buttons.addStretch(1)
        edit_buttons.addWidget(self.cancel_edit_button)
        edit_buttons.addWidget(self.save_edit_button)
        self.edit_box = QWidget()
        edit_layout = QVBoxLayout(self.edit_box)
        edit_layout.setContentsMargins(0, 0, 0, 0)
        edit_layout.addWidget(self.editor)
        edit_layout.addLayout(edit_buttons)
        self.edit_box.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 10)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addWidget(self.body)
        layout.addWidget(self.edit_box)
        layout.addWidget(self.notice_label)
        layout.addWidget(self.error_box)
        self.update_message(message, version, render=True)

    # ---------------------------------------------------------------- state

    def update_message(self, message: Message, version: Version | None = None,
                       render: bool = True) -> None:
        self.message = message
        self.message_id = message.id
        if version is not None:
            self._version = version
        if render:
            self._set_body(message.content)
        self._refresh()

    def _set_body(self, text: str) -> None:
        if isinstance(self.body, MarkdownBody):
            self.body.set_text(text)
        else:
            self.body.setPlainText(text)

    def text(self) -> str:
        if isinstance(self.body, MarkdownBody):
            return self.body.text()
        return self.body.toPlainText()

    def _refresh(self) -> None:
        message = self.message
        assistant = message.role == "assistant"
        version = self._version
        many = version is not None and version.count > 1 and not self.streaming
        for widget in (self.prev_button, self.version_label, self.next_button):
            widget.setVisible(many)
        if many and version is not None:
            self.version_label.setText(version.label())
            self.prev_button.setEnabled(version.neighbour(-1) is not None)
            self.next_button.setEnabled(version.neighbour(1) is not None)
        stats = message.stats or {}
        finish = stats.get("finish_reason")
        self.edit_button.setVisible(message.role == "user" and not self.streaming)
        self.copy_button.setVisible(not self.streaming)
        self.regenerate_button.setVisible(assistant and not self.streaming
                                          and message.status != "error")
        cut_off = message.status == "cancelled" or finish == "length"
        self.continue_button.setVisible(assistant and not self.streaming and cut_off
                                        and bool(message.content))
        tooltip = stats_tooltip(message.stats, message.model) if assistant else ""
        self.setToolTip(tooltip)
        self.stats_label.setToolTip(tooltip)
        if assistant and stats and not self.streaming:
            self.stats_label.setText(f"{float(stats.get('generation_tps', 0)):.1f} tok/s · "
                                     f"{float(stats.get('ttft_s', 0)):.2f} s")
        else:
            self.stats_label.setText("")
        self.stats_label.setVisible(bool(self.stats_label.text()))
        dropped = int(stats.get("dropped_messages", 0) or 0)
        if dropped:
            self.show_notice(trimmed_notice(dropped, stats.get("dropped_tokens")))
        elif message.status == "cancelled" and not self.streaming:
            self.show_notice("Stopped before the end." + (
                f" ({message.error})" if message.error else ""))
        elif assistant and finish and finish_sentence(finish) and not self.streaming:
            self.show_notice(str(finish_sentence(finish)))
        else:
            self.notice_label.hide()
        failed = message.status == "error" and not self.streaming
        self.error_box.setVisible(failed)
        if failed:
            self.error_label.setText(message.error or "The reply failed.")
        self.body.setVisible(bool(message.content) or self.streaming or not failed)

    def show_notice(self, text: str) -> None:
        self.notice_label.setText(text)
        self.notice_label.show()

    def _go(self, step: int) -> None:
        if self._version is not None:
            target = self._version.neighbour(step)
            if target is not None:
                self.version_requested.emit(target)

    # ------------------------------------------------------------ streaming

    def start_stream(self, prefix: str = "") -> None:
        self.streaming = True
        if isinstance(self.body, MarkdownBody):
            self.body.begin_stream(prefix)
        self._refresh()
        self.body.show()

    def append(self, text: str) -> None:
        if isinstance(self.body, MarkdownBody):
            self.body.feed(text)

    def finish_stream(self, message: Message, version: Version | None = None) -> None:
        """The reply ended; ``message`` is its stored final state."""
        self.streaming = False
        if isinstance(self.body, MarkdownBody) and self.body.text() == message.content:
            self.body.finish()
            self.update_message(message, version, render=False)
        else:
            self.update_message(message, version, render=True)

    # ------------------------------------------------------------------ edit

    def start_edit(self) -> None:
        self.editor.setPlainText(self.text())
        self.body.hide()
        self.edit_box.show()
        self.editor.setFocus()

    def cancel_edit(self) -> None:
        self.edit_box.hide()
        self.body.show()

    def _submit_edit(self) -> None:
        text = self.editor.toPlainText()
        if not text.strip():
            return
        self.cancel_edit()
        self.edit_submitted.emit(self.message_id, text)

    def copy_text(self) -> None:
        QGuiApplication.clipboard().setText(self.text())
        self.copied.emit(self.message_id)
