"""A long task's progress: what it is doing, steps done of total, time left, and Cancel."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from engine.tasks.jobs import TaskProgress

STAGE_NAMES = {
    "segment": "Cutting the text into chunks",
    "map": "Summarizing chunks",
    "reduce": "Writing the summary",
    "extract": "Choosing sentences",
    "translate": "Translating segments",
    "retranslate": "Re-translating",
    "classify": "Classifying texts",
}


def stage_name(stage: str) -> str:
    if stage.startswith("reduce "):
        return f"Combining notes (level {stage.split()[1]})"
    return STAGE_NAMES.get(stage, stage.capitalize())


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating time left…"
    if seconds < 1:
        return "almost done"
    if seconds < 90:
        return f"about {seconds:.0f} s left"
    return f"about {seconds / 60:.0f} min left"


class TaskProgressRow(QWidget):
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setMinimumWidth(160)
        self.eta = QLabel()
        self.eta.setObjectName("hint")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("stopButton")
        self.cancel_button.clicked.connect(self.cancel_requested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.eta)
        layout.addWidget(self.cancel_button)
        self.hide()

    def start(self, text: str) -> None:
        self.label.setText(text)
        self.bar.setRange(0, 0)  # busy until the first step is known
        self.eta.setText("")
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("Cancel")
        self.show()

    def update_progress(self, event: TaskProgress) -> None:
        self.label.setText(stage_name(event.stage))
        self.bar.setRange(0, max(event.total, 1))
        self.bar.setValue(event.done)
        self.bar.setFormat(f"{event.done} %" if event.stage == "segment"
                           else f"{event.done} / {event.total}")
        self.eta.setText(format_eta(event.eta_s) if event.done < event.total else "")

    def cancelling(self) -> None:
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Cancelling…")

    def finish(self) -> None:
        self.hide()
