"""A keyring backend for tests only: a JSON file in ``$VERSO_HOME`` so that CLI processes a
test starts share it. Selected with ``PYTHON_KEYRING_BACKEND`` (tests/conftest.py); never
used by the app."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keyring.backend
import keyring.errors


class FileKeyring(keyring.backend.KeyringBackend):
    priority = 1

    @staticmethod
    def _file() -> Path:
        return Path(os.environ["VERSO_HOME"]) / "test-keyring.json"

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self._file().read_text("utf-8"))
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def get_password(self, service: str, username: str) -> str | None:
        return self._read().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._read()
        data[f"{service}/{username}"] = password
        self._file().write_text(json.dumps(data), "utf-8")

    def delete_password(self, service: str, username: str) -> None:
        data = self._read()
        if data.pop(f"{service}/{username}", None) is None:
            raise keyring.errors.PasswordDeleteError(username)
        self._file().write_text(json.dumps(data), "utf-8")
