"""A compact list of document jobs that did not finish (cancelled, failed, or cut off when Verso
closed or crashed), each with Resume and Discard. Hidden when there are none."""

from __future__ import annotations

import time
from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from engine.tasks.resume import InterruptedJob

SHOWN = 3  # the newest ones; older ones are summed up in one line

_STATUS = {"running": "interrupted", "cancelled": "cancelled", "failed": "failed"}


def when_text(timestamp: float, now: float | None = None) -> str:
    now = time.time() if now is None else now
    then, today = time.localtime(timestamp), time.localtime(now)
    clock = time.strftime("%H:%M", then)
    if then[:3] == today[:3]:
        return f"today {clock}"
    if then[:3] == time.localtime(now - 86400)[:3]:
        return f"yesterday {clock}"
    day = time.strftime("%d %b", then).lstrip("0")
    return f"{day} {clock}" if then.tm_year == today.tm_year else f"{day} {then.tm_year}"


def meta_text(job: InterruptedJob, unit: str = "steps") -> str:
    info = job.info
    parts = [f"{_STATUS.get(info.status, info.status)} {when_text(info.updated_at)}"]
    if info.steps_total:
        parts.append(f"{min(info.steps_done, info.steps_total)} of {info.steps_total} {unit} "
                     "done")
    else:
        parts.append(f"{info.steps_done} {unit} done")
    return " · ".join(parts)


class ElidedLabel(QLabel):
    """One line that ends in "…" when narrower than its text (the tooltip has it all)."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)
        self.set_full_text(text)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(self.width(), 40)
        self.setText(self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight,
                                                   width))


class _Row(QWidget):
    def __init__(self, job: InterruptedJob, unit: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job = job
        self.title = ElidedLabel(job.info.title or (job.recipe and job.recipe.title)
                                 or "A job from an earlier version of Verso")
        self.title.setObjectName("jobTitle")
        self.meta = QLabel(meta_text(job, unit))
        self.meta.setObjectName("hint")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setObjectName("resumeButton")
        self.discard_button = QPushButton("Discard")
        self.discard_button.setToolTip("Delete this job and its finished steps")
        if job.recipe is None:
            self.resume_button.setEnabled(False)
            self.resume_button.setToolTip("Its documents were not recorded: open the same "
                                          "documents with the same settings to resume it.")
        self.problem = QLabel()
        self.problem.setObjectName("documentError")
        self.problem.setWordWrap(True)
        self.problem.setTextFormat(Qt.TextFormat.PlainText)
        self.problem.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem.hide()
        line = QHBoxLayout()
        line.setContentsMargins(0, 0, 0, 0)
        line.setSpacing(8)
        line.addWidget(self.title, 1)
        line.addWidget(self.meta)
        line.addWidget(self.resume_button)
        line.addWidget(self.discard_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(line)
        layout.addWidget(self.problem)


class InterruptedJobs(QFrame):
    resume_requested = Signal(str)  # job id
    discard_requested = Signal(str)  # job id

    def __init__(self, noun: str, plural: str, unit: str = "steps",
                 sources: str = "documents", parent: QWidget | None = None) -> None:
        """``noun``/``plural``: what a job is ("summary"); ``unit``: what a step is;
        ``sources``: what one job reads ("documents", "document")."""
        super().__init__(parent)
        self.setObjectName("interruptedJobs")
        self.noun, self.plural, self.unit, self.sources = noun, plural, unit, sources
        self.rows: dict[str, _Row] = {}
        self.count = 0  # all unfinished jobs, shown or not
        self.heading = QLabel()
        self.heading.setObjectName("interruptedHeading")
        self.more = QLabel()
        self.more.setObjectName("hint")
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(10, 6, 10, 6)
        self._layout.setSpacing(4)
        self._layout.addWidget(self.heading)
        self._layout.addWidget(self.more)
        self.hide()

    def jobs(self) -> list[InterruptedJob]:
        return [row.job for row in self.rows.values()]

    def set_jobs(self, jobs: Sequence[InterruptedJob]) -> None:
        problems = {i: r.problem.text() for i, r in self.rows.items()
                    if not r.problem.isHidden()}
        for row in self.rows.values():
            self._layout.removeWidget(row)
            row.deleteLater()
        self.rows.clear()
        for job in jobs[:SHOWN]:
            row = _Row(job, self.unit, self)
            row.resume_button.clicked.connect(lambda _c=False, i=job.id:
                                              self.resume_requested.emit(i))
            row.discard_button.clicked.connect(lambda _c=False, i=job.id:
                                               self.discard_requested.emit(i))
            self._layout.insertWidget(self._layout.count() - 1, row)
            row.show()  # at once, not when the layout gets to it
            self.rows[job.id] = row
            if job.id in problems:
                self.show_problem(job.id, problems[job.id])
        n = self.count = len(jobs)
        self.heading.setText(
            f"{n} unfinished {self.plural}: Resume reopens the {self.sources} and continues "
            f"from the finished {self.unit}." if n > 1 else f"An unfinished {self.noun}: "
            f"Resume reopens its {self.sources} and continues from the finished {self.unit}.")
        older = n - SHOWN
        self.more.setText(f"…and {older} older one{'s' if older != 1 else ''} (discard the ones "
                          "above to see them)." if older > 0 else "")
        self.more.setVisible(older > 0)
        self.setVisible(bool(jobs))

    def show_problem(self, job_id: str, message: str) -> None:
        row = self.rows.get(job_id)
        if row is None:
            return
        row.problem.setText(message)
        row.problem.setVisible(bool(message))

    def problem(self, job_id: str) -> str:
        row = self.rows.get(job_id)
        return row.problem.text() if row is not None and not row.problem.isHidden() else ""
