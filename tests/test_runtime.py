"""The runtime in-process, with the real bundled model."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from engine.errors import BadRequestError, ContextOverflowError
from engine.events import ContextTrimmed, Done, FinishReason, Token
from engine.options import (
    GREEDY,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    ContextPolicy,
    LoadSettings,
)
from engine.runtime.runtime import Runtime

NEVER = lambda: False  # noqa: E731


def _load(runtime: Runtime, path, **kw) -> Runtime:
    for _ in runtime.load(LoadSettings(path=str(path), **kw)):
        pass
    return runtime


@pytest.fixture(scope="module")
def runtime(smol_path):
    rt = _load(Runtime(), smol_path, n_ctx=2048)
    yield rt
    rt.unload()


def run(events) -> tuple[list[Token], Done, list]:
    tokens, others, done = [], [], None
    for event in events:
        if isinstance(event, Token):
            tokens.append(event)
        elif isinstance(event, Done):
            done = event
        else:
            others.append(event)
    assert done is not None
    return tokens, done, others


def chat(rt: Runtime, messages, session="s", sampling=GREEDY, **kw):
    request = ChatRequest(tuple(messages), replace(sampling, max_tokens=kw.pop("max_tokens", 24)),
                          session_id=session, **kw)
    return run(rt.chat(request, NEVER))


QUESTIONS = ["What is the capital of France?", "And of Italy?", "Which one is bigger?"]


def _conversation(rt: Runtime, session: str) -> list[Done]:
    messages = [ChatMessage("system", "You are a helpful assistant.")]
    results = []
    for question in QUESTIONS:
        messages.append(ChatMessage("user", question))
        _, done, _ = chat(rt, messages, session=session)
        results.append(done)
        messages.append(ChatMessage("assistant", done.text))
    return results


def test_follow_up_turns_evaluate_only_new_tokens(runtime):
    results = _conversation(runtime, "reuse")
    first, second, third = results
    assert first.stats.reused_tokens == 0
    for previous, turn in ((first, second), (second, third)):
        assert turn.stats.reused_tokens >= previous.stats.prompt_tokens
        assert turn.stats.evaluated_tokens == turn.stats.prompt_tokens - turn.stats.reused_tokens
        assert turn.stats.evaluated_tokens < 30


def test_greedy_output_is_identical_with_and_without_reuse(smol_path):
    """Bit-exact in batch-invariant mode (flash attention off; see Runtime._prepare_prompt)."""
    reusing = _load(Runtime(batch_invariant=True), smol_path, n_ctx=2048, flash_attn=False)
    fresh = _load(Runtime(reuse_kv=False), smol_path, n_ctx=2048, flash_attn=False)
    try:
        with_reuse = _conversation(reusing, "parity")
        without = _conversation(fresh, "parity")
        assert all(d.stats.reused_tokens == 0 for d in without)
        assert all(d.stats.reused_tokens > 0 for d in with_reuse[1:])
        assert [d.text for d in without] == [d.text for d in with_reuse]
    finally:
        reusing.unload()
        fresh.unload()


def test_switching_sessions_restores_the_kv_snapshot(runtime):
    a = [ChatMessage("user", "Tell me about cats.")]
    b = [ChatMessage("user", "Tell me about the sea.")]
    _, done_a, _ = chat(runtime, a, session="A")
    _, _done_b, _ = chat(runtime, b, session="B")
    a += [ChatMessage("assistant", done_a.text), ChatMessage("user", "Why?")]
    _, again, _ = chat(runtime, a, session="A")
    assert again.stats.restored_snapshot
    assert again.stats.reused_tokens >= done_a.stats.prompt_tokens
    assert "A" not in runtime.snapshots and "B" in runtime.snapshots


def test_stop_string_ends_the_reply_before_it(runtime):
    messages = [ChatMessage("user", "Count from 1 to 10, separated by commas.")]
    _, plain, _ = chat(runtime, messages, session="stop0", max_tokens=40)
    assert "3" in plain.text
    sampling = replace(GREEDY, stop=("3",))
    _, done, _ = chat(runtime, messages, session="stop1", sampling=sampling, max_tokens=40)
    assert done.finish_reason is FinishReason.STOP
    assert done.text == plain.text[: plain.text.index("3")]


def test_max_tokens_gives_length(runtime):
    tokens, done, _ = chat(runtime, [ChatMessage("user", "Write a long story.")], max_tokens=5)
    assert done.finish_reason is FinishReason.LENGTH
    assert done.stats.generated_tokens == 5
    assert "".join(t.text for t in tokens) == done.text


def test_same_seed_gives_same_sample(runtime):
    sampling = replace(GREEDY, temperature=1.0, top_k=0, top_p=1.0, seed=1234)
    request = CompletionRequest("Once upon a time", replace(sampling, max_tokens=20))
    texts = {run(runtime.complete(replace(request, session_id=f"seed{i}"), NEVER))[1].text
             for i in range(2)}
    assert len(texts) == 1


def test_token_probabilities_are_log_probabilities(runtime):
    sampling = replace(GREEDY, n_probs=5, max_tokens=6)
    tokens, _, _ = run(runtime.complete(CompletionRequest("The sky is", sampling), NEVER))
    for token in tokens:
        if token.token_id < 0:
            continue
        assert len(token.alternatives) == 5
        total = sum(math.exp(a.logprob) for a in token.alternatives)
        assert 0 < total <= 1.0001
        assert token.alternatives[0].token_id == token.token_id  # greedy picks the top one
        assert token.logprob == pytest.approx(token.alternatives[0].logprob)


def test_grammar_constrains_the_output(runtime):
    grammar = 'root ::= "yes" | "no"'
    sampling = replace(GREEDY, grammar=grammar, max_tokens=8)
    _, done, _ = chat(runtime, [ChatMessage("user", "Is water wet?")], sampling=sampling)
    assert done.text in ("yes", "no")


def test_invalid_grammar_is_a_bad_request(runtime):
    with pytest.raises(BadRequestError):
        chat(runtime, [ChatMessage("user", "x")], sampling=replace(GREEDY, grammar="root ::= ("))


def test_prompt_too_long_is_refused_with_the_overflow(smol_path):
    rt = _load(Runtime(), smol_path, n_ctx=256)
    try:
        long = ChatMessage("user", "word " * 400)
        with pytest.raises(ContextOverflowError) as info:
            chat(rt, [long], max_tokens=16)
        assert info.value.over > 0
        assert f"{info.value.over} tokens over" in str(info.value)
        assert "drop the oldest turns" in str(info.value)  # the policy that would help
        with pytest.raises(ContextOverflowError) as info:
            chat(rt, [long], policy=ContextPolicy.DROP_OLDEST, max_tokens=16)
        assert "drop the oldest" not in str(info.value)
        assert "Every older turn is already dropped" in str(info.value)
        with pytest.raises(ContextOverflowError) as info:
            list(rt.complete(CompletionRequest("word " * 400, replace(GREEDY, max_tokens=16)),
                             NEVER))
        assert "turn" not in str(info.value) and "raise the context size" in str(info.value)
    finally:
        rt.unload()


def test_drop_oldest_keeps_system_prompt_and_reports_it(smol_path):
    rt = _load(Runtime(), smol_path, n_ctx=256)
    try:
        messages = [ChatMessage("system", "Be brief.")]
        for i in range(6):
            messages += [ChatMessage("user", f"Question {i}: " + "blah " * 20),
                         ChatMessage("assistant", "Answer " + "ok " * 15)]
        messages.append(ChatMessage("user", "Final question?"))
        _, done, others = chat(rt, messages, policy=ContextPolicy.DROP_OLDEST, max_tokens=16)
        trimmed = [e for e in others if isinstance(e, ContextTrimmed)]
        assert trimmed and trimmed[0].dropped_messages >= 2
        assert trimmed[0].dropped_messages % 2 == 0  # whole turns
        assert done.stats.dropped_messages == trimmed[0].dropped_messages
        assert done.stats.prompt_tokens <= 256 - 16
        history = rt._history["s"].text
        assert history.startswith("<|im_start|>system\nBe brief.")
        assert "Final question?" in history
    finally:
        rt.unload()


def test_raw_completion_with_gemma(gemma_path):
    rt = _load(Runtime(), gemma_path, n_ctx=512)
    try:
        _, done, _ = run(rt.complete(
            CompletionRequest("La capitale de la France est", replace(GREEDY, max_tokens=8)),
            NEVER))
        assert done.stats.generated_tokens > 0
        assert done.text.strip()
    finally:
        rt.unload()
