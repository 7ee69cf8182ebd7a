"""The Workbench's Classify tab: sentiment, topic, intent or any label set.

Each label is scored by the model (``engine.tasks.classify``), so every label gets a
probability, calibrated by default against the model's bias for the prompt (a switch turns
it off; the raw probabilities stay visible). One text shows them as bars; a batch
classifies the lines of a text file with progress and Cancel, fills a table and exports the
CLI's CSV (``verso classify``). Runs go through the bridge's task queue
(``classify_tasks``)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.bridge import EngineBridge, JobHandle
from app.panels import classify_tasks as tasks
from app.settings import write_json_atomic
from app.widgets.classify_inputs import (
    CUSTOM,
    LABEL_PRESETS,
    ExamplesTable,
    parse_labels,
    preset_for,
)
from app.widgets.label_bars import ProbabilityBars, percent_text
from app.widgets.task_progress import TaskProgressRow
from engine import paths
from engine.api import Feature
from engine.errors import BadRequestError
from engine.events import Done, Error, FinishReason
from engine.tasks.classify import (
    CONTENT_FREE,
    DEFAULT_INSTRUCTION,
    ClassifyResult,
    check_labels,
    write_csv,
)
from engine.tasks.jobs import TaskProgress

ONE_TEXT, FILE = range(2)
TEXT_FILTER = "Text files (*.txt *.csv *.tsv *.md);;All files (*)"
CSV_FILTER = "CSV files (*.csv);;All files (*)"
EDIT_HEIGHT = 76
SETUP_FILE = "classify.json"  # the last run's labels, instruction, examples, calibration
CALIBRATE_TIP = ("Small models prefer some labels whatever the text says. With this on, the "
                 "model first labels texts that say nothing ({texts}); the average of those "
                 "probabilities is its bias for this prompt, and it is divided out of every "
                 "result (contextual calibration, Zhao et al. 2021), unless the texts that say "
                 "nothing disagree on which label the model favours: then there is no steady "
                 "bias to divide out, and the result says so. The raw probabilities are "
                 "still shown.").format(texts=", ".join(f'"{t}"' for t in CONTENT_FREE))

log = logging.getLogger(__name__)


def _title(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("sectionTitle")
    return label


def _distribution(probabilities: dict[str, float]) -> str:
    ranked = sorted(probabilities.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{label} {percent_text(p)}" for label, p in ranked)


def calibration_text(result: ClassifyResult) -> str:
    """One line under the bars: whether the result is calibrated, and what the model's own
    scores said when calibration changed the pick."""
    if result.not_calibrated:
        return result.not_calibrated
    if not result.calibrated or result.raw_probabilities is None:
        return "Not calibrated: these are the model's own probabilities."
    raw = result.raw_label
    if raw != result.label:
        verdict = (f"Calibration changed the label: the model's own pick is {raw} "
                   f"({percent_text(result.raw_probabilities[raw])}).")
    else:
        verdict = "Calibration kept the model's own pick."
    prior = (f" On texts that say nothing it gives {_distribution(result.prior)}; that bias "
             "is divided out." if result.prior else "")
    return f"{verdict}{prior} Before calibration: {_distribution(result.raw_probabilities)}."


class ClassifyView(QWidget):
    finished = Signal(object)  # the job's outcome: None, Done (cancelled) or Error

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("classifyView")
        self.bridge = bridge
        self._job: JobHandle | None = None
        self._job_kind = ""
        self._started = 0.0
        self.result: ClassifyResult | None = None  # the last single text's
        self.lines: list[str] = []  # the opened file's texts
        self.file_path = ""
        self.batch_rows: list[tuple[str, ClassifyResult]] = []
        self.batch_labels: tuple[str, ...] = ()
        self.batch_calibrated = False
        self._build()
        if not self.restore_setup():
            self.set_labels(LABEL_PRESETS["Sentiment"])
        bridge.model_loaded.connect(lambda _m: self._update())
        bridge.load_failed.connect(lambda _e: self._update())
        bridge.load_cancelled.connect(self._update)
        bridge.busy_changed.connect(lambda _b: self._update())
        self._update()

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        self.preset = QComboBox()
        self.preset.setObjectName("labelPreset")
        for name in (*LABEL_PRESETS, CUSTOM):
            self.preset.addItem(name)
        self.preset.setToolTip("Start from a label set, then edit it as you like.")
        self.preset.activated.connect(lambda _i: self._preset_chosen())
        self.labels_edit = QPlainTextEdit()
        self.labels_edit.setObjectName("classifyLabels")
        self.labels_edit.setPlaceholderText("Labels, comma-separated or one per line")
        self.labels_edit.setToolTip("Comma-separated or one per line; '\\,' is a comma inside "
                                    "a label.")
        self.labels_edit.setFixedHeight(EDIT_HEIGHT)
        self.labels_edit.textChanged.connect(self._labels_edited)
        self.instruction = QPlainTextEdit()
        self.instruction.setObjectName("classifyInstruction")
        self.instruction.setPlaceholderText(DEFAULT_INSTRUCTION)
        self.instruction.setToolTip("What the model is told before the text (optional). "
                                    "{labels} is replaced by the labels.")
        self.instruction.setFixedHeight(EDIT_HEIGHT)
        self.examples = ExamplesTable()
        self.examples.changed.connect(self._update)
        self.examples.table.setMinimumHeight(90)
        self.problems_label = QLabel()
        self.problems_label.setObjectName("workbenchError")
        self.problems_label.setWordWrap(True)
        self.calibrate = QCheckBox("Calibrate: correct the model's bias toward some labels")
        self.calibrate.setObjectName("classifyCalibrate")
        self.calibrate.setChecked(True)
        self.calibrate.setToolTip(CALIBRATE_TIP)

        labels_head = QHBoxLayout()
        labels_head.addWidget(_title("Labels"))
        labels_head.addStretch(1)
        labels_head.addWidget(self.preset)
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setVerticalSpacing(4)
        grid.addLayout(labels_head, 0, 0)
        grid.addWidget(_title("Instruction (optional)"), 0, 1,
                       Qt.AlignmentFlag.AlignBottom)
        grid.addWidget(self.labels_edit, 1, 0)
        grid.addWidget(self.instruction, 1, 1)
        grid.setColumnStretch(0, 2)
        grid.setColumnStretch(1, 3)
        setup = QWidget()
        setup_layout = QVBoxLayout(setup)
        setup_layout.setContentsMargins(8, 4, 8, 4)
        setup_layout.addLayout(grid)
        setup_layout.addWidget(self.calibrate)
        setup_layout.addWidget(self.problems_label)
        setup_layout.addWidget(_title("Few-shot examples (optional)"))
        setup_layout.addWidget(self.examples, 1)

        self.modes = QTabWidget()
        self.modes.setObjectName("classifyModes")
        self.modes.addTab(self._build_one_text(), "One text")
        self.modes.addTab(self._build_file(), "File (one text per line)")
        self.modes.currentChanged.connect(lambda _i: self._update())

        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)
        split.addWidget(setup)
        split.addWidget(self.modes)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([300, 450])

        self.error = QLabel()
        self.error.setObjectName("workbenchError")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note = QLabel()
        self.note.setObjectName("hint")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(split, 1)
        layout.addWidget(self.error)
        layout.addWidget(self.note)

    def _build_one_text(self) -> QWidget:
        self.text = QPlainTextEdit()
        self.text.setObjectName("classifyText")
        self.text.setPlaceholderText("The text to classify")
        self.text.setFixedHeight(EDIT_HEIGHT + 10)
        self.text.textChanged.connect(self._update)
        self.run_button = QPushButton("Classify")
        self.run_button.setObjectName("primaryButton")
        self.run_button.clicked.connect(lambda: self.run())
        self.result_title = QLabel()
        self.result_title.setObjectName("sectionTitle")
        self.bars = ProbabilityBars()
        self.calibration_note = QLabel()
        self.calibration_note.setObjectName("hint")
        self.calibration_note.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(_title("Probability of each label"))
        row.addStretch(1)
        row.addWidget(self.run_button)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(self.text)
        layout.addLayout(row)
        layout.addWidget(self.result_title)
        layout.addWidget(self.bars)
        layout.addWidget(self.calibration_note)
        layout.addStretch(1)
        return page

    def _build_file(self) -> QWidget:
        self.open_button = QPushButton("Open file…")
        self.open_button.setToolTip("A UTF-8 text file; each non-empty line is one text.")
        self.open_button.clicked.connect(self.open_dialog)
        self.file_label = QLabel("No file opened.")
        self.file_label.setObjectName("hint")
        self.batch_button = QPushButton("Classify all")
        self.batch_button.setObjectName("primaryButton")
        self.batch_button.clicked.connect(lambda: self.run_batch())
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("The columns text, label and p_<label> for each label, "
                                      "as `verso classify` writes them.")
        self.export_button.clicked.connect(self.export_dialog)
        self.progress = TaskProgressRow()
        self.progress.cancel_requested.connect(self.cancel)
        self.table = QTableWidget(0, 2)
        self.table.setObjectName("classifyResults")
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        row = QHBoxLayout()
        row.addWidget(self.open_button)
        row.addWidget(self.file_label, 1)
        row.addWidget(self.batch_button)
        row.addWidget(self.export_button)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.table, 1)
        self._reset_table(())
        return page

    def set_scheme(self, scheme: str) -> None:
        self.bars.set_scheme(scheme)

    # ------------------------------------------------------------------ labels

    def set_labels(self, labels: tuple[str, ...] | list[str]) -> None:
        self.labels_edit.setPlainText(", ".join(label.replace(",", "\\,")
                                                for label in labels))

    def choose_preset(self, name: str) -> None:
        """Use a preset's labels (``CUSTOM`` keeps the labels to edit them)."""
        self.preset.setCurrentText(name)
        if name in LABEL_PRESETS:
            self.set_labels(LABEL_PRESETS[name])
        else:
            self.labels_edit.setFocus()

    def _preset_chosen(self) -> None:
        self.choose_preset(self.preset.currentText())

    def _labels_edited(self) -> None:
        labels = parse_labels(self.labels_edit.toPlainText())
        self.preset.setCurrentText(preset_for(labels))
        self.examples.set_labels([label for label in labels if label])
        self._update()

    def labels(self) -> list[str]:
        return parse_labels(self.labels_edit.toPlainText())

    def save_setup(self) -> None:
        """Keep the labels, instruction, examples and the calibration switch for the next
        session (config folder)."""
        data = {"labels": self.labels_edit.toPlainText(),
                "instruction": self.instruction.toPlainText(),
                "examples": [list(row) for row in self.examples.rows()],
                "calibrate": self.calibrate.isChecked()}
        try:
            write_json_atomic(paths.config_dir() / SETUP_FILE, data)
        except OSError as exc:
            log.warning("could not save the classification setup: %s", exc)

    def restore_setup(self) -> bool:
        """The setup saved by ``save_setup``; False (nothing changed) when there is none or
        it cannot be read."""
        try:
            data = json.loads((paths.config_dir() / SETUP_FILE).read_text(encoding="utf-8"))
            labels, instruction = str(data["labels"]), str(data.get("instruction", ""))
            examples = [(str(text), str(label)) for text, label in data.get("examples", [])]
            calibrate = data.get("calibrate", True)
            if not isinstance(calibrate, bool):
                raise TypeError(f"calibrate is {calibrate!r}, not true or false")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("ignoring the saved classification setup: %s", exc)
            return False
        self.labels_edit.setPlainText(labels)
        self.instruction.setPlainText(instruction)
        self.calibrate.setChecked(calibrate)
        self.examples.clear()
        for text, label in examples:
            self.examples.add_row(text, label)
        return True

    def spec(self) -> tasks.ClassifySpec:
        """The labels, examples and instruction; raises ``BadRequestError`` if unusable."""
        problems = self.examples.problems()
        if problems:
            raise BadRequestError(problems[0])
        few_shot = tuple(self.examples.rows())
        labels = check_labels(self.labels(), few_shot)
        instruction = self.instruction.toPlainText().strip() or None
        return tasks.ClassifySpec(tuple(labels), few_shot, instruction,
                                  self.calibrate.isChecked())

    def setup_problems(self) -> list[str]:
        try:
            self.spec()
        except BadRequestError as exc:
            return [exc.message]
        return []

    def problems(self) -> list[str]:
        """Why nothing can be classified right now (empty when it can)."""
        found = self.setup_problems()
        if not self.bridge.has(Feature.SCORE):
            found.insert(0, self.bridge.unavailable(Feature.SCORE) + " Every label is scored "
                         "by the model, so the Classify tab cannot run here.")
        elif self.bridge.loaded is None:
            found.append("The model is loading…" if self.bridge.loading is not None
                         else "No model is loaded: choose one in the toolbar.")
        return found

    # ------------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        return self._job is not None

    def _update(self) -> None:
        running = self.running
        problems = self.problems()
        self.problems_label.setText("\n".join(problems))
        self.problems_label.setVisible(bool(problems))
        ready = not running and not problems
        self.run_button.setEnabled(ready and bool(self.text.toPlainText().strip()))
        self.batch_button.setEnabled(ready and bool(self.lines))
        self.export_button.setEnabled(not running and bool(self.batch_rows))
        self.open_button.setEnabled(not running)
        for widget in (self.preset, self.labels_edit, self.instruction, self.calibrate):
            widget.setEnabled(not running)
        self.examples.set_editable(not running)
        self.text.setReadOnly(running)

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))

    # ------------------------------------------------------------------ runs

    def _start(self, kind: str, fn: tasks.TaskFn) -> JobHandle:
        self._job_kind = kind
        self._started = time.monotonic()
        self._show_error("")
        job = self._job = self.bridge.run_task(f"classify-{kind}", fn)
        job.yielded.connect(lambda event: self._task_event(job, event))
        job.finished.connect(lambda outcome: self._task_finished(job, outcome))
        self._update()
        return job

    def _refused(self, extra: list[str]) -> bool:
        problems = self.problems() + extra
        if self.running or problems:
            self._show_error("\n".join(problems))
            return True
        return False

    def run(self) -> JobHandle | None:
        """Classify the text; returns the job (None if refused)."""
        text = self.text.toPlainText().strip()
        if self._refused([] if text else ["Write a text to classify."]):
            return None
        self.modes.setCurrentIndex(ONE_TEXT)
        self.note.setText("Classifying…")
        spec = self.spec()
        self.save_setup()
        return self._start("one", tasks.classify_text(text, spec))

    def run_batch(self) -> JobHandle | None:
        """Classify every line of the opened file; returns the job (None if refused)."""
        if self._refused([] if self.lines else ["Open a file with one text per line."]):
            return None
        spec = self.spec()
        self.save_setup()
        self.modes.setCurrentIndex(FILE)
        self.batch_rows = []
        self.batch_labels = spec.labels
        self.batch_calibrated = spec.calibrate
        self._reset_table(self.lines)
        self.progress.start("Classifying texts")
        self.note.setText("")
        return self._start("batch", tasks.classify_texts(self.lines, spec))

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.progress.cancelling()

    def shutdown(self) -> None:
        self.cancel()
        self.save_setup()

    # ------------------------------------------------------------------ events

    def _task_event(self, job: JobHandle, event: object) -> None:
        if job is not self._job:
            return
        if isinstance(event, TaskProgress):
            self.progress.update_progress(event)
        elif isinstance(event, tasks.Classified):
            if self._job_kind == "one":
                self._show_result(event.result)
            else:
                self.batch_rows.append((event.text, event.result))
                self._fill_row(event.index, event.result)

    def _task_finished(self, job: JobHandle, outcome: object) -> None:
        if job is not self._job:
            return
        kind = self._job_kind
        self._job, self._job_kind = None, ""
        elapsed = time.monotonic() - self._started
        self.progress.finish()
        if isinstance(outcome, Error):
            self._show_error(outcome.message)
            self.note.setText("")
        elif isinstance(outcome, Done) and outcome.finish_reason is FinishReason.CANCELLED:
            self.note.setText(f"Cancelled after {len(self.batch_rows)} of {len(self.lines)} "
                              "texts." if kind == "batch" else "Cancelled.")
        elif kind == "batch":
            self.note.setText(f"Classified {len(self.batch_rows)} texts in {elapsed:.1f} s.")
        else:
            self.note.setText(f"Classified in {elapsed:.2f} s.")
        self._update()
        self.finished.emit(outcome)

    # ----------------------------------------------------------------- display

    def _show_result(self, result: ClassifyResult) -> None:
        self.result = result
        self.result_title.setText(f"{result.label}  ·  "
                                  f"{percent_text(result.probabilities[result.label])}")
        self.bars.set_probabilities(result.probabilities, result.label)
        self.calibration_note.setText(calibration_text(result))

    def _reset_table(self, texts: list[str] | tuple[str, ...]) -> None:
        labels = self.batch_labels
        self.table.clear()
        raw = ["Raw label"] if self.batch_calibrated else []
        self.table.setColumnCount(2 + len(labels) + len(raw))
        self.table.setHorizontalHeaderLabels(["Text", "Label", *labels, *raw])
        if raw:
            header_item = QTableWidgetItem(raw[0])
            header_item.setToolTip("The label before calibration: the model's own pick.")
            self.table.setHorizontalHeaderItem(2 + len(labels), header_item)
        self.table.setRowCount(len(texts))
        for row, text in enumerate(texts):
            item = QTableWidgetItem(text)
            item.setToolTip(text)
            self.table.setItem(row, 0, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, self.table.columnCount()):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)

    def _fill_row(self, row: int, result: ClassifyResult) -> None:
        if row >= self.table.rowCount():
            return
        label = QTableWidgetItem(result.label)
        font = label.font()
        font.setBold(True)
        label.setFont(font)
        self.table.setItem(row, 1, label)
        for column, name in enumerate(self.batch_labels, 2):
            item = QTableWidgetItem(percent_text(result.probabilities[name]))
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if name == result.label:
                item.setFont(font)
            self.table.setItem(row, column, item)
        if self.batch_calibrated:
            raw = QTableWidgetItem(result.raw_label)
            raw.setToolTip(calibration_text(result))
            self.table.setItem(row, 2 + len(self.batch_labels), raw)
        self.table.scrollToItem(label)

    # ------------------------------------------------------------------- files

    def open_file(self, path: str | Path) -> bool:
        try:
            lines = tasks.read_lines(str(path))
        except (OSError, UnicodeDecodeError) as exc:
            self._show_error(f"The file could not be read: {exc}")
            return False
        self.lines, self.file_path = lines, str(path)
        self.batch_rows = []
        self._reset_table(lines)
        self.file_label.setText(f"{Path(path).name} · {len(lines)} texts")
        self.file_label.setToolTip(str(path))
        self.modes.setCurrentIndex(FILE)
        self._show_error("" if lines else "The file has no non-empty lines.")
        self._update()
        return True

    def export_csv(self, path: str | Path) -> bool:
        try:
            with open(path, "w", encoding="utf-8", newline="") as out:
                write_csv(self.batch_rows, self.batch_labels, out)
        except OSError as exc:
            self._show_error(f"The CSV could not be saved: {exc}")
            return False
        self.note.setText(f"Saved {len(self.batch_rows)} rows to {path}.")
        return True

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Texts to classify", "", TEXT_FILTER)
        if path:
            self.open_file(path)

    def export_dialog(self) -> None:
        suggested = (str(Path(self.file_path).with_suffix(".classified.csv"))
                     if self.file_path else "classified.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Export CSV", suggested, CSV_FILTER)
        if path:
            self.export_csv(path)
