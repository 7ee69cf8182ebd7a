"""Where the model hub is and who Verso is there: the endpoint and the access token.

The endpoint is ``HF_ENDPOINT`` when set (a mirror, or the tests' loopback hub), else the one
saved with ``set_endpoint`` (``hub.json`` in the config folder), else huggingface.co.

The token is ``HF_TOKEN`` when set, else the one saved in the system keyring with
``store_token``. It is never written to a config file or a log, and never read from
huggingface_hub's own token file: Verso uses only the token it was given.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from engine import paths, secrets
from engine.secrets import StoredSecret

DEFAULT_ENDPOINT = "https://huggingface.co"
TOKEN_SECRET = "huggingface-token"
_SETTINGS_FILE = "hub.json"


@dataclass(frozen=True, slots=True)
class TokenStatus:
    source: str  # "HF_TOKEN", "keyring" or "" (no token)

    @property
    def present(self) -> bool:
        return bool(self.source)

    def describe(self) -> str:
        if self.source == "HF_TOKEN":
            return "from the HF_TOKEN environment variable"
        if self.source == "keyring":
            return "saved in the system keyring"
        return "no token (set HF_TOKEN or run `verso models token set`)"


def check_endpoint(url: str) -> str:
    """``url`` without its trailing slashes, or ValueError saying what is wrong with it."""
    value = url.strip().rstrip("/")
    if not value.startswith(("https://", "http://")) or len(value.split("//", 1)[1]) == 0:
        raise ValueError(f"not an http(s) address: {url!r}")
    return value


def _settings_file() -> Path:
    return paths.config_dir() / _SETTINGS_FILE


def _saved_endpoint() -> str | None:
    try:
        data = json.loads(_settings_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("endpoint") if isinstance(data, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return check_endpoint(value)
    except ValueError:
        return None


def hub_endpoint() -> str:
    env = os.environ.get("HF_ENDPOINT", "").strip()
    if env:
        return check_endpoint(env)
    return _saved_endpoint() or DEFAULT_ENDPOINT


def endpoint_source() -> str:
    """Where ``hub_endpoint()`` comes from: "HF_ENDPOINT", "settings" or "default"."""
    if os.environ.get("HF_ENDPOINT", "").strip():
        return "HF_ENDPOINT"
    return "settings" if _saved_endpoint() else "default"


def set_endpoint(url: str | None) -> None:
    """Save ``url`` as the hub endpoint (None: back to huggingface.co); ValueError when it is
    not an http(s) address."""
    target = _settings_file()
    if url is None:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        return
    data = {"endpoint": check_endpoint(url)}
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, target)


def hub_token() -> str | None:
    env = os.environ.get("HF_TOKEN", "").strip()
    if env:
        return env
    return secrets.get_secret(TOKEN_SECRET) or None


def token_status() -> TokenStatus:
    if os.environ.get("HF_TOKEN", "").strip():
        return TokenStatus("HF_TOKEN")
    return TokenStatus("keyring" if secrets.get_secret(TOKEN_SECRET) else "")


def store_token(token: str) -> StoredSecret:
    value = token.strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError("a Hugging Face token is one word without spaces (hf_...)")
    return secrets.store_secret(TOKEN_SECRET, value)


def clear_token() -> None:
    secrets.delete_secret(TOKEN_SECRET)
