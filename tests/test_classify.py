"""Classification by label scoring, through the engine process (score, chat_prompt and
grammar validation cross the pipe as protocol commands)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import replace

import pytest

from engine.errors import BadRequestError
from engine.events import Done, ModelLoaded, Token
from engine.options import GREEDY, ChatMessage, CompletionRequest, LoadSettings
from engine.runtime.in_process import InProcessEngine
from engine.runtime.runtime import Runtime
from engine.tasks.classify import (
    CONTENT_FREE,
    PriorCache,
    calibrate,
    classify,
    classify_many,
    softmax,
    write_csv,
)
from engine.worker import EngineClient

LABELS = ("positive", "negative")
POSITIVE = "I absolutely loved this movie, it was wonderful!"
NEGATIVE = "This was the worst, most boring film I have ever seen. Terrible."


@pytest.fixture(scope="module")
def client(smol_path):
    c = EngineClient()
    events = list(c.load(LoadSettings(path=str(smol_path), n_ctx=1024, n_threads=1)))
    assert isinstance(events[-1], ModelLoaded)
    yield c
    c.close()


def assert_distribution(result) -> None:
    assert set(result.probabilities) == set(LABELS)
    assert math.fsum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert all(0.0 < p < 1.0 for p in result.probabilities.values())
    assert result.label == max(result.probabilities, key=result.probabilities.get)
    assert all(lp < 0 for lp in result.logprobs.values())


@pytest.mark.parametrize("text, expected", [(POSITIVE, "positive"), (NEGATIVE, "negative")])
def test_clear_cut_sentiment_gets_the_right_label(client, text, expected):
    assert client.loaded.has_chat_template
    result = classify(client, text, LABELS)
    assert_distribution(result)
    assert result.label == expected


def test_base_prompt_with_few_shot_examples(client):
    examples = [("What a great day, I am so happy.", "positive"),
                ("The service was rude and slow.", "negative")]
    for text, expected in ((POSITIVE, "positive"), (NEGATIVE, "negative")):
        result = classify(client, text, LABELS, few_shot=examples, chat=False)
        assert_distribution(result)
        assert result.label == expected


def test_model_without_chat_template_uses_the_base_prompt_in_process(gemma_path):
    rt = Runtime()
    for _ in rt.load(LoadSettings(path=str(gemma_path), n_ctx=512, n_threads=1)):
        pass
    try:
        assert not rt.loaded.has_chat_template
        engine = InProcessEngine(rt)
        # Uncalibrated: Gemma's prior for "positive" (0.82 on content-free texts) is as high
        # as its score for this clear praise, so calibration leaves it near 50/50.
        for text, expected in ((POSITIVE, "positive"), (NEGATIVE, "negative")):
            result = classify(engine, text, LABELS, calibrated=False)
            assert_distribution(result)
            assert result.label == expected
            base = classify(engine, text, LABELS, chat=False).logprobs
            as_chat = classify(engine, text, LABELS, chat=True).logprobs
            assert result.logprobs == pytest.approx(base, abs=1e-3)
            assert result.logprobs != pytest.approx(as_chat, abs=1e-3)
    finally:
        rt.unload()


def test_probabilities_are_the_softmax_of_label_logprobs(client):
    labels = ("very positive", "negative", "neutral")
    result = classify(client, POSITIVE, labels, instruction="Rate the review: {labels}.",
                      calibrated=False)
    assert list(result.probabilities) == list(labels) and not result.calibrated
    expected = softmax([result.logprobs[label] for label in labels])
    assert [result.probabilities[label] for label in labels] == pytest.approx(expected)
    assert math.fsum(result.probabilities.values()) == pytest.approx(1.0)


ISSUE_EXAMPLE = "I love this phone, the battery lasts forever."  # issue 14
SENTIMENT = ("positive", "negative", "neutral")


def test_calibration_divides_out_the_models_content_free_prior(client):
    """On the issue's example: the prior is the mean of the model's distributions for the
    content-free texts, each computed here on its own, and the calibrated distribution is
    the raw one divided by it, so the label the model favours on empty input loses ground
    and the one it avoids gains."""
    result = classify(client, ISSUE_EXAMPLE, SENTIMENT, calibrated=True, cache=PriorCache())
    raw = classify(client, ISSUE_EXAMPLE, SENTIMENT, calibrated=False)
    assert result.calibrated and result.raw_probabilities == pytest.approx(raw.probabilities)
    free = [classify(client, text, SENTIMENT, calibrated=False).probabilities
            for text in CONTENT_FREE]
    prior = {label: math.fsum(p[label] for p in free) / len(free) for label in SENTIMENT}
    assert result.prior == pytest.approx(prior, abs=1e-6)
    expected = calibrate([raw.probabilities[label] for label in SENTIMENT],
                         [prior[label] for label in SENTIMENT])
    assert [result.probabilities[label] for label in SENTIMENT] == pytest.approx(expected)
    favoured = max(prior, key=prior.__getitem__)
    avoided = min(prior, key=prior.__getitem__)
    assert favoured != avoided
    assert result.probabilities[favoured] < raw.probabilities[favoured]
    assert result.probabilities[avoided] > raw.probabilities[avoided]


def test_batch_classification_writes_csv(client):
    out = io.StringIO()
    write_csv(classify_many(client, [POSITIVE, NEGATIVE], LABELS), LABELS, out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["text", "label", "p_positive", "p_negative", "calibrated", "raw_label",
                       "raw_p_positive", "raw_p_negative"]
    assert [r[0] for r in rows[1:]] == [POSITIVE, NEGATIVE]
    assert [r[1] for r in rows[1:]] == ["positive", "negative"]
    for row in rows[1:]:
        assert float(row[2]) + float(row[3]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("labels, few_shot, message", [
    (("only",), (), "at least two labels"),
    (("a", "a "), (), "different"),
    (("a", ""), (), "empty"),
    (("a", "b"), (("text", "c"),), "not one of the labels"),
])
def test_unusable_labels_are_bad_requests(client, labels, few_shot, message):
    with pytest.raises(BadRequestError, match=message):
        classify(client, "x", labels, few_shot=few_shot)


def test_client_score_matches_generated_token_logprobs(client):
    prompt = "Once upon a time"
    events = list(client.complete(CompletionRequest(prompt, replace(GREEDY, n_probs=1,
                                                                     max_tokens=5))))
    assert isinstance(events[-1], Done)
    tokens = [e for e in events if isinstance(e, Token) and e.token_id >= 0]
    prompt_tokens = client.tokenize(prompt, add_bos=True, special=False)
    [score] = client.score(prompt_tokens, [[t.token_id for t in tokens]])
    assert score == pytest.approx(sum(t.logprob for t in tokens), abs=0.05)
    with pytest.raises(BadRequestError):
        client.score([], [[1]])


def test_client_renders_chats_and_validates_grammars(client):
    rendered = client.chat_prompt([ChatMessage("user", "Hi")])
    assert rendered.text.endswith("<|im_start|>assistant\n")
    assert rendered.tokens == tuple(client.tokenize(rendered.text, special=True))
    assert client.validate_grammar('root ::= "ok" <|im_end|>') == []
    assert any("Undefined rule" in p for p in client.validate_grammar("root ::= x"))
