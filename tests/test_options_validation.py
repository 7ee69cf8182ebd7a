"""Load and sampling settings are checked before llama.cpp sees them."""

from __future__ import annotations

import os

import pytest

from engine.options import LoadSettings, SamplingParams


@pytest.mark.parametrize("field, value, words", [
    ("n_threads", 100_000, "n_threads=100000 must be between 1 and this machine's"),
    ("n_threads_batch", -1, "n_threads_batch=-1"),
    ("n_ctx", -1, "n_ctx=-1 must be between 256"),
    ("n_ctx", 1, "n_ctx=1 must be between 256"),
    ("n_batch", 0, "n_batch=0"),
    ("n_gpu_layers", -2, "n_gpu_layers=-2"),
])
def test_load_settings_out_of_range_are_named(field, value, words):
    problems = LoadSettings("m.gguf", **{field: value}).validate()
    assert len(problems) == 1 and words in problems[0]


def test_usual_load_settings_are_valid():
    assert LoadSettings("m.gguf").validate() == []
    assert LoadSettings("m.gguf", n_ctx=256, n_threads=os.cpu_count() or 1,
                        n_gpu_layers=-1).validate() == []


@pytest.mark.parametrize("field", ["temperature", "top_p", "min_p", "repeat_penalty"])
def test_nan_sampling_values_are_refused(field):
    assert SamplingParams(**{field: float("nan")}).validate() == [f"{field}=nan is not a number"]


def test_saved_app_settings_out_of_range_are_brought_into_range():
    """Settings from an older Verso (threads up to twice the CPUs, any context) still load."""
    from app.settings import AppSettings

    cpus = os.cpu_count() or 1
    load = AppSettings(n_threads=cpus * 2, n_ctx=100).load_settings("m.gguf")
    assert load.n_threads == cpus and load.n_ctx == 256 and load.validate() == []
    assert AppSettings(n_ctx=0).load_settings("m.gguf").n_ctx == 0


def test_empty_stop_strings_and_non_finite_logit_bias_are_refused():
    from engine.options import SamplingParams

    assert any("stop strings must not be empty" in p
               for p in SamplingParams(stop=("",)).validate())
    problems = SamplingParams(logit_bias=((5, float("inf")),)).validate()
    assert any("logit_bias for token 5 is inf" in p for p in problems)
    assert SamplingParams(stop=("\n",), logit_bias=((5, -100.0),)).validate() == []


def test_a_saved_sampling_value_of_infinity_is_dropped_not_a_crash(tmp_path):
    from app.settings import AppSettings

    saved = tmp_path / "settings.json"
    saved.write_text('{"sampling": {"top_k": Infinity, "max_tokens": -Infinity}}')
    assert AppSettings.load(saved).sampling == {}
