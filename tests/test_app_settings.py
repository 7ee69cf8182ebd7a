"""Settings file, presets, and the settings dialogs generated from the option schema."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from PySide6.QtWidgets import QDoubleSpinBox, QSpinBox

from app import presets as presets_module
from app import settings as settings_module
from app.presets import Preset, load_presets, save_user_preset
from app.settings import AppSettings, sampling_from
from app.widgets import settings_dialog
from app.widgets.sampling_form import SKIPPED, SamplingForm
from app.widgets.settings_dialog import SettingsDialog
from engine import paths
from engine.options import ContextPolicy, KVType, SamplingParams


def test_settings_round_trip_in_verso_home(verso_home):
    settings = AppSettings(n_threads=2, n_ctx=4096, flash_attn=False, kv_type="q8_0",
                           theme="dark", context_policy="drop_oldest",
                           sampling={"temperature": 0.2, "stop": ["###"]})
    settings.save()
    path = paths.settings_path()
    assert path.is_relative_to(verso_home)
    assert json.loads(path.read_text())["theme"] == "dark"
    assert list(path.parent.glob("*.tmp")) == []
    loaded = AppSettings.load()
    assert loaded == settings
    load = loaded.load_settings("/m.gguf")
    assert (load.n_ctx, load.n_threads, load.flash_attn, load.kv_type) == \
        (4096, 2, False, KVType.Q8_0)
    assert loaded.policy() is ContextPolicy.DROP_OLDEST
    assert loaded.sampling_params().stop == ("###",)


def test_bad_or_corrupt_settings_fall_back_to_defaults():
    path = paths.settings_path()
    path.write_text("{not json")
    assert AppSettings.load() == AppSettings()
    path.write_text(json.dumps({"theme": "purple", "n_ctx": "big", "kv_type": "q9",
                                "sampling": {"temperature": 9.0, "top_k": 5, "bogus": 1}}))
    loaded = AppSettings.load()
    assert loaded.theme == "system" and loaded.n_ctx == 0 and loaded.kv_type == "f16"
    assert loaded.sampling == {"top_k": 5}


def test_atomic_write_keeps_the_old_file_when_writing_fails(monkeypatch):
    AppSettings(theme="dark").save()
    before = paths.settings_path().read_text()

    def broken_dump(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(settings_module.json, "dump", broken_dump)
    with pytest.raises(OSError):
        AppSettings(theme="light").save()
    assert paths.settings_path().read_text() == before
    assert list(paths.settings_path().parent.glob("*.tmp")) == []


def test_sampling_layers_override_in_order():
    params = sampling_from({"temperature": 0.1, "top_k": 3}, {"top_k": 7})
    assert (params.temperature, params.top_k) == (0.1, 7)
    assert params.top_p == SamplingParams().top_p


def test_sampling_form_is_generated_from_the_schema(qtbot):
    form = SamplingForm({"temperature": 0.3})
    qtbot.addWidget(form)
    expected = {f.name for f in fields(SamplingParams)} - SKIPPED
    assert set(form.controls) == expected
    for f in fields(SamplingParams):
        control = form.controls.get(f.name)
        if isinstance(control, QSpinBox | QDoubleSpinBox):
            assert control.minimum() == f.metadata["min"]
            assert control.maximum() == min(f.metadata["max"], 2**31 - 1)
            assert f.metadata["help"] in control.toolTip()
    assert form.values() == {"temperature": 0.3}
    form.controls["top_k"].setValue(12)
    form.controls["stop"].setPlainText("END\n###")
    assert form.values() == {"temperature": 0.3, "top_k": 12, "stop": ["END", "###"]}


@pytest.mark.parametrize("available", [False, True])
def test_gpu_layers_greyed_out_with_the_reason(qtbot, monkeypatch, available):
    reason = "Unavailable: CPU-only build" if not available else "Backends: CUDA"
    monkeypatch.setattr(settings_dialog, "gpu_offload", lambda: (available, reason))
    dialog = SettingsDialog(AppSettings(n_gpu_layers=0, gpu_layers_auto=False), load_presets())
    qtbot.addWidget(dialog)
    assert dialog.gpu_layers.isEnabled() is available
    assert dialog.gpu_reason.text() == reason
    dialog.n_ctx.setValue(2048)
    dialog.policy.setCurrentIndex(dialog.policy.findData("drop_oldest"))
    dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
    dialog.sampling.controls["temperature"].setValue(0.0)
    result = dialog.result_settings()
    assert (result.n_ctx, result.context_policy, result.theme) == (2048, "drop_oldest", "dark")
    assert result.sampling == {"temperature": 0.0}


def test_real_build_info_decides_gpu_layers():
    settings_dialog.gpu_offload.cache_clear()
    available, reason = settings_dialog.gpu_offload()
    assert reason
    if not available:
        assert "Unavailable" in reason


def test_shipped_and_user_presets():
    shipped = load_presets()
    assert len(shipped) >= 3
    assert all(p.system_prompt and not p.user for p in shipped)
    first = shipped[0]
    path = save_user_preset(Preset(first.name, "Talk like a pirate.", sampling={"top_k": 9}))
    assert path.is_relative_to(paths.config_dir())
    merged = {p.name: p for p in load_presets()}
    assert merged[first.name].system_prompt == "Talk like a pirate." and merged[first.name].user
    assert merged[first.name].sampling == {"top_k": 9}
    assert len(merged) == len(shipped)
    assert presets_module.delete_user_preset(first.name)


def test_chat_settings_dialog_applies_and_saves_presets(qtbot, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from app.widgets.conversation_settings import ConversationSettingsDialog

    presets = load_presets()
    writer = next(p for p in presets if p.sampling)
    dialog = ConversationSettingsDialog("Chat", None, None, {}, presets, [])
    qtbot.addWidget(dialog)
    assert dialog.values() == {"system_prompt": None, "model": None, "sampling": {}}
    dialog.preset.setCurrentIndex(dialog.preset.findData(writer.name))
    dialog.preset.activated.emit(dialog.preset.currentIndex())
    values = dialog.values()
    assert values["system_prompt"] == writer.system_prompt
    assert values["sampling"] == writer.sampling
    dialog.system_prompt.setPlainText("Answer like a sailor.")
    monkeypatch.setattr(QInputDialog, "getText",
                        staticmethod(lambda *a, **k: ("Sailor", True)))
    dialog.save_preset.click()
    sailor = {p.name: p for p in load_presets()}["Sailor"]
    assert sailor.user and sailor.system_prompt == "Answer like a sailor."
    assert sailor.sampling == writer.sampling
