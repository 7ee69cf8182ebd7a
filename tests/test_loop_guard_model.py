"""The degeneration guard and the DRY/XTC samplers with the real bundled models: known loops
of SmolLM2-135M end without a repeat (and loop with the guard off), output without a loop is
byte-identical with the guard on and off, the batched path is guarded too."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace

import pytest

from engine.errors import BadRequestError
from engine.events import (
    Done,
    FinishReason,
    Rollback,
    SeqDone,
    SeqRollback,
    SeqToken,
    Token,
    fold_text,
)
from engine.options import (
    GREEDY,
    BatchItem,
    BatchRequest,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    LoadSettings,
)
from engine.runtime.in_process import InProcessEngine

# Greedy SmolLM2 "translates" this into one clause repeated to the token limit.
GERMAN = ("Translate to German: Permission is hereby granted, free of charge, to any person "
          "obtaining a copy of this software.")
# ...and continues this prompt with the same sentence again and again.
CATS = "The cat sat on the mat. " * 6
PLAIN = "Write one sentence about suffix trees."


def repeated_runs(text: str, n: int = 8) -> int:
    """Runs of ``n`` words that occur more than once (a loop has many)."""
    words = re.findall(r"\w+", text.casefold())
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return sum(1 for c in grams.values() if c > 1)


def repeated_sentences(text: str, min_words: int = 4) -> int:
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for part in re.split(r"(?<=[.!?])\s+|\n+", text):
        words = tuple(re.findall(r"\w+", part.casefold()))
        if len(words) >= min_words:
            repeats += words in seen
            seen.add(words)
    return repeats


def engine_for(path) -> InProcessEngine:
    engine = InProcessEngine()
    for _ in engine.load(LoadSettings(str(path), n_ctx=2048, n_threads=2)):
        pass
    return engine


@pytest.fixture(scope="module")
def smol(smol_path):
    engine = engine_for(smol_path)
    yield engine
    engine.close()


def chat(engine, text: str, session: str, **sampling):
    request = ChatRequest((ChatMessage("user", text),),
                          replace(GREEDY, max_tokens=200, **sampling), session_id=session)
    return collect(engine.chat(request))


def collect(events) -> tuple[Done, list]:
    parts: list[str] = []
    seen = []
    done = None
    for event in events:
        fold_text(parts, event)
        seen.append(event)
        if isinstance(event, Done):
            done = event
    assert done is not None
    assert "".join(parts) == done.text  # the Rollback events retract exactly what was undone
    return done, seen


def test_the_known_loop_ends_without_a_repeat_and_loops_with_the_guard_off(smol):
    off, off_events = chat(smol, GERMAN, "off", loop_guard=False)
    assert off.finish_reason is FinishReason.LENGTH and repeated_runs(off.text) > 10
    assert not any(isinstance(e, Rollback) for e in off_events)

    on, events = chat(smol, GERMAN, "on")
    assert repeated_runs(on.text) == 0 and repeated_sentences(on.text) == 0
    assert on.finish_reason is FinishReason.STOP and on.stats.loops >= 1
    rollbacks = [e for e in events if isinstance(e, Rollback)]
    assert rollbacks and all(r.repeating for r in rollbacks)
    assert "Ausforderbahn" in rollbacks[0].phrase
    # What was kept is what the unguarded model wrote before the loop began.
    assert off.text.startswith(on.text[:80])


def test_a_model_that_keeps_looping_is_stopped_with_its_own_finish_reason(smol):
    request = CompletionRequest(CATS, replace(GREEDY, max_tokens=120), session_id="cats")
    done, _ = collect(smol.complete(request))
    assert done.finish_reason is FinishReason.REPEATING and done.stats.loops == 3
    assert repeated_sentences(done.text) == 0 and repeated_runs(done.text) == 0
    off, _ = collect(smol.complete(replace(request, sampling=replace(request.sampling,
                                                                      loop_guard=False))))
    assert off.finish_reason is FinishReason.LENGTH and repeated_sentences(off.text) > 3


@pytest.mark.parametrize(("model", "prompt"), [
    ("smol", PLAIN),
    # Gemma 3 270M loops on most short prompts (the guard catches them); this one it does not.
    ("gemma", "The river Thames flows through London, and"),
])
def test_greedy_output_without_a_loop_is_byte_identical_with_the_guard_on_and_off(
        model, prompt, smol, gemma_path):
    engine = smol if model == "smol" else engine_for(gemma_path)
    try:
        outputs = []
        for guard in (True, False):
            sampling = replace(GREEDY, max_tokens=120, loop_guard=guard)
            if model == "smol":
                request = ChatRequest((ChatMessage("user", prompt),), sampling,
                                      session_id=f"plain-{guard}")
                done, events = collect(engine.chat(request))
            else:
                done, events = collect(engine.complete(CompletionRequest(
                    prompt, sampling, session_id=f"plain-{guard}")))
            outputs.append((done.text, [e.token_id for e in events if isinstance(e, Token)]))
            assert not any(isinstance(e, Rollback) for e in events)
            assert done.stats.loops == 0
        assert outputs[0] == outputs[1]
        assert len(outputs[0][1]) >= 60
    finally:
        if engine is not smol:
            engine.close()


def test_the_batched_path_is_guarded_too(smol):
    prompts = [smol.chat_prompt([ChatMessage("user", t)]).tokens for t in (GERMAN, PLAIN)]
    items = tuple(BatchItem(p) for p in prompts)

    def run(guard: bool) -> tuple[dict[int, SeqDone], dict[int, str], list[SeqRollback]]:
        done: dict[int, SeqDone] = {}
        streamed: dict[int, str] = {0: "", 1: ""}
        rollbacks = []
        request = BatchRequest(items, replace(GREEDY, max_tokens=200, loop_guard=guard),
                               n_parallel=2)
        for event in smol.generate_batch(request):
            if isinstance(event, SeqToken):
                streamed[event.index] += event.text
            elif isinstance(event, SeqRollback):
                rollbacks.append(event)
                text = streamed[event.index]
                streamed[event.index] = text[:len(text) - event.n_chars]
            elif isinstance(event, SeqDone):
                done[event.index] = event
        return done, streamed, rollbacks

    off, _, none = run(False)
    assert repeated_runs(off[0].text) > 10 and not none
    on, streamed, rollbacks = run(True)
    assert repeated_runs(on[0].text) == 0 and on[0].loops >= 1
    assert on[0].finish_reason is FinishReason.STOP
    assert rollbacks and {r.index for r in rollbacks} == {0}
    assert streamed[0] == on[0].text  # SeqRollback retracts exactly what was undone
    assert on[1].text == off[1].text and on[1].loops == 0  # no loop: untouched


def test_the_batched_path_stops_a_model_that_keeps_looping(smol):
    prompt = tuple(smol.tokenize(CATS, add_bos=True, special=False))
    request = BatchRequest((BatchItem(prompt),), replace(GREEDY, max_tokens=120))
    done = [e for e in smol.generate_batch(request) if isinstance(e, SeqDone)]
    assert done[0].finish_reason is FinishReason.REPEATING and done[0].loops == 3
    assert repeated_sentences(done[0].text) == 0


def test_dry_and_xtc_change_the_output_and_bad_values_are_refused(smol):
    plain, _ = chat(smol, GERMAN, "dry0", loop_guard=False)
    dry, _ = chat(smol, GERMAN, "dry1", loop_guard=False, dry_multiplier=0.8,
                  dry_penalty_last_n=-1)
    assert dry.text != plain.text
    assert repeated_runs(dry.text) < repeated_runs(plain.text)
    xtc, _ = chat(smol, GERMAN, "xtc", loop_guard=False, xtc_probability=1.0,
                  xtc_threshold=0.05, seed=1)
    assert xtc.text != plain.text
    breakers, _ = chat(smol, GERMAN, "dry2", loop_guard=False, dry_multiplier=0.8,
                       dry_penalty_last_n=-1, dry_sequence_breakers=(",",))
    assert breakers.text != dry.text  # the breakers reach llama.cpp
    with pytest.raises(BadRequestError, match="dry_base"):
        chat(smol, GERMAN, "bad", dry_base=0.5)


def test_the_cli_says_when_the_model_was_stopped_for_repeating():
    greedy = ["--temperature", "0", "--repeat-penalty", "1", "--max-tokens", "120",
              "--threads", "1"]

    def verso(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "engine", "generate", CATS, *greedy,
                               *extra], capture_output=True, text=True, timeout=300)

    result = verso()
    assert result.returncode == 0, result.stderr
    assert "[stopped: the model was repeating itself]" in result.stderr
    assert repeated_sentences(result.stdout) == 0
    off = verso("--no-loop-guard")
    assert "repeating itself" not in off.stderr and repeated_sentences(off.stdout) > 3
