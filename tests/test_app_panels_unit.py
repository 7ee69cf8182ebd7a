"""The panels on the fake engine (``fake_window``): the whole app's wiring in seconds, no
model. What the model writes is scripted, so these prove plumbing, not quality; the
``test_app_*`` files with SmolLM2 prove the features."""

from __future__ import annotations

import pytest

from app.panels.summary_render import summary_markdown
from app.panels.workbench import ATTENTION, CLASSIFY, WorkbenchPanel
from app.widgets.constraint_editors import GRAMMAR, SCHEMA
from engine.api import Capabilities, Feature
from engine.events import Done, Error, ErrorKind, FinishReason
from engine.testing.fake_engine import FakeEngine

TIMEOUT_MS = 5_000
REPLY = "Here is a **bold** answer with three parts."
MISSING = frozenset({Feature.ATTENTION, Feature.TOKEN_PROBS, Feature.GRAMMAR,
                     Feature.GRAMMAR_CHECK, Feature.SCORE})
BACKEND = "a test backend"


class CountingFake(FakeEngine):
    """Records the texts whose tokens the app asked the engine to count."""

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.counted: list[str] = []

    def count_tokens(self, text: str) -> int:
        self.counted.append(text)
        return super().count_tokens(text)


def _send(qtbot, window, text: str) -> tuple[str, object]:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(window.chat.replies.reply_finished, timeout=TIMEOUT_MS) as blocker:
        window.chat.send(text)
    return blocker.args[0], blocker.args[1]


# ------------------------------------------------------------------------- chat

def test_a_chat_reply_streams_into_its_bubble_and_is_stored(qtbot, fake_window):
    window = fake_window(FakeEngine(replies=(REPLY,), token_delay_s=0.002))
    chunks: list[str] = []
    window.chat.replies.reply_started.connect(lambda _id, job: job.text.connect(chunks.append))
    message_id, done = _send(qtbot, window, "Tell me something.")
    assert isinstance(done, Done) and done.text == REPLY == "".join(chunks)
    stored = window.store.get_message(message_id)
    assert stored.status == "complete" and stored.content == REPLY
    assert stored.stats["generated_tokens"] == len(REPLY.split())
    assert window.chat.view.bubble(message_id).text() == REPLY
    assert window.chat.composer.text() == "" and not window.chat.replies.busy
    qtbot.waitUntil(lambda: "/ 1,024 tokens" in window.chat.composer.meter.text())
    assert window.bridge.engine.ops().count("chat") == 1


def test_the_bubble_shows_the_reply_while_it_streams(qtbot, fake_window):
    words = [f"w{i}" for i in range(200)]
    window = fake_window(FakeEngine(replies=(" ".join(words),), token_delay_s=0.005))
    replies = window.chat.replies
    window.chat.send("Stream, please.")
    bubble = window.chat.view.bubble(replies.active.message_id)
    qtbot.waitUntil(lambda: len(bubble.text().split()) >= 5, timeout=TIMEOUT_MS)
    assert replies.busy and bubble.streaming  # shown live, before the reply finished
    assert words[: len(bubble.text().split())] == bubble.text().split()
    window.chat.stop()
    qtbot.waitUntil(lambda: not replies.busy, timeout=TIMEOUT_MS)


def test_a_crash_mid_reply_keeps_the_partial_text_and_offers_retry(qtbot, fake_window):
    engine = FakeEngine(replies=(REPLY,))
    window = fake_window(engine)
    engine.crash_next(after_tokens=3)
    message_id, error = _send(qtbot, window, "Tell me something.")
    assert isinstance(error, Error) and error.kind is ErrorKind.ENGINE_CRASHED
    stored = window.store.get_message(message_id)
    assert stored.status == "error" and stored.content == "Here is a" and stored.error
    bubble = window.chat.view.bubble(message_id)
    assert not bubble.error_box.isHidden() and not bubble.retry_button.isHidden()
    assert "crashed" in bubble.error_label.text()
    assert bubble.text() == "Here is a"
    with qtbot.waitSignal(window.chat.replies.reply_finished, timeout=TIMEOUT_MS) as blocker:
        bubble.retry_button.click()
    retry_id, done = blocker.args
    assert isinstance(done, Done) and retry_id != message_id and engine.restarts == 1
    assert window.store.get_message(retry_id).content == REPLY
    assert window.store.get_message(message_id).content == "Here is a"  # kept as version 1


def test_stop_cancels_the_reply_and_keeps_what_streamed(qtbot, fake_window):
    window = fake_window(FakeEngine(replies=(" ".join(["word"] * 300),), token_delay_s=0.01))
    replies = window.chat.replies
    started: list[object] = []
    replies.reply_started.connect(lambda _id, job: started.append(job))
    window.chat.send("Go on and on.")
    qtbot.waitSignal(started[0].text, timeout=TIMEOUT_MS).wait()
    with qtbot.waitSignal(replies.reply_finished, timeout=TIMEOUT_MS) as blocker:
        window.chat.stop()
    message_id, done = blocker.args
    assert isinstance(done, Done) and done.finish_reason is FinishReason.CANCELLED
    stored = window.store.get_message(message_id)
    assert stored.status == "cancelled" and stored.content == done.text
    assert 0 < len(done.text.split()) < 300


# ------------------------------------------------------------------- workbench

def _workbench(window) -> WorkbenchPanel:  # type: ignore[no-untyped-def]
    window.sidebar.setCurrentRow(window.stack.indexOf(window.workbench))
    return window.workbench


def _run(qtbot, wb: WorkbenchPanel):  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(wb.run_finished, timeout=TIMEOUT_MS) as blocker:
        assert wb.run() is not None, wb.problems()
    return blocker.args[0]


def test_workbench_explains_what_the_backend_cannot_do(qtbot, fake_window):
    caps = Capabilities(BACKEND, frozenset(Feature) - MISSING)
    engine = FakeEngine(replies=("It sat on the mat.",), capabilities=caps)
    wb = _workbench(fake_window(engine))
    why = f"not available with {BACKEND}"
    # Tokens: no probabilities, no attention; the alternatives control is off.
    notice = wb.tokens.notice.text()
    assert not wb.tokens.notice.isHidden()
    # (engine.api.unavailable_message: "<Feature> is/are not available with <backend>.")
    assert f"Token probabilities are {why}" in notice and f"Attention capture is {why}" in notice
    assert not wb.n_probs.isEnabled() and why in wb.n_probs.toolTip()
    assert not wb.tokens.attention_enabled
    # Constraints: every grammar-based shape is off, with the reason.
    model = wb.constraints.shape.model()
    assert not model.item(GRAMMAR).isEnabled() and not model.item(SCHEMA).isEnabled()
    assert f"Grammar constraints (GBNF) are {why}" in wb.constraints.unavailable_note.text()
    # A run still works, without asking for what the backend lacks.
    wb.editor.setPlainText("The cat")
    run = _run(qtbot, wb)
    assert run.done is not None and run.text == "It sat on the mat."
    request = [c.request for c in engine.calls if c.op == "complete"][-1]
    assert request.sampling.n_probs == 0 and request.sampling.grammar is None
    # Attention asked for anyway: the reason, not an engine error.
    assert wb.show_attention(0, 1) is None
    assert wb.work.currentIndex() == ATTENTION
    assert wb.attention.title.text() == f"Attention capture is {why}."
    # Classify needs scoring: refused with the reason.
    wb.work.setCurrentIndex(CLASSIFY)
    view = wb.classify
    view.text.setPlainText("I loved it.")
    assert not view.run_button.isEnabled()
    assert f"Scoring continuations (classification) is {why}" in view.problems_label.text()
    assert view.run() is None and "score" not in engine.ops()


def test_workbench_uses_every_feature_the_backend_has(qtbot, fake_window):
    engine = FakeEngine(replies=("It sat on the mat.",))
    wb = _workbench(fake_window(engine))
    assert wb.tokens.notice.isHidden() and wb.n_probs.isEnabled()
    assert wb.constraints.unavailable_note.isHidden() and wb.tokens.attention_enabled
    wb.editor.setPlainText("The cat")
    run = _run(qtbot, wb)
    request = [c.request for c in engine.calls if c.op == "complete"][-1]
    assert request.sampling.n_probs == wb.n_probs.value() > 0
    job = wb.show_attention(0, 1)
    assert job is not None
    qtbot.waitUntil(lambda: wb.attention.map is not None, timeout=TIMEOUT_MS)
    assert wb.attention.map.query_position == len(run.prompt_tokens)
    wb.work.setCurrentIndex(CLASSIFY)
    view = wb.classify
    view.set_labels(["positive", "negative"])
    view.text.setPlainText("I loved it.")
    with qtbot.waitSignal(view.finished, timeout=TIMEOUT_MS) as blocker:
        assert view.run() is not None, view.problems()
    assert blocker.args[0] is None and view.result is not None and "score" in engine.ops()


def _meh_scorer(prompt: str, continuation: str) -> float:
    """A model that prefers "meh" whatever the text; "great" lifts "good", not above it."""
    text = prompt.rsplit("<user>", 1)[-1]
    if continuation.strip().startswith("meh"):
        return -1.0
    return -3.0 + (1.5 if "great" in text else 0.0)


def _classify_one(qtbot, view, text: str):  # type: ignore[no-untyped-def]
    view.text.setPlainText(text)
    with qtbot.waitSignal(view.finished, timeout=TIMEOUT_MS) as blocker:
        assert view.run() is not None, view.problems()
        assert not view.calibrate.isEnabled()  # fixed while it runs
    assert blocker.args[0] is None and view.calibrate.isEnabled()
    return view.result


def test_the_calibration_switch_reaches_the_engine_and_the_result(qtbot, fake_window,
                                                                 tmp_path):
    engine = FakeEngine(scorer=_meh_scorer)
    wb = _workbench(fake_window(engine))
    wb.work.setCurrentIndex(CLASSIFY)
    view = wb.classify
    view.set_labels(["good", "meh"])
    assert view.calibrate.isChecked() and view.spec().calibrate  # on by default
    result = _classify_one(qtbot, view, "What a great day.")
    assert result.calibrated and result.label == "good" and result.raw_label == "meh"
    assert engine.ops().count("score") == 1 + 3  # the text, then the content-free texts
    note = view.calibration_note.text()
    assert "the model's own pick is meh" in note and "that say nothing it gives meh" in note
    assert view.bars.chosen == "good" and view.result_title.text().startswith("good")

    view.calibrate.setChecked(False)
    assert not view.spec().calibrate
    result = _classify_one(qtbot, view, "What a great day.")
    assert not result.calibrated and result.label == "meh"
    assert engine.ops().count("score") == 1 + 3 + 1
    assert view.calibration_note.text().startswith("Not calibrated")

    source = tmp_path / "days.txt"
    source.write_text("A great day.\nAnother great day.\n", encoding="utf-8")
    for on, header, label in ((True, "Raw label", "good"), (False, "meh", "meh")):
        view.calibrate.setChecked(on)
        assert view.open_file(source)
        with qtbot.waitSignal(view.finished, timeout=TIMEOUT_MS):
            assert view.run_batch() is not None
        last = view.table.columnCount() - 1
        assert view.table.horizontalHeaderItem(last).text() == header
        assert [view.table.item(r, 1).text() for r in range(2)] == [label, label]
        if on:
            assert [view.table.item(r, last).text() for r in range(2)] == ["meh", "meh"]
    # The choice is kept for the next session.
    view.calibrate.setChecked(False)
    view.save_setup()
    again = type(view)(view.bridge)
    qtbot.addWidget(again)
    assert not again.calibrate.isChecked()


# ------------------------------------------------------------ document panels

TEXT = ("We walked along the river to the sea.\n\nThe river was wide and calm.\n\n"
        "Birds flew over the water.")


def _respond(prompt: str) -> str:
    if "French" in prompt:
        return "Nous avons marché le long de la rivière."
    return "- The river flows to the sea."


def _read(qtbot, picker) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: not (picker.reading or picker.counting), timeout=TIMEOUT_MS)


def test_documents_are_counted_by_the_engine_and_unknown_without_a_model(qtbot, fake_window):
    engine = CountingFake()
    window = fake_window(engine, load=False)
    panel = window.summarize
    panel.picker.add_text(TEXT)
    _read(qtbot, panel.picker)
    assert "tokens counted once a model is loaded" in panel.picker.list.item(0).text()
    assert engine.counted == []
    with qtbot.waitSignal(window.bridge.model_loaded, timeout=TIMEOUT_MS):
        window.load_model("/fake-models/fake-model.gguf")
    _read(qtbot, panel.picker)
    document = panel.picker.documents()[0]
    tokens = engine.count_tokens(document.to_markdown())
    assert engine.counted[0] == document.to_markdown()
    assert f"· {tokens:,} tokens" in panel.picker.list.item(0).text()
    assert f"{tokens:,} tokens" in panel.plan.text()


def test_summarize_runs_end_to_end_on_the_fake_engine(qtbot, fake_window):
    window = fake_window(FakeEngine(respond=_respond))
    panel = window.summarize
    window.sidebar.setCurrentRow(window.stack.indexOf(panel))
    panel.picker.add_text(TEXT)
    _read(qtbot, panel.picker)
    with qtbot.waitSignal(panel.finished, timeout=TIMEOUT_MS) as blocker:
        panel.run_button.click()
    assert blocker.args[0] is None, panel.error.text()
    assert "The river flows to the sea. [1]" in panel.result_view.toPlainText()
    assert panel.show_citation(1) and "river was wide" in panel.source_view.toPlainText()
    assert panel.run_button.isEnabled() and panel._job is None


def test_translate_runs_end_to_end_and_cancel_is_its_own(qtbot, fake_window):
    engine = FakeEngine(respond=_respond)
    window = fake_window(engine)
    panel = window.translate
    window.sidebar.setCurrentRow(window.stack.indexOf(panel))
    panel.picker.add_text("We walked along the river.\n\nThe library opens at nine.")
    _read(qtbot, panel.picker)
    with qtbot.waitSignal(panel.finished, timeout=TIMEOUT_MS) as blocker:
        panel.run_button.click()
    assert blocker.args == ["translate", None], panel.error.text()
    assert [panel.review.item(r, 1).text() for r in range(panel.review.rowCount())] == [
        "Nous avons marché le long de la rivière."] * 2
    # A chat reply queued behind a re-translation: cancelling the one leaves the other.
    engine.token_delay_s = 0.01
    panel.review.selectRow(0)
    assert panel.retranslate_segment(0)
    job = panel._job
    reply_finished: list[object] = []
    window.chat.replies.reply_finished.connect(lambda _id, e: reply_finished.append(e))
    window.chat.send("Hello?")
    with qtbot.waitSignal(panel.finished, timeout=TIMEOUT_MS) as blocker:
        job.cancel()
    assert blocker.args[0] == "retranslate" and isinstance(blocker.args[1], Done)
    qtbot.waitUntil(lambda: bool(reply_finished), timeout=TIMEOUT_MS)
    assert isinstance(reply_finished[0], Done)
    assert reply_finished[0].finish_reason is FinishReason.STOP


@pytest.mark.parametrize("feature", [Feature.SCORE])
def test_classify_alone_reports_its_missing_feature(qtbot, fake_window, feature):
    caps = Capabilities(BACKEND, frozenset(Feature) - {feature})
    view = _workbench(fake_window(FakeEngine(capabilities=caps))).classify
    assert f"is not available with {BACKEND}" in view.problems_label.text()


def _repeating_for(*needles: str):  # type: ignore[no-untyped-def]
    return lambda prompt: (FinishReason.REPEATING if any(n in prompt for n in needles)
                           else None)


def test_summarize_shows_when_the_model_was_stopped_for_repeating(qtbot, fake_window):
    window = fake_window(FakeEngine(respond=_respond, finisher=_repeating_for("numbered notes")))
    panel = window.summarize
    window.sidebar.setCurrentRow(window.stack.indexOf(panel))
    panel.picker.add_text(TEXT)
    _read(qtbot, panel.picker)
    with qtbot.waitSignal(panel.finished, timeout=TIMEOUT_MS) as blocker:
        panel.run_button.click()
    assert blocker.args[0] is None, panel.error.text()
    note = ("Stopped: the model was repeating itself (in the final summary step, which was "
            "cut short).")
    shown = panel.result_view.toPlainText()
    assert note in shown and "The river flows to the sea." in shown
    assert "stopped: the model was repeating itself" in panel.result_note.text()
    assert note in summary_markdown(panel.outcome.result)


def test_translate_flags_a_segment_stopped_for_repeating(qtbot, fake_window):
    window = fake_window(FakeEngine(respond=_respond, finisher=_repeating_for("library")))
    panel = window.translate
    window.sidebar.setCurrentRow(window.stack.indexOf(panel))
    panel.picker.add_text("We walked along the river.\n\nThe library opens at nine.")
    _read(qtbot, panel.picker)
    with qtbot.waitSignal(panel.finished, timeout=TIMEOUT_MS) as blocker:
        panel.run_button.click()
    assert blocker.args == ["translate", None], panel.error.text()
    notes = [panel.review.item(r, 3).text() for r in range(panel.review.rowCount())]
    reason = "Stopped: the model was repeating itself, so the translation may be cut short."
    assert reason not in notes[0] and reason in notes[1]
    assert "1 stopped because the model was repeating itself" in panel.review_note.text()
    assert "1 to review" in panel.review_note.text()
