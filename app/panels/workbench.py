"""The Workbench: controlled generation and a look inside the model.

Left, the work: the text (raw completion continues it in place; chat sends it as a user
message), the generated tokens with their probabilities and branches, a side-by-side
comparison, the model's architecture and the attention of a chosen token. Right, the
controls: sampler settings with presets, and constraints. Runs go through the bridge's task
queue (``workbench_tasks``); this module only turns their records into widgets."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.bridge import EngineBridge, JobHandle
from app.panels import workbench_tasks as tasks
from app.panels.workbench_classify import ClassifyView
from app.sampler_presets import (
    SamplerPreset,
    delete_sampler_preset,
    load_sampler_presets,
    save_sampler_preset,
)
from app.settings import AppSettings, sampling_from
from app.theme import ThemeManager
from app.widgets.attention_view import AttentionView
from app.widgets.compare_view import CompareView, hide_rows, stats_line
from app.widgets.constraint_editors import ConstraintsEditor
from app.widgets.model_view import ModelView
from app.widgets.sampling_form import SamplingForm
from app.widgets.token_view import Run, TokenRecord, TokenView, percent, shown
from engine.api import Feature
from engine.errors import VersoError
from engine.events import (
    AttentionMap,
    Done,
    Error,
    FinishReason,
    ModelLoaded,
    Rollback,
    Token,
    fold_text,
)
from engine.options import ChatRequest, CompletionRequest, KVType

log = logging.getLogger(__name__)

MODES = (("raw", "Raw completion"), ("chat", "Chat"))
TEXT, TOKENS, COMPARE, MODEL, ATTENTION, CLASSIFY = range(6)
RUN_FIELDS = ("max_tokens", "seed", "stop")  # kept when a preset is applied
DEFAULT_N_PROBS = 5


def utf16_len(text: str) -> int:
    """Length in QTextDocument positions (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


class WorkbenchPanel(QWidget):
    status_message = Signal(str)
    run_finished = Signal(object)  # the Run (or None for a comparison) once a job ends

    def __init__(self, bridge: EngineBridge, settings: Callable[[], AppSettings],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("workbenchPanel")
        self.bridge = bridge
        self._settings = settings
        self._job: JobHandle | None = None  # the generation in flight
        self._job_kind = ""
        self._job_runs: dict[str, int] = {}  # tag -> run index, for the job in flight
        self._compare_done: dict[str, Done | None] = {}
        self._compare_text: dict[str, str] = {}
        self._grammar_job: JobHandle | None = None
        self._attention_job: JobHandle | None = None
        self._attention_title = ""
        self._shown_run = -1
        self._run_count = 0
        self._pending_branch = (0, 0, 0)
        self._model_stale = True
        self.presets: list[SamplerPreset] = []
        self._build()
        self.reload_presets()
        self._apply_capabilities()
        self.bridge.model_loaded.connect(self._model_loaded)
        self.bridge.busy_changed.connect(lambda _busy: self._update_run_state())
        app = QApplication.instance()
        theme = app.findChild(ThemeManager) if app is not None else None
        if isinstance(theme, ThemeManager):
            theme.changed.connect(self.set_scheme)
            self.set_scheme(theme.scheme or "light")
        if bridge.loaded is not None:
            self._model_loaded(bridge.loaded)
        self._update_run_state()

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        self.mode = QComboBox()
        self.mode.setObjectName("modeCombo")
        for key, label in MODES:
            self.mode.addItem(label, key)
        self.mode.setToolTip("Raw completion continues the text as written. Chat wraps it as "
                             "a user message in the model's chat template.")
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("primaryButton")
        self.run_button.setToolTip("Generate (Ctrl+Enter)")
        self.run_button.setShortcut("Ctrl+Return")
        self.run_button.clicked.connect(lambda: self.run())
        self.regenerate_button = QPushButton("Regenerate")
        self.regenerate_button.setToolTip("Undo the last output and generate again")
        self.regenerate_button.clicked.connect(self.regenerate)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setVisible(False)
        top = QHBoxLayout()
        top.addWidget(QLabel("Mode"))
        top.addWidget(self.mode)
        top.addStretch(1)
        top.addWidget(self.regenerate_button)
        top.addWidget(self.run_button)
        top.addWidget(self.stop_button)

        # The text: raw editor or chat fields.
        self.editor = QPlainTextEdit()
        self.editor.setObjectName("notebook")
        self.editor.setPlaceholderText("Write the beginning of a text; Run continues it here.")
        self.system = QPlainTextEdit()
        self.system.setObjectName("chatSystem")
        self.system.setPlaceholderText("System prompt (optional)")
        self.system.setFixedHeight(64)
        self.message = QPlainTextEdit()
        self.message.setObjectName("chatMessage")
        self.message.setPlaceholderText("The user's message")
        self.reply = QPlainTextEdit()
        self.reply.setObjectName("chatReply")
        self.reply.setReadOnly(True)
        self.reply.setPlaceholderText("The model's reply appears here.")
        chat_page = QWidget()
        chat_layout = QVBoxLayout(chat_page)
        chat_layout.setContentsMargins(0, 0, 0, 0)
        for title, widget, stretch in (("System", self.system, 0),
                                       ("Message", self.message, 2),
                                       ("Reply", self.reply, 3)):
            heading = QLabel(title)
            heading.setObjectName("sectionTitle")
            chat_layout.addWidget(heading)
            chat_layout.addWidget(widget, stretch)
        self.text_stack = QStackedWidget()
        self.text_stack.addWidget(self.editor)
        self.text_stack.addWidget(chat_page)

        self.tokens = TokenView()
        self.tokens.branch_requested.connect(self.branch)
        self.tokens.attention_requested.connect(self.show_attention)
        self.tokens.current_changed.connect(self._run_selected)
        self.compare = CompareView()
        self.compare.run_requested.connect(self.run_compare)
        self.compare.stop_requested.connect(self.stop)
        self.model_view = ModelView()
        self.attention = AttentionView()
        self.classify = ClassifyView(self.bridge)
        self.work = QTabWidget()
        self.work.setObjectName("workbenchTabs")
        tabs: tuple[tuple[QWidget, str], ...] = (
            (self.text_stack, "Text"), (self.tokens, "Tokens"), (self.compare, "Compare"),
            (self.model_view, "Model"), (self.attention, "Attention"),
            (self.classify, "Classify"))
        for tab, title in tabs:
            self.work.addTab(tab, title)
        self.work.currentChanged.connect(self._work_tab_changed)

        # Controls: sampling with presets, constraints.
        self.preset = QComboBox()
        self.preset.setObjectName("presetCombo")
        self.preset.activated.connect(lambda _i: self._preset_chosen())
        self.save_preset_button = QPushButton("Save…")
        self.save_preset_button.setToolTip("Save these settings as a preset")
        self.save_preset_button.clicked.connect(self._ask_save_preset)
        self.delete_preset_button = QPushButton("Delete")
        self.delete_preset_button.setToolTip("Delete this preset (only your own)")
        self.delete_preset_button.clicked.connect(self._ask_delete_preset)
        preset_row = QHBoxLayout()
        preset_row.addWidget(self.preset, 1)
        preset_row.addWidget(self.save_preset_button)
        preset_row.addWidget(self.delete_preset_button)
        self.sampling = SamplingForm()
        self.sampling.setObjectName("workbenchSampling")
        hide_rows(self.sampling, ("ban_phrases", "ban_any_case"))
        self.n_probs = QSpinBox()
        self.n_probs.setObjectName("nProbs")
        self.n_probs.setRange(1, 20)
        self.n_probs.setValue(DEFAULT_N_PROBS)
        self.n_probs.setToolTip("How many of the most likely tokens the Tokens tab shows for "
                                "each position (what you can branch to).")
        form = self.sampling.layout()
        assert isinstance(form, QFormLayout)
        form.addRow("Alternatives", self.n_probs)
        for control in self.sampling.controls.values():
            if hasattr(control, "valueChanged"):
                control.valueChanged.connect(self._update_run_state)
            elif hasattr(control, "textChanged"):
                control.textChanged.connect(self._update_run_state)
        sampling_page = QWidget()
        sampling_layout = QVBoxLayout(sampling_page)
        sampling_layout.addLayout(preset_row)
        sampling_layout.addWidget(self.sampling)
        sampling_layout.addStretch(1)
        self.constraints = ConstraintsEditor()
        self.constraints.changed.connect(self._update_run_state)
        self.constraints.grammar_check_needed.connect(self._check_grammar)
        constraints_page = QWidget()
        constraints_layout = QVBoxLayout(constraints_page)
        constraints_layout.addWidget(self.constraints)
        self.controls = QTabWidget()
        self.controls.setObjectName("workbenchControls")
        for page, title in ((sampling_page, "Sampling"), (constraints_page, "Constraints")):
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QScrollArea.Shape.NoFrame)
            scroll.setWidget(page)
            self.controls.addTab(scroll, title)
        self.controls.setMinimumWidth(340)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.work)
        split.addWidget(self.controls)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([800, 360])

        self.stats = QLabel()
        self.stats.setObjectName("hint")
        self.error = QLabel()
        self.error.setObjectName("workbenchError")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 6)
        top.setContentsMargins(0, 0, 0, 0)
        self.top_bar = QWidget()
        self.top_bar.setLayout(top)
        layout.addWidget(self.top_bar)
        layout.addWidget(split, 1)
        layout.addWidget(self.error)
        layout.addWidget(self.stats)

    def set_scheme(self, scheme: str) -> None:
        self.tokens.set_scheme(scheme)
        self.model_view.set_scheme(scheme)
        self.attention.set_scheme(scheme)
        self.classify.set_scheme(scheme)

    # ----------------------------------------------------------- capabilities

    def _can_branch(self, mode: str) -> bool:
        """Branching needs each token's alternatives; a raw branch also forces tokens."""
        return self.bridge.has(Feature.TOKEN_PROBS) and (
            mode != "raw" or self.bridge.has(Feature.FORCED_TOKENS))

    def _apply_capabilities(self) -> None:
        """Turn off, with the reason, what this backend cannot do (``Capabilities``)."""
        has, why = self.bridge.has, self.bridge.unavailable
        raw = self.mode.model().item(0)  # type: ignore[attr-defined]  # a QStandardItemModel
        raw.setEnabled(has(Feature.RAW_COMPLETION))
        raw.setToolTip(why(Feature.RAW_COMPLETION))
        if not has(Feature.RAW_COMPLETION):
            self.mode.setCurrentIndex(self.mode.findData("chat"))
        self.n_probs.setEnabled(has(Feature.TOKEN_PROBS))
        if not has(Feature.TOKEN_PROBS):
            self.n_probs.setToolTip(why(Feature.TOKEN_PROBS))
            self.n_probs.setMinimum(0)
            self.n_probs.setSpecialValueText("not available")
            self.n_probs.setValue(0)
        self.tokens.attention_enabled = has(Feature.ATTENTION)
        notes = [f"{why(f)} {what}" for f, what in (
            (Feature.TOKEN_PROBS, "Tokens are shown without probabilities or alternatives, "
                                  "and branching is off."),
            (Feature.FORCED_TOKENS, "Raw completions cannot be branched."),
            (Feature.ATTENTION, "The attention of a token cannot be shown."))
            if not has(f)]
        self.tokens.set_notice("\n".join(notes))
        if not has(Feature.ATTENTION):
            self.attention.show_message(why(Feature.ATTENTION))
        self.constraints.set_unavailable(grammar=why(Feature.GRAMMAR),
                                         ban=why(Feature.BAN_PHRASES),
                                         bias=why(Feature.LOGIT_BIAS))

    # ---------------------------------------------------------------- presets

    def reload_presets(self, select: str | None = None) -> None:
        chosen = select or self.preset.currentData()
        self.presets = load_sampler_presets()
        self.preset.clear()
        self.preset.addItem("Preset…", None)
        for preset in self.presets:
            self.preset.addItem(preset.name + (" (yours)" if preset.user else ""), preset.name)
            self.preset.setItemData(self.preset.count() - 1, preset.description,
                                    Qt.ItemDataRole.ToolTipRole)
        index = self.preset.findData(chosen) if chosen else 0
        self.preset.setCurrentIndex(max(index, 0))
        self.compare.set_presets(self.presets, self.sampling_values)
        self._update_preset_buttons()

    def _preset(self, name: str | None) -> SamplerPreset | None:
        return next((p for p in self.presets if p.name == name), None)

    def _update_preset_buttons(self) -> None:
        preset = self._preset(self.preset.currentData())
        self.delete_preset_button.setEnabled(preset is not None and preset.user)

    def _preset_chosen(self) -> None:
        name = self.preset.currentData()
        if name:
            self.apply_preset(name)
        self._update_preset_buttons()

    def apply_preset(self, name: str) -> None:
        preset = self._preset(name)
        if preset is None:
            raise KeyError(name)
        current = self.sampling.values()
        keep = {k: v for k, v in current.items() if k in RUN_FIELDS}
        self.sampling.set_values({**keep, **preset.sampling})
        self.preset.setCurrentIndex(max(self.preset.findData(name), 0))
        self._update_preset_buttons()
        self.status_message.emit(f"Preset “{name}” applied.")

    def save_preset(self, name: str) -> None:
        values = {k: v for k, v in self.sampling.values().items()
                  if k not in ("ban_phrases", "ban_any_case")}
        save_sampler_preset(name, values)
        self.reload_presets(select=name.strip())
        self.status_message.emit(f"Preset “{name.strip()}” saved.")

    def delete_preset(self, name: str) -> bool:
        deleted = delete_sampler_preset(name)
        self.reload_presets()
        self.preset.setCurrentIndex(0)
        self._update_preset_buttons()
        return deleted

    def _ask_save_preset(self) -> None:
        name, ok = QInputDialog.getText(self, "Save preset", "Name of the preset:")
        if ok and name.strip():
            existing = self._preset(name.strip())
            if existing is not None and not existing.user:
                QMessageBox.information(self, "Save preset", f"“{name}” is a built-in preset; "
                                        "choose another name.")
                return
            self.save_preset(name)

    def _ask_delete_preset(self) -> None:
        preset = self._preset(self.preset.currentData())
        if preset is None or not preset.user:
            return
        answer = QMessageBox.question(self, "Delete preset", f"Delete the preset "
                                      f"“{preset.name}”?")
        if answer == QMessageBox.StandardButton.Yes:
            self.delete_preset(preset.name)

    # ---------------------------------------------------------------- settings

    def sampling_values(self) -> dict[str, Any]:
        return {k: v for k, v in self.sampling.values().items()
                if k not in ("ban_phrases", "ban_any_case")}

    def _spec(self, values: dict[str, Any] | None = None) -> tasks.RunSpec:
        sampling = sampling_from(self.sampling_values() if values is None else values)
        if self.bridge.has(Feature.TOKEN_PROBS):
            sampling = replace(sampling, n_probs=self.n_probs.value())
        mode = self.mode.currentData()
        prompt = self.editor.toPlainText() if mode == "raw" else self.message.toPlainText()
        return tasks.RunSpec(mode, prompt, sampling, self.constraints.constraints(),
                             self.system.toPlainText())

    def problems(self) -> list[str]:
        """Why Run is refused right now (empty when it is allowed)."""
        found: list[str] = []
        if self.bridge.loaded is None:
            found.append("No model is loaded: choose one in the toolbar.")
        mode = self.mode.currentData()
        if mode == "chat" and not self.message.toPlainText().strip():
            found.append("Write a message to send.")
        stops = self.sampling.controls.get("stop")
        if isinstance(stops, QPlainTextEdit) and any(
                not line.strip() for line in stops.toPlainText().split("\n")[:-1] if line):
            found.append("A stop string is only spaces.")
        found += self.constraints.problems()
        return found

    def _update_run_state(self) -> None:
        running = self._job is not None
        problems = [] if running else self.problems()
        blocking = [p for p in problems if not p.startswith("Write a message")]
        self.run_button.setEnabled(not running and not problems)
        self.regenerate_button.setEnabled(not running and not problems
                                          and bool(self.tokens.runs))
        self.compare.run_button.setEnabled(not running and not problems)
        self.run_button.setVisible(not running)
        self.stop_button.setVisible(running and self._job_kind != "compare")
        self.compare.set_running(running and self._job_kind == "compare")
        for widget in (self.mode, self.controls):
            widget.setEnabled(not running)
        self.editor.setReadOnly(running)
        self._show_error("\n".join(blocking))

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text) and self.work.currentIndex() != CLASSIFY)

    def _mode_changed(self) -> None:
        self.text_stack.setCurrentIndex(0 if self.mode.currentData() == "raw" else 1)
        self._update_run_state()

    # -------------------------------------------------------------------- runs

    def _submit(self, kind: str, fn: tasks.TaskFn) -> JobHandle:
        job = self.bridge.run_task(f"workbench-{kind}", fn)
        job.yielded.connect(lambda event: self._task_event(job, event))
        job.finished.connect(lambda outcome: self._task_finished(job, outcome))
        return job

    def _start(self, kind: str, fn: tasks.TaskFn) -> JobHandle:
        self._job_kind = kind
        self._job_runs = {}
        self._job = self._submit(kind, fn)
        self._update_run_state()
        return self._job

    def run(self) -> JobHandle | None:
        """Generate with the current text and settings; returns the job (None if refused)."""
        if self._job is not None:
            return None
        problems = self.problems()
        if problems:
            self._show_error("\n".join(problems))
            return None
        spec = self._spec()
        self._run_count += 1
        run = Run(title=f"Run {self._run_count}", mode=spec.mode,
                  prompt_text=spec.prompt if spec.mode == "raw" else "")
        index = self.tokens.add_run(run)
        self._shown_run = index
        self.tokens.branching_enabled = self._can_branch(spec.mode) and not (
            spec.mode == "chat" and spec.constraints.compiled_grammar())
        if spec.mode == "chat":
            self.reply.clear()
        self.stats.setText("Generating…")
        job = self._start("run", tasks.generate([("main", spec)]))
        self._job_runs["main"] = index
        return job

    def regenerate(self) -> JobHandle | None:
        """Undo the last output (raw: restore the text it continued) and run again."""
        if self._job is not None or not self.tokens.runs:
            return None
        last = self.tokens.runs[self._shown_run if self._shown_run >= 0 else -1]
        if last.mode == "raw" and self.mode.currentData() == "raw":
            self.editor.setPlainText(last.prompt_text)
        return self.run()

    def branch(self, run_index: int, position: int, token_id: int) -> JobHandle | None:
        """Regenerate run ``run_index`` from token ``position`` with ``token_id`` forced."""
        if self._job is not None:
            return None
        parent = self.tokens.runs[run_index]
        if not isinstance(parent.request, CompletionRequest | ChatRequest):
            return None
        record = parent.records[position]
        alt = next((a for a in record.alternatives if a.token_id == token_id), None)
        title = f"Branch @{position + 1}: {shown(alt.text if alt else str(token_id))}"
        run = Run(title=title, mode=parent.mode, prompt_text=parent.prompt_text,
                  parent=run_index, branch_position=position)
        index = self.tokens.add_run(run)
        self._shown_run = index
        if parent.mode == "raw" and self.mode.currentData() == "raw":
            self.editor.setPlainText(parent.prompt_text)
        self.stats.setText(f"Branching from token {position + 1}…")
        self._pending_branch = (run_index, position, token_id)
        job = self._start("branch", tasks.branch("main", parent.request, parent.token_ids,
                                                 parent.prompt_tokens, position, token_id))
        self._job_runs["main"] = index
        return job

    def run_compare(self) -> JobHandle | None:
        if self._job is not None:
            return None
        problems = self.problems()
        if problems:
            self._show_error("\n".join(problems))
            return None
        specs = [(side, self._spec(self.compare.values(side))) for side in ("A", "B")]
        self.compare.reset()
        self._compare_done = {"A": None, "B": None}
        self._compare_text = {"A": "", "B": ""}
        self.stats.setText("Comparing…")
        return self._start("compare", tasks.generate(specs))

    def stop(self) -> None:
        if self._job is not None:
            self._job.cancel()

    # ---------------------------------------------------------- task records

    def _task_event(self, job: JobHandle, event: object) -> None:
        if job is self._grammar_job and isinstance(event, tasks.GrammarChecked):
            self.constraints.set_grammar_problems(event.text, list(event.problems))
            return
        if job is self._attention_job and isinstance(event, AttentionMap):
            self.attention.set_map(event, self._attention_title)
            return
        if job is not self._job:
            return
        if isinstance(event, tasks.GrammarChecked):
            self.constraints.set_grammar_problems(event.text, list(event.problems))
            self._show_error("The grammar is invalid:\n" + "\n".join(event.problems))
            return
        if self._job_kind == "compare":
            self._compare_event(event)
            return
        index = self._job_runs.get(getattr(event, "tag", ""))
        if index is None:
            return
        run = self.tokens.runs[index]
        if isinstance(event, tasks.Started):
            run.request = event.request
            run.prompt_tokens = event.prompt_tokens
            if run.parent is not None and isinstance(event.request, ChatRequest):
                self._seed_chat_branch(run, event.prefix)
            return
        if isinstance(event, tasks.Batch):
            for item in event.events:
                self._apply(run, item)
            self._show_run(index)

    def _apply(self, run: Run, event: object) -> None:
        if isinstance(event, Token):
            if event.token_id < 0:
                run.tail += event.text
                return
            record = TokenRecord(event.token_id, event.text, event.logprob, event.alternatives)
            if run.parent is not None and isinstance(run.request, CompletionRequest):
                record = self._inherit(run, record)
            run.records.append(record)
        elif isinstance(event, Rollback):
            del run.records[len(run.records) - event.n_tokens:]
        elif isinstance(event, Done):
            run.done = event
            if event.text != run.text and event.text.startswith(run.text):
                run.tail += event.text[len(run.text):]
        elif isinstance(event, Error):
            run.error = event.message

    def _inherit(self, run: Run, record: TokenRecord) -> TokenRecord:
        """Echoed forced tokens of a raw branch carry no probabilities: take them from the
        run it branched from (the kept tokens', and the alternative's at the branch)."""
        parent = self.tokens.runs[run.parent]  # type: ignore[index]  # callers check parent
        position = len(run.records)
        branch_at = run.branch_position or 0
        if position < branch_at and position < len(parent.records):
            source = parent.records[position]
            return TokenRecord(record.token_id, record.text, source.logprob, source.alternatives)
        if position == branch_at and branch_at < len(parent.records):
            source = parent.records[branch_at]
            alt = next((a for a in source.alternatives if a.token_id == record.token_id), None)
            return TokenRecord(record.token_id, record.text,
                               alt.logprob if alt else None, source.alternatives)
        return record

    def _seed_chat_branch(self, run: Run, kept_text: str) -> None:
        """A chat branch streams only the continuation: show the kept tokens and the chosen
        alternative first, from the run it branched from."""
        parent = self.tokens.runs[run.parent]  # type: ignore[index]  # callers check parent
        position = run.branch_position or 0
        kept = [TokenRecord(r.token_id, r.text, r.logprob, r.alternatives)
                for r in parent.records[:position]]
        joined = "".join(r.text for r in kept)
        if kept and joined != kept_text and kept_text.startswith(joined):
            kept[-1].text += kept_text[len(joined):]
        source = parent.records[position]
        request = run.request
        assert isinstance(request, ChatRequest)
        prefix = request.messages[-1].content
        token_id = self._pending_branch[2]
        alt = next((a for a in source.alternatives if a.token_id == token_id), None)
        kept.append(TokenRecord(token_id, prefix[len(kept_text):],
                                alt.logprob if alt else None, source.alternatives))
        run.records = kept

    def _compare_event(self, event: object) -> None:
        side = getattr(event, "tag", "")
        if side not in ("A", "B"):
            return
        if isinstance(event, tasks.Batch):
            for item in event.events:
                if isinstance(item, Token):
                    self._compare_text[side] += item.text
                elif isinstance(item, Rollback):
                    parts = [self._compare_text[side]]
                    fold_text(parts, item)
                    self._compare_text[side] = "".join(parts)
                elif isinstance(item, Done):
                    self._compare_done[side] = item
                    self._compare_text[side] = item.text
                    self.compare.set_stats(side, item)
                elif isinstance(item, Error):
                    self.compare.set_stats(side, None, item.message)
            self.compare.set_output(side, self._compare_text[side])

    def _task_finished(self, job: JobHandle, outcome: object) -> None:
        if job is self._grammar_job:
            self._grammar_job = None
            if isinstance(outcome, Error):
                self.constraints.set_grammar_problems(
                    self.constraints.grammar.toPlainText(), [outcome.message])
            return
        if job is self._attention_job:
            self._attention_job = None
            if isinstance(outcome, Error):
                self.attention.show_message(f"Attention could not be captured: "
                                            f"{outcome.message}")
            return
        if job is not self._job:
            return
        kind = self._job_kind
        self._job, self._job_kind = None, ""
        runs = [self.tokens.runs[i] for i in self._job_runs.values()]
        message = ""
        if isinstance(outcome, Error):
            message = outcome.message
        elif isinstance(outcome, Done) and outcome.finish_reason is FinishReason.CANCELLED:
            self.stats.setText("Stopped.")
        for run in runs:
            if run.error:
                message = run.error
            if isinstance(outcome, Error) and not run.error:
                run.error = outcome.message
        self._update_run_state()
        if message:
            self._show_error(message)
        if kind == "compare":
            lines = [f"{side}: {stats_line(done)}" for side, done in self._compare_done.items()
                     if done is not None]
            self.stats.setText("   ·   ".join(lines) or self.stats.text())
            self.run_finished.emit(None)
            return
        for index in self._job_runs.values():
            self._show_run(index, final=True)
        self.run_finished.emit(runs[0] if runs else None)

    # ----------------------------------------------------------------- display

    def _show_run(self, index: int, final: bool = False) -> None:
        run = self.tokens.runs[index]
        self.tokens.run_updated(index, final)
        if index == self._shown_run:
            self._show_output(run)
        if final and run.done is not None:
            d = run.done
            self.stats.setText(stats_line(d) + (f" · {d.stats.rollbacks} rollback(s)"
                                                if d.stats.rollbacks else "")
                               + (f" · {d.stats.loops} loop(s) undone" if d.stats.loops
                                  else ""))

    def _show_output(self, run: Run) -> None:
        if run.mode == "chat":
            if self.reply.toPlainText() != run.text:
                self.reply.setPlainText(run.text)
            return
        start = utf16_len(run.prompt_text)
        cursor = QTextCursor(self.editor.document())
        if self.editor.toPlainText()[:len(run.prompt_text)] != run.prompt_text:
            self.editor.setPlainText(run.prompt_text)
        cursor.setPosition(start)
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        if cursor.selectedText().replace("\u2029", "\n") != run.text:
            cursor.insertText(run.text)
        self.editor.moveCursor(QTextCursor.MoveOperation.End)
        self.editor.ensureCursorVisible()

    def _run_selected(self, index: int) -> None:
        """Switching tabs in the token view shows that run or branch in the editor, unless
        the text was edited since it was shown."""
        if self._job is not None or not 0 <= index < len(self.tokens.runs):
            return
        run = self.tokens.runs[index]
        shown_run = self.tokens.runs[self._shown_run] if 0 <= self._shown_run < len(
            self.tokens.runs) else None
        current = self.editor.toPlainText() if run.mode == "raw" else self.reply.toPlainText()
        expected = "" if shown_run is None else (
            shown_run.prompt_text + shown_run.text if run.mode == "raw" else shown_run.text)
        if shown_run is not None and current != expected:
            return
        self._shown_run = index
        self._show_output(run)
        if run.done is not None:
            self.stats.setText(stats_line(run.done))

    # --------------------------------------------------------- grammar check

    def _check_grammar(self, text: str) -> None:
        if not self.bridge.has(Feature.GRAMMAR_CHECK):
            # Nothing can check it against the model here: the run reports the backend's
            # verdict instead of a check that would only fail.
            self.constraints.set_grammar_problems(text, [])
            return
        if self._grammar_job is not None:
            self._grammar_job.cancel()
        self._grammar_job = self._submit("grammar", tasks.check_grammar(text))

    # ------------------------------------------------------------ model view

    def _model_loaded(self, loaded: ModelLoaded) -> None:
        if self.work.currentIndex() == MODEL:
            self.refresh_model_view()
        else:
            self._model_stale = True
        self._update_run_state()

    def _work_tab_changed(self, index: int) -> None:
        # Classify has its own inputs and runs; generation's controls would only mislead.
        generating = index != CLASSIFY
        for widget in (self.top_bar, self.controls, self.stats):
            widget.setVisible(generating)
        self.error.setVisible(generating and bool(self.error.text()))
        if index == COMPARE:
            self.compare.refresh()
        if index == MODEL and self._model_stale:
            self.refresh_model_view()

    def refresh_model_view(self) -> None:
        from engine.catalog import read_model_info

        loaded = self.bridge.loaded
        self._model_stale = False
        if loaded is None:
            self.model_view.clear()
            return
        if loaded.local_path is None:
            self.model_view.clear(f"{loaded.ref.label} runs on a server: its GGUF header is "
                                  "not available here.")
            return
        try:
            info = read_model_info(loaded.local_path)
        except VersoError as exc:
            self.model_view.clear(f"The model's header could not be read: {exc}")
            return
        try:
            kv_type = KVType(self._settings().kv_type)
        except ValueError:
            kv_type = KVType.F16
        self.model_view.set_model(info, loaded.n_ctx, kv_type, loaded.gpu_layers)

    # -------------------------------------------------------------- attention

    @property
    def attention_available(self) -> bool:
        return self.bridge.has(Feature.ATTENTION)

    def show_attention(self, run_index: int, position: int) -> JobHandle | None:
        """Capture the attention of the pass that produced token ``position`` of a run."""
        run = self.tokens.runs[run_index]
        if not self.attention_available:
            self.attention.show_message(self.bridge.unavailable(Feature.ATTENTION))
            self.work.setCurrentIndex(ATTENTION)
            return None
        if not run.prompt_tokens or not 0 <= position < len(run.records):
            return None
        tokens = list(run.prompt_tokens) + run.token_ids
        g = len(run.prompt_tokens) + position
        record = run.records[position]
        self._attention_title = (
            f"Attention when the model chose {shown(record.text)} "
            f"({percent(record.probability)}), token {position + 1} of {run.title}: the "
            f"pass over the {g} tokens before it.")
        self.attention.show_message("Capturing attention…")
        self.work.setCurrentIndex(ATTENTION)
        if self._attention_job is not None:
            self._attention_job.cancel()
        self._attention_job = self._submit("attention", tasks.attention(tokens[:g + 1], g - 1))
        return self._attention_job

    def shutdown(self) -> None:
        for job in (self._job, self._grammar_job, self._attention_job):
            if job is not None:
                job.cancel()
        self.classify.shutdown()
