"""Two sampling settings side by side on the same prompt, constraints and seed: both outputs
and their stats (tokens, speed, time to first token)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.sampler_presets import SamplerPreset
from app.widgets.sampling_form import SamplingForm
from engine.events import Done, Stats, finish_note

SIDES = ("A", "B")
HIDDEN_FIELDS = ("seed", "ban_phrases", "ban_any_case")


def stats_line(done: Done | None, error: str = "") -> str:
    if error:
        return error
    if done is None:
        return ""
    s: Stats = done.stats
    finish = finish_note(done.finish_reason) or f"finish: {done.finish_reason.value}"
    return (f"{s.generated_tokens} tokens · {s.generation_tps:.1f} tok/s · "
            f"TTFT {s.ttft_s * 1000:.0f} ms · {finish}")


def hide_rows(form: SamplingForm, names: Sequence[str]) -> None:
    layout = form.layout()
    assert isinstance(layout, QFormLayout)
    for name in names:
        control = form.controls.get(name)
        if control is not None:
            layout.setRowVisible(control, False)


class CompareSide(QWidget):
    def __init__(self, side: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.side = side
        title = QLabel(f"Settings {side}")
        title.setObjectName("sectionTitle")
        self.preset = QComboBox()
        self.preset.setObjectName(f"comparePreset{side}")
        self.form = SamplingForm()
        self.form.setObjectName(f"compareForm{side}")
        hide_rows(self.form, HIDDEN_FIELDS)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form)
        scroll.setMinimumHeight(180)
        self.output = QPlainTextEdit()
        self.output.setObjectName(f"compareOutput{side}")
        self.output.setReadOnly(True)
        self.output.setPlaceholderText("The output appears here.")
        self.stats = QLabel()
        self.stats.setObjectName("hint")
        self.stats.setWordWrap(True)
        head = QHBoxLayout()
        head.addWidget(title)
        head.addWidget(self.preset, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(head)
        layout.addWidget(scroll, 2)
        layout.addWidget(self.output, 3)
        layout.addWidget(self.stats)


class CompareView(QWidget):
    run_requested = Signal()
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._presets: list[SamplerPreset] = []
        self._current: Callable[[], dict[str, Any]] = dict
        hint = QLabel("The same prompt, mode and constraints as the editor, with one seed for "
                      "both runs; only the settings differ.")
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        self.seed = QSpinBox()
        self.seed.setObjectName("compareSeed")
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(42)
        self.seed.setToolTip("Both runs use this seed, so a difference comes from the settings.")
        self.run_button = QPushButton("Run both")
        self.run_button.setObjectName("primaryButton")
        self.run_button.clicked.connect(self.run_requested)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setVisible(False)
        self.stop_button.clicked.connect(self.stop_requested)
        top = QHBoxLayout()
        top.addWidget(hint, 1)
        top.addWidget(QLabel("Seed"))
        top.addWidget(self.seed)
        top.addWidget(self.run_button)
        top.addWidget(self.stop_button)
        self.sides = {side: CompareSide(side) for side in SIDES}
        for side in self.sides.values():
            side.preset.activated.connect(lambda _i, s=side: self._apply_preset(s))
        grid = QGridLayout()
        grid.setHorizontalSpacing(16)
        grid.addWidget(self.sides["A"], 0, 0)
        grid.addWidget(self.sides["B"], 0, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(grid, 1)

    def set_presets(self, presets: Sequence[SamplerPreset],
                    current: Callable[[], dict[str, Any]]) -> None:
        """Offer ``presets`` (and 'Workbench settings', read from ``current``) per side."""
        self._presets = list(presets)
        self._current = current
        for side in self.sides.values():
            chosen = side.preset.currentText()
            side.preset.clear()
            side.preset.addItem("Load: Workbench settings")
            for preset in self._presets:
                side.preset.addItem(f"Load: {preset.name}" + (" (yours)" if preset.user else ""))
            found = side.preset.findText(chosen)
            side.preset.setCurrentIndex(max(found, 0))

    def refresh(self) -> None:
        """Sides set to 'Workbench settings' take the Workbench's current values."""
        for side in self.sides.values():
            if side.preset.currentIndex() <= 0:
                side.form.set_values(self._current())

    def load(self, side: str, values: dict[str, Any]) -> None:
        self.sides[side].form.set_values(values)

    def load_preset(self, side: str, name: str) -> None:
        for index, preset in enumerate(self._presets):
            if preset.name == name:
                self.sides[side].preset.setCurrentIndex(index + 1)
                self._apply_preset(self.sides[side])
                return
        raise KeyError(name)

    def _apply_preset(self, side: CompareSide) -> None:
        index = side.preset.currentIndex()
        base = self._current()
        if index <= 0:
            side.form.set_values(base)
            return
        keep = {k: v for k, v in base.items() if k in ("max_tokens", "stop")}
        side.form.set_values({**keep, **self._presets[index - 1].sampling})

    def values(self, side: str) -> dict[str, Any]:
        return {**self.sides[side].form.values(), "seed": self.seed.value()}

    def set_running(self, running: bool) -> None:
        self.run_button.setVisible(not running)
        self.stop_button.setVisible(running)

    def reset(self) -> None:
        for side in self.sides.values():
            side.output.clear()
            side.stats.clear()

    def set_output(self, side: str, text: str) -> None:
        edit = self.sides[side].output
        if edit.toPlainText() != text:
            edit.setPlainText(text)

    def set_stats(self, side: str, done: Done | None, error: str = "") -> None:
        self.sides[side].stats.setText(stats_line(done, error))
