"""Saved endpoints: ``endpoints.json`` in the user config folder, written atomically (a
temporary file renamed over the old one, so a crash never leaves half a file). Keys are
never written here; ``engine.secrets`` keeps them under each endpoint's ``secret_name``."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from engine import paths
from engine.errors import BadRequestError
from engine.remote.endpoint import Endpoint

FILE_VERSION = 1


def endpoints_path() -> Path:
    return paths.config_dir() / "endpoints.json"


def load_endpoints() -> list[Endpoint]:
    path = endpoints_path()
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"{path} cannot be read ({exc}); fix or delete it.") from None
    if not isinstance(data, dict) or not isinstance(data.get("endpoints"), list):
        raise BadRequestError(f"{path} is not a list of endpoints; fix or delete it.")
    return [Endpoint.from_json(item) for item in data["endpoints"] if isinstance(item, dict)]


def _write(endpoints: list[Endpoint]) -> None:
    path = endpoints_path()
    payload = json.dumps({"version": FILE_VERSION,
                          "endpoints": [e.to_json() for e in endpoints]}, indent=2)
    fd, tmp = tempfile.mkstemp(prefix=".endpoints.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(payload + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_endpoint(endpoint: Endpoint) -> None:
    """Add ``endpoint``, or replace the saved one of the same name."""
    if not endpoint.name.strip() or "://" in endpoint.name:
        raise BadRequestError("An endpoint needs a name (not an address) to be saved.")
    kept = [e for e in load_endpoints() if e.name != endpoint.name]
    _write([*kept, endpoint])


def remove_endpoint(name: str) -> Endpoint:
    endpoints = load_endpoints()
    found = [e for e in endpoints if e.name == name]
    if not found:
        raise BadRequestError(_unknown(name, endpoints))
    _write([e for e in endpoints if e.name != name])
    return found[0]


def find_endpoint(name_or_url: str) -> Endpoint:
    """A saved endpoint by name, or an address given directly."""
    if "://" in name_or_url:
        for saved in load_endpoints():
            if saved.url == Endpoint(name_or_url).url:
                return saved
        return Endpoint(name_or_url)
    endpoints = load_endpoints()
    for saved in endpoints:
        if saved.name == name_or_url:
            return saved
    raise BadRequestError(_unknown(name_or_url, endpoints))


def _unknown(name: str, endpoints: list[Endpoint]) -> str:
    names = ", ".join(e.name for e in endpoints) or "none yet (verso endpoints add NAME URL)"
    return f"No saved endpoint is named {name!r}. Saved endpoints: {names}."
