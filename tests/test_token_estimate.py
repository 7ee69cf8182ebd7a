"""The conservative token estimator (engine/token_estimate): the shipped model and
calibration, edge cases, and the bound it promises against both bundled models' tokenizers
on the held-out texts that training wrote to tests/data."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import defaultdict
from pathlib import Path

import pytest

import engine.token_estimate.estimator as estimator_module
from engine.token_estimate import TokenEstimator, estimate_tokens
from engine.token_estimate.calibration import Calibration, CalibrationError
from engine.token_estimate.estimator import ASSET_DIR, CALIBRATION_FILE, MODEL_FILE

HOLDOUT = Path(__file__).parent / "data" / "token_estimate_holdout.jsonl"
BOUND = 0.95
REQUIRED = {"eng", "deu_1996", "fra", "spa", "rus", "cmn_hans", "jpn", "arb", "hin", "code",
            "numbers", "mixed"}


def _holdout() -> list[dict]:
    return [json.loads(line) for line in HOLDOUT.read_text(encoding="utf-8").splitlines()]


def test_the_shipped_model_is_small_and_loads():
    assert (ASSET_DIR / MODEL_FILE).stat().st_size < 500_000
    estimator = TokenEstimator.from_directory(ASSET_DIR)
    assert estimator.processor.get_piece_size() == len(estimator.calibration.piece_tokens)
    assert 5 <= estimate_tokens("The quick brown fox jumps over the lazy dog.") <= 20


def test_empty_text_is_zero_and_any_text_at_least_one():
    assert estimate_tokens("") == 0
    for text in (" ", "\n", "a", "\t", "。"):
        assert estimate_tokens(text) >= 1


@pytest.mark.parametrize("text", [
    "\ud800 lone surrogate \udfff",          # cannot be encoded as UTF-8
    "👩‍👩‍👧‍👦 family, 🇩🇪 flag, 🤖",          # ZWJ sequences, regional indicators
    "e\u0301\u0301\u0301 stacked combining marks",
    "\x00\x01\x07\x1b[31m control characters",
    "\u202eRTL override\u202c \u200b zero width",
    "\ue000\U000f0000 private use, \U000e0001 tag, \U0010fffd",
    "\u2581literal sentencepiece space\u2581\u2581",
    "𝕄𝕒𝕥𝕙 𝒮𝒸𝓇𝒾𝓅𝓉 ＦＵＬＬＷＩＤＴＨ ｶﾀｶﾅ",
    "\r\n\r\n windows newlines \r\n",
])
def test_odd_unicode_gives_a_bounded_count(text: str):
    estimate = estimate_tokens(text)
    assert 1 <= estimate <= len(text.encode("utf-8", "surrogatepass"))


def test_an_unknown_script_counts_its_bytes():
    # Cuneiform is nowhere in the training text: its pieces are bytes, one token each.
    text = "𒀀𒀁𒀂𒀃 𒀄𒀅"
    assert estimate_tokens(text) >= len(text.encode("utf-8")) * 0.9


def test_huge_text_is_linear():
    paragraph = ("Verso splits long documents into chunks by tokens. Ein längerer Satz auf "
                 "Deutsch. 日本語の文章もあります。 Числа: 12345, 3.14159.\n")
    one = estimate_tokens(paragraph * 1000)
    four = estimate_tokens(paragraph * 4000)
    assert 3.97 * one <= four <= 4.03 * one
    # One line with no space at all is cut into windows, not encoded in one piece.
    line = "数据" * 300_000
    assert estimate_tokens(line * 2) == pytest.approx(2 * estimate_tokens(line), rel=0.01)


def test_the_estimator_is_loaded_once_across_threads(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(estimator_module, "_default", None)
    loads = []
    real = TokenEstimator.from_directory.__func__  # type: ignore[attr-defined]

    def counting(cls, directory):
        loads.append(directory)
        return real(cls, directory)

    monkeypatch.setattr(TokenEstimator, "from_directory", classmethod(counting))
    texts = [f"Thread {i}: Всеобщая декларация прав человека, article {i}." for i in range(8)]
    results: dict[int, int] = {}
    barrier = threading.Barrier(len(texts))

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(20):
            results[i] = estimate_tokens(texts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1
    single = TokenEstimator.from_directory(ASSET_DIR)
    assert results == {i: single.estimate(t) for i, t in enumerate(texts)}


def test_a_calibration_for_another_model_is_refused(tmp_path: Path):
    calibration = Calibration.load(ASSET_DIR / CALIBRATION_FILE)
    (tmp_path / MODEL_FILE).write_bytes((ASSET_DIR / MODEL_FILE).read_bytes())
    wrong = dataclasses.replace(calibration, model_sha256="0" * 64)
    (tmp_path / CALIBRATION_FILE).write_text(wrong.to_json(), encoding="utf-8")
    with pytest.raises(CalibrationError, match="another model"):
        TokenEstimator.from_directory(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text("{}", encoding="utf-8")
    with pytest.raises(CalibrationError, match="format-1"):
        TokenEstimator.from_directory(tmp_path)
    (tmp_path / CALIBRATION_FILE).unlink()
    with pytest.raises(CalibrationError, match="cannot read"):
        TokenEstimator.from_directory(tmp_path)


def test_the_calibration_round_trips(tmp_path: Path):
    calibration = Calibration.load(ASSET_DIR / CALIBRATION_FILE)
    (tmp_path / "c.json").write_text(calibration.to_json(), encoding="utf-8")
    assert Calibration.load(tmp_path / "c.json") == calibration


def test_the_holdout_sample_covers_the_required_languages():
    langs = {record["lang"] for record in _holdout()}
    assert langs >= REQUIRED


# ------------------------------------------------------------ against the real tokenizers


def _tokenizers(smol_path: Path, gemma_path: Path) -> dict:
    import llama_cpp

    return {name: llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
            for name, path in (("smol", smol_path), ("gemma", gemma_path))}


def _violations(estimator: TokenEstimator, records: list[dict], tokenizers: dict
                ) -> list[str]:
    """Texts and languages (in total) whose estimate is below BOUND times a real count."""
    problems = []
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for record in records:
        estimate = estimator.estimate(record["text"])
        for name, llm in tokenizers.items():
            real = len(llm.tokenize(record["text"].encode("utf-8"), add_bos=False,
                                    special=False))
            total = totals[(record["lang"], name)]
            total[0] += estimate
            total[1] += real
            if estimate < BOUND * real:
                problems.append(f"{record['lang']} {record['name']} {record['unit']}: {name} "
                                f"{real} tokens, estimate {estimate}")
    problems += [f"{lang} in total: {name} {real} tokens, estimate {estimate}"
                 for (lang, name), (estimate, real) in totals.items()
                 if estimate < BOUND * real]
    return problems


@pytest.fixture(scope="module")
def tokenizers(smol_path: Path, gemma_path: Path) -> dict:
    return _tokenizers(smol_path, gemma_path)


def test_never_more_than_5_percent_under_either_tokenizer(tokenizers: dict):
    records = _holdout()
    assert len(records) > 300
    problems = _violations(TokenEstimator.from_directory(ASSET_DIR), records, tokenizers)
    assert not problems, "\n".join(problems[:20])


def test_the_bound_check_catches_a_calibration_10_percent_low(tokenizers: dict):
    """The check above can fail: with every weight 10 % lower it finds texts under."""
    calibration = Calibration.load(ASSET_DIR / CALIBRATION_FILE)
    low = dataclasses.replace(
        calibration,
        classes={c: dataclasses.replace(w, piece=w.piece * 0.9, token=w.token * 0.9)
                 for c, w in calibration.classes.items()},
        newline=calibration.newline * 0.9, word_start=calibration.word_start * 0.9)
    weakened = TokenEstimator(ASSET_DIR / MODEL_FILE, low)
    english = [r for r in _holdout() if r["lang"] in ("eng", "code", "numbers")]
    assert _violations(weakened, english, tokenizers)
