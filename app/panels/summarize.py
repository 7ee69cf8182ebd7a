"""The Summarize panel: documents in, a summary out whose every citation opens the chunk it
came from. Work runs in the engine thread through the bridge's task queue; each step is
stored in the JobStore, so running a cancelled or interrupted job again resumes it; jobs that
did not finish are listed above the results with Resume (reopens their documents, restores
the settings) and Discard."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.bridge import EngineBridge, JobHandle
from app.panels.job_resume import JobResumePanel
from app.panels.summary_render import (
    chunk_html,
    extract_html,
    summary_html,
    summary_markdown,
)
from app.widgets.document_picker import DocumentPicker
from app.widgets.interrupted_jobs import InterruptedJobs
from app.widgets.linked_text import LinkedTextView
from app.widgets.task_advice import AdviceBanner
from app.widgets.task_progress import TaskProgressRow
from engine.documents import Chunk, Document
from engine.events import Done, Error, FinishReason, finish_note
from engine.store.jobs import JobStore
from engine.tasks.jobs import CancelCheck, TaskProgress, job_model
from engine.tasks.resume import InterruptedJob, JobRecipe, make_recipe, summary_title
from engine.tasks.summarize import (
    Form,
    Mode,
    SummarizeSettings,
    SummaryResult,
    source_chunks,
    summarize,
)

ABSTRACTIVE, EXTRACTIVE, MULTI = "abstractive", "extractive", "multi"
MODES = ((ABSTRACTIVE, "Abstractive"), (EXTRACTIVE, "Extractive (quotes, no model)"),
         (MULTI, "Multi-document"))
FORMS = ((Form.BULLETS, "Bullets"), (Form.PARAGRAPH, "Paragraph"),
         (Form.KEYPOINTS, "Key points + action items"))


@dataclass(frozen=True, slots=True)
class SummaryOutcome:
    result: SummaryResult
    chunks: dict[int, Chunk]  # chunk id -> its text and location, for showing citations


def summarize_task(documents: Sequence[Document], settings: SummarizeSettings,
                   pasted: Sequence[str | None] | None = None,
                   resumed: JobRecipe | None = None):
    """The engine-thread side: progress, then one ``SummaryOutcome``. ``pasted``: the text of
    each pasted document (None for files), kept in the job so it can be resumed later;
    ``resumed``: the recipe of the job this run resumes (its model reference is kept)."""
    documents = list(documents)

    def run(client, cancelled: CancelCheck) -> Iterator[object]:
        if settings.mode is Mode.EXTRACTIVE:
            for event in summarize(None, documents, settings, cancel=cancelled):
                yield SummaryOutcome(event, {}) if isinstance(event, SummaryResult) else event
            return
        recipe = make_recipe(summary_title(documents), documents, settings.to_json(),
                             job_model(client, resumed), pasted)
        with JobStore() as store:
            for event in summarize(client, documents, settings, store, cancel=cancelled,
                                   recipe=recipe):
                if isinstance(event, SummaryResult):
                    chunks = {ref.id: chunk for chunk, ref in
                              source_chunks(client, documents, settings)}
                    yield SummaryOutcome(event, chunks)
                else:
                    yield event

    return run


class SummarizePanel(JobResumePanel):
    KIND, NOUN, NOUNS = "summarize", "summary", "summaries"
    finished = Signal(object)  # None (a result is shown) | Done (cancelled) | Error

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("documentPanel")
        self.bridge = bridge
        self.base_settings = SummarizeSettings()  # what the controls do not set
        self.outcome: SummaryOutcome | None = None
        self._documents: list[Document] = []  # those the shown result was made from
        self._run_documents: list[Document] = []
        self._run_key_started: object = None
        self._job: JobHandle | None = None
        self._resumable: object = None  # the run key of a cancelled or failed run
        self._resumed_note: str | None = None  # said once the first map step reports
        self._source_shown: tuple[str, int, int] | None = None  # to redraw on a theme change
        self._pending_resume: InterruptedJob | None = None  # documents being reopened for it

        title = QLabel("Summarize")
        title.setObjectName("chatTitle")
        subtitle = QLabel("Abstractive summaries cite the chunks they come from; extractive ones "
                          "quote the document's own sentences.")
        subtitle.setObjectName("hint")
        self.picker = DocumentPicker(self._counter(), multiple=True)
        self.picker.changed.connect(self._documents_changed)
        self.advice = AdviceBanner("summarize")

        self.mode = QComboBox()
        for key, label in MODES:
            self.mode.addItem(label, key)
        self.form = QComboBox()
        for form, label in FORMS:
            self.form.addItem(label, form)
        self.length = QSpinBox()
        self.length.setRange(1, 400)
        self.length.setValue(5)
        self.length_unit = QLabel("bullets")
        self.chunk_tokens = QSpinBox()
        self.chunk_tokens.setRange(64, 4096)
        self.chunk_tokens.setSingleStep(64)
        self.chunk_tokens.setValue(self.base_settings.chunk_tokens)
        self.chunk_tokens.setSuffix(" tokens")
        self.chunk_tokens.setToolTip("Document text per map step; smaller chunks give finer "
                                     "citations, larger ones fewer steps.")
        for widget in (self.mode, self.form):
            widget.currentIndexChanged.connect(self._options_changed)
        self.mode.currentIndexChanged.connect(
            lambda _i: self.advice.set_applies(self.mode_key != EXTRACTIVE))
        for spin in (self.length, self.chunk_tokens):
            spin.valueChanged.connect(self._options_changed)
        options = QHBoxLayout()
        fields: tuple[tuple[str, QWidget], ...] = (
            ("Mode", self.mode), ("Form", self.form), ("Length", self.length))
        for label, field in fields:
            options.addWidget(QLabel(label))
            options.addWidget(field)
        options.addWidget(self.length_unit)
        options.addSpacing(12)
        options.addWidget(QLabel("Chunk"))
        options.addWidget(self.chunk_tokens)
        options.addStretch(1)

        self.run_button = QPushButton("Summarize")
        self.run_button.setObjectName("primaryButton")
        self.run_button.clicked.connect(self.run)
        self.plan = QLabel()
        self.plan.setObjectName("hint")
        self.plan.setWordWrap(True)
        self.progress = TaskProgressRow()
        self.progress.cancel_requested.connect(self.cancel)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.plan, 1)
        run_row.addWidget(self.progress, 2)

        self.error = QLabel()
        self.error.setObjectName("documentError")
        self.error.setWordWrap(True)
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        self.error.hide()

        self.result_view = LinkedTextView()
        self.result_view.setObjectName("summaryView")
        self.result_view.link_clicked.connect(self._link_clicked)
        self.result_view.setPlaceholderText("The summary appears here. Click a citation such as "
                                            "[2] to see the text it comes from.")
        self.source_view = LinkedTextView()
        self.source_view.setObjectName("sourceView")
        self.source_view.setPlaceholderText("Source text of the citation you click.")
        self.result_note = QLabel()
        self.result_note.setObjectName("hint")
        self.copy_button = QPushButton("Copy Markdown")
        self.copy_button.clicked.connect(self.copy_markdown)
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self.export_dialog)
        result_buttons = QHBoxLayout()
        result_buttons.addWidget(self.result_note, 1)
        result_buttons.addWidget(self.copy_button)
        result_buttons.addWidget(self.export_button)
        result_box = QWidget()
        result_layout = QVBoxLayout(result_box)
        result_layout.setContentsMargins(0, 0, 0, 0)
        result_layout.addWidget(_section("Summary"))
        result_layout.addWidget(self.result_view, 1)
        result_layout.addLayout(result_buttons)
        source_box = QWidget()
        source_layout = QVBoxLayout(source_box)
        source_layout.setContentsMargins(0, 0, 0, 0)
        source_layout.addWidget(_section("Source"))
        source_layout.addWidget(self.source_view, 1)
        self.interrupted = InterruptedJobs("summary", "summaries")
        self.interrupted.resume_requested.connect(self.resume_job)
        self.interrupted.discard_requested.connect(self.discard_job)
        splitter = QSplitter()
        splitter.addWidget(result_box)
        splitter.addWidget(source_box)
        splitter.setSizes([560, 440])
        splitter.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 10, 16, 12)
        layout.setSpacing(8)
        layout.addWidget(title)
        layout.addWidget(subtitle)
        layout.addWidget(self.advice)
        layout.addWidget(self.picker)
        layout.addLayout(options)
        layout.addLayout(run_row)
        layout.addWidget(self.error)
        layout.addWidget(self.interrupted)
        layout.addWidget(splitter, 1)

        self._follow_engine()
        self._options_changed()
        self.refresh_interrupted()

    # ------------------------------------------------------------------ settings

    @property
    def mode_key(self) -> str:
        return self.mode.currentData()

    def set_mode(self, key: str) -> None:
        self.mode.setCurrentIndex(self.mode.findData(key))

    def set_form(self, form: Form) -> None:
        self.form.setCurrentIndex(self.form.findData(form))

    def settings(self) -> SummarizeSettings:
        mode = Mode.EXTRACTIVE if self.mode_key == EXTRACTIVE else Mode.ABSTRACTIVE
        return replace(self.base_settings, mode=mode, form=self.form.currentData(),
                       length=self.length.value(), chunk_tokens=self.chunk_tokens.value())

    def _run_key(self) -> object:
        return (tuple(id(d) for d in self.picker.documents()), self.settings())

    def _options_changed(self, *_: object) -> None:
        extractive = self.mode_key == EXTRACTIVE
        self.form.setEnabled(not extractive)
        self.chunk_tokens.setEnabled(not extractive)
        paragraph = self.form.currentData() is Form.PARAGRAPH
        self.length_unit.setText("sentences" if extractive else
                                 "words" if paragraph else "bullets")
        self._update()

    def _documents_changed(self) -> None:
        count = len(self.picker.documents()) + (1 if self.picker.reading else 0)
        if self.mode_key == ABSTRACTIVE and count > 1:
            self.set_mode(MULTI)
        elif self.mode_key == MULTI and count == 1 and not self.picker.reading:
            self.set_mode(ABSTRACTIVE)
        self._update()
        if self._pending_resume is not None and not self.picker.reading:
            self._finish_resume()

    def _model_changed(self, _loaded: object) -> None:
        self.picker.recount()
        self._update()

    def _blocker(self) -> str:
        """Why Run is off, or "" when it can run."""
        documents = self.picker.documents()
        if self._job is not None:
            return ""
        if self.picker.reading:
            return "Reading the documents…"
        if not documents:
            return "Open, drop or paste a document to summarize."
        if self.mode_key == MULTI and len(documents) < 2:
            return "Multi-document needs two or more documents: add another, or choose " \
                   "Abstractive."
        if self.mode_key == ABSTRACTIVE and len(documents) > 1:
            return "Abstractive summarizes one document: choose Multi-document to combine them."
        if self.mode_key != EXTRACTIVE and self.bridge.loaded is None:
            if self.bridge.loading is not None:
                return "The model is loading…"
            return "No model is loaded: choose one in the toolbar (Extractive needs none)."
        return ""

    def _update(self) -> None:
        blocker = self._blocker()
        running = self._job is not None
        self.run_button.setEnabled(not running and not blocker)
        resume = self._resumable is not None and self._resumable == self._run_key()
        self.run_button.setText("Resume" if resume else "Summarize")
        self.plan.setVisible(not running)
        self.plan.setText(blocker or self._plan_text())
        has_result = self.outcome is not None
        self.copy_button.setEnabled(has_result)
        self.export_button.setEnabled(has_result)

    def _plan_text(self) -> str:
        documents = self.picker.documents()
        tokens = self.picker.total_tokens()
        text = f"{len(documents)} document{'s' if len(documents) != 1 else ''}"
        if tokens is not None:
            text += f" · {tokens:,} tokens"
            if self.mode_key != EXTRACTIVE:
                chunks = max(1, math.ceil(tokens / self.chunk_tokens.value()))
                text += f" · about {chunks} chunk{'s' if chunks != 1 else ''}"
        if self._resumable is not None and self._resumable == self._run_key():
            text += " · finished steps are kept and will be reused"
        return text

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        if self._job is not None or self._blocker():
            return
        documents = self.picker.documents()
        settings = self.settings()
        self._run_documents = documents
        self._run_key_started = self._run_key()
        self._resumed_note = None
        self.error.hide()
        self.interrupted.hide()  # listed again when this run ends, if it does not finish
        self.progress.start("Waiting for the engine…")
        pasted = [loaded.pasted for loaded in self.picker.loaded()]
        self._job = self._submit("summarize", summarize_task(documents, settings, pasted,
                                                             self._resuming))
        self._update()

    def cancel(self) -> None:
        if self._job is not None:
            self.progress.cancelling()
            self._job.cancel()

    def _task_event(self, job: JobHandle, event: object) -> None:
        if job is not self._job:
            return
        if isinstance(event, TaskProgress):
            if event.stage == "map" and self._resumed_note is None:
                self._resumed_note = (f"Resumed: {event.done} of {event.total} chunks were "
                                      "already summarized." if event.done else "")
                if self._resumed_note:
                    self.status_message.emit(self._resumed_note)
            self.progress.update_progress(event)
        elif isinstance(event, SummaryOutcome):
            self._show(event, self._run_documents)

    def _task_finished(self, job: JobHandle, outcome: object) -> None:
        if job is not self._job:
            return
        self._job = None
        self.progress.finish()
        if outcome is None:
            self._resumable = None
        else:
            self._resumable = self._run_key_started
            if isinstance(outcome, Done):
                self.status_message.emit("Summary cancelled. Finished steps are kept: Resume "
                                         "continues from there.")
                self.result_note.setText("Cancelled; press Resume to continue.")
            elif isinstance(outcome, Error):
                self.error.setText(outcome.message)
                self.error.show()
        self._update()
        self.refresh_interrupted()
        self.finished.emit(outcome)

    # ------------------------------------------------------------------ interrupted jobs

    def _restore_settings(self, recipe: JobRecipe) -> None:
        settings = SummarizeSettings.from_json(recipe.settings)
        self.base_settings = settings
        self.set_mode(MULTI if len(recipe.sources) > 1 else ABSTRACTIVE)
        self.set_form(settings.form)
        self.length.setValue(settings.length)
        self.chunk_tokens.setValue(settings.chunk_tokens)

    def _show(self, outcome: SummaryOutcome, documents: list[Document]) -> None:
        self.outcome = outcome
        self._documents = documents
        result = outcome.result
        self.result_view.setHtml(summary_html(result))
        self.source_view.clear()
        self._source_shown = None
        if result.mode is Mode.EXTRACTIVE:
            note = f"{len(result.extracts)} sentences quoted verbatim."
        else:
            steps = len(result.steps_computed) + len(result.steps_reused)
            note = ("The final step failed: the fallback is shown (see above)" if result.fallback
                    else f"{len(result.points)} points from {len(result.chunks)} chunks")
            if result.repeating:
                note += f" · {finish_note(FinishReason.REPEATING)}"
            if result.left_out:
                note += " · a looping point was left out"
            if result.unsupported:
                note += f" · {len(result.unsupported)} unsupported"
            if result.steps_reused:
                note += f" · resumed: {len(result.steps_reused)} of {steps} steps reused"
            if result.invalid_markers:
                note += f" · {len(result.invalid_markers)} citation(s) to missing chunks dropped"
        self.result_note.setText(note)

    # ------------------------------------------------------------------ citations

    def _highlight(self) -> str:
        return self.palette().highlight().color().name()

    def _link_clicked(self, scheme: str, target: str) -> None:
        if scheme == "cite":
            chunk, _, point = target.partition(":")
            self.show_citation(int(chunk), int(point or -1))
        elif scheme == "quote":
            self.show_quote(int(target))

    def show_citation(self, chunk_id: int, point: int = -1) -> bool:
        """Show chunk ``chunk_id`` with the passage most like point ``point`` highlighted."""
        if self.outcome is None:
            return False
        result = self.outcome.result
        ref = next((c for c in result.chunks if c.id == chunk_id), None)
        if ref is None:
            return False
        text = result.points[point].text if 0 <= point < len(result.points) else ""
        self.source_view.setHtml(chunk_html(ref, self.outcome.chunks.get(chunk_id),
                                            result.notes.get(chunk_id), text, self._highlight()))
        self.source_view.scrollToAnchor("match")
        self._source_shown = ("cite", chunk_id, point)
        return True

    def show_quote(self, index: int) -> bool:
        if self.outcome is None or not 0 <= index < len(self.outcome.result.extracts):
            return False
        extract = self.outcome.result.extracts[index]
        block = self._documents[extract.document].blocks[extract.block]
        self.source_view.setHtml(extract_html(extract, block.text, self._highlight()))
        self.source_view.scrollToAnchor("match")
        self._source_shown = ("quote", index, -1)
        return True

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and self._source_shown is not None:
            kind, first, second = self._source_shown  # the highlight colour changed
            if kind == "cite":
                self.show_citation(first, second)
            else:
                self.show_quote(first)

    # ------------------------------------------------------------------ output

    def markdown(self) -> str:
        if self.outcome is None:
            return ""
        names = ", ".join(d.name for d in self._documents)
        return summary_markdown(self.outcome.result, f"Summary of {names}")

    def copy_markdown(self) -> None:
        if self.outcome is not None:
            QGuiApplication.clipboard().setText(self.markdown())
            self.status_message.emit("Summary copied as Markdown.")

    def export_markdown(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.markdown(), encoding="utf-8")
        return path

    def export_dialog(self) -> None:
        if self.outcome is None:
            return
        stem = Path(self._documents[0].name).stem if self._documents else "summary"
        path, _ = QFileDialog.getSaveFileName(self, "Export summary", f"{stem}-summary.md",
                                              "Markdown (*.md);;All files (*)")
        if not path:
            return
        try:
            self.export_markdown(path)
        except OSError as exc:
            self.status_message.emit(f"The summary could not be saved: {exc}")
        else:
            self.status_message.emit(f"Summary saved to {path}.")

    def shutdown(self) -> None:
        self.picker.shutdown()
        if self._job is not None:
            self._job.cancel()


def _section(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("sectionTitle")
    return label
