"""A note above a task panel when the loaded model is a poor fit for the task
(``engine.tasks.advice``), with a button that opens the Models panel's hub search."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from engine.catalog.gguf_info import ModelInfo
from engine.tasks.advice import Advice, Task, advice_for


class AdviceBanner(QFrame):
    find_model = Signal(object)  # the language the task needs (a code), or None

    def __init__(self, task: Task, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("adviceBanner")
        self.task = task
        self.info: ModelInfo | None = None
        self.source: str | None = None
        self.target: str | None = None
        self.advice: Advice | None = None
        self.applies = True  # False while the task runs without a model (extractive mode)
        self.label = QLabel()
        self.label.setObjectName("adviceText")
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.button = QPushButton("Find a better model…")
        self.button.setToolTip("Open the Models panel and search the hub")
        self.button.clicked.connect(self._find)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def _find(self) -> None:
        advice = self.advice
        self.find_model.emit(advice.language if advice is not None else None)

    def set_model(self, info: ModelInfo | None) -> None:
        """The loaded model's header facts; None when there is none or it is remote."""
        self.info = info
        self._update()

    def set_languages(self, source: str | None, target: str | None) -> None:
        self.source, self.target = source, target
        self._update()

    def set_applies(self, applies: bool) -> None:
        self.applies = applies
        self._update()

    def _update(self) -> None:
        self.advice = None if self.info is None or not self.applies else advice_for(
            self.task, self.info, self.target, self.source)
        if self.advice is not None:
            self.label.setText(self.advice.text)
        self.setVisible(self.advice is not None)
