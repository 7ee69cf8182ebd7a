"""Where hub models live in the models folder, and removing them.

A file from ``owner/name`` is installed as ``<models>/owner/name/FILE.gguf``; a split set as
the folder ``<models>/owner/name/STEM/`` holding every part under its own name (llama.cpp
finds the parts by name next to the first). Downloads in progress live under
``<models>/.downloads/`` (the catalog skips hidden folders), so nothing appears among the
models before every part of it is verified; a set's folder is renamed into place whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from engine import paths
from engine.errors import ModelFileError
from engine.events import ErrorKind
from engine.library.download import PART_SUFFIX, SIDECAR_SUFFIX
from engine.library.hub_files import SPLIT_NAME, HubFile

STAGING = ".downloads"
_RESOLVE = re.compile(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


@dataclass(frozen=True, slots=True)
class Layout:
    """Where one ``HubFile`` is downloaded (``staging``) and installed (``target``)."""

    staging: Path  # the folder the parts are downloaded into
    target: Path  # the installed file, or the installed set's folder
    first: Path  # the file a model loads from, once installed

    @property
    def target_folder(self) -> Path:
        """The folder the installed parts are in."""
        return self.target if self.target != self.first else self.target.parent


def repo_folder(repo_id: str, models_dir: Path) -> Path:
    owner, name = repo_id.split("/", 1)
    return models_dir / owner / name


def set_stem(f: HubFile) -> str:
    m = SPLIT_NAME.match(f.local_names[0])
    return m["stem"] if m else Path(f.local_names[0]).stem


def layout(f: HubFile, models_dir: Path) -> Layout:
    owner, name = f.repo_id.split("/", 1)
    staging_root = models_dir / STAGING / f"{owner}--{name}"
    folder = repo_folder(f.repo_id, models_dir)
    if f.split:
        stem = set_stem(f)
        return Layout(staging_root / stem, folder / stem, folder / stem / f.local_names[0])
    return Layout(staging_root, folder / f.name, folder / f.name)


def installed_path(f: HubFile, models_dir: Path | None = None) -> Path | None:
    """The installed model file (first part of a set) when every part is in place with the
    size the hub gives, else None. Sizes only: ``pull`` verifies hashes."""
    place = layout(f, models_dir or paths.models_dir())
    folder = place.target_folder
    for name, size in zip(f.local_names, f.sizes, strict=True):
        try:
            if (folder / name).stat().st_size != size:
                return None
        except OSError:
            return None
    return place.first


@dataclass(frozen=True, slots=True)
class Pending:
    """A download that stopped before it finished: ``pull`` the same file to resume."""

    repo_id: str
    path: str  # in the repository
    revision: str
    bytes_done: int
    size: int
    part: Path


def pending_downloads(models_dir: Path | None = None) -> list[Pending]:
    root = (models_dir or paths.models_dir()) / STAGING
    found: list[Pending] = []
    for sidecar in sorted(root.rglob("*" + SIDECAR_SUFFIX)) if root.is_dir() else []:
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
            m = _RESOLVE.search(str(data["url"]))
            part = sidecar.with_name(sidecar.name[:-len(SIDECAR_SUFFIX)] + PART_SUFFIX)
            done = part.stat().st_size if part.exists() else 0
            if m:
                found.append(Pending(m["repo"], m["path"], str(data.get("revision") or m["rev"]),
                                     done, int(data["size"]), part))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def set_members(path: Path) -> list[Path]:
    """Every part of the split set ``path`` belongs to (just ``path`` for a single file)."""
    m = SPLIT_NAME.match(path.name)
    if not m:
        return [path]
    pattern = re.compile(re.escape(m["stem"]) + r"-\d{5}-of-" + m["count"] + r"\.gguf$",
                         re.IGNORECASE)
    return sorted(p for p in path.parent.iterdir() if pattern.match(p.name))


def remove_model(name: str, models_dir: Path | None = None) -> list[Path]:
    """Delete a model from the models folder (every part of a split set) and the folders it
    leaves empty; returns what was deleted. Refuses the bundled model and files outside the
    models folder: Verso deletes only what it manages."""
    from engine.catalog import bundled_model_path, resolve_model

    folder = models_dir or paths.models_dir()
    path = resolve_model(name)
    bundled = bundled_model_path()
    if bundled is not None and path.resolve() == bundled.resolve():
        raise ModelFileError(name, "the bundled default model cannot be removed",
                             ErrorKind.BAD_REQUEST)
    if not _inside(path, folder) or STAGING in path.resolve().relative_to(
            folder.resolve()).parts:
        raise ModelFileError(str(path), f"not in the models folder {folder}; Verso removes "
                             "only models it manages (delete the file yourself)",
                             ErrorKind.BAD_REQUEST)
    if not path.is_file():
        raise ModelFileError(str(path), "not a model file", ErrorKind.BAD_REQUEST)
    removed: list[Path] = []
    for member in set_members(path):
        member.unlink()
        removed.append(member)
    prune_empty(path.parent, folder)
    return removed


def prune_empty(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``stop`` while empty."""
    folder, stop = folder.resolve(), stop.resolve()
    while folder != stop and _inside(folder, stop):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


