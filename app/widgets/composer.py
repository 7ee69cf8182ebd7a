"""Where the user writes: Enter sends, Shift+Enter starts a new line; the context meter shows
how many tokens the conversation plus the draft will take before anything is sent."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QKeyEvent
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


class DraftEdit(QPlainTextEdit):
    submitted = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("draft")
        self.setPlaceholderText("Message (Enter to send, Shift+Enter for a new line)")
        self.setTabChangesFocus(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._fit()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submitted.emit()
            return
        super().keyPressEvent(event)

    def _fit(self, *_: object) -> None:
        lines = min(max(self.document().lineCount(), 1), 8)
        height = lines * self.fontMetrics().lineSpacing() + 18
        self.setFixedHeight(max(height, 40))

    def sizeHint(self) -> QSize:
        return QSize(400, self.height())


class Composer(QFrame):
    send_requested = Signal(str)
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("composer")
        self.edit = DraftEdit()
        self.edit.submitted.connect(self._send)
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("primaryButton")
        self.send_button.setToolTip("Send (Enter)")
        self.send_button.clicked.connect(self._send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.stop_button.clicked.connect(self.stop_requested)
        self.stop_button.hide()
        self.meter = QLabel("")
        self.meter.setObjectName("contextMeter")
        self.meter.setToolTip("How much of the model's context the conversation and your "
                              "draft will use")
        self.warning = QLabel("")
        self.warning.setObjectName("contextWarning")
        self.warning.setWordWrap(True)
        self.warning.hide()
        row = QHBoxLayout()
        row.setSpacing(8)
        row.addWidget(self.edit, 1)
        row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.stop_button, 0, Qt.AlignmentFlag.AlignBottom)
        footer = QHBoxLayout()
        footer.addWidget(self.warning, 1)
        footer.addStretch(0)
        footer.addWidget(self.meter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 8, 16, 8)
        layout.setSpacing(4)
        layout.addLayout(row)
        layout.addLayout(footer)
        self._busy = False

    def text(self) -> str:
        return self.edit.toPlainText()

    def set_busy(self, busy: bool) -> None:
        """While a reply streams, Send turns into Stop."""
        self._busy = busy
        self.send_button.setVisible(not busy)
        self.stop_button.setVisible(busy)

    def set_meter(self, used: int | None, n_ctx: int | None, limit: int | None = None,
                  policy: str = "refuse") -> None:
        if used is None or not n_ctx:
            self.meter.setText("– tokens" if n_ctx is None else f"– / {n_ctx:,} tokens")
            self.warning.hide()
            return
        self.meter.setText(f"{used:,} / {n_ctx:,} tokens")
        excess = used - limit if limit is not None else 0
        over = excess > 0
        self.meter.setProperty("over", over)
        self.meter.style().unpolish(self.meter)
        self.meter.style().polish(self.meter)
        if over:
            if policy == "drop_oldest":
                text = (f"Too long for the context by {excess:,} tokens: the oldest "
                        "messages will be left out of the prompt.")
            else:
                text = (f"Too long for the context by {excess:,} tokens: the model "
                        "will refuse it. Shorten it, start a new chat, or allow dropping "
                        "old messages in Settings.")
            self.warning.setText(text)
        self.warning.setVisible(over)

    def _send(self) -> None:
        if self._busy:
            return
        text = self.text()
        if text.strip():
            self.send_requested.emit(text)

    def clear(self) -> None:
        self.edit.clear()
