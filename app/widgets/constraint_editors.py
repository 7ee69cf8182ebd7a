"""Editors for what the output must (or must not) be: one shape (a GBNF grammar, a JSON
Schema with a live preview of its grammar, or a choice list), banned words and phrases, and
a logit-bias table. ``problems()`` lists what is wrong, in sentences; the panel refuses to
run while it is not empty.

A GBNF grammar can only be checked against the loaded model's vocabulary (token references
like ``<|im_end|>``), so the check runs in the engine: ``grammar_check_needed`` asks for it
and ``set_grammar_problems`` reports back."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.errors import BadRequestError
from engine.tasks import gbnf
from engine.tasks.constraints import BiasKey, Constraints, parse_bias_key

SHAPES = ("Free text", "GBNF grammar", "JSON Schema", "Choice list")
FREE, GRAMMAR, SCHEMA, CHOICES = range(4)
DEBOUNCE_MS = 350

EXAMPLE_GRAMMAR = ('root ::= answer "."\n'
                   'answer ::= "yes" | "no" | "maybe"\n')
EXAMPLE_SCHEMA = json.dumps({
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20},
                   "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
}, indent=2)


def _mono(edit: QPlainTextEdit) -> QPlainTextEdit:
    edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    edit.setTabChangesFocus(True)
    edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
    return edit


def _status_label() -> QLabel:
    label = QLabel()
    label.setObjectName("constraintStatus")
    label.setWordWrap(True)
    return label


def lines(text: str) -> tuple[str, ...]:
    return tuple(line for line in (raw.strip() for raw in text.splitlines()) if line)


class ConstraintsEditor(QWidget):
    changed = Signal()
    grammar_check_needed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._grammar_checked: tuple[str, list[str]] | None = None
        self._schema_result: tuple[str, str | None, str] = ("", None, "")
        # The first JSON Schema preview would otherwise load llama.cpp in the GUI thread.
        threading.Thread(target=gbnf.preload, name="verso-gbnf-preload", daemon=True).start()

        self.shape = QComboBox()
        self.shape.setObjectName("shapeCombo")
        self.shape.addItems(SHAPES)
        self.shape.setToolTip("One grammar for the whole output: hand-written GBNF, generated "
                              "from a JSON Schema, or one of a list of strings.")
        self.stack = QStackedWidget()
        free = QLabel("No grammar: the model writes freely (banned phrases and the bias "
                      "table below still apply).")
        free.setObjectName("hint")
        free.setWordWrap(True)
        self.stack.addWidget(free)

        self.grammar = _mono(QPlainTextEdit(EXAMPLE_GRAMMAR))
        self.grammar.setObjectName("grammarEdit")
        self.grammar_status = _status_label()
        self.stack.addWidget(self._page(
            "llama.cpp GBNF; generation starts at the 'root' rule.", self.grammar,
            self.grammar_status))

        self.schema = _mono(QPlainTextEdit(EXAMPLE_SCHEMA))
        self.schema.setObjectName("schemaEdit")
        self.schema_preview = _mono(QPlainTextEdit())
        self.schema_preview.setObjectName("schemaPreview")
        self.schema_preview.setReadOnly(True)
        self.schema_preview.setPlaceholderText("The grammar generated from the schema")
        self.schema_status = _status_label()
        preview_title = QLabel("Generated grammar (live):")
        preview_title.setObjectName("hint")
        self.stack.addWidget(self._page(
            "JSON Schema; the output is JSON valid against it.", self.schema,
            self.schema_status, preview_title, self.schema_preview))

        self.choices = QPlainTextEdit("positive\nnegative\nneutral")
        self.choices.setObjectName("choicesEdit")
        self.choices.setTabChangesFocus(True)
        self.choices_status = _status_label()
        self.stack.addWidget(self._page("One choice per line; the output is exactly one "
                                        "of them.", self.choices, self.choices_status))

        self.banned = QPlainTextEdit()
        self.banned.setObjectName("bannedEdit")
        self.banned.setTabChangesFocus(True)
        self.banned.setPlaceholderText("One word or phrase per line")
        self.banned.setFixedHeight(72)
        self.banned.setToolTip("Never appear in the output: when one starts to appear, "
                               "generation goes back and resamples.")
        self.ban_any_case = QCheckBox("Ban them in any casing")
        self.ban_any_case.setObjectName("banAnyCase")

        self.bias = QTableWidget(0, 2)
        self.bias.setObjectName("biasTable")
        self.bias.setHorizontalHeaderLabels(["Token id or word", "Bias"])
        self.bias.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.bias.verticalHeader().setVisible(False)
        self.bias.setMinimumHeight(110)
        self.bias.setToolTip("Added to the token's logit before sampling: -100 all but forbids "
                             "it, +5 strongly favours it. A word biases its first token, with "
                             "and without a leading space.")
        add = QPushButton("Add row")
        add.clicked.connect(lambda: self.add_bias_row())
        remove = QPushButton("Remove row")
        remove.clicked.connect(self._remove_bias_row)
        self.bias_status = _status_label()

        self.unavailable_note = QLabel()
        self.unavailable_note.setObjectName("unavailableNote")
        self.unavailable_note.setWordWrap(True)
        self.unavailable_note.hide()
        self._unavailable: dict[str, str] = {}

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.unavailable_note)
        layout.addWidget(self._title("Output shape"))
        layout.addWidget(self.shape)
        layout.addWidget(self.stack, 3)
        layout.addWidget(self._title("Banned words and phrases"))
        layout.addWidget(self.banned)
        layout.addWidget(self.ban_any_case)
        layout.addWidget(self._title("Logit bias"))
        layout.addWidget(self.bias, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(remove)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        layout.addWidget(self.bias_status)

        self._grammar_timer = self._debounce(self._request_grammar_check)
        self._schema_timer = self._debounce(self._update_schema_preview)
        self.shape.currentIndexChanged.connect(self._shape_changed)
        self.grammar.textChanged.connect(self._grammar_edited)
        self.schema.textChanged.connect(self._schema_timer.start)
        for edit in (self.choices, self.banned):
            edit.textChanged.connect(self._edited)
        self.ban_any_case.toggled.connect(self._edited)
        self.bias.itemChanged.connect(self._edited)
        self._shape_changed(FREE)

    # ------------------------------------------------------------------ layout

    @staticmethod
    def _title(text: str) -> QLabel:
        label = QLabel(text)
        label.setObjectName("sectionTitle")
        return label

    @staticmethod
    def _page(hint: str, *widgets: QWidget) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 4, 0, 0)
        label = QLabel(hint)
        label.setObjectName("hint")
        label.setWordWrap(True)
        layout.addWidget(label)
        for widget in widgets:
            layout.addWidget(widget, 1 if isinstance(widget, QPlainTextEdit) else 0)
        return page

    def _debounce(self, slot: Callable[[], object]) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(DEBOUNCE_MS)
        timer.timeout.connect(slot)
        return timer

    def add_bias_row(self, key: str = "", bias: str = "") -> None:
        row = self.bias.rowCount()
        self.bias.insertRow(row)
        self.bias.setItem(row, 0, QTableWidgetItem(key))
        self.bias.setItem(row, 1, QTableWidgetItem(bias))
        self._edited()

    def _remove_bias_row(self) -> None:
        row = self.bias.currentRow()
        if row < 0:
            row = self.bias.rowCount() - 1
        if row >= 0:
            self.bias.removeRow(row)
            self._edited()

    def set_unavailable(self, grammar: str = "", ban: str = "", bias: str = "") -> None:
        """Turn off what the backend cannot do; each argument is the reason ("" when it
        can): grammar (every output shape but free text), banned phrases, logit bias."""
        self._unavailable = {k: v for k, v in (("grammar", grammar), ("ban", ban),
                                               ("bias", bias)) if v}
        model = self.shape.model()
        for index in (GRAMMAR, SCHEMA, CHOICES):
            item = model.item(index)  # type: ignore[attr-defined]  # a QStandardItemModel
            item.setEnabled(not grammar)
            item.setToolTip(grammar)
        if grammar and self.shape.currentIndex() != FREE:
            self.shape.setCurrentIndex(FREE)
        for widget in (self.banned, self.ban_any_case):
            widget.setEnabled(not ban)
            widget.setToolTip(ban or widget.toolTip())
        self.bias.setEnabled(not bias)
        reasons = list(dict.fromkeys(self._unavailable.values()))
        self.unavailable_note.setText("\n".join(reasons))
        self.unavailable_note.setVisible(bool(reasons))
        self._edited()

    # ----------------------------------------------------------------- changes

    def _shape_changed(self, index: int) -> None:
        self.stack.setCurrentIndex(index)
        if index == GRAMMAR:
            self._request_grammar_check()
        elif index == SCHEMA:
            self._update_schema_preview()
        self._edited()

    def _edited(self) -> None:
        self._refresh_status()
        self.changed.emit()

    def _grammar_edited(self) -> None:
        self._grammar_timer.start()
        self._refresh_status()
        self.changed.emit()

    def _request_grammar_check(self) -> None:
        if self.shape.currentIndex() == GRAMMAR:
            self.grammar_check_needed.emit(self.grammar.toPlainText())

    def set_grammar_problems(self, text: str, problems: list[str]) -> None:
        """The engine's verdict on grammar ``text`` (ignored if it has changed since)."""
        if text != self.grammar.toPlainText():
            return
        self._grammar_checked = (text, list(problems))
        self._edited()

    def _update_schema_preview(self) -> None:
        text = self.schema.toPlainText()
        if self.shape.currentIndex() != SCHEMA or text == self._schema_result[0]:
            return
        try:
            self._schema_result = (text, gbnf.schema_to_grammar(text), "")
        except BadRequestError as exc:
            self._schema_result = (text, None, str(exc))
        grammar = self._schema_result[1]
        self.schema_preview.setPlainText(grammar or "")
        self._edited()

    # ----------------------------------------------------------------- results

    def grammar_state(self) -> str:
        """'ok', 'checking' or 'invalid' for the GBNF grammar as it is now."""
        if self._grammar_checked is None or \
                self._grammar_checked[0] != self.grammar.toPlainText():
            return "checking"
        return "invalid" if self._grammar_checked[1] else "ok"

    def _bias_entries(self) -> tuple[list[tuple[BiasKey, float]], list[str]]:
        entries: list[tuple[BiasKey, float]] = []
        problems: list[str] = []
        for row in range(self.bias.rowCount()):
            key_item, value_item = self.bias.item(row, 0), self.bias.item(row, 1)
            key = key_item.text().strip() if key_item else ""
            value = value_item.text().strip() if value_item else ""
            if not key and not value:
                continue
            if not key:
                problems.append(f"Bias row {row + 1} needs a token id or a word.")
                continue
            try:
                bias = float(value)
            except ValueError:
                problems.append(f"Bias row {row + 1}: {value or 'an empty value'!r} is not a "
                                "number." if value else
                                f"Bias row {row + 1} needs a bias (a number, e.g. -5 or 3).")
                continue
            if not -100 <= bias <= 100:
                problems.append(f"Bias row {row + 1}: {bias:g} is outside -100 to 100.")
                continue
            entries.append((parse_bias_key(key), bias))
        return entries, problems

    def problems(self) -> list[str]:
        """What stops a run, as sentences (a grammar still being checked is not one: the
        run checks it again first)."""
        found: list[str] = []
        shape = self.shape.currentIndex()
        if shape == GRAMMAR:
            if not self.grammar.toPlainText().strip():
                found.append("The grammar is empty.")
            elif self.grammar_state() == "invalid":
                assert self._grammar_checked is not None  # "invalid" comes from a stored check
                found += ["Grammar: " + p for p in self._grammar_checked[1]]
        elif shape == SCHEMA:
            if self._schema_result[0] != self.schema.toPlainText():
                self._update_schema_preview()
            if self._schema_result[2]:
                found.append(self._schema_result[2])
        elif shape == CHOICES and not lines(self.choices.toPlainText()):
            found.append("The choice list is empty: write one choice per line.")
        found += self._bias_entries()[1]
        if "grammar" in self._unavailable and shape != FREE:
            found.append(self._unavailable["grammar"])
        if "ban" in self._unavailable and lines(self.banned.toPlainText()):
            found.append(self._unavailable["ban"])
        if "bias" in self._unavailable and self._bias_entries()[0]:
            found.append(self._unavailable["bias"])
        return found

    def constraints(self) -> Constraints:
        """The constraints as they are now; check ``problems()`` first."""
        shape = self.shape.currentIndex()
        return Constraints(
            grammar=self.grammar.toPlainText() if shape == GRAMMAR else None,
            json_schema=self.schema.toPlainText() if shape == SCHEMA else None,
            choices=lines(self.choices.toPlainText()) if shape == CHOICES else (),
            ban=lines(self.banned.toPlainText()),
            ban_any_case=self.ban_any_case.isChecked(),
            logit_bias=tuple(self._bias_entries()[0]),
        )

    def summary(self) -> str:
        """A short description for the status line, e.g. 'JSON Schema, 2 banned'."""
        parts = [] if self.shape.currentIndex() == FREE else [SHAPES[self.shape.currentIndex()]]
        banned = lines(self.banned.toPlainText())
        if banned:
            parts.append(f"{len(banned)} banned")
        if self._bias_entries()[0]:
            parts.append(f"{len(self._bias_entries()[0])} biased")
        return ", ".join(parts)

    def _refresh_status(self) -> None:
        shape = self.shape.currentIndex()
        if shape == GRAMMAR:
            state = self.grammar_state()
            if not self.grammar.toPlainText().strip():
                self._set(self.grammar_status, "The grammar is empty.", True)
            elif state == "invalid":
                assert self._grammar_checked is not None  # "invalid" comes from a stored check
                self._set(self.grammar_status, "\n".join(
                    "✗ " + p for p in self._grammar_checked[1]), True)
            else:
                self._set(self.grammar_status, "✓ Valid grammar" if state == "ok"
                          else "Checking with llama.cpp…", False)
        elif shape == SCHEMA:
            error = self._schema_result[2]
            self._set(self.schema_status, ("✗ " + error) if error else
                      ("✓ Valid schema" if self._schema_result[1] else ""), bool(error))
        elif shape == CHOICES:
            count = len(lines(self.choices.toPlainText()))
            self._set(self.choices_status, f"{count} choice(s)" if count else
                      "The choice list is empty.", not count)
        bias_problems = self._bias_entries()[1]
        self._set(self.bias_status, "\n".join("✗ " + p for p in bias_problems), True)

    @staticmethod
    def _set(label: QLabel, text: str, error: bool) -> None:
        label.setText(text)
        label.setProperty("error", error)
        label.style().unpolish(label)
        label.style().polish(label)
