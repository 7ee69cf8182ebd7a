"""The Translate panel: a document, the languages and a glossary in; the translation out,
aligned with the source segment by segment for review. Translations can be edited
(post-edit) or re-translated one segment at a time, and exported with the edits. Translations
that did not finish are listed above the review with Resume and Discard."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.bridge import EngineBridge, JobHandle
from app.panels.job_resume import JobResumePanel
from app.widgets.document_picker import DocumentPicker
from app.widgets.glossary_table import GlossaryTable
from app.widgets.interrupted_jobs import InterruptedJobs
from app.widgets.task_advice import AdviceBanner
from app.widgets.task_progress import TaskProgressRow
from engine.documents import Document
from engine.errors import BadRequestError
from engine.events import Done, Error
from engine.options import GREEDY, SamplingParams
from engine.store.jobs import JobStore
from engine.tasks.jobs import CancelCheck, TaskProgress, job_model
from engine.tasks.language import LANGUAGES, detect_language, language_code, language_name
from engine.tasks.resume import InterruptedJob, JobRecipe, make_recipe, translation_title
from engine.tasks.translate import (
    Segment,
    TranslateSettings,
    Translation,
    retranslate,
    translate,
)
from engine.tasks.translate_export import EXPORT_SUFFIXES, export, segment_notes, to_markdown

SOURCE, TRANSLATION, CONFIDENCE, REVIEW = range(4)
LOW_TINT = QColor(224, 90, 70, 70)  # readable under light and dark text
EXPORT_FILTER = "Word (*.docx);;Markdown (*.md);;Plain text (*.txt)"


def retranslate_sampling() -> SamplingParams:
    """Another candidate, not the same greedy output again."""
    return replace(GREEDY, temperature=0.8, top_k=40, top_p=0.95,
                   seed=random.randrange(1, 2**31 - 1))


@dataclass(frozen=True, slots=True)
class RetranslatedSegment:
    segment: Segment


def translate_task(document: Document, settings: TranslateSettings,
                   pasted: str | None = None, resumed: JobRecipe | None = None):
    """Finished segments are stored as they arrive: the same job run again resumes. The job
    keeps the document's path (or ``pasted``, the pasted text) and the settings; ``resumed``:
    the recipe of the job this run resumes (its model reference is kept)."""

    def run(client, cancelled: CancelCheck) -> Iterator[object]:
        target = language_name(language_code(settings.target) or settings.target)
        recipe = make_recipe(translation_title(document, target), [document],
                             settings.to_json(), job_model(client, resumed),
                             [pasted])
        with JobStore() as store:
            yield from translate(client, document, settings, cancel=cancelled, store=store,
                                 recipe=recipe)

    return run


def retranslate_task(translation: Translation, index: int, settings: TranslateSettings,
                     sampling: SamplingParams):
    def run(client, cancelled: CancelCheck) -> Iterator[object]:
        yield TaskProgress("retranslate", 0, 1)
        again = retranslate(client, translation, index, settings, sampling, cancelled)
        yield RetranslatedSegment(again.segments[index])

    return run


def confidence_text(segment: Segment) -> str:
    """The Confidence column: the model's mean token probability, unless the output is not
    a translation at all (then that is what the column says)."""
    if not segment.translated:
        return "code (kept)"
    if segment.untranslated:
        return "⚠ untranslated"
    if segment.mean_logprob is None:
        return "⚠ unknown" if segment.low_confidence else ""
    percent = f"{math.exp(segment.mean_logprob):.0%}"
    if segment.low_confidence:
        return f"⚠ {percent} low"
    return f"⚠ {percent}" if segment.needs_review else percent


def review_text(segment: Segment) -> str:
    """The Review column: what to check, in plain words, and what was cleaned up."""
    notes = segment_notes(segment)
    notes += [f.message for f in segment.flags if f.kind == "prompt_echo"]
    return "\n".join(notes)


class TranslatePanel(JobResumePanel):
    KIND, NOUN, NOUNS = "translate", "translation", "translations"
    STEPS, SOURCES = "segments", "document"
    finished = Signal(str, object)  # "translate" | "retranslate", None | Done | Error

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("documentPanel")
        self.bridge = bridge
        self.base_settings = TranslateSettings(target="French")  # what the controls do not set
        self.translation: Translation | None = None
        self.edited: set[int] = set()
        self._settings_used: TranslateSettings | None = None
        self._job: JobHandle | None = None  # its kind: "translate" | "retranslate"
        self._filling = False
        self._resumable: object = None  # the run key of a cancelled or failed translation
        self._run_key_started: object = None
        self._pending_resume: InterruptedJob | None = None  # its document is being reopened

        title = QLabel("Translate")
        title.setObjectName("chatTitle")
        subtitle = QLabel("Segment by segment, keeping headings and lists; glossary terms are "
                          "placed where their source terms are, and segments to check are "
                          "flagged.")
        subtitle.setObjectName("hint")
        self.picker = DocumentPicker(self._counter(), multiple=False)
        self.picker.changed.connect(self._document_changed)

        self.source = QComboBox()
        self.source.addItem("Detect automatically", None)
        self.target = QComboBox()
        self.target.setEditable(True)
        for code, name in LANGUAGES.items():
            self.source.addItem(name, code)
            self.target.addItem(name, code)
        self.target.setCurrentText("French")
        self.target.setToolTip("Pick a language or type its name")
        self.target.currentTextChanged.connect(lambda _t: self._update())
        self.advice = AdviceBanner("translate")
        self.target.currentTextChanged.connect(lambda _t: self._advice_languages())
        self.source.currentIndexChanged.connect(lambda _i: self._advice_languages())
        self._advice_languages()
        self.run_button = QPushButton("Translate")
        self.run_button.setObjectName("primaryButton")
        self.run_button.clicked.connect(self.run)
        languages = QHBoxLayout()
        languages.addWidget(QLabel("From"))
        languages.addWidget(self.source)
        languages.addWidget(QLabel("To"))
        languages.addWidget(self.target)
        languages.addWidget(self.run_button)
        languages.addStretch(1)
        self.plan = QLabel()
        self.plan.setObjectName("hint")
        self.plan.setWordWrap(True)
        self.progress = TaskProgressRow()
        self.progress.cancel_requested.connect(self.cancel)
        self.error = QLabel()
        self.error.setObjectName("documentError")
        self.error.setWordWrap(True)
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        self.error.hide()
        left = QVBoxLayout()
        left.addWidget(title)
        left.addWidget(subtitle)
        left.addWidget(self.advice)
        left.addWidget(self.picker)
        left.addLayout(languages)
        left.addWidget(self.plan)
        left.addWidget(self.progress)
        left.addWidget(self.error)
        left.addStretch(1)

        self.glossary = GlossaryTable()
        self.glossary.message.connect(self.status_message)
        self.glossary.table.itemChanged.connect(lambda _item: self._update())
        self.source.currentIndexChanged.connect(lambda _i: self._update())
        glossary_box = QGroupBox("Glossary: term → required translation")
        glossary_box.setObjectName("glossaryBox")
        glossary_layout = QVBoxLayout(glossary_box)
        glossary_layout.addWidget(self.glossary)
        glossary_box.setFixedWidth(440)
        top = QHBoxLayout()
        top.addLayout(left, 1)
        top.addWidget(glossary_box)

        self.review = QTableWidget(0, 4)
        self.review.setObjectName("reviewTable")
        self.review.setHorizontalHeaderLabels(["Source", "Translation (editable)",
                                               "Confidence", "Review"])
        header = self.review.horizontalHeader()
        header.setSectionResizeMode(SOURCE, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(TRANSLATION, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(CONFIDENCE, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(REVIEW, QHeaderView.ResizeMode.Stretch)
        self.review.setWordWrap(True)
        self.review.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.review.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.review.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                    | QAbstractItemView.EditTrigger.EditKeyPressed
                                    | QAbstractItemView.EditTrigger.AnyKeyPressed)
        self.review.itemChanged.connect(self._edited)
        self.review.itemSelectionChanged.connect(self._update)
        self.review_note = QLabel()
        self.review_note.setObjectName("hint")
        self.retranslate_button = QPushButton("Re-translate this segment")
        self.retranslate_button.clicked.connect(lambda: self.retranslate_segment())
        self.copy_button = QPushButton("Copy Markdown")
        self.copy_button.clicked.connect(self.copy_markdown)
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self.export_dialog)
        buttons = QHBoxLayout()
        buttons.addWidget(self.review_note, 1)
        buttons.addWidget(self.retranslate_button)
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.export_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 10, 16, 12)
        layout.setSpacing(8)
        layout.addLayout(top)
        self.interrupted = InterruptedJobs("translation", "translations", unit="segments",
                                           sources="document")
        self.interrupted.resume_requested.connect(self.resume_job)
        self.interrupted.discard_requested.connect(self.discard_job)
        layout.addWidget(self.interrupted)
        review_title = QLabel("Review")
        review_title.setObjectName("sectionTitle")
        layout.addWidget(review_title)
        layout.addWidget(self.review, 1)
        layout.addLayout(buttons)

        self._follow_engine()
        self._update()
        self.refresh_interrupted()

    # ------------------------------------------------------------------ state

    def document(self) -> Document | None:
        documents = self.picker.documents()
        return documents[0] if documents else None

    def set_source_language(self, code: str | None) -> None:
        self.source.setCurrentIndex(self.source.findData(code) if code else 0)

    def settings(self) -> TranslateSettings:
        """Raises BadRequestError for an incomplete glossary row."""
        return replace(self.base_settings, target=self.target.currentText().strip(),
                       source=self.source.currentData(), glossary=self.glossary.glossary())

    def _run_key(self) -> object:
        try:
            return (id(self.document()), self.settings())
        except BadRequestError:
            return None

    def _document_changed(self) -> None:
        document = self.document()
        detected = detect_language(document.text[:5000]) if document else None
        self.source.setItemText(0, f"Detect automatically ({language_name(detected)})"
                                if detected else "Detect automatically")
        self._update()
        if self._pending_resume is not None and not self.picker.reading:
            self._finish_resume()

    def _model_changed(self, _loaded: object) -> None:
        self.picker.recount()
        self._update()

    def _blocker(self) -> str:
        if self.picker.reading:
            return "Reading the document…"
        if self.document() is None:
            return "Open, drop or paste a document to translate."
        if not self.target.currentText().strip():
            return "Choose the language to translate into."
        if self.bridge.loaded is None:
            if self.bridge.loading is not None:
                return "The model is loading…"
            return "No model is loaded: choose one in the toolbar."
        return ""

    def _update(self) -> None:
        running = self._job is not None
        blocker = self._blocker()
        self.run_button.setEnabled(not running and not blocker)
        resume = self._resumable is not None and self._resumable == self._run_key()
        self.run_button.setText("Resume" if resume else "Translate")
        document = self.document()
        text = blocker
        if not text and document is not None:
            loaded = self.picker.loaded()[0]
            text = f"{document.stats.paragraphs} paragraphs"
            if loaded.tokens is not None:
                text += f" · {loaded.tokens:,} tokens"
        self.plan.setText(text)
        self.plan.setVisible(bool(text) and not running)
        segment = self.selected_segment()
        self.retranslate_button.setEnabled(
            not running and self.bridge.loaded is not None and segment is not None
            and segment.translated)
        has = self.translation is not None
        self.copy_button.setEnabled(has)
        self.export_button.setEnabled(has)

    def selected_segment(self) -> Segment | None:
        if self.translation is None:
            return None
        row = self.review.currentRow()
        if not self.review.selectedItems() or not 0 <= row < len(self.translation.segments):
            return None
        return self.translation.segments[row]

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        if self._job is not None or self._blocker():
            return
        try:
            settings = self.settings()
        except BadRequestError as exc:
            self._show_error(str(exc))
            return
        self._settings_used = settings
        self._run_key_started = self._run_key()
        loaded = self.picker.loaded()
        document = self.document()
        if document is None:
            self._show_error("Open or paste a document to translate.")
            return
        self._start("translate", translate_task(document, settings,
                                                loaded[0].pasted if loaded else None,
                                                self._resuming),
                    "Waiting for the engine…")

    def retranslate_segment(self, index: int | None = None,
                            sampling: SamplingParams | None = None) -> bool:
        """Translate segment ``index`` (the selected one by default) again; by default with
        sampling on, to get a different candidate."""
        if self.translation is None or self._job is not None or self.bridge.loaded is None:
            return False
        if index is None:
            segment = self.selected_segment()
            if segment is None:
                return False
            index = segment.index
        if not self.translation.segments[index].translated:
            return False
        settings = self._settings_used or self.base_settings
        self._start("retranslate", retranslate_task(self.translation, index, settings,
                                                    sampling or retranslate_sampling()),
                    f"Re-translating segment {index + 1}…")
        return True

    def _start(self, kind: str, fn, text: str) -> None:
        self.error.hide()
        self.interrupted.hide()  # listed again when this run ends, if it does not finish
        self.progress.start(text)
        self._job = self._submit(kind, fn)
        self._update()

    def cancel(self) -> None:
        if self._job is not None:
            self.progress.cancelling()
            self._job.cancel()

    def _task_event(self, job: JobHandle, event: object) -> None:
        if job is not self._job:
            return
        if isinstance(event, TaskProgress):
            self.progress.update_progress(event)
        elif isinstance(event, Translation):
            self.translation = event
            self.edited.clear()
            self._fill()
        elif isinstance(event, RetranslatedSegment) and self.translation is not None:
            segments = list(self.translation.segments)
            segments[event.segment.index] = event.segment
            self.translation = replace(self.translation, segments=tuple(segments))
            self.edited.discard(event.segment.index)
            self._fill_row(event.segment.index, event.segment)
            self.review.resizeRowToContents(event.segment.index)

    def _task_finished(self, job: JobHandle, outcome: object) -> None:
        if job is not self._job:
            return
        kind = job.kind
        self._job = None
        self.progress.finish()
        if kind == "translate":
            self._resumable = None if outcome is None else self._run_key_started
        if isinstance(outcome, Done):
            self.status_message.emit("Translation cancelled." + (
                " Finished segments are kept: Resume continues from there."
                if kind == "translate" else ""))
        elif isinstance(outcome, Error):
            self._show_error(outcome.message)
        self._update()
        self.refresh_interrupted()
        self.finished.emit(kind, outcome)

    # ------------------------------------------------------------------ interrupted jobs

    def _accepts(self, recipe: JobRecipe) -> bool:
        return len(recipe.sources) == 1

    def _restore_settings(self, recipe: JobRecipe) -> None:
        settings = TranslateSettings.from_json(recipe.settings)
        self.base_settings = settings
        self.target.setCurrentText(settings.target)
        self.set_source_language(settings.source)
        self.glossary.set_glossary(settings.glossary)

    def _show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()

    # ------------------------------------------------------------------ review

    def _fill(self) -> None:
        assert self.translation is not None
        self._filling = True
        try:
            self.review.setRowCount(len(self.translation.segments))
            for segment in self.translation.segments:
                self._fill_row(segment.index, segment)
        finally:
            self._filling = False
        self.review.resizeRowsToContents()
        self._note()

    def _fill_row(self, row: int, segment: Segment) -> None:
        was, self._filling = self._filling, True
        try:
            source = QTableWidgetItem(segment.source)
            source.setFlags(source.flags() & ~Qt.ItemFlag.ItemIsEditable)
            text = QTableWidgetItem(segment.text)
            if not segment.translated:
                text.setFlags(text.flags() & ~Qt.ItemFlag.ItemIsEditable)
            confidence = QTableWidgetItem(confidence_text(segment))
            confidence.setFlags(confidence.flags() & ~Qt.ItemFlag.ItemIsEditable)
            notes = QTableWidgetItem(review_text(segment))
            notes.setFlags(notes.flags() & ~Qt.ItemFlag.ItemIsEditable)
            tip = []
            if segment.mean_logprob is not None:
                tip.append(f"Mean token log-probability {segment.mean_logprob:.2f}")
            if segment.low_confidence:
                tip.append("Low confidence: check this segment.")
            if segment.required:
                tip.append("Glossary terms required: " + ", ".join(segment.required))
            confidence.setToolTip("\n".join(tip))
            items = (source, text, confidence, notes)
            for column, item in enumerate(items):
                if segment.needs_review:
                    item.setBackground(QBrush(LOW_TINT))
                self.review.setItem(row, column, item)
        finally:
            self._filling = was

    def _edited(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != TRANSLATION or self.translation is None:
            return
        row = item.row()
        segment = self.translation.segments[row]
        if item.text() == segment.text:
            return
        self.set_translation_text(row, item.text())

    def set_translation_text(self, index: int, text: str) -> None:
        """A post-edit: the segment's translation becomes ``text``."""
        assert self.translation is not None
        segments = list(self.translation.segments)
        segments[index] = replace(segments[index], text=text)
        self.translation = replace(self.translation, segments=tuple(segments))
        self.edited.add(index)
        item = self.review.item(index, TRANSLATION)
        if item is not None and item.text() != text:
            self._filling = True
            item.setText(text)
            self._filling = False
        confidence = self.review.item(index, CONFIDENCE)
        if confidence is not None:
            confidence.setText("edited")
        self._note()

    def _note(self) -> None:
        if self.translation is None:
            self.review_note.clear()
            return
        t = self.translation
        low = sum(s.needs_review for s in t.segments)
        untranslated = sum(s.untranslated for s in t.segments)
        text = (f"{language_name(t.source_language)} → {language_name(t.target_language)} · "
                f"{len(t.segments)} segments")
        translatable = sum(s.translated for s in t.segments)
        if 0 < t.segments_reused < translatable:
            text += f" · resumed: {t.segments_reused} of {translatable} segments reused"
        elif t.segments_reused:
            text += " · reused from an earlier run (Re-translate a segment for another take)"
        if low:
            text += f" · {low} to review"
        if untranslated:
            text += f" ({untranslated} untranslated)"
        repeating = sum(s.stopped_repeating for s in t.segments)
        if repeating:
            text += f" · {repeating} stopped because the model was repeating itself"
        if self.edited:
            text += f" · {len(self.edited)} edited"
        self.review_note.setText(text)

    # ------------------------------------------------------------------ output

    def export_to(self, path: str | Path) -> Path:
        if self.translation is None:
            raise BadRequestError("Translate a document first.")
        return export(self.translation, path)

    def export_dialog(self) -> None:
        if self.translation is None:
            return
        stem = Path(self.translation.document_name).stem
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export translation", f"{stem}-{self.translation.target_language}.docx",
            EXPORT_FILTER)
        if not path:
            return
        if Path(path).suffix.lower() not in EXPORT_SUFFIXES:
            path += ".md" if "Markdown" in chosen else ".txt" if "text" in chosen else ".docx"
        try:
            written = self.export_to(path)
        except (OSError, BadRequestError) as exc:
            self._show_error(f"The translation could not be saved: {exc}")
        else:
            self.status_message.emit(f"Translation saved to {written}.")

    def copy_markdown(self) -> None:
        if self.translation is not None:
            QGuiApplication.clipboard().setText(to_markdown(self.translation))
            self.status_message.emit("Translation copied as Markdown.")

    def _advice_languages(self) -> None:
        self.advice.set_languages(self.source.currentData(), self.target.currentText())

    def shutdown(self) -> None:
        self.picker.shutdown()
        if self._job is not None:
            self._job.cancel()
