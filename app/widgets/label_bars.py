"""Every label's probability as a horizontal bar with its percentage, most probable first;
the chosen label is drawn in the accent colour and bold."""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.theme import palettes

ROW_H = 28
BAR_H = 14
GAP = 10
MAX_LABEL_W = 220


def percent_text(p: float) -> str:
    return f"{p * 100:.1f} %"


class ProbabilityBars(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("probabilityBars")
        self.rows: list[tuple[str, float]] = []  # sorted, most probable first
        self.chosen = ""
        self.scheme = "light"
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(280)

    def set_probabilities(self, probabilities: Mapping[str, float], chosen: str) -> None:
        self.rows = sorted(probabilities.items(), key=lambda kv: (-kv[1], kv[0]))
        self.chosen = chosen
        self.updateGeometry()
        self.setFixedHeight(self.sizeHint().height())
        self.update()

    def clear(self) -> None:
        self.set_probabilities({}, "")

    def set_scheme(self, scheme: str) -> None:
        self.scheme = scheme
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(420, max(len(self.rows), 1) * ROW_H + 4)

    def _label_width(self, bold: QFont) -> int:
        metrics = QFontMetrics(bold)
        widest = max((metrics.horizontalAdvance(label) for label, _ in self.rows), default=0)
        return min(widest + 4, MAX_LABEL_W, self.width() // 3)

    def paintEvent(self, _event: QPaintEvent) -> None:
        if not self.rows:
            return
        colours = palettes()[self.scheme]
        text, muted = QColor(colours["text"]), QColor(colours["muted"])
        track, accent = QColor(colours["border"]), QColor(colours["accent"])
        plain = QFont(self.font())
        bold = QFont(self.font())
        bold.setBold(True)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        label_w = self._label_width(bold)
        pct_w = QFontMetrics(bold).horizontalAdvance("100.0 %") + 4
        bar_x = label_w + GAP
        bar_w = max(self.width() - bar_x - GAP - pct_w, 20)
        for row, (label, probability) in enumerate(self.rows):
            top = row * ROW_H + 2
            chosen = label == self.chosen
            p.setFont(bold if chosen else plain)
            p.setPen(text if chosen else muted)
            metrics = QFontMetrics(p.font())
            shown = metrics.elidedText(label, Qt.TextElideMode.ElideRight, label_w)
            p.drawText(QRectF(0, top, label_w, ROW_H),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, shown)
            bar = QRectF(bar_x, top + (ROW_H - BAR_H) / 2, bar_w, BAR_H)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(track)
            p.drawRoundedRect(bar, 4, 4)
            fill = max(bar_w * probability, 2.0 if probability > 0 else 0.0)
            fill_colour = QColor(accent)
            if not chosen:
                fill_colour.setAlphaF(0.45)
            p.setBrush(fill_colour)
            p.drawRoundedRect(QRectF(bar.x(), bar.y(), fill, BAR_H), 4, 4)
            p.setPen(text if chosen else muted)
            p.drawText(QRectF(bar_x + bar_w + GAP, top, pct_w, ROW_H),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       percent_text(probability))
        p.end()
