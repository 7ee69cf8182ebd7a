"""Where one generated token looked: the attention weights of the pass that produced it,
over the context tokens, for a chosen layer and head (or averaged), shaded by weight.

The strip under the controls shades the context tokens by the chosen row; the heatmap below
it shows every layer (rows) over the context (columns) for the chosen head, so a layer
worth a closer look stands out. Shades are relative to the largest weight shown; hover
gives the exact weight."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from app.theme import palettes
from app.widgets.shaded_text import Piece, ShadedText, visible, weight_colour
from engine.events import AttentionMap

AVERAGE = -1


def describe(weight: float) -> str:
    return f"weight {weight:.4f} ({weight * 100:.2f} %)"


class AttentionHeatmap(QWidget):
    """Layers (rows) × context tokens (columns) for one head or the head average."""

    layer_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid: np.ndarray | None = None  # (n_layers, n_keys)
        self.pieces: tuple[str, ...] = ()
        self.layer_names: list[str] = []
        self.selected = AVERAGE
        self.scheme = "light"
        self.setMouseTracking(True)
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(600, 220)

    def _cell(self) -> tuple[float, float, float]:
        assert self.grid is not None
        rows, cols = self.grid.shape
        left = 64.0
        return left, (self.width() - left - 4) / max(cols, 1), (self.height() - 4) / max(rows, 1)

    def paintEvent(self, _event: QPaintEvent) -> None:
        if self.grid is None or not self.grid.size:
            return
        p = QPainter(self)
        left, cw, rh = self._cell()
        colours = palettes()[self.scheme]
        label_every = max(1, math.ceil(14 / max(rh, 0.1)))
        top = self.grid.max(axis=1, keepdims=True)
        scaled = self.grid / np.where(top > 0, top, 1)
        for r in range(self.grid.shape[0]):
            if r % label_every == 0 or r == self.selected:
                p.setPen(QColor(colours["text"] if r == self.selected else colours["muted"]))
                p.drawText(QRectF(0, 2 + r * rh, left - 6, max(rh, 10)),
                           Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                           self.layer_names[r])
            for c in range(self.grid.shape[1]):
                p.fillRect(QRectF(left + c * cw, 2 + r * rh, cw + 0.5, rh + 0.5),
                           weight_colour(float(scaled[r, c]), self.scheme))
        if self.selected >= 0:
            p.setPen(QColor(colours["text"]))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(QRectF(left, 2 + self.selected * rh, cw * self.grid.shape[1], rh))
        p.end()

    def _at(self, event: QMouseEvent) -> tuple[int, int] | None:
        if self.grid is None:
            return None
        left, cw, rh = self._cell()
        pos = event.position()
        row, col = int((pos.y() - 2) // rh), int((pos.x() - left) // cw)
        if 0 <= row < self.grid.shape[0] and 0 <= col < self.grid.shape[1] and pos.x() >= left:
            return row, col
        return None

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        hit = self._at(event)
        if hit is None:
            QToolTip.hideText()
            return
        row, col = hit
        assert self.grid is not None  # _at found a cell, so there is a grid
        QToolTip.showText(event.globalPosition().toPoint(),
                          f"{self.layer_names[row]}, token {col}: "
                          f"‘{visible(self.pieces[col])}’\n{describe(float(self.grid[row, col]))}",
                          self)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        hit = self._at(event)
        if hit is not None:
            self.layer_clicked.emit(hit[0])


class AttentionView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.map: AttentionMap | None = None
        self.title = QLabel("Pick a generated token in the Tokens tab (click it), then "
                            "“Show attention for this token”.")
        self.title.setObjectName("sectionTitle")
        self.title.setWordWrap(True)
        self.layer = QComboBox()
        self.layer.setObjectName("attentionLayer")
        self.head = QComboBox()
        self.head.setObjectName("attentionHead")
        self.layer.currentIndexChanged.connect(self._render)
        self.head.currentIndexChanged.connect(self._render)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Layer"))
        controls.addWidget(self.layer)
        controls.addSpacing(12)
        controls.addWidget(QLabel("Head"))
        controls.addWidget(self.head)
        controls.addSpacing(12)
        self.skip_first = QCheckBox("Shade without the first token")
        self.skip_first.setObjectName("attentionSkipFirst")
        self.skip_first.setToolTip("Many models park most of their attention on the first "
                                   "token (an 'attention sink'); leave it out of the shading "
                                   "scale to see the rest.")
        self.skip_first.toggled.connect(self._render)
        controls.addWidget(self.skip_first)
        controls.addStretch(1)
        self.strip = ShadedText(weight_colour)
        self.strip.setObjectName("attentionStrip")
        self.note = QLabel()
        self.note.setObjectName("hint")
        self.note.setWordWrap(True)
        self.heatmap = AttentionHeatmap()
        self.heatmap.layer_clicked.connect(lambda row: self.layer.setCurrentIndex(row + 1))
        heat_title = QLabel("Every layer (rows) over the context (columns) for this head; "
                            "click a row to pick the layer.")
        heat_title.setObjectName("hint")
        heat_title.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addLayout(controls)
        layout.addWidget(self.strip, 2)
        layout.addWidget(self.note)
        layout.addWidget(heat_title)
        layout.addWidget(self.heatmap, 3)
        self._set_enabled(False)

    def set_scheme(self, scheme: str) -> None:
        self.heatmap.scheme = scheme
        self.heatmap.update()
        self.strip.set_scheme(scheme)

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (self.layer, self.head, self.strip, self.heatmap):
            widget.setEnabled(enabled)

    def show_message(self, text: str) -> None:
        self.title.setText(text)

    def set_map(self, attention: AttentionMap, title: str) -> None:
        self.map = attention
        self.title.setText(title)
        keep_layer, keep_head = self.layer.currentIndex(), self.head.currentIndex()
        for combo in (self.layer, self.head):
            combo.blockSignals(True)
            combo.clear()
        self.layer.addItem("Average over layers", AVERAGE)
        for index, layer in enumerate(attention.layers):
            self.layer.addItem(f"Layer {layer}", index)
        self.head.addItem("Average over heads", AVERAGE)
        for head in range(attention.n_heads):
            self.head.addItem(f"Head {head}", head)
        self.layer.setCurrentIndex(keep_layer if 0 < keep_layer < self.layer.count()
                                   else self.layer.count() - 1)
        self.head.setCurrentIndex(max(keep_head, 0) if keep_head < self.head.count() else 0)
        for combo in (self.layer, self.head):
            combo.blockSignals(False)
        self._set_enabled(True)
        self._render()

    def selection(self) -> tuple[int | None, int | None]:
        layer, head = self.layer.currentData(), self.head.currentData()
        return (None if layer in (None, AVERAGE) else int(layer),
                None if head in (None, AVERAGE) else int(head))

    def row(self) -> np.ndarray:
        assert self.map is not None
        layer, head = self.selection()
        return self.map.row(layer, head)

    def _render(self) -> None:
        if self.map is None or self.layer.count() == 0:
            return
        attention = self.map
        weights = self.row()
        scale = weights[1:] if self.skip_first.isChecked() and weights.size > 1 else weights
        top = float(scale.max()) if scale.size else 0.0
        pieces = [Piece(text, min(float(w) / top, 1.0) if top > 0 else 0.0,
                        f"‘{visible(text)}’ (token {k}): {describe(float(w))}")
                  for k, (text, w) in enumerate(zip(attention.pieces, weights, strict=True))]
        self.strip.set_pieces(pieces, selected=len(pieces) - 1)
        order = np.argsort(-weights)[:3]
        strongest = ", ".join(f"‘{visible(attention.pieces[k])}’ {weights[k] * 100:.1f} %"
                              for k in order)
        self.note.setText(f"Shade relative to the largest weight ({top * 100:.1f} %). "
                          f"Strongest: {strongest}. The weights sum to {weights.sum():.3f}.")
        _, head = self.selection()
        grid = attention.weights.mean(axis=1) if head is None else attention.weights[:, head]
        self.heatmap.grid = np.asarray(grid, dtype=np.float32)
        self.heatmap.pieces = attention.pieces
        self.heatmap.layer_names = [f"Layer {layer}" for layer in attention.layers]
        layer, _ = self.selection()
        self.heatmap.selected = AVERAGE if layer is None else layer
        self.heatmap.update()
