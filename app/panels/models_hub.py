"""The Models panel's Hub tab: search the model hub, see a repository's GGUF files grouped by
quantization with their size, a fit verdict for this machine and a recommended choice, and
download them (``models_downloads``). Every hub call runs off the GUI thread; its errors
(no token, licence not accepted, not found, rate limited, server, network) are shown as the
hub client words them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.background import Background
from app.hub_service import HubService, PendingDownload
from app.machine import machine
from app.panels.models_downloads import DownloadRow
from app.panels.models_local import FIT_COLOURS
from engine.catalog.fit import file_verdict, recommend
from engine.tasks.advice import HUB_SEARCH
from engine.tasks.language import language_name
from engine.units import format_bytes

REPO, DOWNLOADS, LIKES, UPDATED, LANGUAGES = range(5)
FILE_ROLE = Qt.ItemDataRole.UserRole
_LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}$")


def language_tags(tags: Sequence[str]) -> list[str]:
    """The language codes among a repository's hub tags ("en", "fr", …)."""
    return [t for t in tags if _LANGUAGE_TAG.match(t) and t not in ("gguf", "llm", "moe")]


class HubTab(QWidget):
    downloaded = Signal(object)  # Path of an installed model
    status_message = Signal(str)

    def __init__(self, hub: HubService | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hub = hub
        self.background = Background(self, threads=3)
        self.results: list[Any] = []
        self.files: list[Any] = []
        self.recommended: Any = None
        self.wanted_language: str | None = None
        self.rows: list[DownloadRow] = []
        self._repo: str | None = None

        self.query = QLineEdit()
        self.query.setObjectName("hubQuery")
        self.query.setPlaceholderText("Search GGUF models on the hub (e.g. Qwen2.5 Instruct)")
        self.query.returnPressed.connect(self.search)
        self.search_button = QPushButton("Search")
        self.search_button.setObjectName("primaryButton")
        self.search_button.clicked.connect(self.search)
        self.state = QLabel()
        self.state.setObjectName("hint")
        top = QHBoxLayout()
        top.addWidget(self.query, 1)
        top.addWidget(self.search_button)
        self.error = QLabel()
        self.error.setObjectName("documentError")
        self.error.setWordWrap(True)
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        self.error.hide()

        self.table = QTableWidget(0, 5)
        self.table.setObjectName("hubResults")
        self.table.setHorizontalHeaderLabels(["Repository", "Downloads", "Likes", "Updated",
                                              "Languages"])
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(REPO, QHeaderView.ResizeMode.Stretch)
        for col in (DOWNLOADS, LIKES, UPDATED, LANGUAGES):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.itemSelectionChanged.connect(self._repo_selected)

        self.tree = QTreeWidget()
        self.tree.setObjectName("hubFiles")
        self.tree.setHeaderLabels(["Quantization / file", "Size", "Fit", ""])
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2, 3):
            self.tree.header().setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemSelectionChanged.connect(self._file_selected)
        self.tree.itemDoubleClicked.connect(lambda _i, _c: self.download_selected())
        self.verdict = QLabel()
        self.verdict.setObjectName("hint")
        self.verdict.setWordWrap(True)
        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("primaryButton")
        self.download_button.clicked.connect(self.download_selected)
        files_box = QWidget()
        files_layout = QVBoxLayout(files_box)
        files_layout.setContentsMargins(0, 0, 0, 0)
        files_layout.addWidget(self.tree, 1)
        files_layout.addWidget(self.verdict)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.download_button)
        files_layout.addLayout(row)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(files_box)
        split.setSizes([560, 560])

        self.downloads_box = QGroupBox("Downloads")
        self.downloads_layout = QVBoxLayout(self.downloads_box)
        self.no_downloads = QLabel("Nothing downloading. Parts of unfinished downloads are "
                                   "kept and listed here to resume.")
        self.no_downloads.setObjectName("hint")
        self.downloads_layout.addWidget(self.no_downloads)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.state)
        layout.addWidget(self.error)
        layout.addWidget(split, 1)
        layout.addWidget(self.downloads_box)
        if hub is None:
            self._unavailable()
        self._update_buttons()

    def _unavailable(self) -> None:
        for w in (self.query, self.search_button, self.table, self.tree):
            w.setEnabled(False)
        self.state.setText("This build of Verso has no model hub client; put GGUF files in "
                           "the models folder or import them on the other tab.")

    # ------------------------------------------------------------------ search

    def start_search(self, query: str = HUB_SEARCH, language: str | None = None) -> None:
        """Search for ``query``, pointing out repositories that list ``language``."""
        self.wanted_language = language
        self.query.setText(query)
        self.search()

    def search(self) -> None:
        if self.hub is None:
            return
        query = self.query.text().strip()
        hub = self.hub
        self.error.hide()
        self.state.setText(f"Searching for “{query}”…" if query else "Searching…")
        self.search_button.setEnabled(False)
        self.background.run(lambda: list(hub.search(query)), self.show_results,
                            self._search_failed)

    def show_results(self, results: Sequence[Any]) -> None:
        self.search_button.setEnabled(True)
        wanted = self.wanted_language
        self.results = sorted(results, key=lambda r: wanted not in r.tags) if wanted \
            else list(results)
        self.table.setRowCount(len(self.results))
        bold = QFont(self.table.font())
        bold.setBold(True)
        for row, r in enumerate(self.results):
            languages = language_tags(r.tags)
            shown = ", ".join(languages[:8]) + (" …" if len(languages) > 8 else "")
            cells = (r.repo_id + ("  (gated)" if r.gated else ""), f"{r.downloads:,}",
                     f"{r.likes:,}", (r.last_modified or "")[:10], shown or "—")
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == LANGUAGES and wanted and wanted in languages:
                    item.setFont(bold)
                    item.setToolTip(f"Lists {language_name(wanted)}")
                self.table.setItem(row, col, item)
        note = (f"; those listing {language_name(wanted)} first" if wanted else "")
        self.state.setText(f"{len(self.results)} repositories{note}. Pick one to see its "
                           "files." if self.results else "No GGUF repositories found.")
        self.tree.clear()
        self.files = []
        self._update_buttons()

    def _search_failed(self, exc: Exception) -> None:
        self.search_button.setEnabled(True)
        self.state.setText("")
        self._show_error(exc)

    # ------------------------------------------------------------------ files

    def _repo_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or self.hub is None:
            return
        repo = self.results[rows[0].row()].repo_id
        self.show_repo(repo)

    def show_repo(self, repo_id: str) -> None:
        if self.hub is None:
            return
        hub = self.hub
        self._repo = repo_id
        self.error.hide()
        self.tree.clear()
        self.verdict.setText(f"Reading the files of {repo_id}…")
        self.background.run(lambda: (repo_id, list(hub.files(repo_id))),
                            lambda pair: self.show_files(*pair), self._files_failed)

    def show_files(self, repo_id: str, files: Sequence[Any]) -> None:
        if repo_id != self._repo:
            return  # another repository was picked meanwhile
        m = machine()
        ram, vram = m.ram_free(), m.vram_free()
        self.files = list(files)
        self.recommended, why = recommend(self.files, ram, vram)
        self.tree.clear()
        groups: dict[str, QTreeWidgetItem] = {}
        chosen: QTreeWidgetItem | None = None
        for f in self.files:
            label = f.quant or "unknown quantization"
            group = groups.get(label)
            if group is None:
                group = QTreeWidgetItem([label, "", "", ""])
                group.setFlags(group.flags() & ~Qt.ItemFlag.ItemIsSelectable)
                groups[label] = group
                self.tree.addTopLevelItem(group)
            verdict = file_verdict(f.size, ram, vram)
            problem = getattr(f, "problem", None)
            parts = len(f.parts)
            note = problem or (f"{parts} parts" if parts > 1 else "")
            if f is self.recommended:
                note = "★ recommended for this machine"
            item = QTreeWidgetItem([f.name, format_bytes(f.size),
                                    verdict.fit.value if not problem else "—", note])
            item.setData(0, FILE_ROLE, f)
            item.setToolTip(0, problem if problem else verdict.describe())
            item.setForeground(2, QBrush(QColor(FIT_COLOURS[verdict.fit])))
            if problem:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
            if f is self.recommended:
                font = QFont(self.tree.font())
                font.setBold(True)
                for col in range(4):
                    item.setFont(col, font)
                chosen = item
            group.addChild(item)
            count = group.childCount()
            group.setText(0, f"{label}  ({count} file{'s' if count > 1 else ''})")
        self.tree.expandAll()
        if chosen is not None:
            self.tree.setCurrentItem(chosen)
        summary = (f"Recommended: {self.recommended.name} ({why})." if self.recommended
                   else f"No recommendation: {why}.")
        self.verdict.setText(summary if self.files else f"{repo_id} has no GGUF files.")
        self._file_selected()

    def _files_failed(self, exc: Exception) -> None:
        self.verdict.setText("")
        self._show_error(exc)

    def selected_file(self) -> Any:
        item = self.tree.currentItem()
        return item.data(0, FILE_ROLE) if item is not None else None

    def _file_selected(self) -> None:
        f = self.selected_file()
        if f is not None:
            m = machine()
            verdict = file_verdict(f.size, m.ram_free(), m.vram_free())
            extra = f" Hub scan: {f.security}." if getattr(f, "security", None) else ""
            head = ("Recommended for this machine. " if f is self.recommended else "")
            self.verdict.setText(f"{head}{f.name}: {verdict.describe()}.{extra}")
        self._update_buttons()

    def _update_buttons(self) -> None:
        f = self.selected_file()
        self.download_button.setEnabled(self.hub is not None and f is not None
                                        and getattr(f, "problem", None) is None
                                        and not self._row_for(f))

    # ------------------------------------------------------------------ downloads

    def _row_for(self, f: Any) -> DownloadRow | None:
        for row in self.rows:
            if (row.file.repo_id, row.file.parts) == (f.repo_id, f.parts):
                return row
        return None

    def download_selected(self) -> None:
        f = self.selected_file()
        if f is None or getattr(f, "problem", None) or self.hub is None:
            return
        row = self._row_for(f) or self._add_row(f)
        row.start()
        self._update_buttons()

    def _add_row(self, f: Any) -> DownloadRow:
        assert self.hub is not None
        row = DownloadRow(self.hub, f, self.background)
        row.finished.connect(self._row_finished)
        row.removed.connect(self._row_removed)
        self.rows.append(row)
        self.downloads_layout.addWidget(row)
        self.no_downloads.hide()
        return row

    def _row_finished(self, row: DownloadRow, path: Path | None) -> None:
        self.status_message.emit(f"Downloaded {row.file.name}; it is in the model list.")
        self.downloaded.emit(path)

    def _row_removed(self, row: DownloadRow) -> None:
        self.rows.remove(row)
        row.setParent(None)
        row.deleteLater()
        self.no_downloads.setVisible(not self.rows)
        self.status_message.emit(f"Cancelled the download of {row.file.name}; its partial "
                                 "file was deleted.")
        self._update_buttons()

    def show_pending(self) -> None:
        """List downloads a previous run left unfinished, to resume or cancel."""
        if self.hub is None:
            return
        hub = self.hub
        self.background.run(lambda: list(hub.pending()), self._pending_found,
                            lambda exc: None)

    def _pending_found(self, pending: Sequence[PendingDownload]) -> None:
        by_file: dict[tuple[str, str], list[PendingDownload]] = {}
        for p in pending:
            by_file.setdefault((p.repo_id, p.revision), []).append(p)
        hub = self.hub
        assert hub is not None
        for (repo_id, revision), items in by_file.items():
            def found(files: Sequence[Any], items: list[PendingDownload] = items) -> None:
                for item in items:
                    match = next((f for f in files if item.path in f.parts), None)
                    if match is None or self._row_for(match):
                        continue
                    done = sum(p.bytes_done for p in items if p.path in match.parts)
                    self._add_row(match).show_paused(done, match.size)

            def files(repo_id: str = repo_id, revision: str = revision) -> list[Any]:
                return list(hub.files(repo_id, revision))

            self.background.run(files, found, lambda exc: None)

    def _show_error(self, exc: Exception) -> None:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        self.error.setText(message)
        self.error.show()
        self.status_message.emit(message)

    def shutdown(self) -> None:
        for row in self.rows:
            row.stop()
        self.background.shutdown()
