"""The Models panel's first tab: the models on this computer with their facts and a fit
verdict for this machine; Load, Import (copy or link), Reveal in the file manager, Delete
with Undo. Listing, importing and deleting run off the GUI thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QBrush, QColor, QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.background import Background
from app.machine import machine
from app.settings import AppSettings
from engine.catalog.fit import Fit, FitVerdict
from engine.errors import Cancelled
from engine.library.local import Deleted, LocalModel, ModelLibrary
from engine.options import KVType
from engine.units import format_bytes

NAME, SIZE, QUANT, CONTEXT, FIT, WHERE = range(6)
FIT_COLOURS = {Fit.FITS: "#2e7d32", Fit.TIGHT: "#b26a00", Fit.NO: "#c62828",
               Fit.UNKNOWN: "#667080"}


def verdict_for(model: LocalModel, settings: AppSettings) -> FitVerdict | None:
    m = machine()
    layers = settings.n_gpu_layers if m.gpu is not None and m.gpu.usable else 0
    try:
        kv = KVType(settings.kv_type)
    except ValueError:
        kv = KVType.F16
    return model.verdict(settings.n_ctx, kv, ram_free=m.ram_free(), n_gpu_layers=layers,
                         vram_free=m.vram_free(), flash_attn=settings.flash_attn)


class LocalModelsTab(QWidget):
    load_requested = Signal(str)
    library_changed = Signal()
    status_message = Signal(str)
    undo_offered = Signal(str, object)  # text, callable

    def __init__(self, settings: Callable[[], AppSettings],
                 library: ModelLibrary | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self.library = library or ModelLibrary()
        self.background = Background(self)
        self.models: list[LocalModel] = []
        self.loaded_path: str | None = None
        self._import_cancel: threading.Event | None = None

        self.facts = QLabel()
        self.facts.setObjectName("machineFacts")
        self.facts.setWordWrap(True)
        self.table = QTableWidget(0, 6)
        self.table.setObjectName("localModels")
        self.table.setHorizontalHeaderLabels(["Model", "Size", "Quantization", "Context",
                                              "Fit on this machine", "Where"])
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        for col in (SIZE, QUANT, CONTEXT, FIT, WHERE):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.itemSelectionChanged.connect(self._selected)
        self.table.cellDoubleClicked.connect(lambda _r, _c: self.load_selected())
        self.detail = QLabel()
        self.detail.setObjectName("hint")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.load_button = QPushButton("Load")
        self.load_button.setObjectName("primaryButton")
        self.load_button.clicked.connect(self.load_selected)
        self.import_button = QToolButton()
        self.import_button.setText("Import…")
        self.import_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.import_button)
        menu.addAction("Copy a GGUF file into the models folder…",
                       lambda: self._choose_import(link=False))
        menu.addAction("Link a GGUF file (use it where it is)…",
                       lambda: self._choose_import(link=True))
        self.import_button.setMenu(menu)
        self.reveal_button = QPushButton("Reveal in file manager")
        self.reveal_button.clicked.connect(self.reveal_selected)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        buttons = QHBoxLayout()
        for b in (self.load_button, self.import_button, self.reveal_button,
                  self.delete_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_button)

        self.import_progress = QProgressBar()
        self.import_progress.setFormat("Copying… %p%")
        self.import_cancel = QPushButton("Cancel")
        self.import_cancel.clicked.connect(self.cancel_import)
        self.import_row = QWidget()
        row = QHBoxLayout(self.import_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.import_progress, 1)
        row.addWidget(self.import_cancel)
        self.import_row.hide()
        self.error = QLabel()
        self.error.setObjectName("documentError")
        self.error.setWordWrap(True)
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        self.error.hide()

        layout = QVBoxLayout(self)
        layout.addWidget(self.facts)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.detail)
        layout.addWidget(self.import_row)
        layout.addWidget(self.error)
        layout.addLayout(buttons)
        machine().gpu_ready.connect(self._gpu_known)
        self._update_buttons()

    # ------------------------------------------------------------------ listing

    def _gpu_known(self, _info: object) -> None:
        self.show_models(self.models)

    def refresh(self) -> None:
        self.background.run(self.library.models, self.show_models, self._failed)

    def show_models(self, models: list[LocalModel]) -> None:
        selected = self.selected()
        self.models = list(models)
        settings = self._settings()
        self._show_facts(settings)
        self.table.setRowCount(len(self.models))
        for row, model in enumerate(self.models):
            loaded = self.loaded_path is not None and str(model.path) == self.loaded_path
            name = model.name + (" (loaded)" if loaded else "")
            verdict = verdict_for(model, settings)
            fit_text = verdict.fit.value if verdict else "unusable"
            context = f"{model.context_length:,}" if model.context_length else "—"
            cells = (name, format_bytes(model.size), model.quantization or "—", context,
                     fit_text, model.source)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(self._tooltip(model, verdict))
                if col == FIT:
                    colour = FIT_COLOURS[verdict.fit] if verdict else FIT_COLOURS[Fit.NO]
                    item.setForeground(QBrush(QColor(colour)))
                self.table.setItem(row, col, item)
        if selected is not None:
            self.select_path(selected.path)
        elif self.models:
            self.table.selectRow(0)
        self._selected()

    def _show_facts(self, settings: AppSettings) -> None:
        m = machine()
        ram = m.ram_free()
        memory = f"{format_bytes(ram)} of memory free" if ram is not None else \
            "free memory unknown"
        ctx = f"{settings.n_ctx:,} tokens" if settings.n_ctx else "each model's own (≤ 8,192)"
        self.facts.setText(f"This machine: {memory}. {m.gpu_summary()} Verdicts are for the "
                           f"settings in use: context {ctx}, KV cache {settings.kv_type}"
                           + (f", {settings.n_gpu_layers} GPU layers"
                              if settings.n_gpu_layers and m.vram_free() else "") + ".")

    def _tooltip(self, model: LocalModel, verdict: FitVerdict | None) -> str:
        lines = [str(model.path)]
        if model.entry.error:
            lines.append(f"Cannot be used: {model.entry.error}")
        if verdict is not None:
            lines.append(verdict.describe())
        return "\n".join(lines)

    def selected(self) -> LocalModel | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.models):
            return None
        return self.models[rows[0].row()]

    def select_path(self, path: str | Path) -> None:
        for row, model in enumerate(self.models):
            if str(model.path) == str(path):
                self.table.selectRow(row)
                return

    def _selected(self) -> None:
        model = self.selected()
        if model is None:
            self.detail.setText("No model selected." if self.models else
                                "No models yet: import a GGUF file or download one from the "
                                "Hub tab.")
        else:
            verdict = verdict_for(model, self._settings())
            text = [str(model.path)]
            if model.entry.error:
                text.append(f"Cannot be used: {model.entry.error}")
            if verdict is not None:
                text.append(verdict.describe())
            self.detail.setText("\n".join(text))
        self._update_buttons()

    def _update_buttons(self) -> None:
        model = self.selected()
        busy = not self.import_row.isHidden()
        self.load_button.setEnabled(model is not None and model.entry.ok)
        self.reveal_button.setEnabled(model is not None)
        self.delete_button.setEnabled(model is not None and model.deletable)
        self.import_button.setEnabled(not busy)

    def set_loaded(self, path: str | None) -> None:
        self.loaded_path = path
        self.show_models(self.models)

    # ------------------------------------------------------------------ actions

    def load_selected(self) -> None:
        model = self.selected()
        if model is not None and model.entry.ok:
            self.load_requested.emit(str(model.path))

    def reveal_selected(self) -> None:
        model = self.selected()
        if model is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(model.path.parent)))

    def _choose_import(self, link: bool) -> None:
        title = "Link a GGUF model" if link else "Import a GGUF model"
        chosen, _ = QFileDialog.getOpenFileName(self, title, "",
                                                "GGUF models (*.gguf);;All files (*)")
        if chosen:
            self.import_file(chosen, link=link)

    def import_file(self, path: str, link: bool = False) -> None:
        cancel = threading.Event()
        self._import_cancel = cancel
        self.error.hide()
        self.import_progress.setRange(0, 0 if link else 1000)
        self.import_progress.setValue(0)
        self.import_row.setVisible(not link)
        self._update_buttons()
        progress = self._progress_relay()

        def work() -> Path:
            return self.library.import_model(path, link=link, progress=progress,
                                             cancelled=cancel.is_set)

        def done(target: Path) -> None:
            self._import_finished()
            verb = "Linked" if link else "Imported"
            self.status_message.emit(f"{verb} {Path(path).name}.")
            self.library_changed.emit()
            def listed(models: list[LocalModel]) -> None:
                self.show_models(models)
                self.select_path(target)

            self.background.run(self.library.models, listed, self._failed)

        def failed(exc: Exception) -> None:
            self._import_finished()
            if isinstance(exc, Cancelled):
                self.status_message.emit("Import cancelled; nothing was added.")
                return
            self._failed(exc)

        self.background.run(work, done, failed)

    def _progress_relay(self) -> Callable[[int, int], None]:
        bar = self.import_progress
        deliver = self.background

        def progress(done: int, total: int) -> None:
            value = int(done * 1000 / total) if total else 1000
            deliver.post(bar.setValue, value)

        return progress

    def cancel_import(self) -> None:
        if self._import_cancel is not None:
            self._import_cancel.set()

    def _import_finished(self) -> None:
        self._import_cancel = None
        self.import_row.hide()
        self._update_buttons()

    def delete_selected(self, confirm: bool = True) -> None:
        model = self.selected()
        if model is None or not model.deletable:
            return
        if confirm and not self._confirm_delete(model):
            return
        path = model.path

        def done(deleted: Deleted) -> None:
            what = "Removed the link to" if deleted.unlinked else "Deleted"
            self.undo_offered.emit(f"{what} {model.name}.", lambda: self.undo(deleted))
            self.library_changed.emit()
            self.refresh()

        self.background.run(lambda: self.library.delete(path), done, self._failed)

    def _confirm_delete(self, model: LocalModel) -> bool:
        if model.linked:
            text = (f"Remove {model.name} from the library? The file stays where it is:\n"
                    f"{model.path}")
        else:
            parts = f" ({len(model.files)} files)" if len(model.files) > 1 else ""
            text = (f"Delete {model.name}{parts}, {format_bytes(model.size)}, from the models "
                    f"folder?\n{model.path}\n\nYou can undo this for a few seconds.")
        if self.loaded_path == str(model.path):
            text += "\n\nIt is loaded now and stays loaded until another model is loaded."
        answer = QMessageBox.question(self, "Delete model", text,
                                      QMessageBox.StandardButton.Yes
                                      | QMessageBox.StandardButton.Cancel,
                                      QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    def undo(self, deleted: Deleted) -> None:
        def done(_paths: list[Path]) -> None:
            self.status_message.emit(f"Restored {deleted.name}.")
            self.library_changed.emit()
            self.refresh()

        self.background.run(lambda: self.library.restore(deleted.id), done, self._failed)

    def _failed(self, exc: Exception) -> None:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        self.error.setText(message)
        self.error.show()
        self.status_message.emit(message)

    def shutdown(self) -> None:
        self.cancel_import()
        self.background.shutdown()
