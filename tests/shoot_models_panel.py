"""``python -m tests.shoot_models_panel OUTDIR``: screenshots of the Models panel (local tab;
hub tab with results and a download in progress) and of the Translate panel's advice, in a
throwaway VERSO_HOME, with the real engine and the bundled model loaded. The hub is the
tests' scripted one (no network here); the models on disk are real."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "screenshots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    home = Path(tempfile.mkdtemp(prefix="verso-shots-"))
    os.environ["VERSO_HOME"] = str(home)
    os.environ["VERSO_MODELS_DIR"] = str(home / "models")

    from PySide6.QtWidgets import QApplication

    from app.panels.models import LOCAL_TAB
    from app.screenshots import _settle, _wait
    from app.settings import AppSettings
    from app.window import MainWindow
    from engine.catalog import bundled_model_path
    from tests.conftest import GEMMA_PATH
    from tests.fake_hub import FakeFile, FakeHub, FakeModel

    smol = bundled_model_path()
    assert smol is not None
    (home / "models").mkdir(parents=True, exist_ok=True)
    if GEMMA_PATH.exists():
        shutil.copy(GEMMA_PATH, home / "models" / GEMMA_PATH.name)
    repo = "bartowski/Qwen2.5-1.5B-Instruct-GGUF"
    sizes = {"Q2_K": 676, "Q3_K_M": 824, "Q4_K_M": 986, "Q5_K_M": 1130, "Q6_K": 1270,
             "Q8_0": 1650, "F16": 3090}
    files = [FakeFile(repo, f"Qwen2.5-1.5B-Instruct-{q}.gguf", (mb * 1_000_000,), q)
             for q, mb in sizes.items()]
    hub = FakeHub(smol, results=[
        FakeModel(repo, downloads=412_118, likes=48,
                  tags=("gguf", "en", "zh", "fr", "es", "pt", "de", "it", "ru", "ja")),
        FakeModel("bartowski/SmolLM2-1.7B-Instruct-GGUF", downloads=96_210, likes=21,
                  tags=("gguf", "en")),
        FakeModel("unsloth/gemma-3-1b-it-GGUF", downloads=388_450, likes=97,
                  tags=("gguf", "en")),
        FakeModel("bartowski/Llama-3.2-1B-Instruct-GGUF", downloads=702_338, likes=64,
                  tags=("gguf", "en", "de", "fr", "it", "pt", "hi", "es", "th"))],
        repo_files={repo: files}, step_bytes=4_000_000, step_s=0.05)

    app = QApplication.instance() or QApplication([sys.argv[0]])
    window = MainWindow(settings=AppSettings(n_ctx=4096, theme="light"),
                        hub_factory=lambda: hub)
    window.resize(1280, 860)
    window.show()
    _wait(app, lambda: window.bridge.loaded is not None, 120, "the model to load")
    _wait(app, lambda: len(window.models.local.models) >= 1, 30, "the model list")
    _wait(app, lambda: window.translate.advice.advice is not None, 30, "the advice")
    _settle(app, 1.0)

    window.show_panel(window.models)
    window.models.tabs.setCurrentIndex(LOCAL_TAB)
    window.models.local.table.selectRow(0)
    _settle(app, 0.5)
    window.grab().save(str(out / "models-local-light.png"))

    window.find_model("de")
    _wait(app, lambda: window.models.hub.table.rowCount() > 0, 10, "hub results")
    window.models.hub.table.selectRow(0)
    _wait(app, lambda: window.models.hub.selected_file() is not None, 10, "files")
    window.models.hub.download_selected()
    _wait(app, lambda: bool(window.models.hub.rows)
          and "left" in window.models.hub.rows[0].status.text(), 10, "progress")
    _settle(app, 1.5)
    window.grab().save(str(out / "models-hub-light.png"))
    hub.hold.set()

    window.show_panel(window.translate)
    window.translate.target.setCurrentText("German")
    _settle(app, 0.5)
    window.grab().save(str(out / "translate-advice-light.png"))
    window.theme.set_mode("dark")
    window.show_panel(window.models)
    window.models.tabs.setCurrentIndex(LOCAL_TAB)
    _settle(app, 0.5)
    window.grab().save(str(out / "models-local-dark.png"))
    window.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
