"""Sampler presets for the Workbench: shipped ones in ``assets/sampler-presets`` (precise,
balanced, creative), the user's own in ``<config dir>/sampler-presets``. A preset is a name
and a mapping of ``SamplingParams`` fields; a user preset with a shipped name replaces it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.preset_files import PresetFolder, text_field
from app.settings import clean_sampling

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "assets" / "sampler-presets"


@dataclass(frozen=True)
class SamplerPreset:
    name: str
    sampling: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    user: bool = False


def _parse(data: dict[str, Any], user: bool) -> SamplerPreset:
    return SamplerPreset(text_field(data, "name", required=True),
                         clean_sampling(data.get("sampling", {})),
                         text_field(data, "description"), user)


FOLDER = PresetFolder(SHIPPED_DIR, "sampler-presets", _parse, lambda p: p.name)


def user_dir() -> Path:
    return FOLDER.user_dir()


def load_sampler_presets(shipped_dir: Path = SHIPPED_DIR) -> list[SamplerPreset]:
    """Shipped presets in file order, then the user's (sorted by file name)."""
    return FOLDER.load(shipped_dir)


def save_sampler_preset(name: str, sampling: dict[str, Any], description: str = "") -> Path:
    return FOLDER.save(name, {"name": name.strip(), "description": description,
                              "sampling": clean_sampling(sampling)})


def delete_sampler_preset(name: str) -> bool:
    """Delete the user's preset ``name``; shipped presets cannot be deleted."""
    return FOLDER.delete(name)
