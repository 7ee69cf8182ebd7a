"""The settings dialog: model loading, chat defaults (generated sampling controls), theme,
model servers and the model hub."""

from __future__ import annotations

import copy
import os
from functools import cache

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.presets import Preset
from app.settings import AppSettings
from app.widgets.hub_editor import HubEditor
from app.widgets.sampling_form import SamplingForm
from app.widgets.servers_editor import ServersEditor
from engine.gpu import GpuInfo
from engine.options import MIN_CTX, ContextPolicy, KVType

_POLICIES = {ContextPolicy.REFUSE.value: "Refuse and say how much is over",
             ContextPolicy.DROP_OLDEST.value: "Leave out the oldest messages (and say so)"}
_THEMES = {"system": "Follow the system", "light": "Light", "dark": "Dark"}
_KV = {KVType.F16.value: "f16 (best quality)", KVType.Q8_0.value: "q8_0 (half the memory)",
       KVType.Q4_0.value: "q4_0 (quarter of the memory)"}


@cache
def gpu_offload() -> tuple[bool, str]:
    """Whether GPU layers can be used, and why not."""
    try:
        from engine.build_info import build_info

        info = build_info()
    except Exception as exc:  # llama_cpp missing or broken: say so instead of crashing
        return False, f"Unavailable: the engine library could not be inspected ({exc})."
    if info.gpu_offload:
        return True, f"Backends: {', '.join(info.backends) or 'GPU'}"
    return False, ("Unavailable: this build of llama.cpp is CPU-only (no CUDA, Metal or "
                   "Vulkan backend), so every layer runs on the CPU.")


def _combo(options: dict[str, str], current: str) -> QComboBox:
    combo = QComboBox()
    for value, text in options.items():
        combo.addItem(text, value)
    combo.setCurrentIndex(max(combo.findData(current), 0))
    return combo


class SettingsDialog(QDialog):
    def __init__(self, settings: AppSettings, presets: list[Preset],
                 parent: QWidget | None = None, *, gpu: GpuInfo | None = None,
                 suggested_layers: tuple[str, int] | None = None,
                 engine_in_use: str = "Verso's llama.cpp engine") -> None:
        """``gpu``: the probed backends and devices (None while unknown);
        ``suggested_layers``: the loaded model's name and the GPU layers its fit estimate
        gives; ``engine_in_use``: who runs the loaded model (Settings > Servers says it)."""
        super().__init__(parent)
        self._gpu = gpu
        self._suggested = suggested_layers
        self.setWindowTitle("Settings")
        self.setObjectName("settingsDialog")
        self.setMinimumSize(560, 600)
        self._settings = copy.deepcopy(settings)
        tabs = QTabWidget()
        tabs.addTab(self._model_tab(settings), "Model")
        tabs.addTab(self._chat_tab(settings, presets), "Chat")
        tabs.addTab(self._appearance_tab(settings), "Appearance")
        self.servers = ServersEditor(engine_in_use)
        tabs.addTab(self.servers, "Servers")
        self.hub = HubEditor()
        self.hub_changed = False  # the hub's address or token changed (applied at once)
        self.hub.changed.connect(lambda: setattr(self, "hub_changed", True))
        tabs.addTab(self.hub, "Model hub")
        self.tabs = tabs
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(buttons)

    def _model_tab(self, settings: AppSettings) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.threads = QSpinBox()
        self.threads.setRange(0, max(os.cpu_count() or 1, 1))
        self.threads.setSpecialValueText("Automatic (all physical cores)")
        self.threads.setValue(settings.n_threads)
        self.n_ctx = QSpinBox()
        self.n_ctx.setRange(0, 262_144)
        self.n_ctx.setSingleStep(1024)
        self.n_ctx.setSpecialValueText("The model's (up to 8,192)")
        self.n_ctx.setValue(settings.n_ctx)
        self.n_ctx.setToolTip("Tokens the model can see at once. More costs memory (see the "
                              "estimate in the model list).")
        self.flash_attn = QCheckBox(
            "Use flash attention (saves memory at long contexts; slower on some CPUs)")
        self.flash_attn.setChecked(settings.flash_attn)
        self.gpu_layers = QSpinBox()
        self.gpu_layers.setRange(-1, 999)
        self.gpu_layers.setSpecialValueText("All")
        self.gpu_layers.setValue(settings.n_gpu_layers)
        available, reason = gpu_offload()
        if self._gpu is not None:
            available = available and self._gpu.usable
            reason = self._gpu.summary()
        self.gpu_auto = QCheckBox("Choose automatically: as many layers as fit in the GPU's "
                                  "free memory")
        self.gpu_auto.setChecked(settings.gpu_layers_auto and available)
        self.gpu_auto.setEnabled(available)
        self.gpu_auto.toggled.connect(
            lambda on: self.gpu_layers.setEnabled(available and not on))
        self.gpu_layers.setEnabled(available and not self.gpu_auto.isChecked())
        if available and self._suggested is not None:
            name, layers = self._suggested
            count = "all layers" if layers < 0 else f"{layers} layers"
            reason += f"\nFor {name} the fit estimate gives {count} at these settings."
        self.gpu_reason = QLabel(reason)
        self.gpu_reason.setObjectName("hint")
        self.gpu_reason.setWordWrap(True)
        self.gpu_layers.setToolTip(reason)
        self.kv_type = _combo(_KV, settings.kv_type)
        form.addRow("Threads", self.threads)
        form.addRow("Context size", self.n_ctx)
        form.addRow("", self.flash_attn)
        form.addRow("GPU layers", self.gpu_layers)
        form.addRow("", self.gpu_auto)
        form.addRow("", self.gpu_reason)
        form.addRow("KV cache type", self.kv_type)
        note = QLabel("Changes here reload the model.")
        note.setObjectName("hint")
        form.addRow("", note)
        return page

    def _chat_tab(self, settings: AppSettings, presets: list[Preset]) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        form = QFormLayout()
        self.policy = _combo(_POLICIES, settings.context_policy)
        self.policy.setToolTip("What happens when a conversation no longer fits in the "
                               "model's context")
        self.preset = QComboBox()
        self.preset.addItem("None", None)
        for preset in presets:
            self.preset.addItem(preset.name, preset.name)
        self.preset.setCurrentIndex(max(self.preset.findData(settings.default_preset), 0))
        form.addRow("When a chat is too long", self.policy)
        form.addRow("Preset for new chats", self.preset)
        layout.addLayout(form)
        title = QLabel("Default sampling (a chat can override these)")
        title.setObjectName("sectionTitle")
        reset = QPushButton("Reset to defaults")
        reset.clicked.connect(lambda: self.sampling.set_values({}))
        row = QHBoxLayout()
        row.addWidget(title, 1)
        row.addWidget(reset)
        layout.addLayout(row)
        self.sampling: SamplingForm = SamplingForm(settings.sampling)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.sampling)
        layout.addWidget(scroll, 1)
        return page

    def _appearance_tab(self, settings: AppSettings) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.theme = _combo(_THEMES, settings.theme)
        form.addRow("Theme", self.theme)
        return page

    def result_settings(self) -> AppSettings:
        result = copy.deepcopy(self._settings)
        result.n_threads = self.threads.value()
        result.n_ctx = self.n_ctx.value() and max(self.n_ctx.value(), MIN_CTX)
        result.flash_attn = self.flash_attn.isChecked()
        if self.gpu_auto.isEnabled():
            result.gpu_layers_auto = self.gpu_auto.isChecked()
        if self.gpu_layers.isEnabled():
            result.n_gpu_layers = self.gpu_layers.value()
        result.kv_type = self.kv_type.currentData()
        result.context_policy = self.policy.currentData()
        result.default_preset = self.preset.currentData()
        result.sampling = self.sampling.values()
        result.theme = self.theme.currentData()
        return result
