"""Text made of pieces (tokens), each shaded by a value from 0 to 1, with hover and click.

Used by the token view (shade = the token's probability) and the attention view (shade =
the attention weight). Pieces are rendered as rich-text anchors so the text wraps like
prose; newlines and tabs stay visible as ``↵``/``→`` so a shaded whitespace token can be
seen and hovered."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QPoint, QUrl, Signal
from PySide6.QtGui import QColor, QMouseEvent
from PySide6.QtWidgets import QTextBrowser, QToolTip, QWidget

from app.theme import palettes


@dataclass(frozen=True, slots=True)
class Piece:
    text: str
    shade: float | None  # 0..1; None: not shaded (e.g. the prompt)
    tooltip: str = ""
    selectable: bool = True


Colour = Callable[[float, str], QColor]


def probability_colour(value: float, scheme: str) -> QColor:
    """Red for unlikely, amber in between, green for likely; soft enough to read text on."""
    hue = int(120 * max(0.0, min(1.0, value)))  # 0 red .. 120 green
    if scheme == "dark":
        return QColor.fromHsl(hue, 110, 70)
    return QColor.fromHsl(hue, 200, 205)


def weight_colour(value: float, scheme: str) -> QColor:
    """The accent colour, stronger for heavier weights (attention)."""
    value = max(0.0, min(1.0, value))
    base = QColor(palettes()[scheme]["surface"])
    accent = QColor("#e07b22") if scheme == "light" else QColor("#b4601c")
    return QColor(int(base.red() + (accent.red() - base.red()) * value),
                  int(base.green() + (accent.green() - base.green()) * value),
                  int(base.blue() + (accent.blue() - base.blue()) * value))


def visible(text: str) -> str:
    return text.replace("\t", "→\t").replace("\n", "↵\n")


class ShadedText(QTextBrowser):
    """``hovered(index)`` (-1 when leaving a piece) and ``clicked(index)`` name pieces."""

    hovered = Signal(int)
    clicked = Signal(int)

    def __init__(self, colour: Colour = probability_colour,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("shadedText")
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)
        self.anchorClicked.connect(self._anchor_clicked)
        self._colour = colour
        self._pieces: list[Piece] = []
        self._scheme = "light"
        self._hover = -1
        self.selected = -1

    def set_scheme(self, scheme: str) -> None:
        self._scheme = scheme
        self._render()

    def set_pieces(self, pieces: Sequence[Piece], selected: int = -1) -> None:
        self._pieces = list(pieces)
        self.selected = selected if 0 <= selected < len(self._pieces) else -1
        self._render()

    def pieces(self) -> list[Piece]:
        return list(self._pieces)

    def select(self, index: int) -> None:
        self.selected = index if 0 <= index < len(self._pieces) else -1
        self._render()

    def _render(self) -> None:
        text_colour = palettes()[self._scheme]["text"]
        muted = palettes()[self._scheme]["muted"]
        parts = ["<div style='white-space: pre-wrap; font-size: 14px; line-height: 150%'>"]
        for index, piece in enumerate(self._pieces):
            shown = html.escape(visible(piece.text) if piece.shade is not None else piece.text)
            if piece.shade is None:
                parts.append(f"<span style='color:{muted}'>{shown}</span>")
                continue
            background = self._colour(piece.shade, self._scheme).name()
            border = (f"; border-bottom: 2px solid {text_colour}; font-weight: 600"
                      if index == self.selected else "")
            parts.append(f"<a href='p:{index}' style='color:{text_colour}; "
                         f"background-color:{background}; text-decoration:none{border}'>"
                         f"{shown or '∅'}</a>")
        parts.append("</div>")
        bar = self.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 4
        position = bar.value()
        self.setHtml("".join(parts))
        bar.setValue(bar.maximum() if at_bottom else position)

    def _index_at(self, pos: QPoint) -> int:
        anchor = self.anchorAt(pos)
        if anchor.startswith("p:"):
            index = int(anchor[2:])
            if 0 <= index < len(self._pieces):
                return index
        return -1

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        index = self._index_at(event.position().toPoint())
        if index != self._hover:
            self._hover = index
            self.hovered.emit(index)
            if index >= 0 and self._pieces[index].tooltip:
                QToolTip.showText(event.globalPosition().toPoint(),
                                  self._pieces[index].tooltip, self.viewport())
            else:
                QToolTip.hideText()
        super().mouseMoveEvent(event)

    def leaveEvent(self, event: QEvent) -> None:
        if self._hover != -1:
            self._hover = -1
            self.hovered.emit(-1)
        super().leaveEvent(event)

    def _anchor_clicked(self, url: QUrl) -> None:
        anchor = url.toString()
        if anchor.startswith("p:"):
            index = int(anchor[2:])
            if 0 <= index < len(self._pieces) and self._pieces[index].selectable:
                self.select(index)
                self.clicked.emit(index)

    def piece_rect_centre(self, index: int) -> QPoint | None:
        """Where piece ``index`` is drawn (viewport coordinates), for tests and tooltips."""
        doc = self.document()
        block = doc.begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                if fragment.charFormat().anchorHref() == f"p:{index}":
                    cursor = self.textCursor()
                    cursor.setPosition(fragment.position())
                    rect = self.cursorRect(cursor)
                    return QPoint(rect.right() + 3, rect.center().y())
                it += 1
            block = block.next()
        return None

