"""What the document panels share about jobs that did not finish: the list of them above the
results (refreshed when the panel shows and after each run), Resume (reopen the job's
documents, restore its settings, then run it so its stored steps are reused) and Discard."""

from __future__ import annotations

import logging
from typing import ClassVar

from PySide6.QtCore import Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QWidget

from app.bridge import EngineBridge, JobHandle
from app.document_loader import Counter, engine_counter
from app.widgets.document_picker import DocumentPicker
from app.widgets.interrupted_jobs import InterruptedJobs
from engine.store.db import StoreError
from engine.store.jobs import JobStore
from engine.tasks.resume import (
    InterruptedJob,
    JobRecipe,
    changed_documents,
    check_sources,
    interrupted_jobs,
)


class JobResumePanel(QWidget):
    """A panel whose jobs can be resumed. Subclasses set the class attributes below, create
    ``interrupted`` (connected to ``resume_job`` and ``discard_job``), ``bridge`` and
    ``picker``, and implement ``_blocker``, ``_update``, ``run`` and ``_restore_settings``."""

    status_message = Signal(str)
    job_started = Signal(object)  # the JobHandle of a run this panel just queued

    KIND: ClassVar[str]  # the job kind in the store: "summarize", "translate"
    NOUN: ClassVar[str]  # one job, for the user: "summary"
    NOUNS: ClassVar[str]  # several: "summaries"
    STEPS: ClassVar[str] = "steps"  # what a job stores as it goes
    SOURCES: ClassVar[str] = "documents"  # what Resume reopens

    bridge: EngineBridge
    picker: DocumentPicker
    interrupted: InterruptedJobs
    _job: object  # None while no job of this panel runs
    _resumable: object
    _pending_resume: InterruptedJob | None  # its documents are being reopened

    # ------------------------------------------------------------------ what panels provide

    def _blocker(self) -> str:
        """Why Run is off, or "" when it can run."""
        raise NotImplementedError

    def _update(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        raise NotImplementedError

    def _accepts(self, recipe: JobRecipe) -> bool:
        """Whether this panel can reopen the recipe's sources at all."""
        return True

    def _restore_settings(self, recipe: JobRecipe) -> None:
        """Set the controls as they were for the job."""
        raise NotImplementedError

    def _model_changed(self, loaded: object) -> None:
        raise NotImplementedError

    def _task_event(self, job: JobHandle, event: object) -> None:
        """What the panel's job ``job`` yielded."""
        raise NotImplementedError

    def _task_finished(self, job: JobHandle, outcome: object) -> None:
        raise NotImplementedError

    def _follow_engine(self) -> None:
        """Listen to the bridge: model changes re-check Run."""
        self.bridge.model_loaded.connect(self._model_changed)
        self.bridge.load_failed.connect(lambda _e: self._update())
        self.bridge.load_cancelled.connect(self._update)

    def _submit(self, kind: str, fn) -> JobHandle:
        """Queue the panel's task; its handle's events reach ``_task_event`` and
        ``_task_finished``."""
        job = self.bridge.run_task(kind, fn)
        job.yielded.connect(lambda event: self._task_event(job, event))
        job.finished.connect(lambda outcome: self._task_finished(job, outcome))
        self.job_started.emit(job)
        return job

    _resuming: JobRecipe | None = None  # the recipe of the job being resumed, during run()

    def _counter(self) -> Counter:
        """Counts documents' tokens with the engine, once a model is loaded."""
        return engine_counter(self.bridge)

    # ------------------------------------------------------------------ interrupted jobs

    def refresh_interrupted(self) -> None:
        """List the jobs of this kind that did not finish (none while one runs here)."""
        if self._job is not None:
            self.interrupted.hide()
            return
        try:
            with JobStore() as store:
                jobs = interrupted_jobs(store, self.KIND)
        except StoreError as exc:
            logging.getLogger(type(self).__module__).warning(
                "listing unfinished %s failed: %s", self.NOUNS, exc)
            jobs = []
        self.interrupted.set_jobs(jobs)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh_interrupted()

    def _interrupted_job(self, job_id: str) -> InterruptedJob | None:
        return next((j for j in self.interrupted.jobs() if j.id == job_id), None)

    def resume_job(self, job_id: str) -> bool:
        """Reopen the job's documents, restore its settings and run it (its stored steps are
        reused). False, with the reason shown in its row, when it cannot."""
        job = self._interrupted_job(job_id)
        if job is None or job.recipe is None or self._job is not None:
            return False
        recipe = job.recipe
        loaded = self.bridge.loaded
        if loaded is None:
            self.interrupted.show_problem(job_id, self._blocker() or "Load a model first.")
            return False
        if recipe.model and not recipe.model.same_model(loaded.ref):
            self.interrupted.show_problem(
                job_id, f"This {self.NOUN} was made with {recipe.model.label}; load that "
                f"model to resume it (its finished {self.STEPS} belong to that model).")
            return False
        problems = check_sources(recipe, self.KIND)
        if problems:
            self.interrupted.show_problem(job_id, " ".join(p.message for p in problems))
            return False
        if not self._accepts(recipe):
            return False
        self.interrupted.show_problem(job_id, "")
        self._restore_settings(recipe)
        self.picker.clear()
        self._pending_resume = job  # runs once the documents are read again
        for source in recipe.sources:
            if source.pasted:
                self.picker.add_text(source.text or "", source.name)
            else:
                self.picker.add_files([source.path])
        self.status_message.emit(f"Reopening the {self.SOURCES} of “{recipe.title}”…")
        return True

    def _finish_resume(self) -> None:
        """Run the job being resumed, now that its documents are read again (or say why not)."""
        job, self._pending_resume = self._pending_resume, None
        assert job is not None and job.recipe is not None
        documents = self.picker.documents()
        problems = changed_documents(job.recipe, documents, self.KIND)
        if problems:
            reason = self.picker.error.text() if len(documents) < len(job.recipe.sources) \
                else ""
            self.interrupted.show_problem(job.id, " ".join(
                [p.message for p in problems] + ([reason] if reason else [])))
            return
        blocker = self._blocker()
        if blocker:
            self.interrupted.show_problem(job.id, blocker)
            return
        self._resuming = job.recipe
        try:
            self.run()
        finally:
            self._resuming = None

    def discard_job(self, job_id: str) -> None:
        """Delete the job and its stored steps."""
        job = self._interrupted_job(job_id)
        try:
            with JobStore() as store:
                store.delete(job_id)
        except StoreError as exc:
            self.interrupted.show_problem(job_id, str(exc))
            return
        if self._pending_resume is not None and self._pending_resume.id == job_id:
            self._pending_resume = None
        self._resumable = None
        self._update()
        self.refresh_interrupted()
        title = job.info.title if job is not None else ""
        self.status_message.emit(f"Discarded the unfinished {self.NOUN} “{title}”." if title
                                 else f"Discarded the unfinished {self.NOUN}.")
