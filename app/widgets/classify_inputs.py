"""What a classification is set up with: the label set (a preset or the user's own, comma-
separated or one per line) and few-shot examples in a small table (text -> label)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from app.widgets.pair_rows import append_pair, cell_text, remove_selected_rows
from engine.text_lists import split_items

LABEL_PRESETS: dict[str, tuple[str, ...]] = {
    "Sentiment": ("positive", "negative", "neutral"),
    "Topic": ("business", "politics", "technology", "science", "health", "sports",
              "entertainment", "travel"),
    "Intent": ("question", "request", "complaint", "praise", "greeting", "other"),
}
CUSTOM = "Custom"


def parse_labels(text: str) -> list[str]:
    """Labels written one per line or comma-separated (or both). Blank lines are skipped; an
    empty item between commas is kept, so that ``check_labels`` can point it out."""
    labels: list[str] = []
    for line in text.splitlines():
        if line.strip():
            labels += [item.strip() for item in split_items(line)]
    return labels


def preset_for(labels: Sequence[str]) -> str:
    """The preset these labels are, or ``CUSTOM``."""
    for name, preset in LABEL_PRESETS.items():
        if tuple(labels) == preset:
            return name
    return CUSTOM


class LabelDelegate(QStyledItemDelegate):
    """Edits an example's label with a list of the current labels (still free to type)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labels: list[str] = []

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem,
                     index: QModelIndex | QPersistentModelIndex) -> QWidget:
        editor = QComboBox(parent)
        editor.setEditable(True)
        editor.addItems(self.labels)
        return editor

    def setEditorData(self, editor: QWidget, index: QModelIndex | QPersistentModelIndex) -> None:
        assert isinstance(editor, QComboBox)
        editor.setCurrentText(str(index.data() or ""))

    def setModelData(self, editor: QWidget, model: QAbstractItemModel,
                     index: QModelIndex | QPersistentModelIndex) -> None:
        assert isinstance(editor, QComboBox)
        model.setData(index, editor.currentText().strip())


class ExamplesTable(QWidget):
    """Few-shot examples: each row a text and the label it should get."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, 2)
        self.table.setObjectName("classifyExamples")
        self.table.setHorizontalHeaderLabels(["Example text", "Label"])
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(1, 150)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.delegate = LabelDelegate(self.table)
        self.table.setItemDelegateForColumn(1, self.delegate)
        self.table.itemChanged.connect(lambda _item: self.changed.emit())
        self.add_button = QPushButton("Add example")
        self.add_button.clicked.connect(lambda: self.add_row())
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)

    def set_labels(self, labels: Sequence[str]) -> None:
        self.delegate.labels = list(labels)

    def add_row(self, text: str = "", label: str = "") -> None:
        self.table.blockSignals(True)
        try:
            append_pair(self.table, text, label)
        finally:
            self.table.blockSignals(False)
        self.changed.emit()

    def remove_selected(self) -> None:
        remove_selected_rows(self.table)
        self.changed.emit()

    def clear(self) -> None:
        self.table.setRowCount(0)
        self.changed.emit()

    def _cell(self, row: int, column: int) -> str:
        return cell_text(self.table, row, column)

    def rows(self) -> list[tuple[str, str]]:
        """Every row that is not entirely empty, as (text, label)."""
        pairs = [(self._cell(r, 0), self._cell(r, 1)) for r in range(self.table.rowCount())]
        return [p for p in pairs if p[0] or p[1]]

    def problems(self) -> list[str]:
        """Rows with only one side filled in (which label each example has is checked with
        the labels, by ``check_labels``)."""
        found = []
        for number, (text, label) in enumerate(self.rows(), 1):
            if not text:
                found.append(f"Example {number} has no text.")
            elif not label:
                found.append(f"Example {number} has no label.")
        return found

    def set_editable(self, editable: bool) -> None:
        triggers = (QAbstractItemView.EditTrigger.DoubleClicked
                    | QAbstractItemView.EditTrigger.EditKeyPressed
                    | QAbstractItemView.EditTrigger.AnyKeyPressed) if editable else \
            QAbstractItemView.EditTrigger.NoEditTriggers
        self.table.setEditTriggers(triggers)
        self.add_button.setEnabled(editable)
        self.remove_button.setEnabled(editable)

