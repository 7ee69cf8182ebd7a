"""Settings > Model hub: which hub the Models panel searches (huggingface.co or a mirror)
and the access token for gated or private models. The address goes to the config folder's
``hub.json``; the token only to the system keyring (or this session, where there is none,
and the page says so). ``HF_ENDPOINT`` and ``HF_TOKEN`` win when set, and the page says that
too."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.library import hub_settings


class HubEditor(QWidget):
    changed = Signal()  # the endpoint or the token changed: the Models panel searches anew

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.endpoint = QLineEdit()
        self.endpoint.setPlaceholderText(hub_settings.DEFAULT_ENDPOINT)
        use = QPushButton("Use this hub")
        use.clicked.connect(self.save_endpoint)
        default = QPushButton("Back to huggingface.co")
        default.clicked.connect(self.reset_endpoint)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("hf_…")
        save_token = QPushButton("Save token")
        save_token.clicked.connect(self.save_token)
        self.remove_token = QPushButton("Remove token")
        self.remove_token.clicked.connect(self.clear_token)
        self.endpoint_note = QLabel()
        self.token_note = QLabel()
        self.message = QLabel()
        for label in (self.endpoint_note, self.token_note, self.message):
            label.setObjectName("hint")
            label.setWordWrap(True)
        endpoint_row = QHBoxLayout()
        endpoint_row.addWidget(self.endpoint, 1)
        endpoint_row.addWidget(use)
        endpoint_row.addWidget(default)
        token_row = QHBoxLayout()
        token_row.addWidget(self.token, 1)
        token_row.addWidget(save_token)
        token_row.addWidget(self.remove_token)
        form = QFormLayout()
        form.addRow("Hub address", endpoint_row)
        form.addRow("", self.endpoint_note)
        form.addRow("Access token", token_row)
        form.addRow("", self.token_note)
        about = QLabel("A mirror of the Hugging Face Hub (for example inside a company network) "
                       "works the same way. A token is needed only for gated or private "
                       "models; make one at huggingface.co/settings/tokens (read access is "
                       "enough).")
        about.setObjectName("hint")
        about.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(about)
        layout.addWidget(self.message)
        layout.addStretch(1)
        self.refresh()

    def refresh(self) -> None:
        source = hub_settings.endpoint_source()
        try:
            current = hub_settings.hub_endpoint()
        except ValueError as exc:
            current = f"(HF_ENDPOINT is not usable: {exc})"
        self.endpoint.setText("" if source == "default" else current)
        from_env = source == "HF_ENDPOINT"
        self.endpoint.setEnabled(not from_env)
        self.endpoint_note.setText(
            f"Set by the HF_ENDPOINT environment variable: {current}." if from_env else
            f"Models are searched and downloaded at {current}.")
        status = hub_settings.token_status()
        self.token.clear()
        self.token.setEnabled(status.source != "HF_TOKEN")
        self.remove_token.setEnabled(status.source == "keyring")
        self.token_note.setText(f"Token: {status.describe()}." if status.present else
                                "Token: none saved.")

    def save_endpoint(self) -> None:
        text = self.endpoint.text().strip()
        try:
            hub_settings.set_endpoint(text or None)
        except ValueError as exc:
            self.message.setText(f"Not saved: {exc}.")
            return
        except OSError as exc:
            self.message.setText(f"Not saved: the settings could not be written ({exc}).")
            return
        self.message.setText("Saved." if text else "Back to huggingface.co.")
        self.refresh()
        self.changed.emit()

    def reset_endpoint(self) -> None:
        self.endpoint.clear()
        self.save_endpoint()

    def save_token(self) -> None:
        try:
            stored = hub_settings.store_token(self.token.text())
        except ValueError as exc:
            self.message.setText(f"Not saved: {exc}.")
            return
        self.message.setText(stored.message)
        self.refresh()
        self.changed.emit()

    def clear_token(self) -> None:
        hub_settings.clear_token()
        self.message.setText("The token was removed from the keyring.")
        self.refresh()
        self.changed.emit()
