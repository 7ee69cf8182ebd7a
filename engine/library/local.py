"""The models on this computer: the bundled model, the models folder and imported files,
with what their headers say, and the library's own operations.

- **Import** copies a GGUF file (every part of a split set) into the models folder through a
  hidden temporary name that the catalog never lists, fsynced and renamed into place, so an
  interrupted copy never shows up as a model; or **links** it: the file stays where it is
  and its path is recorded in ``imported-models.json`` in the data folder. Either way the
  file is checked first (a readable GGUF header, complete tensor data, a supported
  architecture).
- **Delete** moves the files into a trash folder in the data folder (or, on another
  filesystem, renames them in place to a hidden name the catalog ignores), so ``restore``
  can undo it; ``purge`` removes them for good (the app purges at start and on close).
  Deleting a linked model only forgets the link. The bundled model cannot be deleted.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import paths
from engine.catalog.catalog import CatalogEntry, bundled_model_path, list_models
from engine.catalog.fit import FitVerdict, LayerSizes, fit_verdict
from engine.catalog.header import read_header
from engine.catalog.validate import validate_model_file
from engine.errors import Cancelled, ModelFileError, VersoError
from engine.events import ErrorKind
from engine.library.download import fsync_dir
from engine.options import KVType
from engine.units import format_bytes

IMPORTS_FILE = "imported-models.json"
TRASH_FOLDER = "model-trash"
TRASH_ENTRY = "entry.json"
IMPORT_SUFFIX = ".importing"
DELETED_MARK = ".verso-deleted-"
SPACE_MARGIN = 64 << 20
_COPY_BLOCK = 8 << 20
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)

Progress = Callable[[int, int], None]
"""Called with (bytes copied, bytes in all) while a model is copied in."""


class LibraryError(VersoError):
    """An import, delete or restore that cannot be done; the message says why and what."""

    kind = ErrorKind.BAD_REQUEST


def split_parts(path: Path) -> list[Path]:
    """Every part of the split set ``path`` is the first part of (``NAME-00001-of-00003``),
    in order; just ``path`` for a single file. Missing parts are an error."""
    m = _SPLIT.match(path.name)
    if not m or int(m["count"]) == 1:
        return [path]
    count = int(m["count"])
    parts = [path.with_name(f"{m['stem']}-{n:05d}-of-{count:05d}.gguf")
             for n in range(1, count + 1)]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise LibraryError(f"{path}: split set with {len(missing)} of its {count} parts "
                           f"missing ({', '.join(missing[:3])})")
    return parts


@dataclass(frozen=True, slots=True)
class LocalModel:
    entry: CatalogEntry
    sizes: LayerSizes | None  # per-layer weight bytes; None when the header is unreadable
    files: tuple[Path, ...]  # every file of the model (all parts of a split set)
    linked: bool = False  # imported by link: used where it is, never deleted by Verso

    @property
    def path(self) -> Path:
        return self.entry.path

    @property
    def name(self) -> str:
        return self.entry.info.name if self.entry.info else self.entry.path.name

    @property
    def size(self) -> int:
        total = 0
        for f in self.files:
            with contextlib.suppress(OSError):
                total += f.stat().st_size
        return total

    @property
    def quantization(self) -> str:
        return self.entry.info.quantization if self.entry.info else ""

    @property
    def context_length(self) -> int:
        return self.entry.info.context_length if self.entry.info else 0

    @property
    def source(self) -> str:
        if self.entry.bundled:
            return "bundled"
        return "linked" if self.linked else "models folder"

    @property
    def deletable(self) -> bool:
        return not self.entry.bundled

    def verdict(self, n_ctx: int = 0, kv_type: KVType = KVType.F16, *,
                ram_free: int | None, n_gpu_layers: int = 0, vram_free: int | None = None,
                flash_attn: bool = False) -> FitVerdict | None:
        """Whether it fits this machine with these settings; None for an unusable file."""
        if self.entry.info is None or not self.entry.ok:
            return None
        return fit_verdict(self.entry.info, n_ctx, kv_type, ram_free=ram_free,
                           sizes=self.sizes, n_gpu_layers=n_gpu_layers,
                           vram_free=vram_free, flash_attn=flash_attn)


@dataclass(frozen=True, slots=True)
class Deleted:
    """A model in the trash: ``ModelLibrary.restore(deleted.id)`` puts it back."""

    id: str
    name: str
    files: tuple[Path, ...]  # where the files were
    unlinked: tuple[Path, ...] = ()  # linked imports that were forgotten


class ModelLibrary:
    def __init__(self, models_dir: Path | None = None, data_dir: Path | None = None) -> None:
        self.models_dir = Path(models_dir) if models_dir else paths.models_dir()
        self.data_dir = Path(data_dir) if data_dir else paths.data_dir()

    # ------------------------------------------------------------------ listing

    @property
    def _imports_file(self) -> Path:
        return self.data_dir / IMPORTS_FILE

    def linked_paths(self) -> list[Path]:
        try:
            data = json.loads(self._imports_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        items = data.get("linked", []) if isinstance(data, dict) else []
        return [Path(p) for p in items if isinstance(p, str)]

    def _save_links(self, links: Iterable[Path]) -> None:
        unique = list(dict.fromkeys(str(p) for p in links))
        _write_json_atomic(self._imports_file, {"linked": unique})

    def models(self) -> list[LocalModel]:
        """Every model Verso knows of, bundled first; broken files listed with their error.
        A linked file that has gone missing is listed as unusable."""
        links = self.linked_paths()
        linked = {_key(p) for p in links}
        found = []
        for entry in list_models([p for p in links if p.exists()]):
            is_link = _key(entry.path) in linked and not _inside(entry.path, self.models_dir)
            found.append(_local(entry, linked=is_link))
        for missing in (p for p in links if not p.exists()):
            entry = CatalogEntry(missing, "explicit", None, "the linked file is missing")
            found.append(LocalModel(entry, None, (missing,), linked=True))
        return found

    # ------------------------------------------------------------------ import

    def import_model(self, source: str | os.PathLike[str], *, link: bool = False,
                     progress: Progress | None = None,
                     cancelled: Callable[[], bool] | None = None) -> Path:
        """Add a GGUF file (the first part, for a split set) to the library; returns the
        path to load it from. Raises ``ModelFileError`` for a file that is not a usable
        model, ``LibraryError`` when it cannot be added, ``Cancelled``."""
        src = Path(source).expanduser()
        if not src.is_file():
            raise LibraryError(f"{src}: no such file")
        parts = split_parts(src)
        validate_model_file(src, check_memory=False)
        if link:
            if _inside(src, self.models_dir):
                return src
            links = self.linked_paths()
            if _key(src) not in {_key(p) for p in links}:
                self._save_links([*links, src.resolve()])
            return src.resolve()
        targets = [self.models_dir / p.name for p in parts]
        if all(_same_file(p, t) for p, t in zip(parts, targets, strict=True)):
            return targets[0]
        taken = [t.name for t in targets if t.exists()]
        if taken:
            raise LibraryError(f"{', '.join(taken)}: a model with this file name is already "
                               f"in the models folder {self.models_dir}")
        total = sum(p.stat().st_size for p in parts)
        self._check_space(total)
        done = 0
        copied: list[Path] = []
        try:
            for part, target in zip(parts, targets, strict=True):
                done = _copy(part, target, done, total, progress, cancelled)
                copied.append(target)
        except BaseException:
            for target in copied:  # a set is imported whole or not at all
                target.unlink(missing_ok=True)
            raise
        return targets[0]

    def _check_space(self, needed: int) -> None:
        try:
            free = shutil.disk_usage(self.models_dir).free
        except OSError:
            return
        if free < needed + SPACE_MARGIN:
            raise LibraryError(
                f"Not enough free space in {self.models_dir}: the model needs "
                f"{format_bytes(needed)} and only {format_bytes(free)} is free. Free some "
                "space, or import it as a link (the file stays where it is).")

    # ------------------------------------------------------------------ delete

    @property
    def trash_dir(self) -> Path:
        return self.data_dir / TRASH_FOLDER

    def delete(self, path: str | os.PathLike[str]) -> Deleted:
        """Move a model to the trash (a linked one: forget the link)."""
        target = Path(path)
        bundled = bundled_model_path()
        if bundled is not None and _key(bundled) == _key(target):
            raise LibraryError(f"{target.name} is the bundled default model; it cannot be "
                               "deleted.")
        links = self.linked_paths()
        if _key(target) in {_key(p) for p in links}:
            self._save_links(p for p in links if _key(p) != _key(target))
            entry = Deleted(uuid.uuid4().hex, target.name, (), (target,))
            self._record(entry, [])
            return entry
        if not _inside(target, self.models_dir):
            raise LibraryError(f"{target}: not in the models folder {self.models_dir}; Verso "
                               "deletes only the models it keeps there.")
        if not target.is_file():
            raise LibraryError(f"{target}: no such model file")
        files = split_parts(target)
        entry_id = uuid.uuid4().hex
        folder = self.trash_dir / entry_id
        folder.mkdir(parents=True, exist_ok=True)
        moved: list[tuple[Path, Path]] = []
        try:
            for index, f in enumerate(files):
                moved.append((f, _trash_one(f, folder / f"{index:03d}-{f.name}", entry_id)))
        except OSError as exc:
            for original, trashed in reversed(moved):
                with contextlib.suppress(OSError):
                    os.replace(trashed, original)
            shutil.rmtree(folder, ignore_errors=True)
            raise LibraryError(f"{target}: could not be deleted ({exc.strerror or exc})") \
                from exc
        entry = Deleted(entry_id, target.name, tuple(files))
        self._record(entry, moved)
        _prune_empty(target.parent, self.models_dir)
        return entry

    def _record(self, entry: Deleted, moved: list[tuple[Path, Path]]) -> None:
        folder = self.trash_dir / entry.id
        folder.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(folder / TRASH_ENTRY, {
            "id": entry.id, "name": entry.name, "deleted_at": time.time(),
            "files": [{"original": str(o), "trashed": str(t)} for o, t in moved],
            "unlinked": [str(p) for p in entry.unlinked]})

    def _entry(self, entry_id: str) -> dict[str, Any]:
        try:
            data = json.loads((self.trash_dir / entry_id / TRASH_ENTRY).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise LibraryError("That model is no longer in the trash; it cannot be "
                               "restored.") from exc
        return data if isinstance(data, dict) else {}

    def restore(self, entry_id: str) -> list[Path]:
        """Put a deleted model back where it was; returns its files (or relinked paths)."""
        data = self._entry(entry_id)
        restored: list[Path] = []
        for item in data.get("files", []):
            original, trashed = Path(item["original"]), Path(item["trashed"])
            if original.exists():
                raise LibraryError(f"{original} exists again; the deleted copy stays in the "
                                   f"trash ({trashed}).")
            original.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(trashed, original)
            except OSError as exc:
                raise LibraryError(f"{original.name} could not be restored "
                                   f"({exc.strerror or exc})") from exc
            restored.append(original)
        unlinked = [Path(p) for p in data.get("unlinked", [])]
        if unlinked:
            self._save_links([*self.linked_paths(), *unlinked])
            restored += unlinked
        shutil.rmtree(self.trash_dir / entry_id, ignore_errors=True)
        return restored

    def purge(self, keep: Iterable[str] = ()) -> int:
        """Delete for good every model in the trash except ``keep`` (entry ids); returns how
        many were purged."""
        kept = set(keep)
        count = 0
        try:
            folders = [p for p in self.trash_dir.iterdir() if p.is_dir()]
        except OSError:
            return 0
        for folder in folders:
            if folder.name in kept:
                continue
            with contextlib.suppress(LibraryError, KeyError, TypeError):
                for item in self._entry(folder.name).get("files", []):
                    Path(item["trashed"]).unlink(missing_ok=True)  # renamed in place
            shutil.rmtree(folder, ignore_errors=True)
            count += 1
        return count


# ---------------------------------------------------------------------- helpers


def _local(entry: CatalogEntry, linked: bool) -> LocalModel:
    sizes = None
    files: tuple[Path, ...] = (entry.path,)
    if entry.info is not None:
        with contextlib.suppress(ModelFileError, OSError):
            sizes = LayerSizes.from_header(read_header(entry.path))
        with contextlib.suppress(LibraryError):
            files = tuple(split_parts(entry.path))
    return LocalModel(entry, sizes, files, linked)


def _key(path: Path) -> str:
    try:
        return os.path.normcase(str(path.resolve()))
    except OSError:
        return os.path.normcase(str(path.absolute()))


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def _same_file(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _copy(src: Path, target: Path, done: int, total: int, progress: Progress | None,
          cancelled: Callable[[], bool] | None) -> int:
    """Copy through a hidden temporary name in the same folder, fsync, rename."""
    tmp = target.with_name(f".{target.name}{IMPORT_SUFFIX}")
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while block := fin.read(_COPY_BLOCK):
                if cancelled is not None and cancelled():
                    raise Cancelled("import cancelled")
                fout.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise LibraryError(f"The disk holding {target.parent} filled up while copying "
                               f"{src.name}; nothing was added.") from exc
        raise LibraryError(f"{src.name} could not be copied to {target.parent} "
                           f"({exc.strerror or exc}); nothing was added.") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return done


def _trash_one(f: Path, into: Path, entry_id: str) -> Path:
    """Move ``f`` to ``into``; on another filesystem, rename it in place to a hidden name
    without the .gguf suffix (moving gigabytes to undo a click would be absurd)."""
    try:
        os.replace(f, into)
        return into
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    beside = f.with_name(f".{f.name}{DELETED_MARK}{entry_id}")
    os.replace(f, beside)
    return beside


def _prune_empty(folder: Path, stop: Path) -> None:
    """Remove folders the delete left empty, up to (not including) the models folder."""
    with contextlib.suppress(OSError):
        folder, stop = folder.resolve(), stop.resolve()
        while folder != stop and _inside(folder, stop):
            folder.rmdir()
            folder = folder.parent




def _write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
