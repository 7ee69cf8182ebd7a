"""The llama.cpp plumbing shared by the runtime, the batched decoder and attention capture:
the pure helpers against reference implementations, and a cancel that lands inside
``llama_decode`` (through the abort callback) with the real bundled model."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest

from engine.errors import Cancelled, VersoError
from engine.events import Done, ErrorKind, FinishReason, SeqDone
from engine.options import GREEDY, BatchItem, BatchRequest, CompletionRequest, KVType, LoadSettings
from engine.runtime.batch import generate_batch
from engine.runtime.llama_plumbing import (
    DECODE_ABORTED,
    common_prefix,
    decode_failure,
    ggml_kv_type,
    logsumexp,
    shared_prefix,
    thread_counts,
)
from engine.runtime.runtime import Runtime
from engine.system import physical_cores

NEVER = lambda: False  # noqa: E731


def _shared_prefix_reference(prompts):
    """The batched decoder's former ``common_prefix``, kept as the specification."""
    if len(prompts) < 2:
        return 0
    first = prompts[0]
    n = min(len(p) for p in prompts) - 1
    for i in range(max(0, n)):
        if any(p[i] != first[i] for p in prompts):
            return i
    return max(0, n)


def test_shared_prefix_leaves_each_prompt_a_token_of_its_own():
    assert shared_prefix([]) == 0
    assert shared_prefix([[1, 2, 3]]) == 0
    assert shared_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix([[1, 2, 3, 4], [1, 2, 9]]) == 2
    assert shared_prefix([[1], [1, 2]]) == 0
    assert shared_prefix([[], [1]]) == 0
    rng = random.Random(7)
    for _ in range(2000):
        stem = [rng.randrange(3) for _ in range(rng.randrange(6))]
        prompts = [stem[:rng.randrange(len(stem) + 1)] + [rng.randrange(3)
                                                           for _ in range(rng.randrange(4))]
                   for _ in range(rng.randrange(1, 5))]
        assert shared_prefix(prompts) == _shared_prefix_reference(prompts), prompts


def test_common_prefix_counts_the_shared_leading_tokens():
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2, 3], [1, 2, 3]) == 3
    assert common_prefix([1, 2, 3], [1, 2]) == 2
    assert common_prefix([1, 2, 3], [1, 5, 3]) == 1


def test_logsumexp_is_stable_and_exact():
    values = np.array([1000.0, 999.0, -50.0], dtype=np.float32)
    expected = 1000.0 + math.log(1 + math.exp(-1.0) + math.exp(-1050.0))
    assert logsumexp(values) == pytest.approx(expected)
    small = np.array([0.5, -1.25, 2.0])
    assert logsumexp(small) == pytest.approx(math.log(np.exp(small).sum()))


def test_a_failed_decode_is_cancelled_only_when_aborted_by_the_cancel_check():
    assert isinstance(decode_failure(DECODE_ABORTED, "here"), Cancelled)
    error = decode_failure(DECODE_ABORTED, "here", aborted_by_cancel=False)
    assert isinstance(error, VersoError) and error.kind is ErrorKind.INTERNAL
    error = decode_failure(1, "at position 7")
    assert isinstance(error, VersoError)
    assert str(error) == "llama_decode failed with code 1 at position 7."


def test_context_parameters_from_the_load_settings():
    assert [ggml_kv_type(k) for k in KVType] == [1, 8, 2]  # ggml F16, Q8_0, Q4_0
    assert ggml_kv_type("q8_0") == 8
    cores = physical_cores()
    assert thread_counts(None) == (cores, cores)
    assert thread_counts(LoadSettings(path="m.gguf", n_threads=3)) == (3, 3)
    assert thread_counts(LoadSettings(path="m.gguf", n_threads_batch=5)) == (cores, 5)


# ------------------------------------------------------------------ cancel inside llama_decode


def _cancel_on_second_check():
    """False for the check before the first slice, True from then on: the first True comes
    from llama.cpp's abort callback while that slice is decoded."""
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 1

    return cancel, calls


@pytest.fixture(scope="module")
def runtime(smol_path):
    rt = Runtime()
    for _ in rt.load(LoadSettings(path=str(smol_path), n_ctx=2048)):
        pass
    yield rt
    rt.unload()


def _done(events) -> Done:
    *_, last = events
    assert isinstance(last, Done)
    return last


LONG_PROMPT = "Notes on the history of printing. " + " ".join(
    f"Item {i}: movable type spread from Mainz to Venice." for i in range(25))


def test_a_cancel_inside_prompt_evaluation_aborts_the_decode(runtime: Runtime):
    sampling = replace(GREEDY, max_tokens=6)
    request = CompletionRequest(LONG_PROMPT, sampling, session_id="abort")
    reference = _done(runtime.complete(request, NEVER))
    runtime.forget_session("abort")

    cancel, calls = _cancel_on_second_check()
    done = _done(runtime.complete(request, cancel))
    assert done.finish_reason is FinishReason.CANCELLED
    assert len(calls) >= 2  # the abort callback asked, inside the first slice
    assert done.stats.evaluated_tokens == 0  # the aborted slice was taken out of the cache
    assert runtime._abort is not None and not runtime._abort.armed

    again = _done(runtime.complete(request, NEVER))
    assert again.finish_reason is reference.finish_reason and again.text == reference.text


@pytest.mark.parametrize("n_prompts", [1, 2], ids=["prefilling", "shared-prefix"])
def test_a_cancel_inside_a_batched_prefill_cancels_every_item(runtime: Runtime, n_prompts):
    prompts = [tuple(runtime.tokenize(LONG_PROMPT + f" Question {i}: what spread?",
                                      add_bos=True, special=False)) for i in range(n_prompts)]
    cancel, calls = _cancel_on_second_check()
    events = list(generate_batch(runtime, BatchRequest(
        tuple(BatchItem(p) for p in prompts), replace(GREEDY, max_tokens=4), n_parallel=1),
        cancel))
    assert len(calls) >= 2
    seq_done = [e for e in events if isinstance(e, SeqDone)]
    assert sorted(e.index for e in seq_done) == list(range(n_prompts))
    assert all(e.finish_reason is FinishReason.CANCELLED and not e.n_tokens for e in seq_done)
    assert isinstance(events[-1], Done) and events[-1].finish_reason is FinishReason.CANCELLED
