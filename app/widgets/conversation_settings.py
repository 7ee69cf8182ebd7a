"""Per-conversation settings: system prompt (from a preset or written), model and sampling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.presets import Preset, delete_user_preset, save_user_preset
from app.widgets.sampling_form import SamplingForm
from engine.catalog import CatalogEntry


class ConversationSettingsDialog(QDialog):
    preset_saved = Signal(object)
    preset_deleted = Signal(str)

    def __init__(self, title: str, system_prompt: str | None, model: str | None,
                 sampling: dict[str, Any], presets: Sequence[Preset],
                 models: Sequence[CatalogEntry], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Chat settings — {title}")
        self.setMinimumSize(560, 560)
        self._presets = {p.name: p for p in presets}
        self.preset = QComboBox()
        self.preset.addItem("Apply a preset…", None)
        for preset in presets:
            self.preset.addItem(preset.name + (" (yours)" if preset.user else ""), preset.name)
            self.preset.setItemData(self.preset.count() - 1, preset.description, 3)
        self.preset.activated.connect(self._apply_preset)
        self.preset.currentIndexChanged.connect(self._update_delete)
        self.save_preset = QPushButton("Save as preset…")
        self.save_preset.clicked.connect(self._save_preset)
        self.delete_preset = QPushButton("Delete")
        self.delete_preset.setToolTip("Delete the selected preset (only your own presets)")
        self.delete_preset.clicked.connect(self._delete_preset)
        preset_row = QHBoxLayout()
        preset_row.addWidget(self.preset, 1)
        preset_row.addWidget(self.save_preset)
        preset_row.addWidget(self.delete_preset)
        self.system_prompt = QPlainTextEdit(system_prompt or "")
        self.system_prompt.setPlaceholderText("Instructions the model follows in this chat "
                                              "(optional)")
        self.model = QComboBox()
        self.model.addItem("The model chosen in the toolbar", None)
        for entry in models:
            if entry.ok and entry.info is not None:
                self.model.addItem(entry.info.name, str(entry.path))
        if model and self.model.findData(model) < 0:
            self.model.addItem(model, model)
        self.model.setCurrentIndex(max(self.model.findData(model), 0))
        self.use_defaults = QCheckBox("Use the default sampling settings")
        self.use_defaults.setChecked(not sampling)
        self.sampling = SamplingForm(sampling)
        self.sampling.setEnabled(bool(sampling))
        self.use_defaults.toggled.connect(lambda on: self.sampling.setEnabled(not on))
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.sampling)
        form = QFormLayout()
        form.addRow("Preset", preset_row)
        form.addRow("Model", self.model)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("System prompt"))
        layout.addWidget(self.system_prompt, 1)
        layout.addWidget(self.use_defaults)
        layout.addWidget(scroll, 2)
        layout.addWidget(buttons)
        self._update_delete()

    def _apply_preset(self, index: int) -> None:
        preset = self._presets.get(self.preset.itemData(index))
        if preset is None:
            return
        self.system_prompt.setPlainText(preset.system_prompt)
        self.use_defaults.setChecked(not preset.sampling)
        self.sampling.set_values(preset.sampling)

    def _selected_user_preset(self) -> Preset | None:
        preset = self._presets.get(self.preset.currentData())
        return preset if preset is not None and preset.user else None

    def _update_delete(self) -> None:
        self.delete_preset.setEnabled(self._selected_user_preset() is not None)

    def _delete_preset(self) -> None:
        preset = self._selected_user_preset()
        if preset is None:
            return
        answer = QMessageBox.question(self, "Delete preset",
                                      f"Delete your preset “{preset.name}”?")
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            delete_user_preset(preset.name)
        except OSError as exc:
            QMessageBox.warning(self, "Preset not deleted",
                                f"The preset could not be deleted: {exc}")
            return
        del self._presets[preset.name]
        self.preset.removeItem(self.preset.currentIndex())
        self.preset.setCurrentIndex(0)
        self.preset_deleted.emit(preset.name)

    def _save_preset(self) -> None:
        name, ok = QInputDialog.getText(self, "Save preset", "Name of the preset:")
        if not ok or not name.strip():
            return
        preset = Preset(name=name.strip(), system_prompt=self.system_prompt.toPlainText(),
                        sampling=self.values()["sampling"], user=True)
        try:
            save_user_preset(preset)
        except OSError as exc:
            QMessageBox.warning(self, "Preset not saved", f"The preset could not be saved: {exc}")
            return
        existing = self.preset.findData(preset.name)
        if existing >= 0:
            self.preset.removeItem(existing)
        self._presets[preset.name] = preset
        self.preset.addItem(preset.name + " (yours)", preset.name)
        self.preset.setCurrentIndex(self.preset.count() - 1)
        self.preset_saved.emit(preset)

    def values(self) -> dict[str, Any]:
        prompt = self.system_prompt.toPlainText()
        return {
            "system_prompt": prompt if prompt.strip() else None,
            "model": self.model.currentData(),
            "sampling": {} if self.use_defaults.isChecked() else self.sampling.values(),
        }
