"""The toolbar's model picker: catalog entries with size, quantization and a memory estimate;
loading shows progress and can be cancelled."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path, PurePath

from PySide6.QtCore import QObject, Qt, QThreadPool, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from engine.catalog import CatalogEntry, estimate_memory, format_bytes, list_models
from engine.model_ref import ModelRef
from engine.options import KVType
from engine.remote.listing import RemoteListing, saved_listings

log = logging.getLogger(__name__)

PATH_ROLE = Qt.ItemDataRole.UserRole
BROWSE = "__browse__"


def describe_entry(entry: CatalogEntry, n_ctx: int = 0, kv_type: str = "f16") -> str:
    info = entry.info
    if info is None:
        return f"{entry.path.name} (unusable)"
    estimate = estimate_memory(info, n_ctx, KVType(kv_type))
    default = " (default)" if entry.bundled else ""
    return (f"{info.name}{default} · {info.quantization} · {format_bytes(info.file_size)} · "
            f"~{format_bytes(estimate.total_bytes)} RAM at {estimate.n_ctx:,} ctx")


REMOTE_PREFIX = "remote:"


def remote_key(ref: ModelRef) -> str:
    """The picker's item data for a model on a server."""
    return REMOTE_PREFIX + ref.dumps()


def _label(key: str) -> str:
    if key.startswith(REMOTE_PREFIX):
        ref = ModelRef.from_json(json.loads(key[len(REMOTE_PREFIX):]))
        return f"{_model_name(ref.model_id)} — on {ref.location}"
    return Path(key).name


def _model_name(model_id: str) -> str:
    """llama-server names its model by the file path it was started with: show the file."""
    return PurePath(model_id).name if model_id.endswith(".gguf") else model_id


class _Relay(QObject):
    listed = Signal(object)
    listed_remote = Signal(object)


class ModelPicker(QWidget):
    load_requested = Signal(str)
    remote_requested = Signal(object)  # a ModelRef on a saved server
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelPicker")
        self.combo = QComboBox()
        self.combo.setObjectName("modelCombo")
        self.combo.setMinimumContentsLength(64)
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setToolTip("The model replies come from")
        self.combo.setPlaceholderText("No model loaded")
        self.combo.activated.connect(self._chosen)
        self.progress = QProgressBar()
        self.progress.setObjectName("loadProgress")
        self.progress.setRange(0, 0)
        self.progress.setFixedWidth(120)
        self.progress.setTextVisible(False)
        self.status = QLabel()
        self.status.setObjectName("loadStatus")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop loading this model")
        self.cancel_button.clicked.connect(self.cancel_requested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(QLabel("Model"))
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.cancel_button)
        self.entries: list[CatalogEntry] = []
        self.listings: list[RemoteListing] = []
        self._current: str | None = None
        self._n_ctx = 0
        self._kv_type = "f16"
        self._relay = _Relay(self)
        self._relay.listed.connect(self.set_entries)
        self._relay.listed_remote.connect(self.set_remote)
        self.set_loading(None)

    def refresh(self, n_ctx: int = 0, kv_type: str = "f16",
                extra: Sequence[str] = ()) -> None:
        """Scan the catalog off the GUI thread (headers only, but disks can be slow)."""
        self._n_ctx, self._kv_type = n_ctx, kv_type
        relay = self._relay

        def scan() -> None:
            try:
                entries = list_models(extra)
            except Exception:
                log.exception("listing models failed")
                entries = []
            with contextlib.suppress(RuntimeError):  # the window closed first
                relay.listed.emit(entries)
            try:
                listings = saved_listings()
            except Exception:
                log.exception("listing the servers' models failed")
                return
            if listings:
                with contextlib.suppress(RuntimeError):
                    relay.listed_remote.emit(listings)

        QThreadPool.globalInstance().start(scan)

    def set_remote(self, listings: list[RemoteListing]) -> None:
        """Models on the saved servers, after the local ones, each marked with its server."""
        self.listings = list(listings)
        self.set_entries(self.entries)

    def set_entries(self, entries: list[CatalogEntry]) -> None:
        self.entries = list(entries)
        self.combo.blockSignals(True)
        self.combo.clear()
        model = self.combo.model()
        assert isinstance(model, QStandardItemModel)  # QComboBox's own model; none is set
        for entry in self.entries:
            self.combo.addItem(describe_entry(entry, self._n_ctx, self._kv_type), str(entry.path))
            index = self.combo.count() - 1
            tip = str(entry.path) if entry.ok else f"{entry.path}\nCannot be used: {entry.error}"
            self.combo.setItemData(index, tip, Qt.ItemDataRole.ToolTipRole)
            if not entry.ok:
                model.item(index).setEnabled(False)
        for listing in self.listings:
            for ref in listing.models:
                self.combo.addItem(f"{_model_name(ref.model_id)} — on {listing.endpoint.label}",
                                   remote_key(ref))
                self.combo.setItemData(self.combo.count() - 1,
                                       f"Runs on {listing.backend or listing.endpoint.url}",
                                       Qt.ItemDataRole.ToolTipRole)
            if listing.error:
                self.combo.addItem(f"{listing.endpoint.label}: unreachable", None)
                index = self.combo.count() - 1
                self.combo.setItemData(index, listing.error, Qt.ItemDataRole.ToolTipRole)
                model.item(index).setEnabled(False)
        if self._current and self.combo.findData(self._current) < 0:
            self.combo.addItem(_label(self._current), self._current)
        self.combo.addItem("Open a GGUF file…", BROWSE)
        self.combo.blockSignals(False)
        self._select(self._current)

    def set_current(self, path: str | None) -> None:
        """``path``: a local file, or ``remote_key(ref)`` for a model on a server."""
        self._current = path
        if path and self.combo.findData(path) < 0:
            self.combo.insertItem(max(self.combo.count() - 1, 0), _label(path), path)
        self._select(path)

    def _select(self, path: str | None) -> None:
        self.combo.blockSignals(True)
        index = self.combo.findData(path) if path else -1
        self.combo.setCurrentIndex(index)
        self.combo.blockSignals(False)

    def set_loading(self, name: str | None) -> None:
        loading = name is not None
        self.progress.setVisible(loading)
        self.cancel_button.setVisible(loading)
        self.status.setVisible(loading)
        self.status.setText(f"Loading {name}…" if loading else "")

    def _chosen(self, index: int) -> None:
        path = self.combo.itemData(index)
        if path == BROWSE:
            chosen, _ = QFileDialog.getOpenFileName(self, "Open a model", "",
                                                    "GGUF models (*.gguf);;All files (*)")
            self._select(self._current)
            if not chosen:
                return
            path = chosen
        if path and path != self._current:
            if path.startswith(REMOTE_PREFIX):
                self._select(self._current)  # shown once loaded
                self.remote_requested.emit(ModelRef.from_json(
                    json.loads(path[len(REMOTE_PREFIX):])))
                return
            self.load_requested.emit(path)
