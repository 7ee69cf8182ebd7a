"""Status bar: the model, how full its context is, the last reply's speed, and Undo."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QStatusBar,
    QWidget,
)

from engine.events import ModelLoaded

UNDO_MS = 10_000


class StatusBar(QStatusBar):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("statusBar")
        self.undo_label = QLabel()
        self.undo_label.setObjectName("undoText")
        self.undo_button = QPushButton("Undo")
        self.undo_button.setObjectName("undoButton")
        self.undo_button.clicked.connect(self._undo)
        self.undo_box = QWidget()
        undo_layout = QHBoxLayout(self.undo_box)
        undo_layout.setContentsMargins(0, 0, 0, 0)
        undo_layout.addWidget(self.undo_label)
        undo_layout.addWidget(self.undo_button)
        self.undo_box.hide()
        self.model_label = QLabel("No model loaded")
        self.model_label.setObjectName("modelStatus")
        self.context_bar = QProgressBar()
        self.context_bar.setObjectName("contextBar")
        self.context_bar.setFixedWidth(190)
        self.context_bar.setRange(0, 1)
        self.context_bar.setValue(0)
        self.context_bar.setFormat("context –")
        self.context_bar.setToolTip("Tokens of the model's context this conversation uses")
        self.speed_label = QLabel("")
        self.speed_label.setObjectName("speedStatus")
        self.addPermanentWidget(self.undo_box)
        self.addPermanentWidget(self.model_label)
        self.addPermanentWidget(self.context_bar)
        self.addPermanentWidget(self.speed_label)
        self._undo_action: Callable[[], None] | None = None
        self._undo_timer = QTimer(self)
        self._undo_timer.setSingleShot(True)
        self._undo_timer.timeout.connect(self.hide_undo)

    def set_model(self, loaded: ModelLoaded | None, note: str = "") -> None:
        if loaded is None:
            self.model_label.setText(note or "No model loaded")
            self.model_label.setToolTip("")
            self.set_context(None, None)
            return
        gpu = f", {loaded.gpu_layers} layers on the GPU" if loaded.gpu_layers else ""
        self.model_label.setText(loaded.name + (f" ({note})" if note else ""))
        where = loaded.local_path or loaded.ref.label
        self.model_label.setToolTip(f"{where}\ncontext {loaded.n_ctx:,} tokens "
                                    f"(trained {loaded.n_ctx_train:,}){gpu}\n"
                                    f"loaded in {loaded.load_seconds:.2f} s")

    def set_context(self, used: int | None, n_ctx: int | None) -> None:
        if not n_ctx:
            self.context_bar.setRange(0, 1)
            self.context_bar.setValue(0)
            self.context_bar.setFormat("context –")
            return
        used = max(0, min(used or 0, n_ctx))
        self.context_bar.setRange(0, n_ctx)
        self.context_bar.setValue(used)
        self.context_bar.setFormat(f"{used:,} / {n_ctx:,}")

    def set_speed(self, ttft_s: float | None, tps: float | None) -> None:
        if ttft_s is None:
            self.speed_label.setText("")
            return
        self.speed_label.setText(f"TTFT {ttft_s * 1000:,.0f} ms · {tps or 0:.1f} tok/s")

    def show_undo(self, text: str, action: Callable[[], None]) -> None:
        """Offer to undo something for a few seconds (permanent widgets stay visible while
        other messages come and go)."""
        self._undo_action = action
        self.undo_label.setText(text)
        self.undo_box.show()
        self._undo_timer.start(UNDO_MS)

    def hide_undo(self) -> None:
        self._undo_action = None
        self.undo_box.hide()

    def _undo(self) -> None:
        action = self._undo_action
        self.hide_undo()
        if action is not None:
            action()
