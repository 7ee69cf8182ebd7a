"""The Workbench part of ``python -m app.screenshots``: real runs (a completion, a branch,
a comparison, an attention capture), then each tab grabbed in the current theme."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from app.widgets.constraint_editors import SCHEMA

if TYPE_CHECKING:
    from PySide6.QtCore import QCoreApplication

    from app.window import MainWindow

PROMPT = "The three primary colours are"
TABS = ((0, "text"), (1, "tokens"), (2, "compare"), (3, "model"), (4, "attention"),
        (5, "classify"))
REVIEW = "The battery lasts all day and the screen is gorgeous, but the speaker is tinny."
EXAMPLES = (("Arrived broken and support never answered.", "negative"),
            ("Does exactly what it says, nothing more.", "neutral"))
Wait = Callable[..., None]


def prepare_workbench(app: QCoreApplication, window: MainWindow, wait: Wait) -> None:
    panel = window.workbench
    window.sidebar.setCurrentRow(window.stack.indexOf(panel))
    finished: list[object] = []
    panel.run_finished.connect(finished.append)

    def run(start: Callable[[], object]) -> None:
        count = len(finished)
        if start() is None:
            raise RuntimeError(f"the Workbench refused to run: {panel.error.text()}")
        wait(app, lambda: len(finished) > count, 300, "a Workbench run")

    panel.apply_preset("Balanced")
    panel.sampling.set_values({**panel.sampling.values(), "max_tokens": 40, "seed": 7})
    panel.editor.setPlainText(PROMPT)
    run(panel.run)
    original = panel.tokens.runs[-1]
    position = min(3, len(original.records) - 1)
    record = original.records[position]
    alt = next(a for a in record.alternatives if a.token_id != record.token_id)
    run(lambda: panel.branch(0, position, alt.token_id))
    panel.tokens.pin(min(5, len(panel.tokens.runs[-1].records) - 1))
    if panel.attention_available:
        job = panel.show_attention(panel.tokens.current, panel.tokens.pinned)
        wait(app, lambda: panel._attention_job != job, 120, "the attention capture")
    panel.compare.load_preset("A", "Precise")
    panel.compare.load_preset("B", "Creative")
    run(panel.run_compare)
    panel.controls.setCurrentIndex(1)
    panel.constraints.shape.setCurrentIndex(SCHEMA)
    classify = panel.classify
    classify.choose_preset("Sentiment")
    for text, label in EXAMPLES:
        classify.examples.add_row(text, label)
    classify.text.setPlainText(REVIEW)
    if classify.run() is None:
        raise RuntimeError(f"Classify refused to run: {classify.problems()}")
    wait(app, lambda: not classify.running, 120, "a classification")


def capture_workbench(app: QCoreApplication, window: MainWindow, out: Path, scheme: str,
                      settle: Callable[..., None]) -> list[Path]:
    panel = window.workbench
    window.sidebar.setCurrentRow(window.stack.indexOf(panel))
    written = []
    for index, name in TABS:
        panel.work.setCurrentIndex(index)
        panel.controls.setCurrentIndex(1 if name == "text" else 0)
        settle(app, 0.3)
        path = out / f"workbench-{name}-{scheme}.png"
        window.grab().save(str(path))
        written.append(path)
    window.sidebar.setCurrentRow(0)
    settle(app, 0.2)
    return written
