"""The calibration stored next to the sentencepiece model.

Each piece of the model has a base count: the real tokens that start inside it, averaged
over its occurrences in the training text, for the reference tokenizer (SmolLM2's or
Gemma 3's) that gives more. A piece's estimate is a weight per piece of its class (its
Unicode script, or digit, symbol, space) plus a weight per base token of its class (plus one
per word start); a text's estimate adds a weight per newline. The weights are fitted by
``packaging/train_token_estimator.py`` so the estimate is not below the real count of any
of its fit texts for either tokenizer."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.token_estimate.pieces import BYTE, PieceInfo

FORMAT = 1


class CalibrationError(ValueError):
    """The calibration file is missing, unreadable or of another format."""


@dataclass(frozen=True)
class ClassWeight:
    piece: float
    token: float


@dataclass(frozen=True)
class Calibration:
    classes: dict[str, ClassWeight]
    piece_tokens: list[float]
    model_sha256: str
    word_start: float
    newline: float
    # What the fit aimed at and was fitted on (for the record; not used to estimate).
    about: dict[str, Any] = field(default_factory=dict)

    def weight(self, info: PieceInfo, base: float) -> float:
        """Estimated real tokens for one piece. A byte piece counts one (no tokenizer Verso
        meets needs more than one token per byte); a piece of a class the calibration never
        saw counts its UTF-8 bytes, the most any such tokenizer can need."""
        if info.cls == BYTE:
            return 1.0
        if info.cls == "control":
            return 0.0
        weight = self.classes.get(info.cls)
        if weight is None:
            return float(max(1, info.utf8_bytes))
        return weight.piece + weight.token * base + (self.word_start if info.word_start
                                                      else 0.0)

    def to_json(self) -> str:
        data = {"format": FORMAT, **asdict(self)}
        tokens = data.pop("piece_tokens")
        text = json.dumps(data, indent=1, ensure_ascii=False)
        # The per-piece list on one line: the file stays short and diffs stay readable.
        return text[:-2] + f',\n "piece_tokens": {json.dumps(tokens)}\n}}\n'


    @staticmethod
    def load(path: Path) -> Calibration:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CalibrationError(f"cannot read the token estimate calibration {path}: {exc}"
                                   ) from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CalibrationError(f"{path} is not a format-{FORMAT} token estimate calibration")
        try:
            return Calibration(
                classes={name: ClassWeight(float(w["piece"]), float(w["token"]))
                         for name, w in data["classes"].items()},
                piece_tokens=[float(n) for n in data["piece_tokens"]],
                model_sha256=str(data["model_sha256"]),
                word_start=float(data["word_start"]), newline=float(data["newline"]),
                about=dict(data.get("about", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CalibrationError(f"{path} is missing a field or has a bad value: {exc}"
                                   ) from exc
