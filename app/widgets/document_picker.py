"""Choosing the documents a panel works on: open, drop or paste; each one listed with its
pages, paragraphs and token count once read; a file that cannot be read shows the engine's
reason and is not added."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.document_loader import Counter, DocumentLoader, LoadedDocument
from engine.documents import SUPPORTED_EXTENSIONS, Document
from engine.documents.parse import FORMAT_NAMES

FILE_FILTER = ("Documents (" + " ".join(f"*{e}" for e in SUPPORTED_EXTENSIONS) + ")"
               ";;All files (*)")


@dataclass
class _Entry:
    request: int
    name: str
    loaded: LoadedDocument | None = None
    counting: bool = False  # the engine is counting its tokens


def describe(loaded: LoadedDocument, counting: bool = False) -> str:
    document = loaded.document
    stats = document.stats
    parts = [FORMAT_NAMES.get(document.format, str(document.format))]
    if stats.pages is not None:
        parts.append(f"{stats.pages} page{'s' if stats.pages != 1 else ''}")
    parts.append(f"{stats.paragraphs} paragraph{'s' if stats.paragraphs != 1 else ''}")
    parts.append(f"{loaded.tokens:,} tokens" if loaded.tokens is not None
                 else "counting tokens…" if counting
                 else "tokens counted once a model is loaded")
    return f"{document.name} — " + " · ".join(parts)


class DocumentPicker(QFrame):
    """``multiple``: several documents (multi-document summaries); otherwise a new one
    replaces the current one once it has been read (a file that fails keeps the old one)."""

    changed = Signal()  # documents added, read, removed, or a file failed
    error_shown = Signal(str)

    def __init__(self, counter: Counter | None = None, multiple: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dropZone")
        self.setAcceptDrops(True)
        self.multiple = multiple
        self.loader = DocumentLoader(counter, self)
        self.loader.loaded.connect(self._loaded)
        self.loader.failed.connect(self._failed)
        self.loader.counted.connect(self._counted)
        self._entries: list[_Entry] = []
        self._counting: dict[int, _Entry] = {}

        what = "documents" if multiple else "a document"
        self.hint = QLabel(f"Drop {what} here (.txt, .md, .html, .pdf, .docx), or")
        self.hint.setObjectName("hint")
        self.open_button = QPushButton("Open…")
        self.open_button.clicked.connect(self.open_dialog)
        self.paste_button = QPushButton("Paste text…")
        self.paste_button.clicked.connect(self.paste_dialog)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected document")
        self.remove_button.clicked.connect(self.remove_selected)
        top = QHBoxLayout()
        top.addWidget(self.hint, 1)
        top.addWidget(self.open_button)
        top.addWidget(self.paste_button)
        top.addWidget(self.remove_button)
        self.list = QListWidget()
        self.list.setObjectName("documentList")
        self.list.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.list.itemSelectionChanged.connect(self._update_buttons)
        self.error = QLabel()
        self.error.setObjectName("documentError")
        self.error.setWordWrap(True)
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(6)
        layout.addLayout(top)
        layout.addWidget(self.list)
        layout.addWidget(self.error)
        self._refresh()  # sizes the empty list to one row

    # ----------------------------------------------------------------- state

    def documents(self) -> list[Document]:
        return [e.loaded.document for e in self._entries if e.loaded]

    def loaded(self) -> list[LoadedDocument]:
        return [e.loaded for e in self._entries if e.loaded]

    @property
    def reading(self) -> bool:
        return any(e.loaded is None for e in self._entries)

    @property
    def counting(self) -> bool:
        """The engine is still counting some document's tokens."""
        return any(e.counting for e in self._entries)

    def total_tokens(self) -> int | None:
        counts = [e.loaded.tokens for e in self._entries if e.loaded]
        return None if not counts or None in counts else sum(c for c in counts if c)

    # ---------------------------------------------------------------- adding

    def add_files(self, paths: Sequence[str | Path]) -> None:
        if not paths:
            return
        self.clear_error()
        if not self.multiple:
            paths = paths[-1:]  # the current document goes once the new one is read
        for path in paths:
            request = self.loader.load_file(path)
            self._entries.append(_Entry(request, Path(path).name))
        self._refresh()

    def add_text(self, text: str, name: str = "Pasted text") -> None:
        self.clear_error()
        names = {e.name for e in self._entries}
        label, n = name, 2
        while label in names:
            label, n = f"{name} {n}", n + 1
        self._entries.append(_Entry(self.loader.load_text(text, label), label))
        self._refresh()

    def clear(self) -> None:
        self._entries.clear()
        self.clear_error()
        self._refresh()

    def remove_selected(self) -> None:
        rows = sorted((self.list.row(i) for i in self.list.selectedItems()), reverse=True)
        for row in rows:
            del self._entries[row]
        self._refresh()

    def recount(self) -> None:
        """Count every document's tokens again (another model was loaded)."""
        for entry in self._entries:
            if entry.loaded:
                self._count(entry)
        self._refresh()

    def _count(self, entry: _Entry) -> None:
        assert entry.loaded is not None
        number = self.loader.count(entry.loaded.document)
        for old in [n for n, e in self._counting.items() if e is entry]:
            del self._counting[old]  # an earlier count (another model's) is stale
        entry.counting = number is not None
        if number is not None:
            self._counting[number] = entry
        elif entry.loaded.tokens is not None:  # no model any more: unknown
            entry.loaded = LoadedDocument(entry.loaded.document, None, entry.loaded.pasted)

    def open_dialog(self) -> None:
        if self.multiple:
            paths, _ = QFileDialog.getOpenFileNames(self, "Open documents", "", FILE_FILTER)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Open a document", "", FILE_FILTER)
            paths = [path] if path else []
        self.add_files(paths)

    def paste_dialog(self) -> None:
        text, ok = QInputDialog.getMultiLineText(self, "Paste text",
                                                 "Text (Markdown headings and lists are kept):")
        if ok and text.strip():
            self.add_text(text)

    def show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()
        self.error_shown.emit(message)

    def clear_error(self) -> None:
        self.error.clear()
        self.error.hide()

    def shutdown(self) -> None:
        self.loader.shutdown()

    # ---------------------------------------------------------------- events

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() or event.mimeData().hasText():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        data = event.mimeData()
        files = [u.toLocalFile() for u in data.urls() if u.isLocalFile()]
        if files:
            self.add_files(files)
        elif data.hasText() and data.text().strip():
            self.add_text(data.text(), "Dropped text")
        event.acceptProposedAction()

    def _entry(self, request: int) -> _Entry | None:
        return next((e for e in self._entries if e.request == request), None)

    def _loaded(self, request: int, loaded: LoadedDocument) -> None:
        entry = self._entry(request)
        if entry is not None:
            entry.loaded = loaded
            self._count(entry)
            if not self.multiple:
                self._entries = [e for e in self._entries if e is entry or (e.loaded is None
                                 and e.request > entry.request)]
            if loaded.document.notes:
                self.show_error(" ".join(loaded.document.notes))
            self._refresh()

    def _failed(self, request: int, _name: str, message: str) -> None:
        entry = self._entry(request)
        if entry is None:
            return
        self._entries.remove(entry)
        self._refresh()
        self.show_error(message)

    def _counted(self, request: int, tokens: int | None) -> None:
        entry = self._counting.pop(request, None)
        if entry is not None and entry.loaded is not None and entry in self._entries:
            entry.counting = False
            entry.loaded = LoadedDocument(entry.loaded.document, tokens, entry.loaded.pasted)
            self._refresh()

    def _refresh(self) -> None:
        self.list.clear()
        for entry in self._entries:
            text = describe(entry.loaded, entry.counting) if entry.loaded \
                else f"{entry.name} — reading…"
            item = QListWidgetItem(text)
            item.setToolTip(entry.loaded.document.source or entry.name if entry.loaded
                            else entry.name)
            self.list.addItem(item)
        rows = min(max(len(self._entries), 1), 4 if self.multiple else 2)
        row_height = max(self.list.sizeHintForRow(0), self.fontMetrics().height() + 6)
        self.list.setFixedHeight(rows * row_height + 2 * self.list.frameWidth() + 4)
        self._update_buttons()
        self.changed.emit()

    def _update_buttons(self) -> None:
        self.remove_button.setEnabled(bool(self.list.selectedItems()))
