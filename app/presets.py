"""System prompt and persona presets: shipped ones in ``assets/presets``, the user's own in
``<config dir>/presets`` (a user preset with the same name replaces the shipped one)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.preset_files import PresetFolder, text_field
from app.settings import clean_sampling

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


def _parse(data: dict[str, Any], user: bool) -> Preset:
    prompt = data.get("system_prompt", "")
    if not isinstance(prompt, str):
        raise ValueError("system_prompt must be text")
    return Preset(name=text_field(data, "name", required=True), system_prompt=prompt,
                  description=text_field(data, "description"),
                  sampling=clean_sampling(data.get("sampling", {})), user=user)


FOLDER = PresetFolder(SHIPPED_DIR, "presets", _parse, lambda p: p.name)


def user_dir() -> Path:
    return FOLDER.user_dir()


def load_presets(shipped_dir: Path = SHIPPED_DIR) -> list[Preset]:
    """Shipped presets in file order, then the user's; a user preset overrides by name."""
    return FOLDER.load(shipped_dir)


def save_user_preset(preset: Preset) -> Path:
    return FOLDER.save(preset.name, preset.to_dict())


def delete_user_preset(name: str) -> bool:
    return FOLDER.delete(name)
