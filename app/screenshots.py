"""``python -m app.screenshots OUTDIR``: render each panel in light and dark to PNG files,
with a real reply from the default model. Runs in a throwaway VERSO_HOME."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtCore import QCoreApplication

EARLIER = ("Name three colours of the rainbow.",)
SHOWN = ("Give me a recipe for pancakes with a list of ingredients and numbered steps.",
         "Compare cats and dogs in a Markdown table.",
         "Explain Python lists with a bullet list and a short code example.")


def _wait(app: QCoreApplication, condition: Callable[[], bool], timeout: float,
          what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.01)


def _settle(app: QCoreApplication, seconds: float = 0.3) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "screenshots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["VERSO_HOME"] = tempfile.mkdtemp(prefix="verso-screenshots-")
    os.environ["VERSO_MODELS_DIR"] = str(Path(os.environ["VERSO_HOME"]) / "models")

    from PySide6.QtWidgets import QApplication

    from app.document_screenshots import capture_documents, prepare_documents
    from app.presets import load_presets
    from app.settings import AppSettings
    from app.widgets.settings_dialog import SettingsDialog
    from app.window import MainWindow
    from app.workbench_screenshots import capture_workbench, prepare_workbench

    app = QApplication.instance() or QApplication([sys.argv[0]])
    settings = AppSettings(n_ctx=4096, theme="light", default_preset="Helpful assistant",
                           sampling={"temperature": 0.0, "top_k": 1, "max_tokens": 160,
                                     "repeat_penalty": 1.1})
    window = MainWindow(settings=settings)
    window.resize(1280, 1000)
    window.show()
    _wait(app, lambda: window.bridge.loaded is not None, 120, "the model to load")
    finished: list[str] = []
    window.chat.replies.reply_finished.connect(lambda message_id, _e: finished.append(message_id))
    for prompts in (EARLIER, SHOWN):
        window.chat.new_chat()
        for prompt in prompts:
            count = len(finished)
            window.chat.send(prompt)

            def replied(c: int = count) -> bool:
                return len(finished) > c

            _wait(app, replied, 300, "the reply")
        if prompts is EARLIER and window.chat.conversation_id:
            window.chat.set_pinned(window.chat.conversation_id, True)
    window.chat.composer.edit.setPlainText("Thanks! Can you also show list comprehensions?")
    _settle(app, 1.0)
    prepare_workbench(app, window, _wait)
    prepare_documents(app, window, _wait)
    window.sidebar.setCurrentRow(0)
    written = []
    for scheme in ("light", "dark"):
        window.theme.set_mode(scheme)
        _settle(app, 0.5)
        window.chat.view.scroll_to_bottom()
        _settle(app)
        path = out / f"chat-{scheme}.png"
        window.grab().save(str(path))
        written.append(path)
        dialog = SettingsDialog(window.settings, load_presets(), window)
        dialog.tabs.setCurrentIndex(0)
        dialog.show()
        _settle(app)
        for index, name in ((0, "model"), (1, "chat")):
            dialog.tabs.setCurrentIndex(index)
            _settle(app, 0.2)
            path = out / f"settings-{name}-{scheme}.png"
            dialog.grab().save(str(path))
            written.append(path)
        dialog.close()
        written += capture_workbench(app, window, out, scheme, _settle)
        written += capture_documents(app, window, out, scheme, _settle)
    window.close()
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
