"""The translation glossary as an editable table (term -> required translation), with CSV
import and export in the format of ``engine.tasks.glossary``."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from app.widgets.pair_rows import append_pair, cell_text, remove_selected_rows
from engine.errors import BadRequestError
from engine.tasks.glossary import Glossary, load_csv

CSV_FILTER = "CSV files (*.csv);;All files (*)"


class GlossaryTable(QWidget):
    message = Signal(str)  # a problem or a result to tell the user

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, 2)
        self.table.setObjectName("glossaryTable")
        self.table.setHorizontalHeaderLabels(["Term", "Required translation"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.add_button = QPushButton("Add term")
        self.add_button.clicked.connect(lambda: self.add_row())
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        self.import_button = QPushButton("Import CSV…")
        self.import_button.clicked.connect(self.import_dialog)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self.export_dialog)
        buttons = QHBoxLayout()
        for button in (self.add_button, self.remove_button, self.import_button,
                       self.export_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)

    def add_row(self, term: str = "", translation: str = "") -> None:
        append_pair(self.table, term, translation)

    def remove_selected(self) -> None:
        remove_selected_rows(self.table)

    def _cell(self, row: int, column: int) -> str:
        return cell_text(self.table, row, column)

    def glossary(self) -> Glossary:
        """The entries; rows left entirely empty are ignored. Raises BadRequestError for a
        row with only one side filled in."""
        pairs = [(self._cell(r, 0), self._cell(r, 1)) for r in range(self.table.rowCount())]
        return Glossary.from_pairs(p for p in pairs if p[0] or p[1])

    def set_glossary(self, glossary: Glossary) -> None:
        self.table.setRowCount(0)
        for entry in glossary.entries:
            self.add_row(entry.source, entry.target)

    def import_csv(self, path: str | Path) -> None:
        try:
            glossary = load_csv(path)
        except BadRequestError as exc:
            self.message.emit(str(exc))
            return
        self.set_glossary(glossary)
        self.message.emit(f"Imported {len(glossary.entries)} glossary terms.")

    def export_csv(self, path: str | Path) -> None:
        try:
            self.glossary().save(path)
        except BadRequestError as exc:
            self.message.emit(str(exc))
        except OSError as exc:
            self.message.emit(f"The glossary could not be saved: {exc}")
        else:
            self.message.emit(f"Glossary saved to {path}.")

    def import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import glossary", "", CSV_FILTER)
        if path:
            self.import_csv(path)

    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export glossary", "glossary.csv",
                                              CSV_FILTER)
        if path:
            self.export_csv(path)
