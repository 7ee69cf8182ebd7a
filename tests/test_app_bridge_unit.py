"""The bridge's jobs and handles on the fake engine: fast, no model, no engine process."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from app.bridge import Coalescer, EngineBridge, TokenCount, coalesce
from engine.api import Capabilities, Feature
from engine.events import (
    ContextTrimmed,
    Done,
    Error,
    ErrorKind,
    FinishReason,
    ModelLoaded,
    Rollback,
    fold_text,
)
from engine.options import ChatMessage, ChatRequest, LoadSettings
from engine.testing.fake_engine import FakeEngine

TIMEOUT_MS = 5_000
MODEL = "/fake-models/fake-model.gguf"


def _request(text: str = "Hi") -> ChatRequest:
    return ChatRequest((ChatMessage("user", text),))


class ListSink:
    """A ReplySink that records what it was told, and in which thread."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.ended: Done | Error | None = None
        self.threads: set[int] = set()

    def text(self, chunk: str) -> None:
        self.threads.add(threading.get_ident())
        self.chunks.append(chunk)

    def rollback(self, event: Rollback) -> None:
        fold_text(self.chunks, event)

    def trimmed(self, event: ContextTrimmed) -> None:
        pass

    def done(self, event: Done) -> None:
        self.ended = event

    def failed(self, event: Error) -> None:
        self.ended = event


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(replies=("One two three four five six seven eight.",))


@pytest.fixture
def bridge(qtbot, engine) -> Iterator[EngineBridge]:
    bridge = EngineBridge(lambda: engine)
    with qtbot.waitSignal(bridge.model_loaded, timeout=TIMEOUT_MS):
        bridge.load(LoadSettings(path=MODEL))
    yield bridge
    bridge.shutdown()


def _finish(qtbot, job) -> object:  # type: ignore[no-untyped-def]
    if not job.done:
        with qtbot.waitSignal(job.finished, timeout=TIMEOUT_MS):
            pass
    return job.outcome


def _tagged(tag: str, n: int = 3):  # type: ignore[no-untyped-def]
    def run(engine, cancelled):  # type: ignore[no-untyped-def]
        for i in range(n):
            yield (tag, i)
            yield f"{tag}{i} "
        return Done(FinishReason.STOP, tag)
    return run


def test_each_handle_gets_only_its_own_events(qtbot, bridge):
    a, b = bridge.run_task("a", _tagged("a")), bridge.run_task("b", _tagged("b"))
    seen: dict[str, list[object]] = {"a": [], "b": []}
    texts: dict[str, list[str]] = {"a": [], "b": []}
    ends: dict[str, list[object]] = {"a": [], "b": []}
    for name, job in (("a", a), ("b", b)):
        job.yielded.connect(seen[name].append)
        job.text.connect(texts[name].append)
        job.finished.connect(ends[name].append)
    _finish(qtbot, b)
    assert a.done and b.done and a.id != b.id
    assert seen == {"a": [("a", 0), ("a", 1), ("a", 2)], "b": [("b", 0), ("b", 1), ("b", 2)]}
    assert "".join(texts["a"]) == "a0 a1 a2 " and "".join(texts["b"]) == "b0 b1 b2 "
    assert [e.text for e in ends["a"]] == ["a"] and [e.text for e in ends["b"]] == ["b"]
    assert not bridge.busy and not bridge.jobs()


def test_cancelling_a_queued_job_leaves_the_running_one_alone(qtbot, bridge, engine):
    engine.token_delay_s = 0.02
    ran: list[str] = []

    def second(engine, cancelled):  # type: ignore[no-untyped-def]
        ran.append("second")
        yield "never"

    first = bridge.chat(_request())
    queued = bridge.run_task("second", second)
    with qtbot.waitSignal(first.text, timeout=TIMEOUT_MS):
        pass
    queued.cancel()
    end = _finish(qtbot, first)
    assert isinstance(end, Done) and end.finish_reason is FinishReason.STOP
    assert end.text == "One two three four five six seven eight."
    outcome = _finish(qtbot, queued)
    assert isinstance(outcome, Done) and outcome.finish_reason is FinishReason.CANCELLED
    assert ran == []  # skipped without running


def test_a_chat_reply_cancelled_while_queued_is_recorded_as_cancelled(qtbot, bridge, engine):
    """Esc on a reply still waiting behind another job: its stored row must not stay
    'streaming' (the sink hears the cancel although the task never runs)."""
    engine.token_delay_s = 0.02
    first = bridge.chat(_request())
    sink = ListSink()
    queued = bridge.chat(_request("later"), sink)
    with qtbot.waitSignal(first.text, timeout=TIMEOUT_MS):
        pass
    queued.cancel()
    outcome = _finish(qtbot, queued)
    assert isinstance(outcome, Done) and outcome.finish_reason is FinishReason.CANCELLED
    assert isinstance(sink.ended, Done) and sink.ended.finish_reason is FinishReason.CANCELLED
    assert engine.ops().count("chat") == 1


def test_cancelling_the_running_job_leaves_the_queued_one_alone(qtbot, bridge, engine):
    engine.token_delay_s = 0.02
    first = bridge.chat(_request())
    second = bridge.chat(_request("Again"))
    texts: list[str] = []
    second.text.connect(texts.append)
    with qtbot.waitSignal(first.text, timeout=TIMEOUT_MS):
        pass
    first.cancel()
    stopped = _finish(qtbot, first)
    assert isinstance(stopped, Done) and stopped.finish_reason is FinishReason.CANCELLED
    assert len(stopped.text.split()) < 8
    end = _finish(qtbot, second)
    assert isinstance(end, Done) and end.finish_reason is FinishReason.STOP
    assert "".join(texts) == end.text == "One two three four five six seven eight."


def test_a_chat_reply_is_stored_by_its_sink_in_the_engine_thread(qtbot, bridge):
    sink = ListSink()
    job = bridge.chat(_request(), sink)
    texts: list[str] = []
    job.text.connect(texts.append)
    end = _finish(qtbot, job)
    assert isinstance(end, Done) and sink.ended is end
    assert "".join(sink.chunks) == "".join(texts) == end.text
    assert threading.get_ident() not in sink.threads


def test_a_crash_mid_reply_keeps_the_partial_text_and_the_next_reply_reloads(qtbot, bridge,
                                                                            engine):
    engine.crash_next(after_tokens=3)
    sink = ListSink()
    job = bridge.chat(_request(), sink)
    end = _finish(qtbot, job)
    assert isinstance(end, Error) and end.kind is ErrorKind.ENGINE_CRASHED
    assert sink.ended is end and "".join(sink.chunks) == end.partial_text == "One two three"
    with qtbot.waitSignal(bridge.model_loaded, timeout=TIMEOUT_MS):  # restarted, reloaded
        again = bridge.chat(_request())
    assert isinstance(_finish(qtbot, again), Done) and engine.restarts == 1


def test_an_engine_refusal_ends_the_reply_with_its_kind(qtbot, bridge):
    sink = ListSink()
    job = bridge.chat(ChatRequest((ChatMessage("user", "word " * 4000),)), sink)
    end = _finish(qtbot, job)
    assert isinstance(end, Error) and end.kind is ErrorKind.CONTEXT_OVERFLOW
    assert sink.ended is end


def test_streamed_text_is_coalesced(qtbot, bridge, engine):
    engine.replies = (" ".join(f"w{i}" for i in range(400)),)
    job = bridge.chat(_request())
    texts: list[str] = []
    job.text.connect(texts.append)
    end = _finish(qtbot, job)
    assert "".join(texts) == end.text
    assert len(texts) < 100  # 400 tokens in well under a second: far fewer repaints


def test_coalescer_batches_by_time_and_final_items():
    now = [0.0]
    c: Coalescer[int] = Coalescer(flush_s=1.0, clock=lambda: now[0])
    assert c.add(1) == [1]  # the first item at once
    assert c.add(2) is None and c.add(3) is None
    now[0] = 1.5
    assert c.add(4) == [2, 3, 4]
    assert c.add(5, force=True) == [5]
    assert c.flush() == []
    now[0] = 0.0
    batches = list(coalesce([1, 2, 3, "end", 4], final=lambda x: x == "end",
                            clock=lambda: 0.0))
    assert batches == [[1], [2, 3, "end"], [4]]


def test_token_counts_go_through_the_engine(qtbot, bridge, engine):
    messages = (ChatMessage("user", "How many tokens is this?"),)
    counts: list[object] = []
    chat = bridge.count_chat_tokens(messages)
    chat.yielded.connect(counts.append)
    text = bridge.count_tokens(lambda: "three small words")
    text.yielded.connect(counts.append)
    _finish(qtbot, text)
    assert counts == [TokenCount(engine.count_chat_tokens(messages)), TokenCount(3)]
    engine.unload()
    unknown = bridge.count_chat_tokens(messages)
    got: list[object] = []
    unknown.yielded.connect(got.append)
    _finish(qtbot, unknown)
    assert got == [TokenCount(None)]  # no model: unknown, not an error


def test_load_failure_and_cancel_reach_the_global_signals(qtbot, bridge, engine):
    with qtbot.waitSignal(bridge.load_failed, timeout=TIMEOUT_MS) as blocker:
        job = bridge.load(LoadSettings(path="/"))
    assert blocker.args[0].kind is ErrorKind.MODEL_NOT_FOUND
    assert job.outcome is blocker.args[0] and bridge.loading is None
    engine.load_delay_s = 2.0
    job = bridge.load(LoadSettings(path=MODEL))
    assert bridge.busy
    with qtbot.waitSignal(bridge.load_cancelled, timeout=TIMEOUT_MS):
        bridge.cancel_load()
    assert isinstance(job.outcome, Done) and not bridge.busy and bridge.loading is None
    engine.load_delay_s = 0.0
    loaded: list[ModelLoaded] = []
    bridge.model_loaded.connect(loaded.append)
    job = bridge.load(LoadSettings(path=MODEL))
    assert isinstance(_finish(qtbot, job), ModelLoaded) and len(loaded) == 1


def test_missing_features_are_explained_with_the_backend_name(qtbot):
    caps = Capabilities("a remote test server", frozenset({Feature.SESSIONS}))
    bridge = EngineBridge(lambda: FakeEngine(capabilities=caps))
    try:
        assert not bridge.has(Feature.ATTENTION) and bridge.has(Feature.SESSIONS)
        assert bridge.unavailable(Feature.ATTENTION) == (
            "Attention capture is not available with a remote test server.")
        assert bridge.unavailable(Feature.SESSIONS) == ""
    finally:
        bridge.shutdown()
