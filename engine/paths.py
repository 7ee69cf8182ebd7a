"""Where Verso keeps its files.

``VERSO_HOME`` redirects data and config to one folder (tests set it to a temp dir so they
never touch the real home); otherwise the platform's user dirs are used.
``VERSO_MODELS_DIR`` overrides only the models folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "Verso"


def _home_override() -> Path | None:
    value = os.environ.get("VERSO_HOME")
    return Path(value) if value else None


def data_dir() -> Path:
    home = _home_override()
    path = home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    home = _home_override()
    path = (
        home / "config" if home else Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    value = os.environ.get("VERSO_MODELS_DIR")
    path = Path(value) if value else data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_path() -> Path:
    return data_dir() / "verso.sqlite3"


def settings_path() -> Path:
    return config_dir() / "settings.json"


def log_dir() -> Path:
    home = _home_override()
    path = home / "logs" if home else Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def kv_snapshot_dir() -> Path:
    """Conversations' KV snapshots (disposable: deleting the folder only costs warmth)."""
    return data_dir() / "kv-snapshots"
