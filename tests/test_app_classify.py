"""The Workbench's Classify tab end to end, with the real default model in a real engine
process (one window for the module), checked against ``engine.tasks.classify`` run on the
same engine client."""

from __future__ import annotations

import csv
import math

import pytest
from PySide6.QtCore import Qt

from app.panels.workbench import CLASSIFY
from app.panels.workbench_classify import FILE, ONE_TEXT, SETUP_FILE, ClassifyView
from app.widgets.classify_inputs import LABEL_PRESETS
from engine import paths
from engine.events import Done, FinishReason
from engine.tasks.classify import ClassifyResult, classify
from tests.windows import module_window_fixture

TIMEOUT_MS = 60_000
LABELS = ("positive", "negative")
POSITIVE = "I absolutely loved this movie, it was wonderful!"
MIXED = "The plot was thin but the actors did what they could."
EXAMPLES = [("The food was cold and the waiter ignored us.", "negative"),
            ("Best concert of my life, I want to go again!", "positive")]


window = module_window_fixture("classify-home")


@pytest.fixture
def view(window, qtbot) -> ClassifyView:
    panel = window.workbench
    view = panel.classify
    qtbot.waitUntil(lambda: not view.running, timeout=TIMEOUT_MS)
    panel.work.setCurrentIndex(CLASSIFY)
    view.set_labels(LABELS)
    view.instruction.clear()
    view.examples.clear()
    view.text.clear()
    view.modes.setCurrentIndex(ONE_TEXT)
    view._update()
    return view


def finish(qtbot, view: ClassifyView, start) -> object:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(view.finished, timeout=TIMEOUT_MS) as blocker:
        assert start() is not None, view.problems()
    return blocker.args[0]


def engine_classify(qtbot, window, text: str, labels=LABELS, few_shot=(),  # type: ignore[no-untyped-def]
                    instruction: str | None = None) -> ClassifyResult:
    """``classify`` on the GUI's own engine client, queued through the bridge like the tab."""
    found: list[ClassifyResult] = []

    def run(client, cancelled):  # type: ignore[no-untyped-def]
        yield classify(client, text, labels, few_shot, instruction)

    job = window.bridge.run_task("test-classify", run)
    job.yielded.connect(lambda event: found.append(event)
                      if isinstance(event, ClassifyResult) else None)
    with qtbot.waitSignal(job.finished, timeout=TIMEOUT_MS) as blocker:
        pass
    assert blocker.args[0] is None and found
    return found[0]


def assert_distribution(result: ClassifyResult, labels=LABELS) -> None:  # type: ignore[no-untyped-def]
    assert list(result.probabilities) == list(labels)
    assert math.fsum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert result.label == max(result.probabilities, key=result.probabilities.get)


def test_one_text_shows_every_label_probability_like_the_engine(qtbot, window, view):
    view.choose_preset("Sentiment")
    sentiment = ("positive", "negative", "neutral")
    assert view.labels() == list(sentiment)
    view.text.setPlainText(POSITIVE)
    assert view.run_button.isEnabled()
    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not view.running, timeout=TIMEOUT_MS)
    assert not view.error.isVisible()
    result = view.result
    assert result is not None
    assert_distribution(result, sentiment)
    expected = engine_classify(qtbot, window, POSITIVE, sentiment)
    assert result.label == expected.label == "positive"
    for label in sentiment:
        assert result.probabilities[label] == pytest.approx(expected.probabilities[label],
                                                            abs=1e-4)
    # The bars: every label, most probable first, the chosen one marked.
    probabilities = [p for _, p in view.bars.rows]
    assert view.bars.rows[0][0] == result.label == view.bars.chosen
    assert probabilities == sorted(probabilities, reverse=True)
    assert len(view.bars.rows) == 3 and math.fsum(probabilities) == pytest.approx(1.0)
    assert view.result_title.text().startswith("positive")


def test_few_shot_examples_and_the_instruction_reach_the_model(qtbot, window, view):
    instruction = "Is this review positive or negative? Answer with one of: {labels}."
    for text, label in EXAMPLES:
        view.examples.add_row(text, label)
    view.instruction.setPlainText(instruction)
    view.text.setPlainText(MIXED)
    assert finish(qtbot, view, view.run) is None
    result = view.result
    assert result is not None
    assert_distribution(result)
    with_examples = engine_classify(qtbot, window, MIXED, LABELS, EXAMPLES, instruction)
    without = engine_classify(qtbot, window, MIXED, LABELS)
    assert result.label == with_examples.label
    for label in LABELS:
        assert result.probabilities[label] == pytest.approx(
            with_examples.probabilities[label], abs=1e-4)
    assert result.logprobs["positive"] != pytest.approx(without.logprobs["positive"],
                                                        abs=1e-3)


def test_batch_over_a_file_writes_the_cli_csv(qtbot, window, view, tmp_path):
    lines = [POSITIVE, "This was the worst, most boring film I have ever seen.",
             "The tickets were cheap.", "Great, another delay. Just great."]
    source = tmp_path / "reviews.txt"
    source.write_text(f"{lines[0]}\n{lines[1]}\n\n{lines[2]}\n{lines[3]}\n", encoding="utf-8")
    progress: list[tuple[int, int]] = []
    view.progress.bar.valueChanged.connect(lambda v: progress.append(
        (v, view.progress.bar.maximum())))
    assert view.open_file(source)
    assert view.lines == lines and view.table.rowCount() == 4
    assert view.modes.currentIndex() == FILE and view.batch_button.isEnabled()
    assert not view.export_button.isEnabled()
    assert finish(qtbot, view, view.run_batch) is None
    assert [text for text, _ in view.batch_rows] == lines
    assert progress and progress[-1] == (4, 4)
    assert "Classified 4 texts" in view.note.text()
    for row, (_text, result) in enumerate(view.batch_rows):
        assert_distribution(result)
        assert view.table.item(row, 1).text() == result.label
    first = engine_classify(qtbot, window, lines[0])
    assert view.batch_rows[0][1].label == first.label
    out = tmp_path / "out.csv"
    assert view.export_button.isEnabled() and view.export_csv(out)
    with open(out, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["text", "label", "p_positive", "p_negative", "calibrated", "raw_label",
                       "raw_p_positive", "raw_p_negative"]
    assert len(rows) == 1 + len(lines)
    for row, line, (_text, result) in zip(rows[1:], lines, view.batch_rows, strict=True):
        assert row[0] == line and row[1] == result.label
        assert float(row[2]) + float(row[3]) == pytest.approx(1.0, abs=1e-5)


def test_invalid_labels_or_examples_block_run(qtbot, view, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("one\ntwo\n", encoding="utf-8")
    view.open_file(source)
    view.text.setPlainText(POSITIVE)
    assert view.run_button.isEnabled() and view.batch_button.isEnabled()
    for labels, problem in (("positive, positive", "different"), ("positive", "at least two"),
                            ("positive,,negative", "empty"), ("", "at least two")):
        view.labels_edit.setPlainText(labels)
        assert not view.run_button.isEnabled() and not view.batch_button.isEnabled()
        assert view.problems_label.isVisible() and problem in view.problems_label.text()
        assert view.run() is None and view.run_batch() is None
    view.labels_edit.setPlainText("positive\nnegative\n")
    assert view.labels() == list(LABELS) and view.run_button.isEnabled()
    view.examples.add_row("Lovely.", "happy")
    assert not view.run_button.isEnabled() and "not one of the labels" in \
        view.problems_label.text()
    view.examples.table.item(0, 1).setText("")
    assert not view.run_button.isEnabled() and "no label" in view.problems_label.text()
    view.examples.table.item(0, 1).setText("positive")
    assert view.run_button.isEnabled() and not view.problems_label.isVisible()
    # No model: Run is refused with the reason.
    loaded, view.bridge.loaded = view.bridge.loaded, None
    try:
        view._update()
        assert not view.run_button.isEnabled() and not view.batch_button.isEnabled()
        assert "No model is loaded" in view.problems_label.text()
    finally:
        view.bridge.loaded = loaded
    view._update()
    assert view.run_button.isEnabled()


def test_cancel_stops_a_batch_and_keeps_its_rows(qtbot, view, tmp_path):
    texts = [f"Review number {i}: the film was {'good' if i % 2 else 'bad'}." for i in range(60)]
    source = tmp_path / "many.txt"
    source.write_text("\n".join(texts), encoding="utf-8")
    view.open_file(source)
    with qtbot.waitSignal(view.finished, timeout=TIMEOUT_MS) as blocker:
        assert view.run_batch() is not None
        qtbot.waitUntil(lambda: len(view.batch_rows) >= 2, timeout=TIMEOUT_MS)
        assert view.progress.isVisible() and not view.batch_button.isEnabled()
        qtbot.mouseClick(view.progress.cancel_button, Qt.MouseButton.LeftButton)
    outcome = blocker.args[0]
    assert isinstance(outcome, Done) and outcome.finish_reason is FinishReason.CANCELLED
    done = len(view.batch_rows)
    assert 2 <= done < len(texts)
    assert view.note.text() == f"Cancelled after {done} of {len(texts)} texts."
    assert not view.progress.isVisible() and not view.error.isVisible()
    assert view.batch_button.isEnabled() and view.export_button.isEnabled()
    out = tmp_path / "partial.csv"
    assert view.export_csv(out)
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1 + done


def test_an_engine_error_is_shown_inline(qtbot, view):
    view.text.setPlainText("word " * 3000)  # more than n_ctx=1024 tokens
    outcome = finish(qtbot, view, view.run)
    assert view.error.isVisible() and "tokens" in view.error.text()
    assert "Traceback" not in view.error.text()
    assert getattr(outcome, "message", "") == view.error.text()
    assert view.run_button.isEnabled()


def test_the_setup_is_kept_for_the_next_session(qtbot, window, view):
    view.set_labels(("sport", "politics, economy"))
    view.instruction.setPlainText("Which topic is this text about?")
    view.examples.add_row("The match ended two to one.", "sport")
    view.text.setPlainText("Parliament passed the budget.")
    assert finish(qtbot, view, view.run) is None

    again = ClassifyView(window.bridge)  # what the next start of Verso builds
    qtbot.addWidget(again)
    assert again.labels() == ["sport", "politics, economy"]
    assert again.instruction.toPlainText() == "Which topic is this text about?"
    assert again.examples.rows() == [("The match ended two to one.", "sport")]

    (paths.config_dir() / SETUP_FILE).write_text("{not json", encoding="utf-8")
    fresh = ClassifyView(window.bridge)  # an unreadable file: the defaults, no error
    qtbot.addWidget(fresh)
    assert fresh.labels() == list(LABEL_PRESETS["Sentiment"])
