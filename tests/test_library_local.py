"""The local library on real files: import by copy (atomic) or link, delete to the trash
and Undo, purge, and what the listing says about each model."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from engine import paths
from engine.catalog import list_models
from engine.errors import Cancelled, ModelFileError
from engine.library import local
from engine.library.local import LibraryError, ModelLibrary


@pytest.fixture
def library() -> ModelLibrary:
    return ModelLibrary()


def _names(lib: ModelLibrary) -> list[str]:
    return [m.path.name for m in lib.models()]


def test_listing_has_the_bundled_model_with_its_facts(library: ModelLibrary, smol_path: Path):
    (bundled,) = library.models()
    assert bundled.path == smol_path and bundled.source == "bundled"
    assert bundled.name == "SmolLM2 135M Instruct"
    assert (bundled.quantization, bundled.context_length) == ("Q4_1", 8192)
    assert bundled.size == smol_path.stat().st_size
    assert bundled.sizes is not None and len(bundled.sizes.layer_bytes) == 30
    assert not bundled.deletable
    with pytest.raises(LibraryError, match="bundled default model"):
        library.delete(smol_path)
    assert smol_path.exists()


def test_import_copies_atomically_and_the_copy_is_listed(library: ModelLibrary, tmp_path: Path,
                                                          gemma_path: Path):
    seen: list[tuple[int, int]] = []
    target = library.import_model(gemma_path, progress=lambda d, t: seen.append((d, t)))
    assert target == paths.models_dir() / gemma_path.name
    assert target.read_bytes()[:4096] == gemma_path.read_bytes()[:4096]
    assert target.stat().st_size == gemma_path.stat().st_size
    assert seen[-1] == (gemma_path.stat().st_size,) * 2
    assert [p.name for p in paths.models_dir().iterdir()] == [gemma_path.name]  # no temp left
    model = next(m for m in library.models() if m.path == target)
    assert model.source == "models folder" and model.deletable
    assert model.verdict(1024, ram_free=1 << 40) is not None
    # importing the same file again is refused by name; importing the copy is a no-op
    with pytest.raises(LibraryError, match="already in the models folder"):
        library.import_model(shutil.copy(gemma_path, tmp_path / gemma_path.name))
    assert library.import_model(target) == target


def test_an_interrupted_copy_leaves_nothing_that_looks_like_a_model(library: ModelLibrary,
                                                                     smol_path: Path):
    calls = {"n": 0}

    def cancel_after_two() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(Cancelled):
        library.import_model(smol_path, cancelled=cancel_after_two)
    assert list(paths.models_dir().iterdir()) == []
    assert [e.path.name for e in list_models()] == [e.path.name for e in list_models()
                                                    if e.bundled]


def test_a_disk_that_fills_up_while_copying_adds_nothing(library: ModelLibrary,
                                                          smol_path: Path, monkeypatch):
    real_open = open

    class FullFile:
        def __init__(self, f):
            self._f, self._written = f, 0

        def write(self, data):
            self._written += len(data)
            if self._written > 16 << 20:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return FullFile(f) if "w" in mode and str(file).endswith(local.IMPORT_SUFFIX) else f

    monkeypatch.setattr("builtins.open", fake_open)
    with pytest.raises(LibraryError, match=r"filled up.*nothing was added"):
        library.import_model(smol_path)
    assert list(paths.models_dir().iterdir()) == []


def test_import_refuses_files_that_are_not_usable_models(library: ModelLibrary, tmp_path: Path,
                                                         smol_path: Path):
    junk = tmp_path / "notes.gguf"
    junk.write_text("hello, this is not a model")
    with pytest.raises(ModelFileError, match=r"notes\.gguf"):
        library.import_model(junk)
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(smol_path.read_bytes()[: 20 << 20])
    with pytest.raises(ModelFileError, match="truncated"):
        library.import_model(truncated)
    with pytest.raises(LibraryError, match="no such file"):
        library.import_model(tmp_path / "missing.gguf")
    assert list(paths.models_dir().iterdir()) == []


def test_import_by_link_uses_the_file_where_it_is(library: ModelLibrary, tmp_path: Path,
                                                  gemma_path: Path):
    outside = tmp_path / "elsewhere" / "gemma.gguf"
    outside.parent.mkdir()
    os.link(gemma_path, outside) if os.name == "posix" else shutil.copy(gemma_path, outside)
    assert library.import_model(outside, link=True) == outside.resolve()
    assert list(paths.models_dir().iterdir()) == []
    model = next(m for m in library.models() if m.linked)
    assert model.path.resolve() == outside.resolve() and model.source == "linked"
    # deleting a link forgets it and leaves the file; Undo brings the link back
    deleted = library.delete(model.path)
    assert outside.exists() and not any(m.linked for m in library.models())
    library.restore(deleted.id)
    assert any(m.linked for m in library.models())
    outside.unlink()
    gone = next(m for m in library.models() if m.linked)
    assert gone.entry.error == "the linked file is missing"


def test_delete_moves_to_the_trash_and_undo_restores_it(library: ModelLibrary,
                                                        smol_path: Path):
    sub = paths.models_dir() / "google" / "gemma"
    sub.mkdir(parents=True)
    model = sub / "smol-copy.gguf"
    shutil.copy(smol_path, model)
    before = model.read_bytes()
    deleted = library.delete(model)
    assert not model.exists() and not sub.exists()  # the folders it leaves empty go too
    assert model.name not in _names(library)
    assert any(library.trash_dir.iterdir())
    assert library.restore(deleted.id) == [model]
    assert model.read_bytes() == before and model.name in _names(library)
    assert not any(library.trash_dir.iterdir())
    with pytest.raises(LibraryError, match="no longer in the trash"):
        library.restore(deleted.id)


def test_purge_deletes_for_good(library: ModelLibrary, smol_path: Path):
    model = Path(shutil.copy(smol_path, paths.models_dir() / "a.gguf"))
    kept = Path(shutil.copy(smol_path, paths.models_dir() / "b.gguf"))
    first, second = library.delete(model), library.delete(kept)
    assert library.purge(keep=[second.id]) == 1
    with pytest.raises(LibraryError):
        library.restore(first.id)
    assert library.restore(second.id) == [kept] and kept.exists()


def test_delete_on_another_filesystem_renames_in_place(library: ModelLibrary,
                                                       smol_path: Path, monkeypatch):
    model = Path(shutil.copy(smol_path, paths.models_dir() / "x.gguf"))
    real_replace = os.replace

    def cross_device(src, dst):
        if Path(dst).is_relative_to(library.trash_dir) and \
                not Path(src).is_relative_to(library.trash_dir):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(src, dst)

    monkeypatch.setattr(local.os, "replace", cross_device)
    deleted = library.delete(model)
    hidden = [p.name for p in paths.models_dir().iterdir()]
    assert hidden == [f".x.gguf{local.DELETED_MARK}{deleted.id}"]
    assert "x.gguf" not in _names(library)  # the catalog lists *.gguf only
    library.restore(deleted.id)
    assert model.exists() and "x.gguf" in _names(library)
    again = library.delete(model)
    assert library.purge() == 1 and not any(paths.models_dir().iterdir())
    del again


def test_a_split_set_is_imported_and_deleted_whole(library: ModelLibrary, tmp_path: Path,
                                                   smol_path: Path, monkeypatch):
    src = tmp_path / "set"
    src.mkdir()
    parts = [src / f"smol-0000{i}-of-00002.gguf" for i in (1, 2)]
    for p in parts:
        shutil.copy(smol_path, p)  # valid GGUF files named as a set
    with pytest.raises(LibraryError, match="1 of its 2 parts missing"):
        parts[1].rename(src / "other.gguf")
        library.import_model(parts[0])
    (src / "other.gguf").rename(parts[1])
    first = library.import_model(parts[0])
    assert sorted(p.name for p in paths.models_dir().iterdir()) == [p.name for p in parts]
    model = next(m for m in library.models() if m.path == first)
    assert len(model.files) == 2 and model.size == 2 * smol_path.stat().st_size
    deleted = library.delete(first)
    assert list(paths.models_dir().iterdir()) == []
    library.restore(deleted.id)
    assert sorted(p.name for p in paths.models_dir().iterdir()) == [p.name for p in parts]


def test_only_the_models_folder_is_deleted_from(library: ModelLibrary, tmp_path: Path,
                                                smol_path: Path):
    outside = Path(shutil.copy(smol_path, tmp_path / "mine.gguf"))
    with pytest.raises(LibraryError, match="not in the models folder"):
        library.delete(outside)
    assert outside.exists()
