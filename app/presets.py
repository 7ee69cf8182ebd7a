"""System prompt and persona presets: shipped ones in ``assets/presets``, the user's own in
``<config dir>/presets`` (a user preset with the same name replaces the shipped one)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.settings import clean_sampling, write_json_atomic
from engine import paths

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SHIPPED_DIR = ASSETS / "presets"


@dataclass(frozen=True)
class Preset:
    name: str
    system_prompt: str
    description: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)
    user: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "system_prompt": self.system_prompt, "sampling": self.sampling}


def user_dir() -> Path:
    folder = paths.config_dir() / "presets"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _read(path: Path, user: bool) -> Preset | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        name = data["name"]
        prompt = data.get("system_prompt", "")
        if not isinstance(name, str) or not name.strip() or not isinstance(prompt, str):
            raise ValueError("name and system_prompt must be text")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("skipping preset %s: %s", path, exc)
        return None
    description = data.get("description", "")
    return Preset(name=name.strip(), system_prompt=prompt,
                  description=description if isinstance(description, str) else "",
                  sampling=clean_sampling(data.get("sampling", {})), user=user)


def load_presets(shipped_dir: Path = SHIPPED_DIR) -> list[Preset]:
    """Shipped presets in file order, then the user's; a user preset overrides by name."""
    found: dict[str, Preset] = {}
    for folder, user in ((shipped_dir, False), (user_dir(), True)):
        for path in sorted(folder.glob("*.json")):
            preset = _read(path, user)
            if preset is not None:
                found[preset.name.casefold()] = preset
    return list(found.values())


def _file_name(name: str) -> str:
    slug = re.sub(r"[^\w-]+", "-", name.strip().casefold()).strip("-")
    return (slug or "preset") + ".json"


def save_user_preset(preset: Preset) -> Path:
    path = user_dir() / _file_name(preset.name)
    write_json_atomic(path, preset.to_dict())
    return path


def delete_user_preset(name: str) -> bool:
    path = user_dir() / _file_name(name)
    if path.exists():
        path.unlink()
        return True
    return False
