"""Task advice from what a model's GGUF metadata says about it (both bundled models), and
the GPU probe's plain answer on a CPU-only build."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

from engine.catalog import read_model_info
from engine.cli.advice_note import note_advice
from engine.events import ModelLoaded
from engine.gpu import GpuDevice, GpuInfo
from engine.model_ref import ModelRef
from engine.tasks.advice import summarize_advice, translate_advice


def test_smollm2_says_it_is_english_only_and_small(smol_path: Path):
    info = read_model_info(smol_path)
    assert info.languages == ("en",)
    advice = translate_advice(info, target="fr")
    assert advice is not None and advice.language == "fr"
    assert "only English (general.languages: en)" in advice.text
    assert "135M parameters" in advice.text and "French" in advice.suggestion
    small = summarize_advice(info)
    assert small is not None and "very small (135M parameters)" in small.text
    assert "chat template" not in small.text  # SmolLM2 carries one


def test_gemma_is_multilingual_by_omission_but_too_small_and_has_no_template(gemma_path: Path):
    info = read_model_info(gemma_path)
    assert info.languages == () and not info.has_chat_template
    advice = translate_advice(info, target="de")
    assert advice is not None
    assert "only English" not in advice.text
    assert "too small to translate reliably (268M parameters" in advice.text
    assert "no chat template" in advice.text
    assert summarize_advice(info) is not None


def test_a_large_multilingual_model_with_a_template_gets_no_warning(smol_path: Path):
    big = replace(read_model_info(smol_path), parameter_count=7_600_000_000,
                  languages=("en", "fr", "de", "zh"))
    assert translate_advice(big, target="fr") is None
    assert summarize_advice(big) is None
    # ... unless the language asked for is not among those it lists
    advice = translate_advice(big, target="ja")
    assert advice is not None and "but not Japanese" in advice.text
    # English-only metadata is a warning even for a large model
    english = replace(big, languages=("en",))
    assert translate_advice(english, target="fr") is not None
    assert summarize_advice(english) is None


def test_the_cli_prints_the_advice_as_a_note(smol_path: Path):
    loaded = ModelLoaded(ModelRef.local(str(smol_path), sha256="0" * 64), "SmolLM2", 1024,
                         8192, 49152, True, 0, 0.1)
    err = io.StringIO()
    note_advice("translate", loaded, err, target="de")
    assert err.getvalue().startswith("note: SmolLM2 135M Instruct is a poor fit")
    assert "German" in err.getvalue() and "verso models" in err.getvalue()
    remote = replace(loaded, ref=ModelRef.remote("http://127.0.0.1:1", "m"))
    err = io.StringIO()
    note_advice("translate", remote, err)
    assert err.getvalue() == ""


def test_verso_translate_and_summarize_note_the_advice_on_stderr(tmp_path: Path):
    from engine.cli import main
    from engine.testing.fake_engine import FakeEngine

    doc = tmp_path / "river.txt"
    doc.write_text("The river floods every spring. Farmers plant rice after it.")
    for argv, expected in ((["translate", str(doc), "--to", "fr"], "translating"),
                           (["summarize", str(doc)], "summarizing")):
        out, err = io.StringIO(), io.StringIO()
        fake = FakeEngine(replies=("La rivière déborde.",))
        code = main(argv, stdin=io.StringIO(""), out=out, err=err,
                    engine_factory=lambda reproducible, fake=fake: fake)  # bundled SmolLM2
        assert code == 0, err.getvalue()
        assert f"note: SmolLM2 135M Instruct is a poor fit for {expected}" in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    main(["summarize", str(doc), "--mode", "extractive"], stdin=io.StringIO(""), out=out,
         err=err)
    assert "note:" not in err.getvalue()  # no model, no advice


def test_a_cpu_only_build_says_so_plainly():
    from engine.worker.gpu_probe import probe_gpu

    info = probe_gpu(timeout=60)
    assert info.problem is None and "CPU" in info.backends
    assert info.cpu_only and not info.usable and info.free_bytes is None
    assert info.summary().startswith("CPU only: this build of llama.cpp has no GPU backend")


def test_a_gpu_build_reports_its_devices_and_free_memory():
    gpu = GpuInfo(("CPU", "CUDA"), True, (
        GpuDevice("CUDA0", "NVIDIA H200", "CUDA", 140 << 30, 143 << 30),
        GpuDevice("CUDA1", "NVIDIA H200", "CUDA", 10 << 30, 143 << 30)))
    assert gpu.backend == "CUDA" and gpu.usable and gpu.free_bytes == 150 << 30
    assert gpu.summary().startswith("CUDA: NVIDIA H200 (150.3 GB free of 153.5 GB)")
    assert GpuInfo.from_dict(gpu.to_dict()) == gpu
    no_device = GpuInfo(("CPU", "CUDA"), True, ())
    assert not no_device.usable and "no CUDA device was found" in no_device.summary()
    metal = GpuInfo(("Metal", "BLAS", "CPU"), True, (GpuDevice("Metal", "Apple M2", "Metal",
                                                               None, None),))
    assert metal.backend == "Metal" and "free memory not reported" in metal.summary()
