"""A summary reports its segmentation (seconds per megabyte on a real tokenizer) as the
"segment" stage and can be cancelled during it."""

from __future__ import annotations

import threading
import time

import pytest

from engine.documents import document_from_text
from engine.errors import Cancelled
from engine.options import LoadSettings
from engine.tasks import summarize as summarize_module
from engine.tasks.jobs import TaskProgress
from engine.tasks.summarize import SummarizeSettings, SummaryResult, summarize
from engine.testing.fake_engine import FakeEngine


class SlowCounting(FakeEngine):
    """Counts tokens at about the speed of a real tokenizer on a long text."""

    def count_tokens(self, text: str) -> int:
        time.sleep(0.002)
        return super().count_tokens(text)


def _engine() -> FakeEngine:
    engine = SlowCounting(respond=lambda prompt: "- A point about words [1].")
    list(engine.load(LoadSettings(path="/fake-models/fake-model.gguf")))
    return engine


TEXT = "word " * 6000  # no sentence breaks: cut by token counts


def test_segmenting_is_reported_in_percent_before_the_chunks(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(summarize_module, "_SEGMENT_POLL_S", 0.02)
    events = list(summarize(_engine(), [document_from_text(TEXT, name="one.txt")],
                            SummarizeSettings(chunk_tokens=256, n_parallel=1)))
    stages = [e.stage for e in events if isinstance(e, TaskProgress)]
    segment = [e.done for e in events if isinstance(e, TaskProgress) and e.stage == "segment"]
    assert len(segment) >= 3 and segment == sorted(segment) and segment[-1] <= 100
    assert stages.index("map") > max(i for i, s in enumerate(stages) if s == "segment")
    assert isinstance(events[-1], SummaryResult) and len(events[-1].chunks) > 10


def test_a_cancel_while_segmenting_stops_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(summarize_module, "_SEGMENT_POLL_S", 0.02)
    cancelled = threading.Event()
    events = summarize(_engine(), [document_from_text(TEXT * 4, name="long.txt")],
                       SummarizeSettings(chunk_tokens=256, n_parallel=1), cancel=cancelled.is_set)
    first = next(events)
    assert isinstance(first, TaskProgress) and first.stage == "segment"
    start = time.monotonic()
    cancelled.set()
    with pytest.raises(Cancelled):
        list(events)
    assert time.monotonic() - start < 2.0
    assert not [t for t in threading.enumerate() if t.name.startswith("verso-segment")]
