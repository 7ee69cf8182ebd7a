"""Sampler presets for the Workbench: shipped ones in ``assets/sampler-presets`` (precise,
balanced, creative), the user's own in ``<config dir>/sampler-presets``. A preset is a name
and a mapping of ``SamplingParams`` fields; a user preset with a shipped name replaces it."""

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

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "assets" / "sampler-presets"


@dataclass(frozen=True)
class SamplerPreset:
    name: str
    sampling: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    user: bool = False


def user_dir() -> Path:
    folder = paths.config_dir() / "sampler-presets"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _read(path: Path, user: bool) -> SamplerPreset | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        name = data["name"]
        if not isinstance(name, str) or not name.strip():
            raise ValueError("the name must be text")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("skipping sampler preset %s: %s", path, exc)
        return None
    description = data.get("description", "")
    return SamplerPreset(name.strip(), clean_sampling(data.get("sampling", {})),
                         description if isinstance(description, str) else "", user)


def load_sampler_presets(shipped_dir: Path = SHIPPED_DIR) -> list[SamplerPreset]:
    """Shipped presets in file order, then the user's (sorted by file name)."""
    found: dict[str, SamplerPreset] = {}
    for folder, user in ((shipped_dir, False), (user_dir(), True)):
        for path in sorted(folder.glob("*.json")):
            preset = _read(path, user)
            if preset is not None:
                found[preset.name.casefold()] = preset
    return list(found.values())


def _file_name(name: str) -> str:
    slug = re.sub(r"[^\w-]+", "-", name.strip().casefold()).strip("-")
    return (slug or "preset") + ".json"


def save_sampler_preset(name: str, sampling: dict[str, Any], description: str = "") -> Path:
    path = user_dir() / _file_name(name)
    write_json_atomic(path, {"name": name.strip(), "description": description,
                             "sampling": clean_sampling(sampling)})
    return path


def delete_sampler_preset(name: str) -> bool:
    """Delete the user's preset ``name``; shipped presets cannot be deleted."""
    path = user_dir() / _file_name(name)
    if path.exists():
        path.unlink()
        return True
    return False
