"""Sampling controls generated from ``SamplingParams`` field metadata (ranges, steps, help),
so the schema in ``engine.options`` is the only place an option is described."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QPlainTextEdit,
    QSpinBox,
    QWidget,
)

from engine.options import SamplingParams
from engine.text_lists import escape, unescape

SKIPPED = frozenset({"grammar", "logit_bias", "n_probs"})
_INT_LIMIT = 2**31 - 1

SamplingControl = QCheckBox | QSpinBox | QDoubleSpinBox | QPlainTextEdit


_ACRONYMS = {"dry": "DRY", "xtc": "XTC"}


def _label(name: str) -> str:
    words = name.split("_")
    words[0] = _ACRONYMS.get(words[0], words[0].capitalize())
    return " ".join(words)


class SamplingForm(QWidget):
    """``values()`` returns only the fields that differ from ``SamplingParams`` defaults."""

    def __init__(self, values: dict[str, Any] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controls: dict[str, SamplingControl] = {}
        self._escaped: set[str] = set()  # text lists shown with escapes (\n for a line break)
        layout = QFormLayout(self)
        defaults = SamplingParams()
        for f in fields(SamplingParams):
            if f.name in SKIPPED:
                continue
            default = getattr(defaults, f.name)
            lo, hi, step = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("step")
            help_text = f.metadata.get("help", "")
            if isinstance(default, bool):
                control: SamplingControl = QCheckBox(help_text)
            elif isinstance(default, int):
                control = QSpinBox()
                control.setRange(int(lo if lo is not None else -_INT_LIMIT),
                                 int(min(hi if hi is not None else _INT_LIMIT, _INT_LIMIT)))
            elif isinstance(default, float):
                control = QDoubleSpinBox()
                control.setDecimals(3 if step and step < 0.01 else 2)
                control.setRange(float(lo if lo is not None else -1e9),
                                 float(hi if hi is not None else 1e9))
                control.setSingleStep(float(step or 0.1))
            elif isinstance(default, tuple) and f.type == "tuple[str, ...]":
                control = QPlainTextEdit()
                control.setPlaceholderText("One per line" + (r" (\n: a line break)"
                                                             if f.metadata.get("escaped") else ""))
                control.setFixedHeight(56)
                if f.metadata.get("escaped"):
                    self._escaped.add(f.name)
            else:
                continue
            control.setObjectName(f"sampling_{f.name}")
            shown = ("; ".join(escape(v) for v in default) if f.name in self._escaped
                     else repr(default))
            control.setToolTip(f"{help_text} (default {shown})")
            self.controls[f.name] = control
            layout.addRow("" if isinstance(control, QCheckBox) else _label(f.name), control)
        self.set_values(values or {})

    def set_values(self, values: dict[str, Any]) -> None:
        defaults = SamplingParams()
        for name, control in self.controls.items():
            value = values.get(name, getattr(defaults, name))
            if isinstance(control, QPlainTextEdit):
                show = escape if name in self._escaped else str
                control.setPlainText("\n".join(show(v) for v in value or ()))
            elif isinstance(control, QCheckBox):
                control.setChecked(bool(value))
            elif isinstance(control, QSpinBox):
                control.setValue(int(value))
            else:
                control.setValue(float(value))

    def values(self) -> dict[str, Any]:
        defaults = SamplingParams()
        changed: dict[str, Any] = {}
        for name, control in self.controls.items():
            if isinstance(control, QPlainTextEdit):
                read = unescape if name in self._escaped else str
                value: Any = [read(line) for line in control.toPlainText().split("\n") if line]
                if tuple(value) != getattr(defaults, name):
                    changed[name] = value
                continue
            value = control.isChecked() if isinstance(control, QCheckBox) else control.value()
            if isinstance(control, QDoubleSpinBox):
                value = round(value, control.decimals())
            if value != getattr(defaults, name):
                changed[name] = value
        return changed
