"""The loaded model's architecture from its GGUF header, drawn plainly: the layer stack,
query heads grouped onto their key/value heads, and what that means for the KV cache."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.machine import machine
from app.theme import palettes
from engine.catalog import ModelInfo, format_bytes, kv_bytes_per_token
from engine.catalog.memory import KV_BYTES_PER_ELEMENT
from engine.options import KVType

GROUP_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
                 "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")


def n(value: int | None) -> str:
    return f"{value:,}" if value is not None else "—"


def kv_facts(info: ModelInfo, n_ctx: int, kv_type: KVType) -> dict[str, int]:
    per_token = kv_bytes_per_token(info, kv_type)
    heads = max(info.head_count, 1)
    kv_heads = max(info.head_count_kv, 1)
    return {"per_token": per_token, "at_ctx": per_token * n_ctx,
            "without_gqa": per_token * heads // kv_heads}


def gpu_text(gpu_layers: int, block_count: int) -> str:
    """Where the loaded model runs: the build's GPU (or that it has none) and the layers on it."""
    gpu = machine().gpu
    summary = gpu.summary() if gpu is not None else "checking…"
    if not gpu_layers:
        return f"every layer on the CPU. {summary}"
    total = block_count + 1
    layers = "all layers" if gpu_layers < 0 or gpu_layers >= total else \
        f"{gpu_layers} of {total} layers"
    return f"{layers} offloaded. {summary}"


class ArchitectureDiagram(QWidget):
    """Embedding -> N x (attention + feed-forward) -> output, with the head grouping."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.info: ModelInfo | None = None
        self.scheme = "light"
        self.setMinimumSize(360, 430)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)

    def sizeHint(self) -> QSize:
        return QSize(420, 470)

    def paintEvent(self, _event: QPaintEvent) -> None:
        info = self.info
        if info is None:
            return
        colours = palettes()[self.scheme]
        text, muted, border = QColor(colours["text"]), QColor(colours["muted"]), \
            QColor(colours["border"])
        surface, accent = QColor(colours["surface"]), QColor(colours["accent"])
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        width = self.width() - 20
        x = 10.0
        bold = QFont(self.font())
        bold.setBold(True)

        def box(y: float, h: float, title: str, detail: str, fill: QColor) -> None:
            p.setPen(QPen(border, 1))
            p.setBrush(fill)
            p.drawRoundedRect(QRectF(x + 30, y, width - 60, h), 6, 6)
            p.setPen(text)
            p.setFont(bold)
            p.drawText(QRectF(x + 40, y + 4, width - 80, 20), Qt.AlignmentFlag.AlignLeft, title)
            p.setFont(self.font())
            p.setPen(muted)
            p.drawText(QRectF(x + 40, y + 22, width - 80, h - 24),
                       Qt.AlignmentFlag.AlignLeft | Qt.TextFlag.TextWordWrap, detail)

        def arrow(y1: float, y2: float) -> None:
            p.setPen(QPen(muted, 1.5))
            cx = x + width / 2
            p.drawLine(int(cx), int(y1), int(cx), int(y2))
            p.drawLine(int(cx), int(y2), int(cx - 4), int(y2 - 5))
            p.drawLine(int(cx), int(y2), int(cx + 4), int(y2 - 5))

        tint = QColor(accent)
        tint.setAlpha(28)
        y = 6.0
        box(y, 48, "Token embedding",
            f"{n(info.vocab_size)} tokens × {n(info.embedding_length)} numbers each", surface)
        arrow(y + 48, y + 66)
        y += 68
        layer_h = 232.0
        p.setPen(QPen(accent, 1.5, Qt.PenStyle.DashLine))
        p.setBrush(tint)
        p.drawRoundedRect(QRectF(x + 10, y, width - 20, layer_h), 8, 8)
        p.setPen(accent)
        p.setFont(bold)
        p.drawText(QRectF(x + 20, y + 4, width - 40, 20), Qt.AlignmentFlag.AlignRight,
                   f"× {info.block_count} layers")
        p.setFont(self.font())
        inner = y + 26
        box(inner, 132, "Self-attention",
            f"{info.head_count} query heads share {info.head_count_kv} key/value heads "
            f"(head size {info.key_length})", surface)
        self._heads(p, x + 44, inner + 62, width - 88)
        arrow(inner + 132, inner + 146)
        box(inner + 148, 52, "Feed-forward",
            f"{n(info.embedding_length)} → {n(info.feed_forward_length)} → "
            f"{n(info.embedding_length)}", surface)
        y += layer_h
        arrow(y, y + 18)
        y += 20
        box(y, 48, "Output", f"a score for each of the {n(info.vocab_size)} tokens", surface)
        p.end()

    def _heads(self, p: QPainter, x: float, y: float, width: float) -> None:
        """Query heads coloured by the KV head they read from, KV heads below them."""
        info = self.info
        assert info is not None
        heads, kv_heads = max(info.head_count, 1), max(info.head_count_kv, 1)
        group = max(heads // kv_heads, 1)
        size = min(18.0, (width - 4) / max(heads, 1) - 4)
        colours = palettes()[self.scheme]
        p.setFont(self.font())
        p.setPen(QColor(colours["muted"]))
        p.drawText(QRectF(x, y - 2, 40, 16), Qt.AlignmentFlag.AlignLeft, "Q")
        p.drawText(QRectF(x, y + 36, 40, 16), Qt.AlignmentFlag.AlignLeft, "K,V")
        left = x + 34
        step = size + 4
        for h in range(min(heads, 64)):
            colour = QColor(GROUP_COLOURS[(h // group) % len(GROUP_COLOURS)])
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(colour)
            p.drawRoundedRect(QRectF(left + h * step, y, size, size), 3, 3)
        for k in range(min(kv_heads, 64)):
            colour = QColor(GROUP_COLOURS[k % len(GROUP_COLOURS)])
            span = group * step - 4
            kx = left + k * group * step
            p.setBrush(colour)
            p.drawRoundedRect(QRectF(kx, y + 38, span, size), 3, 3)
            pen = QPen(colour, 1)
            p.setPen(pen)
            for h in range(group):
                hx = left + (k * group + h) * step + size / 2
                p.drawLine(int(hx), int(y + size + 1), int(kx + span / 2), int(y + 37))
            p.setPen(Qt.PenStyle.NoPen)


class ModelView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.info: ModelInfo | None = None
        self.diagram = ArchitectureDiagram()
        self.title = QLabel("No model loaded.")
        self.title.setObjectName("chatTitle")
        self.title.setWordWrap(True)
        self.facts = QFormLayout()
        self.facts.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.values: dict[str, QLabel] = {}
        for key, label in (("architecture", "Architecture"), ("parameters", "Parameters"),
                           ("quantization", "Quantization"), ("file", "File size"),
                           ("layers", "Layers"), ("embedding", "Embedding size"),
                           ("heads", "Attention heads"), ("kv_heads", "Key/value heads"),
                           ("head_size", "Head size"), ("ffn", "Feed-forward size"),
                           ("context", "Trained context"), ("vocab", "Vocabulary"),
                           ("n_ctx", "Current context"), ("kv_token", "KV cache per token"),
                           ("kv_ctx", "KV cache at n_ctx"), ("gpu", "GPU")):
            value = QLabel("—")
            value.setObjectName(f"fact_{key}")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.values[key] = value
            self.facts.addRow(label + ":", value)
        self.explanation = QLabel()
        self.explanation.setObjectName("gqaExplanation")
        self.explanation.setWordWrap(True)
        self.explanation.setTextFormat(Qt.TextFormat.RichText)
        right = QVBoxLayout()
        right.addWidget(self.title)
        right.addLayout(self.facts)
        right.addSpacing(8)
        right.addWidget(self.explanation)
        right.addStretch(1)
        body = QWidget()
        row = QHBoxLayout(body)
        row.addWidget(self.diagram, 1)
        row.addLayout(right, 1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(body)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)

    def set_scheme(self, scheme: str) -> None:
        self.diagram.scheme = scheme
        self.diagram.update()

    def clear(self, message: str = "No model loaded.") -> None:
        self.info = None
        self.diagram.info = None
        self.diagram.update()
        self.title.setText(message)
        for value in self.values.values():
            value.setText("—")
        self.explanation.clear()

    def set_model(self, info: ModelInfo, n_ctx: int, kv_type: KVType,
                  gpu_layers: int = 0) -> None:
        self.info = info
        self.diagram.info = info
        self.diagram.update()
        kv = kv_facts(info, n_ctx, kv_type)
        v = self.values
        size = info.size_label
        self.title.setText(info.name + (f" ({size})" if size and size.lower() not in
                                        info.name.lower() else ""))
        v["architecture"].setText(info.architecture)
        v["parameters"].setText(n(info.parameter_count))
        v["quantization"].setText(info.quantization)
        v["file"].setText(format_bytes(info.file_size))
        v["layers"].setText(n(info.block_count))
        v["embedding"].setText(n(info.embedding_length))
        v["heads"].setText(n(info.head_count))
        v["kv_heads"].setText(n(info.head_count_kv))
        v["head_size"].setText(f"{info.key_length} (keys), {info.value_length} (values)")
        v["ffn"].setText(n(info.feed_forward_length))
        v["context"].setText(f"{n(info.context_length)} tokens")
        v["vocab"].setText(f"{n(info.vocab_size)} tokens ({info.tokenizer_model or '?'})")
        v["n_ctx"].setText(f"{n(n_ctx)} tokens, KV cache type {kv_type.value}")
        v["kv_token"].setText(f"{n(kv['per_token'])} bytes ({format_bytes(kv['per_token'])})")
        v["kv_ctx"].setText(f"{format_bytes(kv['at_ctx'])} for {n(n_ctx)} tokens")
        v["gpu"].setText(gpu_text(gpu_layers, info.block_count))
        v["gpu"].setWordWrap(True)
        self.explanation.setText(self._explain(info, kv_type, kv))

    @staticmethod
    def _explain(info: ModelInfo, kv_type: KVType, kv: dict[str, int]) -> str:
        heads, kv_heads = info.head_count, info.head_count_kv
        per_element = KV_BYTES_PER_ELEMENT[kv_type]
        cache = (f"Every token in the context keeps a key and a value vector per key/value "
                 f"head in every layer: {info.block_count} layers × {kv_heads} KV heads × "
                 f"({info.key_length} + {info.value_length}) numbers × {per_element:g} bytes "
                 f"({kv_type.value}) = <b>{n(kv['per_token'])} bytes per token</b>.")
        if kv_heads and heads > kv_heads:
            return (f"<b>Grouped-query attention.</b> The {heads} query heads are split into "
                    f"{kv_heads} groups of {heads // kv_heads}; each group reads the same "
                    f"key/value head (same colour in the drawing). Only the key/value heads "
                    f"are cached, so the KV cache is {heads // kv_heads}× smaller than with one "
                    f"key/value head per query head ({format_bytes(kv['without_gqa'])} per "
                    f"token).<br><br>{cache}")
        return (f"<b>Multi-head attention.</b> Each of the {heads} query heads has its own "
                f"key/value head, so all of them are cached.<br><br>{cache}")
