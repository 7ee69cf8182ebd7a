"""The main window: a sidebar of panels, the model picker in the toolbar, the status bar."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QToolBar,
    QToolButton,
    QWidget,
)

from app.background import Background
from app.bridge import EngineBridge
from app.hub_service import HubService, real_hub_service
from app.machine import machine
from app.panels.chat import ChatPanel
from app.panels.models import ModelsPanel
from app.panels.summarize import SummarizePanel
from app.panels.translate import TranslatePanel
from app.panels.workbench import WorkbenchPanel
from app.presets import load_presets
from app.settings import AppSettings
from app.theme import ICONS, ThemeManager, icon
from app.widgets.message_view import placeholder_for
from app.widgets.model_picker import ModelPicker, remote_key
from app.widgets.settings_dialog import SettingsDialog
from app.widgets.status_bar import StatusBar
from engine.api import Engine
from engine.catalog import bundled_model_path, read_model_info
from engine.catalog.fit import default_gpu_layers
from engine.errors import VersoError
from engine.events import Error, ErrorKind, ModelLoaded, Progress
from engine.library.local import ModelLibrary
from engine.model_ref import ModelRef
from engine.options import KVType, LoadSettings
from engine.remote.router import EngineRouter
from engine.store import ConversationStore

log = logging.getLogger(__name__)

def _picker_key(loaded: ModelLoaded) -> str | None:
    return loaded.local_path if loaded.ref.is_local else remote_key(loaded.ref)


_LOAD_FIELDS = ("n_threads", "n_ctx", "flash_attn", "n_gpu_layers", "kv_type",
                "gpu_layers_auto")


class MainWindow(QMainWindow):
    def __init__(self, settings: AppSettings | None = None,
                 store: ConversationStore | None = None,
                 engine_factory: Callable[[], Engine] | None = None,
                 autoload: bool = True,
                 hub_factory: Callable[[], HubService | None] = real_hub_service) -> None:
        """``engine_factory`` makes the engine the bridge drives (default: the engine
        process's ``EngineClient``; tests pass one returning a ``FakeEngine``);
        ``hub_factory`` the Models panel's model hub (tests pass a scripted one)."""
        super().__init__()
        self.setWindowTitle("Verso")
        self.setWindowIcon(QIcon(str(ICONS / "verso.svg")))
        self.resize(1180, 780)
        self.settings = settings or AppSettings.load()
        self._owns_store = store is None
        self.store = store or ConversationStore()
        interrupted = self.store.finish_interrupted()
        self.store.purge_deleted()
        app = QApplication.instance()
        assert isinstance(app, QApplication), "the main window needs a QApplication"
        self.theme = ThemeManager.for_app(app, self.settings.theme)
        self.bridge = EngineBridge(engine_factory, self)
        self.background = Background(self)
        self._hub_factory = hub_factory
        self._closed = False
        machine().probe()

        self.picker = ModelPicker()
        self.picker.load_requested.connect(self.load_model)
        self.picker.remote_requested.connect(self.load_remote)
        self.picker.cancel_requested.connect(self.bridge.cancel_load)
        self.status = StatusBar()
        self.setStatusBar(self.status)
        self.chat = ChatPanel(self.store, self.bridge, lambda: self.settings,
                              load_presets, lambda: self.picker.entries)
        self.chat.status_message.connect(lambda text: self.status.showMessage(text, 8000))
        self.chat.undo_offered.connect(self.status.show_undo)
        self.chat.replies.speed.connect(self.status.set_speed)
        self.chat.replies.context_counted.connect(self.status.set_context)
        self.chat.replies.model_needed.connect(self._load_ref)
        self.chat.replies.reply_finished.connect(self._reply_finished)
        self._build_toolbar()
        self._build_panels()
        self._build_actions()
        self.bridge.load_progress.connect(self._load_progress)
        self.bridge.model_loaded.connect(self._model_loaded)
        self.bridge.load_failed.connect(self._load_failed)
        self.bridge.load_cancelled.connect(self._load_cancelled)
        self.theme.changed.connect(self._retint)
        self.picker.refresh(self.settings.n_ctx, self.settings.kv_type)
        self.background.run(lambda: ModelLibrary().purge(), lambda _n: None,
                            lambda exc: log.warning("emptying the model trash failed: %s", exc))
        self.models.refresh()
        if interrupted:
            self.status.showMessage(f"{interrupted} reply(s) were cut off when Verso last "
                                    "closed; their text is kept.", 10000)
        elif unfinished := self.unfinished_jobs_text():
            self.status.showMessage(unfinished, 15000)
        self.bridge.start_engine()
        if autoload:
            path = self.settings.model_path
            if not path or not Path(path).exists():
                default = bundled_model_path()
                path = str(default) if default else None
            if path:
                self.load_model(path)

    def unfinished_jobs_text(self) -> str:
        """What the Summarize and Translate panels list as unfinished, in one sentence."""
        parts = []
        for count, noun, panel in ((self.summarize.interrupted.count, "summary", "Summarize"),
                                   (self.translate.interrupted.count, "translation",
                                    "Translate")):
            if count:
                plural = "summaries" if noun == "summary" else "translations"
                parts.append(f"{count} unfinished {noun if count == 1 else plural} "
                             f"(open {panel} to resume)")
        text = "; ".join(parts)
        return text[:1].upper() + text[1:] + "." if text else ""

    # ------------------------------------------------------------------ layout

    def _build_toolbar(self) -> None:
        toolbar = QToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setIconSize(QSize(18, 18))
        toolbar.addWidget(self.picker)
        spacer = QWidget()
        spacer.setSizePolicy(spacer.sizePolicy().Policy.Expanding,
                             spacer.sizePolicy().Policy.Preferred)
        toolbar.addWidget(spacer)
        self.settings_button = QToolButton()
        self.settings_button.setToolTip("Settings (Ctrl+,)")
        self.settings_button.setText("Settings")
        self.settings_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.settings_button.clicked.connect(self.open_settings)
        toolbar.addWidget(self.settings_button)
        self.addToolBar(toolbar)

    def _build_panels(self) -> None:
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFixedWidth(104)
        self.sidebar.setIconSize(QSize(22, 22))
        self.sidebar.setViewMode(QListWidget.ViewMode.IconMode)
        self.sidebar.setMovement(QListWidget.Movement.Static)
        self.sidebar.setFlow(QListWidget.Flow.TopToBottom)
        self.stack = QStackedWidget()
        self._panels: list[tuple[QListWidgetItem, str]] = []
        self._add_panel("Chat", "chat", self.chat)
        self.summarize = SummarizePanel(self.bridge)
        self.summarize.status_message.connect(lambda text: self.status.showMessage(text, 8000))
        self._add_panel("Summarize", "summarize", self.summarize)
        self.translate = TranslatePanel(self.bridge)
        self.translate.status_message.connect(lambda text: self.status.showMessage(text, 8000))
        self._add_panel("Translate", "translate", self.translate)
        self.workbench = WorkbenchPanel(self.bridge, lambda: self.settings)
        self.workbench.status_message.connect(lambda text: self.status.showMessage(text, 8000))
        self._add_panel("Workbench", "workbench", self.workbench)
        self.models = ModelsPanel(lambda: self.settings, self._hub_factory())
        self.models.status_message.connect(lambda text: self.status.showMessage(text, 8000))
        self.models.undo_offered.connect(self.status.show_undo)
        self.models.load_requested.connect(self.load_model)
        self.models.library_changed.connect(
            lambda: self.picker.refresh(self.settings.n_ctx, self.settings.kv_type))
        self._add_panel("Models", "models", self.models)
        for banner in (self.summarize.advice, self.translate.advice):
            banner.find_model.connect(self.find_model)
        self.sidebar.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.sidebar.setCurrentRow(0)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.sidebar)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self._retint(self.theme.scheme)

    def _add_panel(self, title: str, icon_name: str, panel: QWidget) -> None:
        item = QListWidgetItem(title)
        item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
        item.setSizeHint(QSize(98, 62))
        self.sidebar.addItem(item)
        self.stack.addWidget(panel)
        self._panels.append((item, icon_name))

    def _retint(self, scheme: str) -> None:
        for item, name in self._panels:
            item.setIcon(icon(name, scheme))
        self.settings_button.setIcon(icon("settings", scheme))

    def _build_actions(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self._action(file_menu, "New chat", self.chat.new_chat, QKeySequence.StandardKey.New)
        self._action(file_menu, "Import chat…", lambda: self.chat.import_conversation())
        self._action(file_menu, "Export chat as Markdown…", lambda: self._export("markdown"))
        self._action(file_menu, "Export chat as JSON…", lambda: self._export("json"))
        file_menu.addSeparator()
        self._action(file_menu, "Settings…", self.open_settings, "Ctrl+,")
        self._action(file_menu, "Quit", self.close, QKeySequence.StandardKey.Quit)
        chat_menu = menu.addMenu("&Chat")
        self._action(chat_menu, "Search chats", self.chat.focus_search,
                     QKeySequence.StandardKey.Find)
        self._action(chat_menu, "Stop reply", self.chat.stop, "Esc")
        self._action(chat_menu, "Copy last reply", self.chat.copy_last_reply, "Ctrl+Shift+C")
        self._action(chat_menu, "Chat settings…", self.chat.open_chat_settings)
        help_menu = menu.addMenu("&Help")
        self._action(help_menu, "About Verso", self.about)

    def _action(self, menu, text: str, slot: Callable[[], object],
                shortcut: str | QKeySequence.StandardKey | None = None) -> QAction:
        action = QAction(text, self)
        action.triggered.connect(lambda _checked=False: slot())
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        menu.addAction(action)
        self.addAction(action)
        return action

    def _export(self, kind: str) -> None:
        if self.chat.conversation_id is None:
            self.status.showMessage("Open a chat to export it.", 5000)
            return
        self.chat.export_conversation(self.chat.conversation_id, kind)

    # ------------------------------------------------------------------ models

    def show_panel(self, panel: QWidget) -> None:
        self.sidebar.setCurrentRow(self.stack.indexOf(panel))

    def find_model(self, language: str | None = None) -> None:
        """Open the Models panel's hub search for a model better suited to a task."""
        self.show_panel(self.models)
        self.models.find_model(language)

    def _gpu_layers_for(self, path: str, auto: bool | None = None) -> int:
        """The GPU layers to load ``path`` with: the setting, or, when GPU layers are chosen
        automatically, as many as the fit estimate puts in the GPU's free memory."""
        m = machine()
        auto = self.settings.gpu_layers_auto if auto is None else auto
        if not auto or m.gpu is None or not m.gpu.usable:
            return self.settings.n_gpu_layers
        model = next((x for x in self.models.local.models if str(x.path) == path), None)
        try:
            info = model.entry.info if model is not None else read_model_info(path)
        except VersoError:
            return self.settings.n_gpu_layers
        if info is None:
            return self.settings.n_gpu_layers
        return default_gpu_layers(info, self.settings.n_ctx, KVType(self.settings.kv_type),
                                  m.vram_free(), model.sizes if model is not None else None,
                                  self.settings.flash_attn)

    def _load_ref(self, ref: ModelRef) -> None:
        if ref.local_path is not None:
            self.load_model(ref.local_path)
        else:
            self.load_remote(ref)

    def load_remote(self, ref: ModelRef) -> None:
        """A model on a saved server: the engine router connects to it."""
        loading = self.bridge.loading
        if loading is not None and loading.model is not None and ref.same_model(loading.model):
            return
        self.picker.set_loading(ref.label)
        self.status.set_model(self.bridge.loaded, f"Connecting to {ref.location}…")
        self.bridge.load(LoadSettings.remote(ref, n_ctx=self.settings.n_ctx))

    def load_model(self, path: str) -> None:
        if self.bridge.loading is not None and self.bridge.loading.path == path:
            return
        self.picker.set_loading(Path(path).stem)
        self.status.set_model(self.bridge.loaded, "loading…" if self.bridge.loaded else
                              f"Loading {Path(path).stem}…")
        settings = self.settings.load_settings(path)
        layers = self._gpu_layers_for(path)
        if layers != settings.n_gpu_layers:
            settings = replace(settings, n_gpu_layers=layers)
        self.bridge.load(settings)

    def _load_progress(self, event: Progress) -> None:
        if self.bridge.loading is None:
            self.status.showMessage("The engine is restarting and reloading the model…", 5000)

    def _model_loaded(self, loaded: ModelLoaded) -> None:
        self.chat.view.placeholder.setText(placeholder_for(
            self.bridge.capabilities.backend, loaded.ref.is_local))
        self.picker.set_loading(None)
        self.picker.set_current(_picker_key(loaded))
        self.status.set_model(loaded)
        self.models.set_loaded(loaded.local_path)
        self._advise(loaded)
        if loaded.local_path and self.settings.model_path != loaded.local_path:
            self.settings.model_path = loaded.local_path
            self._save_settings()

    def _advise(self, loaded: ModelLoaded) -> None:
        """Give the task panels the loaded model's header facts for their advice."""
        path = loaded.local_path
        banners = (self.summarize.advice, self.translate.advice)
        if path is None:
            for banner in banners:
                banner.set_model(None)
            return

        def show(info: object) -> None:
            current = self.bridge.loaded
            if current is not None and current.local_path == path:
                for banner in banners:
                    banner.set_model(info)  # type: ignore[arg-type]

        def unreadable(_exc: Exception) -> None:
            for banner in banners:
                banner.set_model(None)

        self.background.run(lambda: read_model_info(path), show, unreadable)

    def _load_failed(self, error: Error) -> None:
        self.picker.set_loading(None)
        loaded = self.bridge.loaded
        self.picker.set_current(_picker_key(loaded) if loaded else None)
        self.status.set_model(loaded)
        self.status.showMessage(f"The model could not be loaded: {error.message}", 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, "Model not loaded", error.message,
                          QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def _load_cancelled(self) -> None:
        self.picker.set_loading(None)
        loaded = self.bridge.loaded
        self.picker.set_current(_picker_key(loaded) if loaded else None)
        self.status.set_model(loaded, "reloads with the next message" if loaded else "")
        self.status.showMessage("Loading was cancelled.", 5000)

    def _reply_finished(self, _message_id: str, event: object) -> None:
        if isinstance(event, Error) and event.kind == ErrorKind.ENGINE_CRASHED:
            self.status.set_model(self.bridge.loaded, "engine stopped; restarts with the "
                                                      "next message")

    # ---------------------------------------------------------------- settings

    def open_settings(self) -> None:
        engine = self.bridge.engine
        dialog = SettingsDialog(self.settings, load_presets(), self, gpu=machine().gpu,
                                suggested_layers=self._suggested_layers(),
                                engine_in_use=engine.capabilities.backend)
        accepted = dialog.exec() == SettingsDialog.DialogCode.Accepted
        if isinstance(engine, EngineRouter):  # a server's address or key changed
            for url in dialog.servers.changed:
                engine.forget_endpoint(url)
        if dialog.hub_changed:  # search the new hub, with the new token, from now on
            self.models.hub.hub = self._hub_factory()
        if accepted:
            self.apply_settings(dialog.result_settings())
        elif dialog.servers.changed:
            self.picker.refresh(self.settings.n_ctx, self.settings.kv_type)

    def _suggested_layers(self) -> tuple[str, int] | None:
        loaded = self.bridge.loaded
        m = machine()
        if loaded is None or loaded.local_path is None or m.gpu is None or not m.gpu.usable:
            return None
        return loaded.name, self._gpu_layers_for(loaded.local_path, auto=True)

    def apply_settings(self, new: AppSettings) -> None:
        reload = any(getattr(new, f) != getattr(self.settings, f) for f in _LOAD_FIELDS)
        self.settings = new
        self._save_settings()
        self.theme.set_mode(new.theme)
        self.picker.refresh(new.n_ctx, new.kv_type)
        self.models.local.show_models(self.models.local.models)
        loaded = self.bridge.loaded
        if reload and loaded is not None and loaded.local_path:
            self.load_model(loaded.local_path)

        self.chat.replies.count_now()

    def _save_settings(self) -> None:
        try:
            self.settings.save()
        except OSError as exc:
            self.status.showMessage(f"Settings could not be saved: {exc}", 10000)

    def about(self) -> None:
        try:
            from engine.build_info import build_info

            lines = build_info().lines()
        except Exception as exc:
            lines = [f"Build information unavailable: {exc}"]
        QMessageBox.about(self, "About Verso", "\n".join(lines))

    # ------------------------------------------------------------------ closing

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closed and not self._unsaved_replies_settled():
            event.ignore()
            return
        self.shutdown()
        super().closeEvent(event)

    def _unsaved_replies_settled(self) -> bool:
        """Closing with a reply that the full disk kept from being saved: try again, save it
        to a file elsewhere, or quit without it (the user says which); False keeps the
        window open."""
        replies = self.chat.replies
        replies.retry_unsaved()  # space may have come back since the last attempt
        while texts := replies.unsaved_texts():
            choice = self.ask_unsaved(len(texts))
            if choice == "retry":
                replies.retry_unsaved()
            elif choice == "save":
                path = self.ask_save_path()
                if path is None:
                    continue
                try:
                    path.write_text("\n\n---\n\n".join(texts) + "\n", encoding="utf-8")
                except OSError as exc:
                    QMessageBox.warning(self, "Not saved",
                                        f"The reply could not be written to {path}: {exc}")
                    continue
                return True
            else:
                return choice == "discard"
        return True

    def ask_unsaved(self, count: int) -> str:
        """"retry", "save", "discard" or "cancel" (tests replace this)."""
        what = "A reply" if count == 1 else f"{count} replies"
        box = QMessageBox(QMessageBox.Icon.Warning, "Reply not saved",
                          f"{what} could not be saved to the chat history because the disk "
                          "is full. Free some space and try again, or save the text to a "
                          "file on another disk.", parent=self)
        retry = box.addButton("Try again", QMessageBox.ButtonRole.AcceptRole)
        save = box.addButton("Save to a file…", QMessageBox.ButtonRole.ActionRole)
        discard = box.addButton("Quit without it", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(retry)
        box.exec()
        clicked = box.clickedButton()
        if clicked is retry:
            return "retry"
        if clicked is save:
            return "save"
        return "discard" if clicked is discard else "cancel"

    def ask_save_path(self) -> Path | None:
        name, _ = QFileDialog.getSaveFileName(self, "Save the reply", str(Path.home() /
                                              "verso-reply.md"), "Markdown (*.md);;Text (*.txt)")
        return Path(name) if name else None

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.chat.shutdown()
        self.summarize.shutdown()
        self.translate.shutdown()
        self.workbench.shutdown()
        self.models.shutdown()
        self.background.shutdown()
        self.bridge.shutdown()
        try:
            ModelLibrary().purge()
        except OSError:
            log.exception("emptying the model trash failed")
        try:
            self.store.purge_deleted()
        except Exception:
            log.exception("purging deleted chats failed")
        if self._owns_store:
            self.store.close()
