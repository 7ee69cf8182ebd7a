"""Grouping a repository's files into downloadable models, quantization labels, hub settings:
pure logic, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.library import hub_settings
from engine.library.hub_files import RepoEntry, by_quant, group_files, quant_of

SHA = "a" * 64
REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(("path", "quant"), [
    ("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
    ("gemma-3-270m-it-IQ4_XS.gguf", "IQ4_XS"),
    ("Llama-3.2-1B-Instruct-f16.gguf", "F16"),
    ("model-bf16-00001-of-00002.gguf", "BF16"),
    ("phi-2.q5_k_s.gguf", "Q5_K_S"),
    ("Q8_0/Big-Model-00001-of-00003.gguf", "Q8_0"),
    ("Qwen3-8B-Q4_K_XL.gguf", "Q4_K_XL"),
    ("tinyllama.gguf", ""),
    ("Qwen2-7B.gguf", ""),
])
def test_quantization_is_read_from_the_file_name_or_its_folder(path: str, quant: str) -> None:
    assert quant_of(path) == quant


def entry(path: str, size: int = 100, sha: str | None = SHA, security: str | None = None
          ) -> RepoEntry:
    return RepoEntry(path, size, sha, security)


def test_split_sets_are_one_entry_and_projectors_are_left_out() -> None:
    entries = [
        entry("README.md"),
        entry("m-Q8_0.gguf", 800),
        entry("m-Q4_K_M.gguf", 400),
        entry("Q6_K/m-Q6_K-00002-of-00002.gguf", 300),
        entry("Q6_K/m-Q6_K-00001-of-00002.gguf", 310, security="unscanned"),
        entry("mmproj-m-f16.gguf", 50),
        entry("m-Q4_K_M-00001-of-00001.gguf", 401),
    ]
    files = group_files("o/m", REV, entries, gated=True)
    assert [f.name for f in files] == ["m-Q4_K_M.gguf", "m-Q4_K_M-00001-of-00001.gguf",
                                       "m-Q6_K-00001-of-00002.gguf", "m-Q8_0.gguf"]
    split = files[2]
    assert split.parts == ("Q6_K/m-Q6_K-00001-of-00002.gguf", "Q6_K/m-Q6_K-00002-of-00002.gguf")
    assert split.local_names == ("m-Q6_K-00001-of-00002.gguf", "m-Q6_K-00002-of-00002.gguf")
    assert split.sizes == (310, 300) and split.size == 610 and split.split
    assert split.quant == "Q6_K" and split.security == "unscanned"
    assert all(f.gated and f.revision == REV and f.available for f in files)
    assert list(by_quant(files)) == ["Q4_K_M", "Q6_K", "Q8_0"]


def test_a_set_with_a_missing_part_is_kept_with_its_problem_last() -> None:
    files = group_files("o/m", REV, [
        entry("m-Q2_K-00001-of-00003.gguf"), entry("m-Q2_K-00003-of-00003.gguf"),
        entry("m-Q8_0.gguf", 900)])
    assert [f.available for f in files] == [True, False]
    broken = files[1]
    assert broken.name == "m-Q2_K-00001-of-00003.gguf"
    assert broken.problem is not None
    assert "m-Q2_K-00002-of-00003.gguf" in broken.problem and "1 of its 3 parts" in broken.problem
    # the first part missing: the set is still named by its first part
    only_later = group_files("o/m", REV, [entry("x-00002-of-00002.gguf")])
    assert only_later[0].name == "x-00001-of-00002.gguf" and not only_later[0].available


def test_a_file_without_a_sha256_cannot_be_offered() -> None:
    (f,) = group_files("o/m", REV, [entry("m-Q4_0.gguf", sha=None)])
    assert f.problem and "SHA-256" in f.problem


def test_endpoint_env_wins_over_the_saved_mirror(monkeypatch: pytest.MonkeyPatch,
                                                 verso_home: Path) -> None:
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert hub_settings.hub_endpoint() == "https://huggingface.co"
    hub_settings.set_endpoint("https://mirror.example/")
    assert hub_settings.hub_endpoint() == "https://mirror.example"
    assert hub_settings.endpoint_source() == "settings"
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/")
    assert hub_settings.hub_endpoint() == "http://127.0.0.1:9"
    hub_settings.set_endpoint(None)
    monkeypatch.delenv("HF_ENDPOINT")
    assert hub_settings.endpoint_source() == "default"
    with pytest.raises(ValueError, match="not an http"):
        hub_settings.set_endpoint("ftp://x")


def test_the_token_goes_to_the_keyring_never_a_file(monkeypatch: pytest.MonkeyPatch,
                                                    verso_home: Path) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert hub_settings.hub_token() is None and not hub_settings.token_status().present
    stored = hub_settings.store_token("  hf_secretvalue123 \n")
    assert stored.in_keyring
    assert hub_settings.hub_token() == "hf_secretvalue123"
    assert hub_settings.token_status().source == "keyring"
    hub_settings.set_endpoint("https://mirror.example")
    for path in (verso_home / "config").rglob("*"):
        assert not path.is_file() or "hf_secretvalue123" not in path.read_text("utf-8")
    monkeypatch.setenv("HF_TOKEN", "hf_fromenv")
    assert hub_settings.hub_token() == "hf_fromenv"
    monkeypatch.delenv("HF_TOKEN")
    hub_settings.clear_token()
    assert hub_settings.hub_token() is None
    with pytest.raises(ValueError):
        hub_settings.store_token("two words")
