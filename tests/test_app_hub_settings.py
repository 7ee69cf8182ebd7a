"""Settings > Model hub: the hub address (a mirror) goes to hub.json, the token only to the
keyring (the per-test file keyring here), and the environment variables win and say so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.widgets.hub_editor import HubEditor
from engine import paths
from engine.library import hub_settings
from engine.library.hub import HubClient


def test_a_mirror_and_a_token_are_saved_where_they_belong(qtbot, verso_home: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    editor = HubEditor()
    qtbot.addWidget(editor)
    assert "huggingface.co" in editor.endpoint_note.text()
    editor.endpoint.setText("ftp://mirror")
    editor.save_endpoint()
    assert editor.message.text().startswith("Not saved: not an http(s) address")
    editor.endpoint.setText("https://hf-mirror.example.org/")
    with qtbot.waitSignal(editor.changed):
        editor.save_endpoint()
    assert hub_settings.hub_endpoint() == "https://hf-mirror.example.org"
    assert HubClient().endpoint == "https://hf-mirror.example.org"
    editor.token.setText("hf_secret value")
    editor.save_token()
    assert "one word without spaces" in editor.message.text()
    editor.token.setText("hf_abc123")
    editor.save_token()
    assert hub_settings.hub_token() == "hf_abc123"
    assert editor.token.text() == "" and "keyring" in editor.token_note.text()
    config = paths.config_dir()
    stored = "".join(p.read_text() for p in config.rglob("*") if p.is_file())
    assert "hf_abc123" not in stored and json.loads(
        (config / "hub.json").read_text()) == {"endpoint": "https://hf-mirror.example.org"}
    editor.clear_token()
    assert hub_settings.hub_token() is None and not editor.remove_token.isEnabled()
    editor.reset_endpoint()
    assert hub_settings.hub_endpoint() == hub_settings.DEFAULT_ENDPOINT


def test_the_environment_wins_and_the_page_says_so(qtbot, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/")
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    editor = HubEditor()
    qtbot.addWidget(editor)
    assert "HF_ENDPOINT" in editor.endpoint_note.text() and not editor.endpoint.isEnabled()
    assert "HF_TOKEN" in editor.token_note.text() and not editor.token.isEnabled()
