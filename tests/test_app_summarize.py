"""The Summarize panel end to end: real documents made here, the real SmolLM2 model in the
real engine process, driven through the panel as a user would."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import QUrl

from app.panels.summarize import EXTRACTIVE, MULTI, SummarizePanel
from app.window import MainWindow
from engine.events import Done, FinishReason
from engine.store.jobs import JobStore
from engine.tasks.citations import Point
from engine.tasks.jobs import TaskProgress
from engine.tasks.summarize import Mode
from tests.test_documents import _encrypted_pdf, _make_docx

TIMEOUT_MS = 180_000

PAGES = [
    ("The Press at Mainz", [
        "Around 1450 Johannes Gutenberg combined movable metal type, an oil-based ink and a "
        "screw press into one system for printing books.",
        "The Bible he finished around 1455 ran to roughly 180 copies. Forty-nine copies "
        "survive today.",
    ]),
    ("Paper and Trade", [
        "Paper mills spread across Europe and made printing cheap. Printers in Venice sold "
        "small books that fitted in a pocket.",
        "By 1500 presses worked in more than two hundred towns, and millions of books had "
        "been printed.",
    ]),
]


def _small_pdf(path: Path) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(True, margin=20)
    for heading, paragraphs in PAGES:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 16)
        pdf.multi_cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
    pdf.output(str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("summarize-panel")
    pdf = _small_pdf(folder / "printing.pdf")
    random_pdf = folder / "random.pdf"
    random_pdf.write_bytes(os.urandom(4096))
    return {"pdf": pdf, "docx": _make_docx(folder / "notes.docx"), "random": random_pdf,
            "locked": _encrypted_pdf(pdf, folder / "locked.pdf")}


def _panel(window: MainWindow) -> SummarizePanel:
    panel = window.summarize
    window.sidebar.setCurrentRow(window.stack.indexOf(panel))
    # Small steps keep the test quick on two cores; the controls set the rest.
    panel.base_settings = replace(panel.base_settings, note_tokens=16, n_parallel=1)
    panel.chunk_tokens.setValue(64)
    panel.length.setValue(2)
    return panel


def _open(qtbot, panel: SummarizePanel, *paths: Path) -> None:
    panel.picker.add_files(list(paths))
    qtbot.waitUntil(lambda: not (panel.picker.reading or panel.picker.counting), timeout=TIMEOUT_MS)


def _run(qtbot, panel: SummarizePanel) -> object:
    assert panel.run_button.isEnabled(), panel.plan.text()
    with qtbot.waitSignal(panel.finished, timeout=TIMEOUT_MS) as blocker:
        panel.run_button.click()
    return blocker.args[0]


def test_abstractive_summary_cites_chunks_and_a_click_shows_the_source(qtbot, make_window,
                                                                      files, tmp_path):
    window = make_window()
    panel = _panel(window)
    _open(qtbot, panel, files["pdf"])
    assert "printing.pdf — PDF · 2 pages · 6 paragraphs · " in panel.picker.list.item(0).text()
    assert "tokens" in panel.plan.text() and "chunks" in panel.plan.text()

    assert _run(qtbot, panel) is None
    result = panel.outcome.result
    ids = {c.id for c in result.chunks}
    assert len(ids) >= 2 and result.points
    for point in result.points:
        assert point.chunks and set(point.chunks) <= ids
        assert set(point.chunks) <= set(panel.outcome.chunks)
    html = panel.result_view.toHtml()
    first = result.points[0].chunks[0]
    assert f'href="cite:{first}:0"' in html

    panel.result_view.anchorClicked.emit(QUrl(f"cite:{first}:0"))
    shown = panel.source_view.toPlainText()
    chunk = panel.outcome.chunks[first]
    ref = next(c for c in result.chunks if c.id == first)
    assert f"[{first}] printing.pdf, p. {ref.first_page}" in shown
    body = chunk.body.split("\n\n")[-1].lstrip("# ")
    assert body[:40] in " ".join(shown.split())
    assert "background-color" in panel.source_view.toHtml() or not result.points[0].text

    out = panel.export_markdown(tmp_path / "summary.md").read_text(encoding="utf-8")
    assert out.startswith("# Summary of printing.pdf") and "## Sources" in out
    assert f"[{first}] printing.pdf, p. " in out

    # A failed final step: the notes on each chunk stand in, linked, with the reason shown;
    # a point the cited chunk does not support is flagged with its explanation.
    lines = result.note_lines()
    notes = tuple(Point(text, (cid,), support=1.0) for cid, text in lines)
    reason = ("The model's final step failed (it repeated the sentence “The press is sorted.” "
              "9 times), so its notes on each chunk are shown instead.")
    fallback = replace(panel.outcome, result=replace(
        result, points=(*notes[:-1], replace(notes[-1], support=0.1)), fallback=reason))
    panel._show(fallback, panel._documents)
    assert "final step failed" in panel.result_note.text()
    assert "1 unsupported" in panel.result_note.text()
    shown = " ".join(panel.result_view.toPlainText().split())
    assert reason in shown and "(unsupported)" in shown
    assert "1 point is marked unsupported" in shown
    html = panel.result_view.toHtml()
    assert all(f'href="cite:{cid}:{i}"' in html for i, (cid, _) in enumerate(lines))
    cid, note = lines[-1]
    panel.result_view.anchorClicked.emit(QUrl(f"cite:{cid}:{len(lines) - 1}"))
    assert panel.source_view.toPlainText().startswith(f"[{cid}] printing.pdf, p")
    out = panel.markdown()
    assert reason in out and f"- {note} [{cid}] (unsupported)" in out
    assert f"[{cid}] printing.pdf, p" in out.split("## Sources")[1]


def test_cancel_then_resume_reuses_finished_steps(qtbot, make_window, files):
    window = make_window()
    panel = _panel(window)
    _open(qtbot, panel, files["pdf"], files["docx"])
    assert panel.mode_key == MULTI  # a second document switches to multi-document

    def cancel_after_first_chunk(event: object) -> None:
        if isinstance(event, TaskProgress) and event.stage == "map" and event.done >= 1:
            panel.cancel()

    watch = lambda job: job.yielded.connect(cancel_after_first_chunk)  # noqa: E731
    panel.job_started.connect(watch)
    outcome = _run(qtbot, panel)
    panel.job_started.disconnect(watch)
    assert isinstance(outcome, Done) and outcome.finish_reason is FinishReason.CANCELLED
    assert panel.run_button.text() == "Resume"
    with JobStore() as store:
        job = store.latest("summarize")
        assert job is not None and job.status == "cancelled"
        stored = {s for s in store.steps(job.id) if s.startswith("map:")}
    assert stored

    messages: list[str] = []
    panel.status_message.connect(messages.append)
    assert _run(qtbot, panel) is None
    result = panel.outcome.result
    reused = {s for s in result.steps_reused if s.startswith("map:")}
    computed = {s for s in result.steps_computed if s.startswith("map:")}
    assert reused == stored and not reused & computed
    assert reused | computed == {f"map:{c.id}" for c in result.chunks}
    assert {c.source for c in result.chunks} == {"printing.pdf", "notes.docx"}
    assert any(m.startswith(f"Resumed: {len(stored)} of ") for m in messages)
    assert "resumed" in panel.result_note.text()
    assert panel.run_button.text() == "Summarize"


def test_extractive_quotes_are_verbatim_with_their_location(qtbot, make_window, files):
    window = make_window(autoload=False)  # extractive needs no model
    panel = _panel(window)
    _open(qtbot, panel, files["pdf"], files["docx"])
    panel.set_mode(EXTRACTIVE)
    assert _run(qtbot, panel) is None
    result = panel.outcome.result
    assert result.mode is Mode.EXTRACTIVE and len(result.extracts) == 2
    documents = panel.picker.documents()
    for extract in result.extracts:
        block = documents[extract.document].blocks[extract.block]
        assert block.text[extract.start:extract.end] == extract.text
        assert extract.text in documents[extract.document].text
    panel.result_view.anchorClicked.emit(QUrl("quote:0"))
    first = result.extracts[0]
    assert first.text in " ".join(panel.source_view.toPlainText().split())
    assert f"{first.source}, " in panel.source_view.toPlainText()
    assert f"> {first.text}" in panel.markdown()


def test_without_a_model_only_extractive_runs(qtbot, make_window, files):
    window = make_window(autoload=False)
    panel = _panel(window)
    _open(qtbot, panel, files["docx"])
    assert not panel.run_button.isEnabled()
    assert "No model is loaded" in panel.plan.text()
    panel.set_mode(EXTRACTIVE)
    assert panel.run_button.isEnabled()


def test_bad_files_show_the_engines_specific_error(qtbot, make_window, files):
    window = make_window(autoload=False)
    panel = _panel(window)
    _open(qtbot, panel, files["docx"])
    _open(qtbot, panel, files["random"])
    assert panel.picker.error.isVisible()
    assert panel.picker.error.text() == "random.pdf: this is not a PDF file (no %PDF header)"
    _open(qtbot, panel, files["locked"])
    assert panel.picker.error.text().startswith("locked.pdf: ")
    assert "password-protected" in panel.picker.error.text()
    assert "Traceback" not in panel.picker.error.text()
    assert [d.name for d in panel.picker.documents()] == ["notes.docx"]  # nothing lost
    assert panel.picker.list.count() == 1

