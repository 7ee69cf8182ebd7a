"""The Translate panel end to end with the real SmolLM2 model: glossary terms placed in the
translated segments (or the segment flagged with the reason), side-by-side review with
post-edits, re-translation of one segment, exports that contain the edits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from app.panels.translate import CONFIDENCE, REVIEW, SOURCE, TRANSLATION, TranslatePanel
from app.settings import AppSettings
from app.window import MainWindow
from engine.options import GREEDY
from engine.tasks.glossary import Glossary, GlossaryEntry
from tests.test_documents import _make_docx

TIMEOUT_MS = 180_000
GLOSSARY = [("river", "fleuve"), ("valley", "vallon"), ("bag", "sacoche")]


@pytest.fixture(scope="module")
def notes_docx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_docx(tmp_path_factory.mktemp("translate-panel") / "notes.docx")


@pytest.fixture
def window(qtbot, smol_path):
    settings = AppSettings(n_ctx=1024, n_threads=2, model_path=str(smol_path))
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.bridge.loaded is not None, timeout=TIMEOUT_MS)
    yield window
    window.shutdown()


def _panel(qtbot, window: MainWindow, docx: Path) -> TranslatePanel:
    panel = window.translate
    window.sidebar.setCurrentRow(window.stack.indexOf(panel))
    panel.base_settings = replace(panel.base_settings, max_ratio=1.5)  # short outputs: fast
    panel.picker.add_files([docx])
    qtbot.waitUntil(lambda: not (panel.picker.reading or panel.picker.counting), timeout=TIMEOUT_MS)
    return panel


def _wait(qtbot, panel: TranslatePanel, action) -> tuple[str, object]:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(panel.finished, timeout=TIMEOUT_MS) as blocker:
        action()
    return blocker.args[0], blocker.args[1]


def test_translate_with_glossary_review_post_edit_and_export(qtbot, window, notes_docx,
                                                             tmp_path):
    import docx

    panel = _panel(qtbot, window, notes_docx)
    assert panel.source.itemText(0) == "Detect automatically (English)"
    assert "paragraphs" in panel.plan.text() and "tokens" in panel.plan.text()
    for term, translation in GLOSSARY:
        panel.glossary.add_row(term, translation)
    panel.target.setCurrentText("French")
    assert _wait(qtbot, panel, panel.run_button.click) == ("translate", None)

    translation = panel.translation
    assert translation.source_language == "en" and translation.target_language == "fr"
    assert panel.review.rowCount() == len(translation.segments) >= 8
    checked = placed_count = 0
    for segment in translation.segments:
        assert panel.review.item(segment.index, SOURCE).text() == segment.source
        assert panel.review.item(segment.index, TRANSLATION).text() == segment.text
        assert panel.review.item(segment.index, CONFIDENCE).text()
        for term, required in GLOSSARY:
            if term in segment.source.lower():
                placed = required in segment.text
                flagged = f"“{required}” (for “{term}”) could not be placed" in \
                    panel.review.item(segment.index, REVIEW).text()
                assert placed != flagged, (segment.source, segment.text)
                checked += 1
                placed_count += placed
        if segment.needs_review:
            assert panel.review.item(segment.index, CONFIDENCE).text().startswith("⚠")
            assert panel.review.item(segment.index, SOURCE).background().color().alpha() > 0
    assert checked >= 2 and placed_count >= 1

    row = next(s.index for s in translation.segments if s.kind.value == "paragraph")
    item = panel.review.item(row, TRANSLATION)
    item.setText("Nous avons voyagé léger, corrigé à la main.")
    assert panel.translation.segments[row].text == "Nous avons voyagé léger, corrigé à la main."
    assert panel.review.item(row, CONFIDENCE).text() == "edited"
    assert "1 edited" in panel.review_note.text()

    path = panel.export_to(tmp_path / "notes-fr.docx")
    paragraphs = [p.text for p in docx.Document(str(path)).paragraphs]
    assert "Nous avons voyagé léger, corrigé à la main." in paragraphs
    styles = {p.style.name for p in docx.Document(str(path)).paragraphs}
    assert "List Bullet" in styles and any(s.startswith("Heading") for s in styles)
    markdown = panel.export_to(tmp_path / "notes-fr.md").read_text(encoding="utf-8")
    assert "corrigé à la main" in markdown and "\n- " in markdown


def test_retranslate_one_segment_keeps_the_others(qtbot, window, notes_docx):
    panel = _panel(qtbot, window, notes_docx)
    panel.glossary.add_row("valley", "vallon")
    assert _wait(qtbot, panel, panel.run_button.click) == ("translate", None)
    before = panel.translation
    edited = next(s.index for s in before.segments if s.kind.value == "heading")
    panel.set_translation_text(edited, "Notes de terrain")
    target = next(s.index for s in before.segments if "valley" in s.source.lower())

    assert not panel.retranslate_button.isEnabled()  # nothing selected yet
    panel.review.selectRow(target)
    assert panel.retranslate_button.isEnabled()
    sampled = replace(GREEDY, temperature=0.9, top_k=40, seed=7)
    kind, outcome = _wait(qtbot, panel, lambda: panel.retranslate_segment(sampling=sampled))
    assert kind == "retranslate" and outcome is None
    after = panel.translation
    again = after.segments[target]
    assert ("vallon" in again.text) != any("“vallon”" in f.message for f in again.flags)
    assert panel.review.item(target, TRANSLATION).text() == after.segments[target].text
    assert after.segments[edited].text == "Notes de terrain"  # the post-edit survives
    for i, segment in enumerate(after.segments):
        if i != target:
            assert segment.text == (before.segments[i].text if i != edited
                                    else "Notes de terrain")


def test_glossary_table_csv_and_incomplete_rows(qtbot, window, notes_docx, tmp_path):
    panel = _panel(qtbot, window, notes_docx)
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"PK\x03\x04 not really a zip archive")
    panel.picker.add_files([broken])
    qtbot.waitUntil(lambda: not (panel.picker.reading or panel.picker.counting), timeout=TIMEOUT_MS)
    assert panel.picker.error.text().startswith("broken.docx: ")
    assert [d.name for d in panel.picker.documents()] == ["notes.docx"]  # the old one stays
    panel.picker.add_text("A second document.")
    qtbot.waitUntil(lambda: not (panel.picker.reading or panel.picker.counting), timeout=TIMEOUT_MS)
    assert [d.name for d in panel.picker.documents()] == ["Pasted text"]  # replaced
    assert not panel.picker.error.isVisible()
    table = panel.glossary
    table.add_row("river", "fleuve")
    table.add_row("printing press", "imprimerie")
    table.export_csv(tmp_path / "terms.csv")
    assert (tmp_path / "terms.csv").read_text(encoding="utf-8").splitlines() == [
        "term,translation", "river,fleuve", "printing press,imprimerie"]
    table.set_glossary(Glossary())
    table.import_csv(tmp_path / "terms.csv")
    assert table.glossary().entries == (GlossaryEntry("river", "fleuve"),
                                        GlossaryEntry("printing press", "imprimerie"))
    table.table.selectRow(0)
    table.remove_selected()
    assert [e.source for e in table.glossary().entries] == ["printing press"]

    table.add_row("valley", "")  # a term without its translation
    panel.run_button.click()
    assert panel._job is None
    assert panel.error.isVisible() and "needs both a term and its translation" in \
        panel.error.text()
    assert panel.review.rowCount() == 0


def test_cancel_then_resume_a_translation(qtbot, window):
    from engine.tasks.jobs import TaskProgress

    panel = window.translate
    panel.base_settings = replace(panel.base_settings, max_ratio=1.0, n_parallel=1)
    panel.picker.add_text("We walked along the river.\n\nThe library opens at nine.\n\n"
                          "Rain arrived in the afternoon.\n\nWe waited under the trees.")
    qtbot.waitUntil(lambda: not (panel.picker.reading or panel.picker.counting), timeout=TIMEOUT_MS)

    def cancel_after_first(event: object) -> None:
        if isinstance(event, TaskProgress) and event.stage == "translate" and event.done >= 1:
            panel.cancel()

    watch = lambda job: job.yielded.connect(cancel_after_first)  # noqa: E731
    panel.job_started.connect(watch)
    kind, outcome = _wait(qtbot, panel, panel.run_button.click)
    panel.job_started.disconnect(watch)
    assert kind == "translate" and outcome is not None and panel.translation is None
    assert panel.run_button.text() == "Resume"

    assert _wait(qtbot, panel, panel.run_button.click) == ("translate", None)
    reused = panel.translation.segments_reused
    total = len(panel.translation.segments)
    assert 1 <= reused < total
    assert f"resumed: {reused} of {total} segments reused" in panel.review_note.text()
    assert panel.run_button.text() == "Translate"
