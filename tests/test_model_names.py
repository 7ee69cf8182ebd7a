"""Models are shown by a name a person recognises, not GGUF's training-run label."""

from __future__ import annotations

import pytest

from engine.catalog import read_model_info
from engine.catalog.names import display_name


@pytest.mark.parametrize("file_name, basename, size, meta, expected", [
    # a file name its publisher cased by hand, once the quantization is cut
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2", "135M",
     "Smollm2 135M 8k Lc100K Mix1 Ep2", "SmolLM2 135M Instruct"),
    ("Meta-Llama-3.1-8B-Instruct-Q4_K_M-00001-of-00002.gguf", None, None, None,
     "Meta Llama 3.1 8B Instruct"),
    ("Mistral-7B-Instruct-v0.3.IQ3_XXS.gguf", None, None, None, "Mistral 7B Instruct v0.3"),
    ("Phi-3-mini-4k-instruct-fp16.gguf", None, None, None, "Phi 3 mini 4k instruct"),
    # a lowercase slug: the metadata's name when it says the same, else basename + size
    ("qwen2.5-7b-instruct-q5_k_m.gguf", "qwen2.5", "7B", "Qwen2.5 7B Instruct",
     "Qwen2.5 7B Instruct"),
    ("smollm2-135m-q8_0.gguf", "smollm2", "135M", "Smollm2 135M 8k Lc100K Mix1 Ep2",
     "Smollm2 135M"),
    ("nameless.gguf", None, None, None, "nameless"),
])
def test_display_names(file_name, basename, size, meta, expected):
    assert display_name(file_name, basename, size, meta) == expected


def test_the_bundled_models_have_readable_names(smol_path, gemma_path):
    assert read_model_info(smol_path).name == "SmolLM2 135M Instruct"
    assert read_model_info(gemma_path).name == "Gemma 3 270m"
