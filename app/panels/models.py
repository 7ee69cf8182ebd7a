"""The Models panel: the models on this computer (``models_local``) and the model hub
(``models_hub``), in two tabs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QTabWidget, QVBoxLayout, QWidget

from app.hub_service import HubService
from app.panels.models_hub import HubTab
from app.panels.models_local import LocalModelsTab
from app.settings import AppSettings
from engine.library.local import ModelLibrary
from engine.tasks.advice import HUB_SEARCH

LOCAL_TAB, HUB_TAB = 0, 1


class ModelsPanel(QWidget):
    load_requested = Signal(str)
    library_changed = Signal()
    status_message = Signal(str)
    undo_offered = Signal(str, object)

    def __init__(self, settings: Callable[[], AppSettings], hub: HubService | None,
                 library: ModelLibrary | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelsPanel")
        title = QLabel("Models")
        title.setObjectName("chatTitle")
        subtitle = QLabel("The models on this computer and how well each fits it; find and "
                          "download more from the model hub.")
        subtitle.setObjectName("hint")
        self.local = LocalModelsTab(settings, library)
        self.hub = HubTab(hub)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.local, "On this computer")
        self.tabs.addTab(self.hub, "Hugging Face Hub")
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(subtitle)
        layout.addWidget(self.tabs, 1)
        self.local.load_requested.connect(self.load_requested)
        self.local.library_changed.connect(self.library_changed)
        self.local.status_message.connect(self.status_message)
        self.local.undo_offered.connect(self.undo_offered)
        self.hub.status_message.connect(self.status_message)
        self.hub.downloaded.connect(self._downloaded)
        self._pending_listed = False
        self.tabs.currentChanged.connect(self._tab_changed)

    def refresh(self) -> None:
        self.local.refresh()

    def find_model(self, language: str | None = None, query: str = HUB_SEARCH) -> None:
        """Open the Hub tab searching for a model (one that lists ``language``, if given)."""
        self.tabs.setCurrentIndex(HUB_TAB)
        self.hub.start_search(query, language)

    def _tab_changed(self, index: int) -> None:
        if index == HUB_TAB and not self._pending_listed:
            self._pending_listed = True
            self.hub.show_pending()

    def _downloaded(self, path: Path | None) -> None:
        self.library_changed.emit()
        self.local.refresh()
        if path is not None:
            self.status_message.emit(f"{path.name} is downloaded and verified: select it on "
                                     "“On this computer” and press Load.")

    def set_loaded(self, path: str | None) -> None:
        self.local.set_loaded(path)

    def shutdown(self) -> None:
        self.local.shutdown()
        self.hub.shutdown()
