"""The app's settings: one JSON file in ``engine.paths.settings_path()``, written atomically.

Sampling defaults are stored as a mapping of ``SamplingParams`` field names to values, so the
schema in ``engine.options`` stays the one place an option is defined."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from engine import paths
from engine.options import MIN_CTX, ContextPolicy, KVType, LoadSettings, SamplingParams

log = logging.getLogger(__name__)

THEMES = ("system", "light", "dark")


@dataclass
class AppSettings:
    n_threads: int = 0
    n_ctx: int = 0
    flash_attn: bool = False
    n_gpu_layers: int = 0
    gpu_layers_auto: bool = True  # on a GPU build: as many layers as fit (the fit estimate)
    kv_type: str = KVType.F16.value
    theme: str = "system"
    context_policy: str = ContextPolicy.REFUSE.value
    model_path: str | None = None
    default_preset: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)

    def load_settings(self, path: str) -> LoadSettings:
        """Settings saved by an older Verso may ask for more threads than this machine has
        or a context below llama.cpp's minimum: those are brought into range here rather
        than refused at every start (``LoadSettings.validate``)."""
        threads = min(max(self.n_threads, 0), os.cpu_count() or 1)
        n_ctx = self.n_ctx if self.n_ctx <= 0 or self.n_ctx >= MIN_CTX else MIN_CTX
        return LoadSettings(path=path, n_ctx=max(n_ctx, 0), n_threads=threads,
                            flash_attn=self.flash_attn, n_gpu_layers=self.n_gpu_layers,
                            kv_type=KVType(self.kv_type))

    def policy(self) -> ContextPolicy:
        return ContextPolicy(self.context_policy)

    def sampling_params(self, overrides: dict[str, Any] | None = None) -> SamplingParams:
        return sampling_from(self.sampling, overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppSettings:
        settings = cls()
        known = {f.name: f for f in fields(cls)}
        for key, value in data.items():
            if key not in known:
                continue
            default = getattr(settings, key)
            if default is not None and value is not None and not _same_kind(default, value):
                log.warning("ignoring setting %s=%r (wrong type)", key, value)
                continue
            setattr(settings, key, value)
        if settings.theme not in THEMES:
            settings.theme = "system"
        if settings.kv_type not in {k.value for k in KVType}:
            settings.kv_type = KVType.F16.value
        if settings.context_policy not in {c.value for c in ContextPolicy}:
            settings.context_policy = ContextPolicy.REFUSE.value
        settings.sampling = clean_sampling(settings.sampling)
        return settings

    @classmethod
    def load(cls, path: Path | None = None) -> AppSettings:
        path = path or paths.settings_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            log.warning("settings file %s is unreadable (%s); using defaults", path, exc)
            return cls()
        if not isinstance(data, dict):
            log.warning("settings file %s is not a JSON object; using defaults", path)
            return cls()
        return cls.from_dict(data)

    def save(self, path: Path | None = None) -> None:
        write_json_atomic(path or paths.settings_path(), self.to_dict())


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, type(default))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temp file in the same folder, flush it to disk, then rename over the old
    file: a crash leaves either the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def clean_sampling(values: Any) -> dict[str, Any]:
    """Keep only known ``SamplingParams`` fields whose values pass validation."""
    if not isinstance(values, dict):
        return {}
    defaults = SamplingParams()
    kept: dict[str, Any] = {}
    for f in fields(SamplingParams):
        if f.name not in values:
            continue
        value = values[f.name]
        if isinstance(getattr(defaults, f.name), tuple):
            if not isinstance(value, list | tuple):
                continue
            value = [list(v) if isinstance(v, list | tuple) else v for v in value]
        elif not _same_kind(getattr(defaults, f.name), value) and getattr(
                defaults, f.name) is not None:
            continue
        try:
            if replace(defaults, **{f.name: _as_field(f.name, value)}).validate():
                continue
        except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
            continue
        kept[f.name] = value
    return kept


def _as_field(name: str, value: Any) -> Any:
    default = getattr(SamplingParams(), name)
    if name == "logit_bias":
        return tuple((int(t), float(b)) for t, b in value)
    if isinstance(default, tuple):
        return tuple(str(v) for v in value)
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
        return int(value)
    return value


def sampling_from(*layers: dict[str, Any] | None) -> SamplingParams:
    """``SamplingParams`` from the defaults overlaid with each mapping in turn."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(clean_sampling(layer or {}))
    return SamplingParams(**{k: _as_field(k, v) for k, v in merged.items()})
