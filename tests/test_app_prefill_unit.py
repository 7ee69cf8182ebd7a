"""Prefill while typing, the app's side, on the fake engine: the composer's draft is sent to
``Engine.prefill`` after the debounce, never while a reply streams, and sending cancels it.
That the engine's prefill makes replies faster and identical is proved with SmolLM2 in
``test_prefill.py``."""

from __future__ import annotations

import time

import pytest

from app.panels import chat_prefill
from engine.api import Capabilities, Feature
from engine.events import Done, FinishReason
from engine.options import ChatMessage
from engine.testing.fake_engine import FakeEngine

TIMEOUT_MS = 5_000
PREFILL_DELAY_MS = 100  # shorter than the app's, to keep the unit tier fast
PREFILL_MAX_WAIT_MS = 300


@pytest.fixture(autouse=True)
def short_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat_prefill, "PREFILL_DELAY_MS", PREFILL_DELAY_MS)
    monkeypatch.setattr(chat_prefill, "PREFILL_MAX_WAIT_MS", PREFILL_MAX_WAIT_MS)


def _prefills(engine: FakeEngine) -> list:  # type: ignore[type-arg]
    return [c.request for c in engine.calls if c.op == "prefill"]


def _window_with_a_conversation(qtbot, fake_window, engine: FakeEngine):  # type: ignore[no-untyped-def]
    window = fake_window(engine)
    with qtbot.waitSignal(window.chat.replies.reply_finished, timeout=TIMEOUT_MS):
        window.chat.send("What is the capital of France?")
    qtbot.wait(PREFILL_MAX_WAIT_MS + 100)  # the composer was cleared: nothing to prefill
    assert _prefills(engine) == []
    return window


def test_typing_prefills_the_draft_after_the_debounce(qtbot, fake_window):
    engine = FakeEngine(replies=("Paris.",))
    window = _window_with_a_conversation(qtbot, fake_window, engine)
    started = time.monotonic()
    window.chat.composer.edit.setPlainText("And what about")
    qtbot.waitUntil(lambda: bool(_prefills(engine)), timeout=TIMEOUT_MS)
    assert time.monotonic() - started >= PREFILL_DELAY_MS / 1000 * 0.9
    request = _prefills(engine)[-1]
    assert request.messages[-1] == ChatMessage("user", "And what about")
    window.chat.composer.edit.setPlainText("And what about Italy?")
    qtbot.waitUntil(lambda: len(_prefills(engine)) == 2, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(window.chat.replies.reply_finished, timeout=TIMEOUT_MS):
        window.chat.send()
    chat = [c.request for c in engine.calls if c.op == "chat"][-1]
    assert _prefills(engine)[-1] == chat  # the very request Enter made, session included
    assert chat.session_id == window.chat.conversation_id


def test_continuous_typing_still_prefills_every_second(qtbot, fake_window):
    engine = FakeEngine(replies=("Paris.",))
    window = _window_with_a_conversation(qtbot, fake_window, engine)
    edit = window.chat.composer.edit
    deadline = time.monotonic() + 2.5 * PREFILL_MAX_WAIT_MS / 1000
    while time.monotonic() < deadline:  # a keystroke every 50 ms: the debounce never ends
        edit.insertPlainText("word ")
        qtbot.wait(50)
    assert len(_prefills(engine)) >= 2


def test_sending_cancels_a_running_prefill(qtbot, fake_window):
    engine = FakeEngine(replies=("Paris.",), prefill_delay_s=10.0)
    window = _window_with_a_conversation(qtbot, fake_window, engine)
    window.chat.composer.edit.setPlainText("And of Italy?")
    qtbot.waitUntil(lambda: bool(_prefills(engine)), timeout=TIMEOUT_MS)
    job = window.chat.replies.prefill.job
    assert job is not None and not job.done
    started = time.monotonic()
    with qtbot.waitSignal(window.chat.replies.reply_finished, timeout=TIMEOUT_MS) as blocker:
        window.chat.send()
    assert time.monotonic() - started < 2.0  # not after the 10 s prefill
    assert isinstance(blocker.args[1], Done) and blocker.args[1].text == "Paris."
    assert job.done and isinstance(job.outcome, Done)
    assert job.outcome.finish_reason is FinishReason.CANCELLED
    assert window.chat.replies.prefill.job is None


def test_sending_before_the_debounce_sends_no_prefill(qtbot, fake_window):
    engine = FakeEngine(replies=("Paris.",))
    window = _window_with_a_conversation(qtbot, fake_window, engine)
    window.chat.composer.edit.setPlainText("And of Italy?")
    with qtbot.waitSignal(window.chat.replies.reply_finished, timeout=TIMEOUT_MS):
        window.chat.send()
    qtbot.wait(PREFILL_MAX_WAIT_MS + 200)
    assert _prefills(engine) == []


def test_no_prefill_while_a_reply_streams(qtbot, fake_window):
    engine = FakeEngine(replies=("Paris.", " ".join(["word"] * 40)), token_delay_s=0.03)
    window = _window_with_a_conversation(qtbot, fake_window, engine)
    replies = window.chat.replies
    window.chat.send("Tell me a long story.")
    assert replies.busy
    window.chat.composer.edit.setPlainText("Thanks, and now")
    qtbot.wait(PREFILL_MAX_WAIT_MS + 300)
    assert replies.busy and _prefills(engine) == []
    qtbot.waitUntil(lambda: not replies.busy, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: bool(_prefills(engine)), timeout=TIMEOUT_MS)
    assert _prefills(engine)[-1].messages[-1].content == "Thanks, and now"


def test_a_backend_without_prefill_is_not_asked(qtbot, fake_window):
    caps = Capabilities("a server", frozenset(Feature) - {Feature.PREFILL})
    engine = FakeEngine(replies=("Paris.",), capabilities=caps)
    window = _window_with_a_conversation(qtbot, fake_window, engine)
    window.chat.composer.edit.setPlainText("And of Italy?")
    qtbot.wait(PREFILL_MAX_WAIT_MS + 200)
    assert _prefills(engine) == []


def test_a_prefill_cut_short_by_another_job_is_asked_again(qtbot, fake_window):
    engine = FakeEngine(replies=("Paris.",), prefill_delay_s=0.4)
    window = _window_with_a_conversation(qtbot, fake_window, engine)
    jobs: list = []
    submit = window.bridge.prefill

    def recording(request):  # type: ignore[no-untyped-def]
        job = submit(request)
        if job is not None:
            jobs.append(job)
        return job

    window.bridge.prefill = recording
    window.chat.composer.edit.setPlainText("And of Italy?")
    qtbot.waitUntil(lambda: bool(jobs), timeout=TIMEOUT_MS)
    window.bridge.count_tokens("a document")  # any other job goes first
    qtbot.waitUntil(lambda: jobs[0].done, timeout=TIMEOUT_MS)
    assert jobs[0].outcome.finish_reason is FinishReason.CANCELLED
    qtbot.waitUntil(lambda: any(job.done and job.outcome.finish_reason is FinishReason.STOP
                                for job in jobs), timeout=TIMEOUT_MS)
    assert _prefills(engine)[-1].messages[-1].content == "And of Italy?"
