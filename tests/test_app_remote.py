"""The app on a model server: add it in Settings > Servers, pick one of its models in the
toolbar, chat on it, and see what that server lacks; against a real llama-server on
loopback (tests/remote_servers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.api import Feature
from engine.events import Done
from engine.options import ChatMessage, ChatRequest, SamplingParams
from engine.remote.router import EngineRouter
from tests.remote_servers import start_llama_server

KEY = "sk-verso-gui"


@pytest.fixture(scope="module")
def server(smol_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    running = start_llama_server(smol_path, tmp_path_factory.mktemp("gui-server"), slots=2,
                                 ctx=2048, api_key=KEY)
    yield running.url
    running.stop()


def test_a_server_added_in_settings_runs_the_chat(qtbot, server: str, smol_path: Path) -> None:
    from app.settings import AppSettings
    from app.widgets.settings_dialog import SettingsDialog
    from app.window import MainWindow
    from engine.remote.saved import endpoints_path, load_endpoints
    from engine.secrets import get_secret

    window = MainWindow(settings=AppSettings(n_ctx=1024, n_threads=1,
                                             model_path=str(smol_path)), autoload=True)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.bridge.loaded is not None, timeout=180_000)
    router = window.bridge.engine
    assert isinstance(router, EngineRouter)
    assert window.bridge.has(Feature.ATTENTION)  # the local engine has everything

    dialog = SettingsDialog(window.settings, [], window,
                            engine_in_use=router.capabilities.backend)
    servers = dialog.servers
    assert "Verso's llama.cpp engine" in dialog.findChild(object, "engineInUse").text()
    servers.name.setText("lab")
    servers.url.setText(server)
    servers.key.setText(KEY)
    servers.save()
    assert [e.name for e in load_endpoints()] == ["lab"]
    assert get_secret("endpoint:lab") == KEY
    assert KEY not in endpoints_path().read_text()  # the key is only in the keyring
    servers.test()
    qtbot.waitUntil(lambda: "Connected to" in servers.message.text(), timeout=30_000)
    assert "llama.cpp server" in servers.message.text()
    dialog.close()

    window.picker.refresh()
    qtbot.waitUntil(lambda: any("on lab" in window.picker.combo.itemText(i)
                                for i in range(window.picker.combo.count())), timeout=30_000)
    index = next(i for i in range(window.picker.combo.count())
                 if "on lab" in window.picker.combo.itemText(i))
    window.picker.combo.setCurrentIndex(index)
    window.picker._chosen(index)
    qtbot.waitUntil(lambda: window.bridge.loaded is not None
                    and not window.bridge.loaded.ref.is_local, timeout=60_000)
    assert router.active is not router.local and router.local.loaded is None  # memory freed
    assert "on lab" in window.picker.combo.currentText()
    assert "SmolLM2-135M-Instruct.Q4_1.gguf — on lab" in window.picker.combo.currentText()
    assert "nothing leaves it" not in window.chat.view.placeholder.text()
    assert "sent to the llama.cpp server at lab" in window.chat.view.placeholder.text()
    assert not window.bridge.has(Feature.ATTENTION)
    assert "not available with the llama.cpp server" in window.bridge.unavailable(
        Feature.ATTENTION)

    reply = window.bridge.chat(ChatRequest((ChatMessage("user", "Say hello."),),
                                           SamplingParams(temperature=0, max_tokens=8)))
    outcome: list[object] = []
    reply.finished.connect(outcome.append)
    qtbot.waitUntil(lambda: bool(outcome), timeout=60_000)
    assert isinstance(outcome[0], Done) and outcome[0].text
    window.shutdown()
