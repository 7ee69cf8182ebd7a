"""The list of conversations: search across all of them, new, rename, pin, export, delete."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import cast

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QKeyEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.theme import ICONS
from engine.store import Conversation, SearchHit

ID_ROLE = Qt.ItemDataRole.UserRole
MESSAGE_ROLE = Qt.ItemDataRole.UserRole + 1
SEARCH_DELAY_MS = 150


def ago(timestamp: float, now: float | None = None) -> str:
    seconds = max(0, (now or time.time()) - timestamp)
    if seconds < 60:
        return "just now"
    for limit, size, unit in ((3600, 60, "min"), (86400, 3600, "h"), (7 * 86400, 86400, "d")):
        if seconds < limit:
            return f"{int(seconds // size)} {unit} ago"
    return time.strftime("%d %b %Y", time.localtime(timestamp))


class _List(QListWidget):
    delete_pressed = Signal()
    rename_pressed = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Delete:
            self.delete_pressed.emit()
        elif event.key() == Qt.Key.Key_F2:
            self.rename_pressed.emit()
        else:
            super().keyPressEvent(event)


class ConversationList(QWidget):
    selected = Signal(str, object)  # conversation id, message id to show (search hit) or None
    new_requested = Signal()
    rename_requested = Signal(str)
    pin_requested = Signal(str, bool)
    delete_requested = Signal(str)
    export_requested = Signal(str, str)  # conversation id, "markdown" | "json"
    search_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("conversationList")
        self.search = QLineEdit()
        self.search.setObjectName("searchField")
        self.search.setPlaceholderText("Search all chats (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.new_button = QPushButton("New chat")
        self.new_button.setObjectName("primaryButton")
        self.new_button.setToolTip("Start a new chat (Ctrl+N)")
        self.new_button.clicked.connect(self.new_requested)
        self.list = _List()
        self.list.setObjectName("conversations")
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemClicked.connect(self._activate)
        self.list.itemActivated.connect(self._activate)
        self.list.delete_pressed.connect(lambda: self._with_current(self.delete_requested.emit))
        self.list.rename_pressed.connect(lambda: self._with_current(self.rename_requested.emit))
        self.list.setWordWrap(True)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SEARCH_DELAY_MS)
        self._timer.timeout.connect(lambda: self.search_changed.emit(self.search.text()))
        self.search.textChanged.connect(lambda _text: self._timer.start())
        self.search.returnPressed.connect(self._first_result)
        top = QHBoxLayout()
        top.addWidget(self.new_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(top)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        self._pinned: dict[str, bool] = {}

    @property
    def searching(self) -> bool:
        return bool(self.search.text().strip())

    def set_conversations(self, conversations: Sequence[Conversation],
                          current: str | None) -> None:
        self.list.clear()
        self._pinned = {c.id: c.pinned for c in conversations}
        pin = QIcon(str(ICONS / "pin.svg"))
        for conversation in conversations:
            item = QListWidgetItem(f"{conversation.title}\n{ago(conversation.updated_at)}")
            item.setData(ID_ROLE, conversation.id)
            item.setToolTip(conversation.title + (" (pinned)" if conversation.pinned else ""))
            if conversation.pinned:
                item.setIcon(pin)
            self.list.addItem(item)
            if conversation.id == current:
                self.list.setCurrentItem(item)

    def set_results(self, hits: Sequence[SearchHit]) -> None:
        self.list.clear()
        if not hits:
            item = QListWidgetItem("No matches")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.list.addItem(item)
            return
        for hit in hits:
            snippet = " ".join(hit.snippet.split()).replace("[", "«").replace("]", "»")
            item = QListWidgetItem(f"{hit.conversation_title}\n{snippet}")
            item.setData(ID_ROLE, hit.conversation_id)
            item.setData(MESSAGE_ROLE, hit.message_id)
            item.setToolTip(snippet)
            self.list.addItem(item)

    def ids(self) -> list[str]:
        return [self.list.item(i).data(ID_ROLE) for i in range(self.list.count())
                if self.list.item(i).data(ID_ROLE)]

    def stop_timers(self) -> None:
        self._timer.stop()
        self._timer.timeout.disconnect()

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def _activate(self, item: QListWidgetItem) -> None:
        conversation_id = item.data(ID_ROLE)
        if conversation_id:
            self.selected.emit(conversation_id, item.data(MESSAGE_ROLE))

    def _first_result(self) -> None:
        self._timer.stop()
        self.search_changed.emit(self.search.text())
        if self.list.count():
            self._activate(self.list.item(0))

    def _with_current(self, action: Callable[[str], object]) -> None:
        # PySide6's stub omits that currentItem() returns None when nothing is current.
        item = cast("QListWidgetItem | None", self.list.currentItem())
        if item is not None and item.data(ID_ROLE):
            action(item.data(ID_ROLE))

    def _menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        if item is None or not item.data(ID_ROLE):
            return
        cid = item.data(ID_ROLE)
        pinned = self._pinned.get(cid, False)
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self.rename_requested.emit(cid))
        menu.addAction("Unpin" if pinned else "Pin to top",
                       lambda: self.pin_requested.emit(cid, not pinned))
        menu.addSeparator()
        menu.addAction("Export as Markdown…", lambda: self.export_requested.emit(cid, "markdown"))
        menu.addAction("Export as JSON…", lambda: self.export_requested.emit(cid, "json"))
        menu.addSeparator()
        menu.addAction("Delete", lambda: self.delete_requested.emit(cid))
        menu.exec(self.list.viewport().mapToGlobal(pos))
