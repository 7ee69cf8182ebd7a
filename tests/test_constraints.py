"""Controllable generation with the real model, in-process: grammars, JSON Schema, choices,
banned phrases, logit bias, token probabilities and branching from an alternative token."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import pytest

from engine.errors import BadRequestError
from engine.events import Done, ErrorKind, FinishReason, Rollback, Token, fold_text
from engine.options import (
    GREEDY,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    LoadSettings,
    SamplingParams,
)
from engine.runtime.phrase_guard import PhraseGuard
from engine.runtime.runtime import Runtime
from engine.tasks.branch import branch_request, output_tokens
from engine.tasks.constraints import (
    Constraints,
    client_tokenizer,
    resolve_logit_bias,
    validate_grammar,
    word_tokens,
)
from engine.tasks.gbnf import choice_grammar, gbnf_literal, integer_range_rule, schema_to_grammar

NEVER = lambda: False  # noqa: E731
HOT = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
STORY = (ChatMessage("user", "Tell me a short story about a cat."),)


@pytest.fixture(scope="module")
def runtime(smol_path):
    rt = Runtime()
    for _ in rt.load(LoadSettings(path=str(smol_path), n_ctx=1024, n_threads=1)):
        pass
    yield rt
    rt.unload()


def run(events) -> tuple[list, Done]:
    events = list(events)
    assert isinstance(events[-1], Done)
    return events, events[-1]


def complete(rt: Runtime, prompt: str, sampling: SamplingParams, **kw) -> tuple[list, Done]:
    return run(rt.complete(CompletionRequest(prompt, sampling, **kw), NEVER))


def streamed_text(events) -> str:
    """The text a display shows after applying every Token and Rollback in order."""
    text = ""
    for event in events:
        if isinstance(event, Token):
            text += event.text
        elif isinstance(event, Rollback):
            assert event.n_chars <= len(text)
            text = text[: len(text) - event.n_chars]
    return text


def test_partial_text_kept_for_errors_follows_rollbacks():
    partial: list[str] = []
    for event in (Token(1, "a cat"), Token(2, " sat"), Rollback(1, 4, "sat"), Token(3, "!")):
        fold_text(partial, event)
    assert "".join(partial) == "a cat!"


# ------------------------------------------------------------------ grammar validation


@pytest.mark.parametrize("grammar, expected", [
    ('root ::= "yes" | "no"', None),
    ("root ::= (", "expecting ')' at the end of the grammar"),
    ('root ::= "a" | b', "Undefined rule identifier 'b'"),
    ('answer ::= "x"', "no 'root' rule"),
    ('root ::= "\\q"', "unknown escape at line 1, column 11"),
    ('root ::= "a"\nx ::= "b" )', "expecting newline or end at line 2, column 11"),
    ('root ::= root "a"', "left recursion"),
    ("  \n", "empty"),
])
def test_validate_grammar_explains_the_problem(grammar, expected):
    problems = validate_grammar(grammar)
    if expected is None:
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems


def test_invalid_grammar_is_a_bad_request_before_any_work(runtime):
    sampling = replace(GREEDY, grammar='root ::= "a" | (', max_tokens=4)
    with pytest.raises(BadRequestError) as info:
        complete(runtime, "Hi", sampling)
    assert info.value.kind is ErrorKind.BAD_REQUEST
    assert "expecting ')'" in str(info.value)


def test_token_references_are_checked_against_the_model(runtime):
    grammar = 'root ::= "ok" <|im_end|>'
    assert any("vocab" in p for p in validate_grammar(grammar))  # no model: unresolvable
    assert runtime.validate_grammar(grammar) == []


# ------------------------------------------------------------------ grammar building


def test_literals_escape_everything_gbnf_treats_specially():
    tricky = ['say "hi"', "back\\slash", "two\nlines", "tab\there", "bell\x07", "naïve 日本"]
    grammar = choice_grammar(tricky)
    assert validate_grammar(grammar) == []
    assert gbnf_literal('a"b\\c\n') == '"a\\"b\\\\c\\n"'
    with pytest.raises(BadRequestError):
        choice_grammar([])
    with pytest.raises(BadRequestError):
        choice_grammar(["a", ""])


def test_choice_output_is_exactly_one_choice(runtime):
    choices = ('He said "yes"', "no, never", "maybe\\later")
    sampling = Constraints(choices=choices).apply(replace(HOT, max_tokens=16))
    for seed in range(8):
        _, done = complete(runtime, "Answer:", replace(sampling, seed=seed))
        assert done.text in choices
        assert done.finish_reason is FinishReason.STOP


def _as_regex(rule: str) -> re.Pattern[str]:
    return re.compile(re.sub(r'"([^"]*)"', lambda m: re.escape(m.group(1)), rule)
                      .replace(" ", ""))


@pytest.mark.parametrize("lo, hi", [
    (0, 10), (-5, 5), (-120, -3), (7, 7), (13, 987), (99, 100), (0, None), (25, None),
    (None, 0), (None, -10), (None, None),
])
def test_integer_range_rule_matches_exactly_the_range(lo, hi):
    pattern = _as_regex(integer_range_rule(lo, hi))
    low = -1500 if lo is None else lo - 40
    high = 1500 if hi is None else hi + 40
    for value in range(low, high + 1):
        inside = (lo is None or value >= lo) and (hi is None or value <= hi)
        assert bool(pattern.fullmatch(str(value))) == inside, value
    for text in ("-0", "007", "+1", ""):
        assert not pattern.fullmatch(text)


@pytest.mark.parametrize("schema, message", [
    ('{"type": "object",', "not valid JSON"),
    ('{"type": "strin"}', 'at /type: "strin" is not a JSON type'),
    ({"properties": {"n": {"type": "integer", "minimum": "1"}}},
     "at /properties/n/minimum: minimum must be a number"),
    ({"$ref": "https://example.com/s.json"}, "only references within the schema"),
    ({"$ref": "#/$defs/missing"}, "cannot be turned into a grammar"),
    ({"type": "integer", "minimum": 5, "maximum": 1}, "range is empty"),
    ("[1, 2]", "top level must be an object"),
    ({"enum": []}, "enum must be a non-empty array"),
])
def test_invalid_schema_is_a_clear_bad_request(schema, message):
    with pytest.raises(BadRequestError) as info:
        schema_to_grammar(schema)
    assert message in str(info.value)


def test_only_one_grammar_source():
    with pytest.raises(BadRequestError, match="only one"):
        Constraints(grammar='root ::= "a"', choices=("a", "b")).compiled_grammar()


# --------------------------------------------------- constrained sampling, many seeds

SCHEMA = {
    "type": "object",
    "properties": {"mood": {"enum": ["happy", "sad", "calm"]},
                   "level": {"type": "integer", "minimum": 1, "maximum": 5}},
    "required": ["mood", "level"],
    "additionalProperties": False,
}
LIST_GRAMMAR = 'root ::= "[" item ("," item){0,2} "]"\nitem ::= [0-9] | [1-9] [0-9]\n'


def test_schema_output_always_parses_and_validates(runtime):
    sampling = Constraints(json_schema=SCHEMA).apply(replace(HOT, max_tokens=40))
    seen = set()
    for seed in range(30):
        _, done = complete(runtime, "Describe your day as JSON:", replace(sampling, seed=seed),
                           session_id="schema")
        assert done.finish_reason is FinishReason.STOP, done.text
        value = json.loads(done.text)
        assert set(value) == {"mood", "level"}
        assert value["mood"] in ("happy", "sad", "calm")
        assert type(value["level"]) is int and 1 <= value["level"] <= 5
        seen.add(done.text)
    assert len(seen) > 3  # the seeds really sampled different outputs


def test_grammar_output_always_parses(runtime):
    sampling = replace(HOT, grammar=LIST_GRAMMAR, max_tokens=12)
    for seed in range(40):
        _, done = complete(runtime, "Some numbers:", replace(sampling, seed=seed),
                           session_id="list")
        assert done.finish_reason is FinishReason.STOP, done.text
        numbers = json.loads(done.text)
        assert 1 <= len(numbers) <= 3 and all(0 <= n <= 99 for n in numbers)


def test_same_seed_gives_same_constrained_output(runtime):
    sampling = Constraints(json_schema=SCHEMA, ban=("sad",)).apply(
        replace(HOT, max_tokens=40, seed=77))
    texts = {complete(runtime, "Mood JSON:", sampling, session_id=f"same{i}")[1].text
             for i in range(2)}
    assert len(texts) == 1


# ------------------------------------------------------------------ banned phrases


def chat(rt: Runtime, sampling: SamplingParams, session: str = "ban") -> tuple[list, Done]:
    return run(rt.chat(ChatRequest(STORY, sampling, session_id=session), NEVER))


def test_a_banned_phrase_spanning_tokens_is_rolled_back(runtime):
    greedy = replace(GREEDY, max_tokens=30)
    _, plain = chat(runtime, greedy)
    assert "the forest" in plain.text  # what the model writes when nothing is banned
    events, done = chat(runtime, replace(greedy, ban_phrases=("the forest",)))
    rollbacks = [e for e in events if isinstance(e, Rollback)]
    assert rollbacks and rollbacks[0].phrase == "the forest"
    assert rollbacks[0].n_tokens >= 1 and rollbacks[0].n_chars >= len("the")
    assert "the forest" not in done.text
    assert streamed_text(events) == done.text
    assert done.stats.rollbacks >= len(rollbacks)
    assert done.stats.generated_tokens == len(output_tokens(events))


@pytest.mark.parametrize("any_case", [False, True])
def test_banned_phrases_never_appear_over_seeds(runtime, any_case):
    phrases = ("cat", "The")
    sampling = replace(HOT, temperature=0.8, max_tokens=32, ban_phrases=phrases,
                       ban_any_case=any_case)
    for seed in range(4):
        events, done = chat(runtime, replace(sampling, seed=seed), session=f"b{seed}")
        text = done.text.casefold() if any_case else done.text
        for phrase in phrases:
            assert (phrase.casefold() if any_case else phrase) not in text
        assert streamed_text(events) == done.text
        assert done.finish_reason is not FinishReason.BANNED


def test_tokens_containing_a_phrase_are_banned_everywhere(runtime):
    greedy = replace(GREEDY, max_tokens=12)
    _, plain = chat(runtime, greedy)
    assert " cat" in plain.text
    events, done = chat(runtime, replace(greedy, ban_phrases=("cat",)))
    assert "cat" not in done.text
    # " cat" is one token: banned up front, so nothing had to be rolled back.
    assert done.stats.rollbacks == 0 and not any(isinstance(e, Rollback) for e in events)
    exact = set(runtime._tokens_containing(PhraseGuard(["cat"])).tolist())
    folded = set(runtime._tokens_containing(PhraseGuard(["cat"], any_case=True)).tolist())
    tokenize = client_tokenizer(runtime)
    lower, upper = word_tokens("cat", tokenize), word_tokens("Cat", tokenize)
    assert set(lower) <= exact and not set(upper) & exact
    assert set(lower + upper) <= folded


def test_when_the_grammar_allows_only_banned_text_generation_ends_banned(runtime):
    sampling = replace(GREEDY, grammar=choice_grammar(["yes", "no"]), max_tokens=2,
                       ban_phrases=("yes", "no"))
    events, done = complete(runtime, "Answer:", sampling)
    assert done.finish_reason is FinishReason.BANNED
    assert "yes" not in done.text and "no" not in done.text
    assert streamed_text(events) == done.text


# ------------------------------------------------------------------ logit bias


def test_word_bias_applies_to_the_word_with_and_without_a_space(runtime):
    tokenize = client_tokenizer(runtime)
    ids = word_tokens("banana", tokenize)
    assert ids == list(dict.fromkeys([tokenize("banana")[0], tokenize(" banana")[0]]))
    assert len(ids) == 2
    assert dict(resolve_logit_bias({"banana": 5.0, 17: -1.0}, tokenize)) == {
        ids[0]: 5.0, ids[1]: 5.0, 17: -1.0}
    sampling = Constraints(logit_bias=(("banana", 30.0),)).apply(
        replace(GREEDY, max_tokens=3), tokenize)
    _, done = complete(runtime, "The capital of France is", sampling)
    assert done.text.lstrip().startswith("banana")


def test_negative_word_bias_removes_the_likely_word(runtime):
    tokenize = client_tokenizer(runtime)
    _, plain = complete(runtime, "The capital of France is", replace(GREEDY, max_tokens=2))
    assert plain.text.startswith(" Paris")
    sampling = Constraints(logit_bias=(("Paris", -100.0),)).apply(
        replace(GREEDY, max_tokens=2), tokenize)
    _, done = complete(runtime, "The capital of France is", sampling)
    assert not done.text.startswith(" Paris")


def test_out_of_vocabulary_bias_is_a_bad_request(runtime):
    with pytest.raises(BadRequestError, match="not in the model's vocabulary"):
        complete(runtime, "x", replace(GREEDY, logit_bias=((10**7, 1.0),), max_tokens=1))


# ------------------------------------------------------------------ probabilities


def test_alternatives_are_the_raw_model_distribution(runtime):
    prompt = "The capital of France is"
    plain, _ = complete(runtime, prompt, replace(GREEDY, n_probs=5, max_tokens=1))
    first = next(e for e in plain if isinstance(e, Token))
    top = first.alternatives[0].token_id
    # A bias and a ban change what is sampled, never the reported probabilities.
    steered = replace(GREEDY, n_probs=5, max_tokens=1, logit_bias=((top, -100.0),),
                      ban_phrases=("zzzq",))
    events, _ = complete(runtime, prompt, steered)
    token = next(e for e in events if isinstance(e, Token))
    assert token.token_id != top
    assert [a.token_id for a in token.alternatives] == [a.token_id for a in first.alternatives]
    for a, b in zip(token.alternatives, first.alternatives, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-6)
    chosen = next(a for a in first.alternatives if a.token_id == token.token_id)
    assert token.logprob == pytest.approx(chosen.logprob, abs=1e-6)
    # ...and they agree with scoring each alternative as a one-token continuation.
    prompt_tokens = runtime.tokenize(prompt, add_bos=True, special=False)
    scores = runtime.score(prompt_tokens, [[a.token_id] for a in first.alternatives])
    assert scores == pytest.approx([a.logprob for a in first.alternatives], abs=1e-4)
    assert sum(math.exp(a.logprob) for a in first.alternatives) <= 1.0 + 1e-6


def test_score_of_a_continuation_is_the_sum_of_its_token_logprobs(runtime):
    prompt = "Once upon a time"
    events, _ = complete(runtime, prompt, replace(GREEDY, n_probs=1, max_tokens=6))
    tokens = [e for e in events if isinstance(e, Token) and e.token_id >= 0]
    prompt_tokens = runtime.tokenize(prompt, add_bos=True, special=False)
    generated = [t.token_id for t in tokens]
    other = runtime.tokenize(" there was a dragon", special=False)
    score, other_score = runtime.score(prompt_tokens, [generated, other])
    assert score == pytest.approx(sum(t.logprob for t in tokens), abs=0.05)
    assert other_score < score  # greedy is the most likely continuation of its length
    with pytest.raises(BadRequestError):
        runtime.score(prompt_tokens, [[]])


# ------------------------------------------------------------------ branching


def test_branching_from_an_alternative_keeps_the_prefix(runtime):
    prompt = "The capital of France is"
    sampling = replace(GREEDY, n_probs=3, max_tokens=8)
    events, original = complete(runtime, prompt, sampling, session_id="branch")
    tokens = [e for e in events if isinstance(e, Token) and e.token_id >= 0]
    k = 2
    alternative = tokens[k].alternatives[1]
    assert alternative.token_id != tokens[k].token_id
    request = branch_request(CompletionRequest(prompt, sampling, session_id="branch"),
                             [t.token_id for t in tokens], k, alternative.token_id)
    branched, done = run(runtime.complete(request, NEVER))
    ids = output_tokens(branched)
    assert ids[:k] == [t.token_id for t in tokens[:k]]
    assert ids[k] == alternative.token_id
    assert len(ids) > k + 1  # the model continued after the alternative
    kept_text = "".join(t.text for t in tokens[:k])
    assert done.text.startswith(kept_text + alternative.text)
    assert done.text != original.text
    prompt_len = len(runtime.tokenize(prompt, add_bos=True, special=False))
    assert done.stats.reused_tokens >= prompt_len + k - 1  # prefix reused from the KV cache


def test_forced_tokens_that_break_the_grammar_are_refused(runtime):
    tokenize = client_tokenizer(runtime)
    sampling = replace(GREEDY, grammar=choice_grammar(["yes", "no"]), max_tokens=4)
    with pytest.raises(BadRequestError, match="not allowed by the grammar"):
        complete(runtime, "Answer:", sampling, forced_prefix_tokens=tuple(tokenize("maybe")))
    _, done = complete(runtime, "Answer:", sampling,
                       forced_prefix_tokens=tuple(tokenize("ye")), echo_forced=True)
    assert done.text == "yes"


def test_constraints_with_a_second_vocabulary(gemma_path):
    """Gemma's 262k-token vocabulary: schema grammar, ban and probabilities together."""
    rt = Runtime()
    for _ in rt.load(LoadSettings(path=str(gemma_path), n_ctx=512, n_threads=1)):
        pass
    try:
        sampling = Constraints(json_schema=SCHEMA, ban=("calm",)).apply(
            replace(HOT, max_tokens=40, n_probs=2))
        for seed in range(3):
            events, done = complete(rt, "Describe your day as JSON:", replace(sampling, seed=seed))
            value = json.loads(done.text)
            assert value["mood"] in ("happy", "sad") and 1 <= value["level"] <= 5
            assert streamed_text(events) == done.text
            tokens = [e for e in events if isinstance(e, Token) and e.token_id >= 0]
            assert all(len(t.alternatives) == 2 and t.logprob <= 0 for t in tokens)
    finally:
        rt.unload()
