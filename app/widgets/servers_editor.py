"""Settings > Servers: the saved model servers (llama-server, vLLM, Ollama, any
OpenAI-compatible one). Addresses go to the endpoints file; API keys only to the system
keyring (or this session, where there is none, and the dialog says so)."""

from __future__ import annotations

import contextlib

from PySide6.QtCore import QObject, QThreadPool, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.errors import VersoError
from engine.remote.endpoint import Endpoint, ServerKind
from engine.remote.listing import RemoteListing, list_remote_models
from engine.remote.saved import load_endpoints, remove_endpoint, save_endpoint
from engine.secrets import delete_secret, get_secret, store_secret

_KINDS = {ServerKind.AUTO: "Detect", ServerKind.LLAMA_SERVER: "llama.cpp server",
          ServerKind.VLLM: "vLLM", ServerKind.OLLAMA: "Ollama",
          ServerKind.OPENAI: "Other OpenAI-compatible"}


class _Relay(QObject):
    tested = Signal(object)


class ServersEditor(QWidget):
    def __init__(self, engine_in_use: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.changed: set[str] = set()  # URLs whose address, kind or key changed
        in_use = QLabel(f"Models run with {engine_in_use}.")
        in_use.setObjectName("engineInUse")
        in_use.setWordWrap(True)
        self.list = QListWidget()
        self.list.currentRowChanged.connect(self._show)
        self.name = QLineEdit()
        self.name.setPlaceholderText("lab")
        self.url = QLineEdit()
        self.url.setPlaceholderText("http://gpu-box:8080")
        self.kind = QComboBox()
        for kind, label in _KINDS.items():
            self.kind.addItem(label, str(kind))
        self.key = QLineEdit()
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("none")
        self.message = QLabel()
        self.message.setObjectName("hint")
        self.message.setWordWrap(True)
        save = QPushButton("Save server")
        save.clicked.connect(self.save)
        remove = QPushButton("Remove")
        remove.clicked.connect(self.remove)
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test)
        buttons = QHBoxLayout()
        for button in (save, remove, self.test_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Address", self.url)
        form.addRow("Kind", self.kind)
        form.addRow("API key", self.key)
        layout = QVBoxLayout(self)
        layout.addWidget(in_use)
        layout.addWidget(self.list, 1)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.message)
        self._relay = _Relay(self)
        self._relay.tested.connect(self._tested)
        self._endpoints: list[Endpoint] = []
        self.reload()

    def reload(self) -> None:
        try:
            self._endpoints = load_endpoints()
        except VersoError as exc:
            self._endpoints = []
            self.message.setText(exc.message)
        self.list.clear()
        for endpoint in self._endpoints:
            self.list.addItem(f"{endpoint.name} — {endpoint.url} ({_KINDS[endpoint.kind]})")

    def _show(self, row: int) -> None:
        if not 0 <= row < len(self._endpoints):
            return
        endpoint = self._endpoints[row]
        self.name.setText(endpoint.name)
        self.url.setText(endpoint.url)
        self.kind.setCurrentIndex(max(self.kind.findData(str(endpoint.kind)), 0))
        self.key.clear()
        has_key = get_secret(endpoint.secret_name) is not None
        self.key.setPlaceholderText("saved (type to replace)" if has_key else "none")

    def _endpoint(self) -> Endpoint | None:
        name = self.name.text().strip()
        if not name:
            self.message.setText("Give the server a name.")
            return None
        try:
            return Endpoint(self.url.text(), name=name, kind=ServerKind(self.kind.currentData()))
        except VersoError as exc:
            self.message.setText(exc.message)
            return None

    def save(self) -> None:
        endpoint = self._endpoint()
        if endpoint is None:
            return
        try:
            save_endpoint(endpoint)
        except (VersoError, OSError) as exc:
            self.message.setText(f"The server could not be saved: {exc}")
            return
        notes = [f"Saved {endpoint.name}."]
        if self.key.text():
            notes.append(store_secret(endpoint.secret_name, self.key.text()).message)
            self.key.clear()
        self.changed.add(endpoint.url)
        self.message.setText(" ".join(notes))
        self.reload()

    def remove(self) -> None:
        row = self.list.currentRow()
        if not 0 <= row < len(self._endpoints):
            return
        endpoint = self._endpoints[row]
        try:
            remove_endpoint(endpoint.name)
        except (VersoError, OSError) as exc:
            self.message.setText(f"The server could not be removed: {exc}")
            return
        delete_secret(endpoint.secret_name)
        self.changed.add(endpoint.url)
        self.message.setText(f"Removed {endpoint.name}.")
        self.reload()

    def test(self) -> None:
        """List the server's models off the GUI thread and say what came back."""
        endpoint = self._endpoint()
        if endpoint is None:
            return
        key = self.key.text() or get_secret(endpoint.secret_name)
        self.test_button.setEnabled(False)
        self.message.setText(f"Connecting to {endpoint.url}…")
        relay = self._relay

        def run() -> None:
            listing = list_remote_models(endpoint, key)
            with contextlib.suppress(RuntimeError):  # the dialog closed first
                relay.tested.emit(listing)

        QThreadPool.globalInstance().start(run)

    def _tested(self, listing: RemoteListing) -> None:
        self.test_button.setEnabled(True)
        if listing.error:
            self.message.setText(listing.error)
            return
        names = ", ".join(ref.model_id for ref in listing.models) or "no models"
        self.message.setText(f"Connected to {listing.backend}: {names}.")
