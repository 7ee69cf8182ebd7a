"""Interrupted summaries and translations, end to end with the real SmolLM2 model: a job
cancelled (or cut off by closing the window) is listed when Verso opens again, Resume reopens
its documents with its settings and reuses the stored steps, Discard deletes it, and a source
file that was moved gets a specific message. Also: dropping a file on the document picker."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from app.panels.summarize import MULTI, SummarizePanel
from app.panels.translate import TranslatePanel
from app.window import MainWindow
from engine.events import Done
from engine.store.jobs import JobStore
from engine.tasks.jobs import TaskProgress
from engine.tasks.translate import Translation
from tests.test_app_summarize import _small_pdf
from tests.test_documents import _make_docx

TIMEOUT_MS = 180_000


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Fresh copies per test: the tests move and delete them."""
    return {"pdf": _small_pdf(tmp_path / "printing.pdf"),
            "docx": _make_docx(tmp_path / "notes.docx")}


def _summarize(window: MainWindow) -> SummarizePanel:
    panel = window.summarize
    window.sidebar.setCurrentRow(window.stack.indexOf(panel))
    return panel


def _cancel_summary_after_first_chunk(qtbot, window: MainWindow, *paths: Path) -> None:
    panel = _summarize(window)
    panel.base_settings = replace(panel.base_settings, note_tokens=16, n_parallel=1)
    panel.chunk_tokens.setValue(64)
    panel.length.setValue(2)
    panel.picker.add_files(list(paths))
    qtbot.waitUntil(lambda: not (panel.picker.reading or panel.picker.counting), timeout=TIMEOUT_MS)

    def cancel(event: object) -> None:
        if isinstance(event, TaskProgress) and event.stage == "map" and event.done >= 1:
            panel.cancel()

    watch = lambda job: job.yielded.connect(cancel)  # noqa: E731
    panel.job_started.connect(watch)
    with qtbot.waitSignal(panel.finished, timeout=TIMEOUT_MS) as blocker:
        panel.run_button.click()
    panel.job_started.disconnect(watch)
    assert isinstance(blocker.args[0], Done)


def test_cancelled_summary_is_listed_after_restart_and_resumes(qtbot, make_window, files):
    first = make_window()
    _cancel_summary_after_first_chunk(qtbot, first, files["pdf"], files["docx"])
    with JobStore() as store:
        [job] = store.unfinished("summarize")
        stored = {s for s in store.steps(job.id) if s.startswith("map:")}
    assert job.status == "cancelled" and stored
    assert job.recipe["sources"][0]["path"] == str(files["pdf"])
    first.close()

    window = make_window()
    assert "1 unfinished summary (open Summarize to resume)" in window.status.currentMessage()
    panel = _summarize(window)
    banner = panel.interrupted
    assert banner.isVisible() and list(banner.rows) == [job.id]
    row = banner.rows[job.id]
    assert row.title.full_text() == "Summary of printing.pdf, notes.docx"
    meta = row.meta.text()
    assert meta.startswith("cancelled today ") and f"{len(stored)} of " in meta
    assert meta.endswith(" steps done")
    assert panel.chunk_tokens.value() != 64  # a fresh form: Resume restores the settings

    with qtbot.waitSignal(panel.finished, timeout=TIMEOUT_MS) as blocker:
        row.resume_button.click()
    assert blocker.args[0] is None, panel.error.text()
    assert panel.mode_key == MULTI and panel.chunk_tokens.value() == 64
    assert panel.length.value() == 2 and panel.base_settings.note_tokens == 16
    assert [d.name for d in panel.picker.documents()] == ["printing.pdf", "notes.docx"]
    result = panel.outcome.result
    assert result.job_id == job.id
    assert {s for s in result.steps_reused if s.startswith("map:")} == stored
    assert f"resumed: {len(result.steps_reused)} of " in panel.result_note.text()
    assert not banner.isVisible() and not banner.rows  # done: no longer listed
    with JobStore() as store:
        assert store.get(job.id).status == "done" and not store.unfinished("summarize")


def test_moved_source_gets_a_specific_message_and_discard_deletes_the_job(qtbot, make_window,
                                                                         files, tmp_path):
    first = make_window()
    _cancel_summary_after_first_chunk(qtbot, first, files["pdf"])
    first.close()
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(files["pdf"], moved / "printing.pdf")

    window = make_window()
    panel = _summarize(window)
    [job_id] = panel.interrupted.rows
    row = panel.interrupted.rows[job_id]
    assert not panel.resume_job(job_id)
    assert panel.interrupted.problem(job_id) == (
        f"printing.pdf is no longer at {files['pdf']} (moved or deleted), so this summary "
        "cannot be resumed. Put it back, or Discard the job.")
    assert row.problem.isVisible() and row.discard_button.isEnabled()
    assert panel.picker.documents() == []  # nothing was half-loaded

    row.discard_button.click()
    assert not panel.interrupted.isVisible() and not panel.interrupted.rows
    with JobStore() as store:
        assert store.get(job_id) is None and not store.unfinished()


def test_translation_cut_off_by_closing_resumes_in_a_new_window(qtbot, make_window, files):
    first = make_window()
    panel: TranslatePanel = first.translate
    first.sidebar.setCurrentRow(first.stack.indexOf(panel))
    panel.base_settings = replace(panel.base_settings, max_ratio=1.0, n_parallel=1)
    panel.picker.add_files([files["docx"]])
    qtbot.waitUntil(lambda: not (panel.picker.reading or panel.picker.counting), timeout=TIMEOUT_MS)
    panel.glossary.add_row("river", "fleuve")
    panel.target.setCurrentText("German")
    seen: list[TaskProgress] = []
    panel.job_started.connect(lambda job: job.yielded.connect(
        lambda e: seen.append(e) if isinstance(e, TaskProgress) else None))
    panel.run_button.click()
    qtbot.waitUntil(lambda: any(p.done >= 1 for p in seen), timeout=TIMEOUT_MS)
    first.close()  # mid-run: the job is cut off, as when the app is closed or crashes

    with JobStore() as store:
        [job] = store.unfinished("translate")
        done_before = len(store.steps(job.id))
    assert job.status in ("running", "cancelled") and done_before >= 1

    window = make_window()
    panel = window.translate
    window.sidebar.setCurrentRow(window.stack.indexOf(panel))
    row = panel.interrupted.rows[job.id]
    assert row.title.full_text() == "notes.docx → German"
    assert f"{done_before} of {job.steps_total} segments done" in row.meta.text()
    translations: list[Translation] = []
    panel.job_started.connect(lambda job: job.yielded.connect(
        lambda e: translations.append(e) if isinstance(e, Translation) else None))
    with qtbot.waitSignal(panel.finished, timeout=TIMEOUT_MS) as blocker:
        row.resume_button.click()
    assert blocker.args == ["translate", None], panel.error.text()
    assert panel.target.currentText() == "German"
    assert [(e.source, e.target) for e in panel.glossary.glossary().entries] == [
        ("river", "fleuve")]
    assert translations[-1].segments_reused >= done_before
    assert "resumed" in panel.review_note.text() or "reused" in panel.review_note.text()
    assert not panel.interrupted.rows


def _drag_and_drop(widget, data: QMimeData) -> tuple[QDragEnterEvent, QDropEvent]:
    """What a drag from a file manager delivers: enter, then drop, at the widget's centre."""
    center = QPointF(widget.rect().center())
    enter = QDragEnterEvent(center.toPoint(), Qt.DropAction.CopyAction, data,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    drop = QDropEvent(center, Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)
    return enter, drop


def test_dropping_a_file_or_text_on_the_picker_adds_it(qtbot, make_window, tmp_path):
    window = make_window(autoload=False)
    panel = _summarize(window)
    picker = panel.picker
    path = tmp_path / "dropped notes.md"
    path.write_text("# Dropped\n\nA paragraph that was dropped.\n", encoding="utf-8")

    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    enter, drop = _drag_and_drop(picker, data)
    assert enter.isAccepted() and drop.isAccepted()
    qtbot.waitUntil(lambda: not picker.reading and bool(picker.documents()),
                    timeout=TIMEOUT_MS)
    [document] = picker.documents()
    assert document.name == "dropped notes.md" and document.source == str(path)
    assert picker.list.item(0).text().startswith("dropped notes.md — Markdown · ")

    text = QMimeData()
    text.setText("Some text dragged from another app.")
    _drag_and_drop(picker, text)
    qtbot.waitUntil(lambda: len(picker.documents()) == 2, timeout=TIMEOUT_MS)
    assert picker.documents()[1].name == "Dropped text"
    assert picker.loaded()[1].pasted == "Some text dragged from another app."
