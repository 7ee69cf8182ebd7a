"""The visible thread of a conversation: a scrollable column of ``MessageBubble``s."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from app.conversation import Version
from app.widgets.message_bubble import MessageBubble
from engine.store import Message

LOCAL_PLACEHOLDER = "Ask anything. Replies are generated on this computer; nothing leaves it."


def placeholder_for(backend: str, local: bool) -> str:
    """What the empty chat says about where messages go: never "nothing leaves it" when the
    model runs on a server."""
    if local:
        return LOCAL_PLACEHOLDER
    return f"Ask anything. Messages are sent to {backend}, which generates the replies."


class MessageView(QScrollArea):
    copied = Signal(str)
    regenerate_requested = Signal(str)
    continue_requested = Signal(str)
    retry_requested = Signal(str)
    edit_submitted = Signal(str, str)
    version_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageView")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        container = QWidget()
        container.setObjectName("messageColumn")
        self._layout = QVBoxLayout(container)
        self._layout.setContentsMargins(24, 16, 24, 16)
        self._layout.setSpacing(12)
        self.placeholder = QLabel(LOCAL_PLACEHOLDER)
        self.placeholder.setObjectName("emptyState")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self._layout.addWidget(self.placeholder)
        self._layout.addStretch(1)
        self.setWidget(container)
        self._bubbles: list[MessageBubble] = []
        self._stick = True
        self.verticalScrollBar().rangeChanged.connect(self._on_range_changed)
        self.verticalScrollBar().valueChanged.connect(self._on_scrolled)

    # ---------------------------------------------------------------- content

    def bubbles(self) -> list[MessageBubble]:
        return list(self._bubbles)

    def bubble(self, message_id: str) -> MessageBubble | None:
        return next((b for b in self._bubbles if b.message_id == message_id), None)

    def last_reply(self) -> MessageBubble | None:
        return next((b for b in reversed(self._bubbles) if b.role == "assistant"), None)

    def clear(self) -> None:
        for bubble in self._bubbles:
            self._layout.removeWidget(bubble)
            bubble.hide()
            bubble.deleteLater()
        self._bubbles.clear()
        self.placeholder.show()

    def set_messages(self, messages: Sequence[Message], versions: Mapping[str, Version]) -> None:
        self.setUpdatesEnabled(False)
        try:
            self.clear()
            for message in messages:
                if message.role != "system":
                    self.append(message, versions.get(message.id))
        finally:
            self.setUpdatesEnabled(True)
        self.scroll_to_bottom()

    def append(self, message: Message, version: Version | None = None) -> MessageBubble:
        bubble = MessageBubble(message, version)
        bubble.copied.connect(self.copied)
        bubble.regenerate_requested.connect(self.regenerate_requested)
        bubble.continue_requested.connect(self.continue_requested)
        bubble.retry_requested.connect(self.retry_requested)
        bubble.edit_submitted.connect(self.edit_submitted)
        bubble.version_requested.connect(self.version_requested)
        self._layout.insertWidget(self._layout.count() - 1, bubble)
        self._bubbles.append(bubble)
        self.placeholder.hide()
        self._stick = True
        return bubble

    def remove_from(self, message_id: str) -> None:
        """Drop the bubble of ``message_id`` and every bubble after it."""
        index = next((i for i, b in enumerate(self._bubbles) if b.message_id == message_id),
                     None)
        if index is None:
            return
        for bubble in self._bubbles[index:]:
            self._layout.removeWidget(bubble)
            bubble.hide()
            bubble.deleteLater()
        del self._bubbles[index:]
        self.placeholder.setVisible(not self._bubbles)

    # -------------------------------------------------------------- scrolling

    def scroll_to_bottom(self) -> None:
        self._stick = True
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def scroll_to_message(self, message_id: str) -> None:
        bubble = self.bubble(message_id)
        if bubble is not None:
            self._stick = False
            self.ensureWidgetVisible(bubble, 0, 40)

    def _on_range_changed(self, _low: int, high: int) -> None:
        if self._stick:
            self.verticalScrollBar().setValue(high)

    def _on_scrolled(self, value: int) -> None:
        self._stick = value >= self.verticalScrollBar().maximum() - 8
