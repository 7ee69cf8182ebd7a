"""The generated tokens of a run and its branches, each token shaded by its probability.

Hovering a token shows its top alternatives; clicking it pins it in the side panel, where
each alternative is a button that branches: the run is regenerated from that point with the
alternative forced, the tokens before it kept. Runs and branches are tabs."""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass, field

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QTabBar,
    QVBoxLayout,
    QWidget,
)

from app.widgets.shaded_text import Piece, ShadedText, probability_colour, visible
from engine.events import Done, TokenAlternative


@dataclass
class TokenRecord:
    token_id: int
    text: str  # the text this token made visible (may be empty: held back, then shown later)
    logprob: float | None
    alternatives: tuple[TokenAlternative, ...] = ()

    @property
    def probability(self) -> float | None:
        return math.exp(self.logprob) if self.logprob is not None else None


@dataclass
class Run:
    """One generation: the original run or a branch of another one."""

    title: str
    mode: str  # "raw" | "chat"
    prompt_text: str  # raw mode: the editor text the output continues
    request: object = None  # the CompletionRequest / ChatRequest that produced it
    prompt_tokens: tuple[int, ...] = ()
    records: list[TokenRecord] = field(default_factory=list)
    tail: str = ""  # text flushed at the end that belongs to no single token
    done: Done | None = None
    error: str = ""
    parent: int | None = None
    branch_position: int | None = None

    @property
    def text(self) -> str:
        return "".join(r.text for r in self.records) + self.tail

    @property
    def token_ids(self) -> list[int]:
        return [r.token_id for r in self.records]


def percent(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p * 100:.1f} %" if p >= 0.001 else f"{p * 100:.2g} %"


def shown(text: str) -> str:
    return "‘" + visible(text).replace("\t", "") + "’"


def chunks(run: Run) -> list[tuple[int, str]]:
    """(first record index, visible text) per displayed piece. A token whose text was held
    back (part of a multi-byte character or a possible stop string) is shown together with
    the token that released it."""
    out: list[tuple[int, str]] = []
    start: int | None = None
    for index, record in enumerate(run.records):
        if start is None:
            start = index
        if record.text:
            out.append((start, "".join(r.text for r in run.records[start:index + 1])))
            start = None
    if start is not None:
        out.append((start, "".join(r.text for r in run.records[start:]) + run.tail))
    elif run.tail and out:
        out[-1] = (out[-1][0], out[-1][1] + run.tail)
    return out


def tooltip(record: TokenRecord) -> str:
    rows = [f"<b>{html.escape(shown(record.text))}</b> &nbsp; {percent(record.probability)}"]
    if record.alternatives:
        rows.append("<table cellspacing='0' cellpadding='1'>")
        for alt in record.alternatives:
            mark = " ◀" if alt.token_id == record.token_id else ""
            rows.append(f"<tr><td>{html.escape(shown(alt.text))}</td>"
                        f"<td align='right'>&nbsp;&nbsp;{percent(math.exp(alt.logprob))}"
                        f"{mark}</td></tr>")
        rows.append("</table><i>Click to branch from here</i>")
    return "".join(rows)


RENDER_INTERVAL_S = 0.25
LIVE_PIECES = 400  # while a run streams, only its latest tokens are drawn (bounded cost)


class TokenView(QWidget):
    current_changed = Signal(int)  # run index
    branch_requested = Signal(int, int, int)  # run index, token position, token id
    attention_requested = Signal(int, int)  # run index, token position

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._stale = False
        self._live = False
        self._last_render = 0.0
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.timeout.connect(self._refresh)
        self.runs: list[Run] = []
        self._pieces_to_record: list[int] = []
        self._current = -1
        self.pinned = -1  # record index shown in the side panel
        self.branching_enabled = True
        self.attention_enabled = False

        self.tabs = QTabBar()
        self.tabs.setObjectName("runTabs")
        self.tabs.setExpanding(False)
        self.tabs.setUsesScrollButtons(True)
        self.tabs.setElideMode(Qt.TextElideMode.ElideRight)
        self.tabs.currentChanged.connect(self._tab_changed)
        self.text = ShadedText()
        self.text.hovered.connect(self._hovered)
        self.text.clicked.connect(self._clicked)
        self.legend = QLabel()
        self.legend.setObjectName("hint")
        self.legend.setWordWrap(True)

        self.side_title = QLabel("Click a token to see its alternatives.")
        self.side_title.setObjectName("sectionTitle")
        self.side_title.setWordWrap(True)
        self.alt_box = QVBoxLayout()
        self.alt_box.setSpacing(4)
        self.alt_buttons: list[QPushButton] = []
        self.attention_button = QPushButton("Show attention for this token")
        self.attention_button.setVisible(False)
        self.attention_button.clicked.connect(
            lambda: self.attention_requested.emit(self._current, self.pinned))
        side = QWidget()
        side.setObjectName("alternativesPanel")
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(8, 0, 0, 0)
        side_layout.addWidget(self.side_title)
        side_layout.addLayout(self.alt_box)
        side_layout.addWidget(self.attention_button)
        side_layout.addStretch(1)
        side_scroll = QScrollArea()
        side_scroll.setWidgetResizable(True)
        side_scroll.setWidget(side)
        side_scroll.setFixedWidth(260)
        side_scroll.setFrameShape(QScrollArea.Shape.NoFrame)

        body = QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.addWidget(self.text, 1)
        body.addWidget(side_scroll)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.notice = QLabel()
        self.notice.setObjectName("unavailableNote")
        self.notice.setWordWrap(True)
        self.notice.hide()
        layout.addWidget(self.notice)
        layout.addWidget(self.tabs)
        layout.addLayout(body, 1)
        layout.addWidget(self.legend)
        self.set_scheme("light")

    def set_notice(self, text: str) -> None:
        """What this backend cannot show here, and why ("" for nothing)."""
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    # ------------------------------------------------------------------ runs

    def set_scheme(self, scheme: str) -> None:
        self.text.set_scheme(scheme)
        swatch = [probability_colour(v, scheme).name() for v in (0.0, 0.5, 1.0)]
        self.legend.setText(
            "Shade: the model's probability of each token — "
            f"<span style='background:{swatch[0]}'>&nbsp;unlikely&nbsp;</span> "
            f"<span style='background:{swatch[1]}'>&nbsp;50 %&nbsp;</span> "
            f"<span style='background:{swatch[2]}'>&nbsp;likely&nbsp;</span>. "
            "Hover a token for its alternatives; click it to pin them and branch.")

    def clear(self) -> None:
        self.runs.clear()
        while self.tabs.count():
            self.tabs.removeTab(0)
        self._current = -1
        self._show_record(-1)
        self.text.set_pieces([])

    def add_run(self, run: Run, select: bool = True) -> int:
        self.runs.append(run)
        index = len(self.runs) - 1
        self.tabs.addTab(run.title)
        self.tabs.setTabToolTip(index, run.title)
        if select:
            self.set_current(index)
        return index

    def set_current(self, index: int) -> None:
        if self.tabs.currentIndex() != index:
            self.tabs.setCurrentIndex(index)  # calls _tab_changed
        else:
            self._tab_changed(index)

    @property
    def current(self) -> int:
        return self._current

    def run_updated(self, index: int, final: bool = False) -> None:
        """Re-render after ``index`` changed. The whole shaded text is rebuilt, so while a
        run streams this happens at most every ``RENDER_INTERVAL_S`` and not at all while
        the view is hidden (it catches up when shown)."""
        if index != self._current:
            return
        if not self.isVisible():
            self._stale = True
            return
        wait = self._last_render + RENDER_INTERVAL_S - time.monotonic()
        self._live = not final
        if not final and wait > 0:
            if not self._render_timer.isActive():
                self._render_timer.start(int(wait * 1000) + 1)
            return
        self._refresh()

    def _refresh(self) -> None:
        self._render_timer.stop()
        self._stale = False
        self._last_render = time.monotonic()
        self._render(live=self._live)
        if self.pinned >= 0:
            self._show_record(self.pinned)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self._refresh()

    def _tab_changed(self, index: int) -> None:
        self._current = index
        self.pinned = -1
        self._show_record(-1)
        self._render()
        self.current_changed.emit(index)

    def _render(self, live: bool = False) -> None:
        if not 0 <= self._current < len(self.runs):
            self.text.set_pieces([])
            return
        run = self.runs[self._current]
        pieces: list[Piece] = []
        self._pieces_to_record = []
        shown = chunks(run)
        if live and len(shown) > LIVE_PIECES:
            pieces.append(Piece(f"… {len(shown) - LIVE_PIECES} earlier tokens (all shown when "
                                "the run ends) …\n", None))
            self._pieces_to_record.append(-1)
            shown = shown[-LIVE_PIECES:]
        elif run.mode == "raw" and run.prompt_text:
            tail = run.prompt_text[-300:]
            pieces.append(Piece(("…" if len(run.prompt_text) > 300 else "") + tail, None))
            self._pieces_to_record.append(-1)
        for first, text in shown:
            record = run.records[first]
            p = record.probability
            pieces.append(Piece(text, 1.0 if p is None else p, tooltip(record)))
            self._pieces_to_record.append(first)
        selected = -1
        if self.pinned >= 0 and self.pinned in self._pieces_to_record:
            selected = self._pieces_to_record.index(self.pinned)
        self.text.set_pieces(pieces, selected)

    # ----------------------------------------------------------- alternatives

    def piece_for_record(self, record_index: int) -> int:
        return self._pieces_to_record.index(record_index)

    def _hovered(self, piece: int) -> None:
        if self.pinned < 0 and piece >= 0 and self._pieces_to_record[piece] >= 0:
            self._show_record(self._pieces_to_record[piece], pinned=False)

    def _clicked(self, piece: int) -> None:
        record = self._pieces_to_record[piece] if 0 <= piece < len(self._pieces_to_record) \
            else -1
        self.pin(record)

    def pin(self, record_index: int) -> None:
        """Show token ``record_index`` of the current run in the side panel."""
        self.pinned = record_index
        self._show_record(record_index)
        self._render()

    def _show_record(self, record_index: int, pinned: bool = True) -> None:
        for button in self.alt_buttons:
            self.alt_box.removeWidget(button)
            button.deleteLater()
        self.alt_buttons = []
        run = self.runs[self._current] if 0 <= self._current < len(self.runs) else None
        if run is None or not 0 <= record_index < len(run.records):
            self.side_title.setText("Click a token to see its alternatives.")
            self.attention_button.setVisible(False)
            return
        record = run.records[record_index]
        self.side_title.setText(f"Token {record_index + 1}: {shown(record.text)} — "
                                f"{percent(record.probability)}"
                                + ("" if pinned else "  (click to pin)"))
        for alt in record.alternatives:
            chosen = alt.token_id == record.token_id
            button = QPushButton(f"{shown(alt.text)}    {percent(math.exp(alt.logprob))}"
                                 + ("   (chosen)" if chosen else ""))
            button.setObjectName("alternativeButton")
            button.setProperty("token_id", alt.token_id)
            button.setStyleSheet("text-align: left")
            if chosen or not self.branching_enabled:
                button.setEnabled(False)
            else:
                button.setToolTip("Regenerate from here with this token")
                button.clicked.connect(
                    lambda _=False, r=self._current, pos=record_index, tok=alt.token_id:
                    self.branch_requested.emit(r, pos, tok))
            self.alt_box.addWidget(button)
            self.alt_buttons.append(button)
        if not record.alternatives:
            note = QPushButton("No alternatives were recorded for this token.")
            note.setEnabled(False)
            self.alt_box.addWidget(note)
            self.alt_buttons.append(note)
        self.attention_button.setVisible(pinned and self.attention_enabled)
