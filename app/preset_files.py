"""Named JSON presets in two folders: the shipped ones under ``assets/`` and the user's own
under the config folder, where a user preset with a shipped name replaces it."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from app.settings import write_json_atomic
from engine import paths

log = logging.getLogger(__name__)

P = TypeVar("P")


class PresetFolder(Generic[P]):
    """``parse(data, user)`` turns a file's JSON into a preset; it raises ``ValueError``,
    ``KeyError`` or ``TypeError`` for a file to skip (logged, never fatal)."""

    def __init__(self, shipped: Path, user_subdir: str,
                 parse: Callable[[dict[str, Any], bool], P], name_of: Callable[[P], str]) -> None:
        self.shipped, self.user_subdir = shipped, user_subdir
        self.parse, self.name_of = parse, name_of

    def user_dir(self) -> Path:
        folder = paths.config_dir() / self.user_subdir
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def load(self, shipped: Path | None = None) -> list[P]:
        """Shipped presets in file order, then the user's; a user preset overrides by name
        (case-insensitive)."""
        found: dict[str, P] = {}
        for folder, user in ((shipped or self.shipped, False), (self.user_dir(), True)):
            for path in sorted(folder.glob("*.json")):
                try:
                    preset = self.parse(json.loads(path.read_text(encoding="utf-8")), user)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.warning("skipping preset %s: %s", path, exc)
                    continue
                found[self.name_of(preset).casefold()] = preset
        return list(found.values())

    def path_for(self, name: str) -> Path:
        slug = re.sub(r"[^\w-]+", "-", name.strip().casefold()).strip("-")
        return self.user_dir() / ((slug or "preset") + ".json")

    def save(self, name: str, data: dict[str, Any]) -> Path:
        path = self.path_for(name)
        write_json_atomic(path, data)
        return path

    def delete(self, name: str) -> bool:
        """Delete the user's preset ``name`` (shipped presets are never deleted)."""
        path = self.path_for(name)
        if path.exists():
            path.unlink()
            return True
        return False


def text_field(data: dict[str, Any], key: str, required: bool = False) -> str:
    value = data.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        if required:
            raise ValueError(f"{key} must be text")
        return ""
    return value.strip() if required else value
