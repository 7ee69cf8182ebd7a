"""Bad values: every numeric CLI flag and settings field out of range (negative, zero, huge,
NaN, infinity, not a number). The CLI refuses each before loading anything, in one line that
names the value and the valid range; saved settings are brought into range (the clamps
``AppSettings.load_settings`` and ``clean_sampling`` document) or refused by the same
validation the engine runs before llama.cpp sees them."""

from __future__ import annotations

import io
import math
import os
import re
import time
from dataclasses import fields
from pathlib import Path

import pytest

from app.settings import AppSettings
from engine.cli import main
from engine.cli.common import EXIT_USAGE
from engine.options import LoadSettings, SamplingParams

FAMILY = "Bad values"
CPUS = os.cpu_count() or 1
_FLAG = {"n_probs": "--logprobs"}
_NOT_FLAGS = {"grammar", "logit_bias", "ban_phrases", "ban_any_case", "stop"}


def _bad_numbers(lo: float | None, hi: float | None, is_int: bool) -> list[str]:
    values = {"-1000000000", "1e308" if not is_int else "99999999999999999999"}
    if lo is not None:
        values.add(str(int(lo) - 1) if is_int else str(lo - 0.5))
    if hi is not None:
        values.add(str(int(hi) + 1) if is_int else str(hi + 0.5))
    if not is_int:
        values |= {"nan", "inf", "-inf"}
    values.add("abc")
    return sorted(values)


def _sampling_cases() -> list[tuple[str, list[str]]]:
    out = []
    for f in fields(SamplingParams):
        if f.name in _NOT_FLAGS or isinstance(f.default, bool) or \
                not isinstance(f.default, int | float):
            continue
        flag = _FLAG.get(f.name, "--" + f.name.replace("_", "-"))
        is_int = isinstance(f.default, int)
        for value in _bad_numbers(f.metadata["min"], f.metadata["max"], is_int):
            out.append((f"generate {flag} {value}", ["generate", "Hi", flag, value]))
    return out


def _load_cases() -> list[tuple[str, list[str]]]:
    out = []
    bad = {"--threads": ["-1", str(CPUS + 1), "1000", "100000", "abc"],
           "--threads-batch": ["-3", "1000", "100000"],
           "--n-ctx": ["-1", "1", "255", "10000000", "99999999999999999999", "abc"],
           "--gpu-layers": ["-2", "-1000000", "abc"]}
    for command in ("generate", "summarize", "translate", "classify"):
        for flag, values in bad.items():
            for value in values:
                args = {"generate": ["generate", "Hi"],
                        "summarize": ["summarize", "{doc}"],
                        "translate": ["translate", "{doc}", "--to", "fr"],
                        "classify": ["classify", "--labels", "a,b"]}[command]
                out.append((f"{command} {flag} {value}", [*args, flag, value]))
    task = {"summarize --length 0": ["summarize", "{doc}", "--length", "0"],
            "summarize --length -5": ["summarize", "{doc}", "--length", "-5"],
            "summarize --length 10^12": ["summarize", "{doc}", "--length", "1000000000000"],
            "summarize --chunk-tokens 0": ["summarize", "{doc}", "--chunk-tokens", "0"],
            "summarize --chunk-tokens 10^9": ["summarize", "{doc}", "--chunk-tokens", "1000000000"],
            "summarize --parallel 0": ["summarize", "{doc}", "--parallel", "0"],
            "summarize --parallel 10000": ["summarize", "{doc}", "--parallel", "10000"],
            "translate --parallel 0": ["translate", "{doc}", "--to", "fr", "--parallel", "0"],
            "translate --parallel -1": ["translate", "{doc}", "--to", "fr", "--parallel", "-1"],
            "generate --logit-bias 1=nan": ["generate", "Hi", "--logit-bias", "1=nan"],
            "generate --logit-bias 1=1e309": ["generate", "Hi", "--logit-bias", "1=1e309"],
            "generate --logit-bias 999999999=1": ["generate", "Hi", "--logit-bias",
                                                  "999999999=1"],
            "generate --choice empty": ["generate", "Hi", "--choice", ""],
            "generate --stop empty": ["generate", "Hi", "--stop", ""]}
    out += list(task.items())
    return out


CLI_CASES = _sampling_cases() + _load_cases()
FAST_CLI = {"generate --threads 1000", "generate --n-ctx 10000000", "generate --top-p 1.5",
            "generate --temperature nan", "generate --n-ctx -1", "summarize --parallel 0"}
_RANGE = re.compile(r"between|minimum|maximum|at least|at most|must be|must not|"
                    r"invalid choice|invalid (int|float)|not a number|expected|choose|"
                    r"\d+ to \d+", re.I)
# Checked against the loaded model's vocabulary, so only after loading.
AFTER_LOAD = {"generate", "Hi", "--logit-bias", "999999999=1"}


@pytest.mark.parametrize("argv", [
    pytest.param(argv, id=name, marks=() if name in FAST_CLI else (pytest.mark.long,))
    for name, argv in CLI_CASES])
def test_cli_refuses_an_out_of_range_value_before_loading(argv: list[str], monkeypatch,
                                                          capsys, tmp_path: Path,
                                                          record_property) -> None:
    doc = tmp_path / "notes.txt"
    doc.write_text("Some text to work on. It has two sentences.\n")
    argv = [str(doc) if a == "{doc}" else a for a in argv]
    loads: list[object] = []
    import engine.cli.common as common

    real = common.load
    monkeypatch.setattr(common, "load", lambda *a, **k: loads.append(a) or real(*a, **k))
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    try:
        code = main(argv, out=out, err=err)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code if isinstance(exc.code, int) else 2
    took = time.monotonic() - start
    message = (err.getvalue() + capsys.readouterr().err).strip()
    record_property("message", message[-200:])
    if code == 0:  # accepted: only where the value is documented as harmless
        pytest.fail(f"accepted {argv}: {out.getvalue()[:200]!r}")
    assert code == EXIT_USAGE, (code, message)
    if set(argv) != AFTER_LOAD:
        assert loads == [], "a model was loaded before the value was refused"
    assert _RANGE.search(message), message
    assert "Traceback" not in message
    assert took < 10, took


def _settings_cases() -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    for name, values in {"n_threads": [-5, 0, CPUS + 1, 1000, 100000, 10**12],
                         "n_ctx": [-1, 1, 255, 10_000_000, 10**15],
                         "n_gpu_layers": [-2, -10**9, 10**9],
                         "kv_type": ["q2", 5, None], "context_policy": ["everything", 3],
                         "theme": ["neon", 1]}.items():
        out += [(f"settings {name}={v!r}", {name: v}) for v in values]
    for f in fields(SamplingParams):
        if f.name in _NOT_FLAGS:
            continue
        for value in (-1e9, 1e12, math.nan, math.inf, "abc", None, [1]):
            out.append((f"settings sampling.{f.name}={value!r}", {"sampling": {f.name: value}}))
    return out


SETTINGS_CASES = _settings_cases()


@pytest.mark.parametrize("data", [
    pytest.param(data, id=name, marks=() if i % 10 == 0 else (pytest.mark.long,))
    for i, (name, data) in enumerate(SETTINGS_CASES)])
def test_a_saved_setting_out_of_range_is_clamped_or_refused_before_llama_cpp(
        data: dict, tmp_path: Path, record_property) -> None:
    import json

    saved = tmp_path / "settings.json"
    saved.write_text(json.dumps(data, allow_nan=True))
    settings = AppSettings.load(saved)
    load = settings.load_settings("/models/x.gguf")
    problems = load.validate()
    sampling = settings.sampling_params()
    assert sampling.validate() == [], sampling  # out-of-range sampling values are dropped
    if problems:  # refused with the range, as Runtime.load does before llama.cpp
        assert any(_RANGE.search(p) for p in problems), problems
        record_property("result", "refused: " + "; ".join(problems)[:150])
        return
    assert 0 <= load.n_threads <= CPUS and 0 <= load.n_threads_batch <= CPUS
    assert load.n_ctx == 0 or 256 <= load.n_ctx <= 1 << 20
    assert load.n_gpu_layers >= -1
    default = LoadSettings("/models/x.gguf")
    changed = {f.name: getattr(load, f.name) for f in fields(LoadSettings)
               if getattr(load, f.name) != getattr(default, f.name)}
    record_property("result", f"clamped or ignored: {changed or 'defaults'}")
