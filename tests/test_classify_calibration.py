"""Contextual calibration (engine.tasks.classify): the math, the content-free prior and its
cache, on a scripted engine whose scores carry a known bias toward one label."""

from __future__ import annotations

import csv
import io
import math

import pytest

from engine.events import ModelLoaded
from engine.options import LoadSettings
from engine.tasks.classify import (
    CONTENT_FREE,
    PriorCache,
    average_distribution,
    calibrate,
    classify,
    classify_many,
    content_free_prior,
    content_free_scores,
    write_csv,
)
from engine.testing.fake_engine import FakeEngine

LABELS = ("positive", "negative", "neutral")
BIAS = {"positive": 0.15, "negative": 0.15, "neutral": 0.70}  # the model's own preference
EVIDENCE = {"love": {"positive": 0.6, "negative": 0.1, "neutral": 0.3},
            "broke": {"positive": 0.1, "negative": 0.7, "neutral": 0.2}}
UNIFORM = {label: 1 / 3 for label in LABELS}


def biased_scorer(prompt: str, continuation: str) -> float:
    """log(bias x evidence): a text with no cue word carries no evidence, so the model's
    distribution for it is the bias alone."""
    label = next(name for name in LABELS if name in continuation)
    text = prompt.rsplit("<user>", 1)[-1]
    evidence = next((e for word, e in EVIDENCE.items() if word in text), UNIFORM)
    return math.log(BIAS[label] * evidence[label])


def loaded_fake(**kwargs) -> FakeEngine:  # type: ignore[no-untyped-def]
    engine = FakeEngine(scorer=biased_scorer, **kwargs)
    events = list(engine.load(LoadSettings(path="/models/biased.gguf")))
    assert isinstance(events[-1], ModelLoaded)
    return engine


def test_dividing_out_a_biased_prior_recovers_the_evidence():
    evidence = [0.6, 0.1, 0.3]
    prior = [BIAS[label] for label in LABELS]
    biased = [e * b for e, b in zip(evidence, prior, strict=True)]
    raw = [p / sum(biased) for p in biased]
    assert max(range(3), key=raw.__getitem__) == 2  # the bias wins: "neutral"
    calibrated = calibrate(raw, prior)
    assert calibrated == pytest.approx(evidence)
    assert max(range(3), key=calibrated.__getitem__) == 0  # "positive"
    assert math.fsum(calibrated) == pytest.approx(1.0)


def test_a_uniform_prior_changes_nothing_and_tiny_values_keep_their_order():
    raw = [0.2, 0.5, 0.3]
    assert calibrate(raw, [1 / 3] * 3) == pytest.approx(raw)
    assert calibrate([1e-300, 1.0, 0.0], [0.5, 0.25, 0.25]) == pytest.approx([0, 1, 0])
    with pytest.raises(ValueError):
        calibrate([0.5, 0.5], [1.0])


def test_the_prior_is_the_mean_of_the_content_free_distributions():
    assert average_distribution([[0.2, 0.8], [0.6, 0.4]]) == pytest.approx([0.4, 0.6])
    assert average_distribution([[2, 2], [1, 3]]) == pytest.approx([3 / 8, 5 / 8])
    with pytest.raises(ValueError):
        average_distribution([])


def test_calibration_undoes_the_models_bias_toward_a_label():
    engine = loaded_fake()
    cache = PriorCache()
    raw = classify(engine, "I love this phone.", LABELS, calibrated=False, cache=cache)
    assert raw.label == "neutral" and not raw.calibrated and raw.prior is None
    assert len(cache) == 0
    result = classify(engine, "I love this phone.", LABELS, cache=cache)
    assert result.calibrated and result.label == "positive" and result.raw_label == "neutral"
    assert result.probabilities == pytest.approx(EVIDENCE["love"])
    assert result.raw_probabilities == pytest.approx(raw.probabilities)
    assert result.prior == pytest.approx(BIAS)
    assert result.logprobs == pytest.approx(raw.logprobs)
    broke = classify(engine, "It broke on day two.", LABELS, cache=cache)
    assert broke.label == "negative"


def test_the_content_free_texts_are_scored_once_per_prompt():
    engine = loaded_fake()
    cache = PriorCache()
    rows = list(classify_many(engine, ["I love it.", "It broke.", "I love it too."], LABELS,
                              cache=cache))
    assert [r.label for _, r in rows] == ["positive", "negative", "positive"]
    assert engine.ops().count("score") == len(CONTENT_FREE) + 3
    prompts = [engine.detokenize(call.request[0])  # type: ignore[index]
               for call in engine.calls if call.op == "score"]
    scored = [p.rsplit("<user>", 1)[-1].removesuffix("<assistant>").strip() for p in prompts]
    assert scored[:1 + len(CONTENT_FREE)] == ["I love it.", *CONTENT_FREE]
    # Another instruction, other labels or examples are another prompt: a new prior.
    classify(engine, "I love it.", LABELS, instruction="Sentiment? {labels}", cache=cache)
    classify(engine, "I love it.", LABELS[:2], cache=cache)
    classify(engine, "I love it.", LABELS, few_shot=[("It broke.", "negative")], cache=cache)
    assert len(cache) == 4
    assert engine.ops().count("score") == 4 * len(CONTENT_FREE) + 6
    # The same prompt again: from the cache.
    classify(engine, "Meh.", LABELS, cache=cache)
    assert engine.ops().count("score") == 4 * len(CONTENT_FREE) + 7


def test_the_prior_is_cached_per_model_and_prompt_form():
    cache = PriorCache()
    first, other = loaded_fake(), loaded_fake(model_name="Another model")
    content_free_prior(first, LABELS, cache=cache)
    content_free_prior(first, LABELS, cache=cache)
    content_free_prior(first, LABELS, chat=False, cache=cache)
    content_free_prior(other, LABELS, cache=cache)
    assert len(cache) == 3
    assert first.ops().count("score") == 2 * len(CONTENT_FREE)


def test_the_cache_is_bounded_least_recently_used_first_out():
    cache = PriorCache(max_entries=2)
    cache.put("a", [0.5, 0.5])
    cache.put("b", [0.1, 0.9])
    assert cache.get("a") == (0.5, 0.5)  # now the most recent
    cache.put("c", [0.3, 0.7])
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 2


def test_the_csv_keeps_the_raw_distribution_beside_the_calibrated_one():
    engine = loaded_fake()
    out = io.StringIO()
    write_csv(classify_many(engine, ["I love this phone."], LABELS, cache=PriorCache()),
              LABELS, out)
    header, row = list(csv.reader(io.StringIO(out.getvalue())))
    assert header == ["text", "label", "p_positive", "p_negative", "p_neutral", "calibrated",
                      "raw_label", "raw_p_positive", "raw_p_negative", "raw_p_neutral"]
    assert row[1] == "positive" and row[5] == "true" and row[6] == "neutral"
    assert float(row[2]) == pytest.approx(0.6, abs=1e-6)
    assert float(row[9]) > float(row[7])  # raw: neutral above positive


def unsteady_scorer(prompt: str, continuation: str) -> float:
    """A model whose preference on empty input depends on which empty input: "N/A" makes
    it favour positive, the other content-free texts neutral."""
    label = next(name for name in LABELS if name in continuation)
    text = prompt.rsplit("<user>", 1)[-1]
    bias = {"positive": 0.8, "negative": 0.1, "neutral": 0.1} if "N/A" in text else BIAS
    evidence = next((e for word, e in EVIDENCE.items() if word in text), UNIFORM)
    return math.log(bias[label] * evidence[label])


def test_by_default_only_a_steady_bias_is_divided_out():
    steady = classify(loaded_fake(), "I love this phone.", LABELS, cache=PriorCache())
    assert steady.calibrated and steady.label == "positive" and not steady.not_calibrated
    engine = FakeEngine(scorer=unsteady_scorer)
    list(engine.load(LoadSettings(path="/models/unsteady.gguf")))
    cache = PriorCache()
    scores = content_free_scores(engine, LABELS, cache=cache)
    assert scores.favoured() == [2, 0, 2] and not scores.steady
    auto = classify(engine, "It broke on day two.", LABELS, cache=cache)
    assert not auto.calibrated and auto.probabilities == pytest.approx(auto.raw_probabilities)
    assert auto.prior == pytest.approx(dict(zip(LABELS, scores.mean, strict=True)))
    assert auto.not_calibrated == (
        "Not calibrated: on texts that say nothing the model favours different labels "
        "('an empty text': neutral, 'N/A': positive, '[MASK]': neutral), so it has no steady "
        "bias to divide out. These are its own probabilities.")
    forced = classify(engine, "It broke on day two.", LABELS, calibrated=True, cache=cache)
    assert forced.calibrated and not forced.not_calibrated
    assert forced.probabilities != pytest.approx(forced.raw_probabilities)
    off = classify(engine, "It broke on day two.", LABELS, calibrated=False, cache=cache)
    assert not off.calibrated and not off.not_calibrated and off.prior is None
