"""The estimator: the shipped sentencepiece model, its pieces weighted by the calibration."""

from __future__ import annotations

import hashlib
import math
import threading
from itertools import chain, islice
from pathlib import Path

import numpy as np
import sentencepiece as spm

from engine.token_estimate.calibration import Calibration, CalibrationError
from engine.token_estimate.pieces import clean, lines_of, piece_infos

ASSET_DIR = Path(__file__).resolve().parents[2] / "assets" / "token_estimate"
MODEL_FILE = "verso-token-estimate.model"
CALIBRATION_FILE = "calibration.json"
_LINES_PER_BATCH = 256


class TokenEstimator:
    """Counts the sentencepiece pieces of a text and weighs each by its class. Safe to use
    from several threads at once (encoding only reads the model)."""

    def __init__(self, model_path: Path, calibration: Calibration) -> None:
        model = model_path.read_bytes()
        digest = hashlib.sha256(model).hexdigest()
        if digest != calibration.model_sha256:
            raise CalibrationError(f"the calibration is for another model than {model_path} "
                                   f"(SHA-256 {digest}, calibrated {calibration.model_sha256})")
        self.processor = spm.SentencePieceProcessor(model_proto=model)
        self.calibration = calibration
        self.infos = piece_infos(self.processor)
        if len(calibration.piece_tokens) != len(self.infos):
            raise CalibrationError(f"the calibration has {len(calibration.piece_tokens)} "
                                   f"pieces, the model {len(self.infos)}")
        self._weights = np.array([calibration.weight(info, base) for info, base in
                                  zip(self.infos, calibration.piece_tokens, strict=True)])

    @classmethod
    def from_directory(cls, directory: Path) -> TokenEstimator:
        return cls(directory / MODEL_FILE, Calibration.load(directory / CALIBRATION_FILE))

    def encode(self, text: str) -> tuple[np.ndarray, int]:
        """The piece ids of ``text`` (line by line) and its number of newlines."""
        text = clean(text)
        lines = lines_of(text)
        parts: list[np.ndarray] = []
        while batch := list(islice(lines, _LINES_PER_BATCH)):
            ids = self.processor.encode(batch, out_type=int)
            parts.append(np.fromiter(chain.from_iterable(ids), dtype=np.int64))
        pieces = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return pieces, text.count("\n")

    def estimate(self, text: str) -> int:
        """A count of tokens that is rarely below a real tokenizer's (see the calibration),
        and never above the text's UTF-8 length, which bounds every byte-level tokenizer."""
        if not text:
            return 0
        pieces, newlines = self.encode(text)
        total = float(self._weights[pieces].sum()) + self.calibration.newline * newlines
        return min(math.ceil(total), len(text.encode("utf-8", "surrogatepass")))


_default: TokenEstimator | None = None
_lock = threading.Lock()


def default_estimator() -> TokenEstimator:
    """The shipped estimator, loaded on first use (once, whichever thread asks first)."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                _default = TokenEstimator.from_directory(ASSET_DIR)
    return _default
