"""Rows of a two-column editable table (glossary terms, classification examples)."""

from __future__ import annotations

from PySide6.QtWidgets import QTableWidget, QTableWidgetItem


def append_pair(table: QTableWidget, first: str, second: str) -> int:
    """Add a row; an empty one gets the focus with its first cell open for typing."""
    row = table.rowCount()
    table.insertRow(row)
    first_item = QTableWidgetItem(first)
    table.setItem(row, 0, first_item)
    table.setItem(row, 1, QTableWidgetItem(second))
    if not first:
        table.setCurrentCell(row, 0)
        table.editItem(first_item)
    return row


def remove_selected_rows(table: QTableWidget) -> None:
    for row in sorted({i.row() for i in table.selectedIndexes()}, reverse=True):
        table.removeRow(row)


def cell_text(table: QTableWidget, row: int, column: int) -> str:
    item = table.item(row, column)
    return item.text().strip() if item else ""
