"""Attention capture from llama.cpp (``engine.runtime.attention``), with the real models."""

from __future__ import annotations

import pickle
import random
from dataclasses import replace

import numpy as np
import pytest

from engine.errors import VersoError
from engine.events import AttentionMap, Done, ErrorKind
from engine.options import GREEDY, CompletionRequest, LoadSettings
from engine.runtime.runtime import Cancelled, Runtime
from engine.worker import EngineClient

ROW_TOLERANCE = 1e-3


def _load(path, n_ctx: int = 1024) -> Runtime:
    runtime = Runtime()
    for _ in runtime.load(LoadSettings(path=str(path), n_ctx=n_ctx, n_threads=1)):
        pass
    return runtime


@pytest.fixture(scope="module")
def smol(smol_path):
    runtime = _load(smol_path)
    yield runtime
    runtime.unload()


@pytest.fixture(scope="module")
def gemma(gemma_path):
    runtime = _load(gemma_path)
    yield runtime
    runtime.unload()


def _header(runtime: Runtime) -> tuple[int, int, int]:
    meta = runtime._llama.metadata
    arch = meta["general.architecture"]
    return (int(meta[f"{arch}.block_count"]), int(meta[f"{arch}.attention.head_count"]),
            int(meta[f"{arch}.attention.head_count_kv"]))


def _repeated(runtime: Runtime, length: int = 16) -> tuple[list[int], int]:
    """BOS (when the model wants one), then a random token sequence twice. Returns the
    tokens and where the first copy starts."""
    rnd = random.Random(0)
    sequence = [rnd.randrange(1000, 20000) for _ in range(length)]
    llm = runtime._llama
    head = [llm.token_bos()] if llm._model.add_bos_token() else []
    return head + sequence + sequence, len(head)


def assert_distributions(att: AttentionMap) -> None:
    assert att.weights.dtype == np.float32
    assert np.isfinite(att.weights).all()
    assert att.weights.min() >= 0.0
    sums = att.weights.sum(axis=-1, dtype=np.float64)
    assert np.abs(sums - 1.0).max() < ROW_TOLERANCE


@pytest.mark.parametrize("model", ["smol", "gemma"])
def test_shape_is_layers_by_heads_by_context_and_rows_sum_to_one(model, request):
    runtime = request.getfixturevalue(model)
    n_layers, n_heads, n_kv_heads = _header(runtime)
    tokens, _ = _repeated(runtime)
    for query in (0, 7, len(tokens) - 1):
        att = runtime.attention(tokens, query)
        assert att.weights.shape == (n_layers, n_heads, query + 1)
        assert (att.n_layers, att.n_heads, att.n_kv_heads) == (n_layers, n_heads, n_kv_heads)
        assert att.layers == tuple(range(n_layers))
        assert att.query_position == query
        assert att.tokens == tuple(tokens[:query + 1])
        assert len(att.pieces) == query + 1
        assert_distributions(att)
        # the first token attends only to itself
        if query == 0:
            assert np.allclose(att.weights, 1.0)
        assert att.row().shape == (query + 1,)
        assert abs(float(att.row(layer=1, head=0).sum()) - 1.0) < ROW_TOLERANCE


@pytest.mark.parametrize("model", ["smol", "gemma"])
def test_the_weights_are_the_models_real_attention(model, request):
    """Falsifiable checks that the rows belong to the right layer, head and positions:
    layers and heads differ, the first token is an attention sink, and on a repeated random
    sequence an induction head looks at the token that followed the query's earlier copy
    (an off-by-one in the position mapping would miss it)."""
    runtime = request.getfixturevalue(model)
    tokens, start = _repeated(runtime)
    length = (len(tokens) - start) // 2
    for offset in (5, 11):
        query = start + length + offset  # second copy of sequence[offset]
        att = runtime.attention(tokens, query)
        w = att.weights
        assert not np.allclose(w[0], w[-1]) and not np.allclose(w[:, 0], w[:, 1])
        assert w[:, :, 0].mean() > 5.0 / (query + 1)  # far above uniform
        target = start + offset + 1
        layer, head = np.unravel_index(np.argmax(w[:, :, target]), w.shape[:2])
        assert w[layer, head, target] > 0.5
        assert int(np.argmax(w[layer, head])) == target


def test_capture_is_deterministic_with_and_without_kv_reuse(smol, smol_path):
    tokens, _ = _repeated(smol)
    query = len(tokens) - 3
    first = smol.attention(tokens, query)
    smol.attention(tokens, 4)  # the capture context now holds a shorter prefix
    smol.attention(tokens, len(tokens) - 1)  # and now a longer one
    again = smol.attention(tokens, query)
    assert np.array_equal(first.weights, again.weights)
    fresh = _load(smol_path)
    try:
        other = fresh.attention(tokens, query)
    finally:
        fresh.unload()
    assert np.allclose(first.weights, other.weights, atol=1e-4)


def test_sliding_window_layers_mask_distant_tokens(gemma):
    """Gemma 3 attends over a 512-token window on most layers: those rows are 0 beyond the
    window and still sum to 1, while the global layers see the whole context."""
    meta = gemma._llama.metadata
    window = int(meta["gemma3.attention.sliding_window"])
    rnd = random.Random(1)
    tokens = [gemma._llama.token_bos()] + [rnd.randrange(1000, 20000) for _ in range(window + 40)]
    query = len(tokens) - 1
    att = gemma.attention(tokens, query)
    assert_distributions(att)
    outside = att.weights[:, :, : query - window + 1].sum(axis=(1, 2))
    sliding = outside == 0.0
    assert 0 < sliding.sum() < att.n_layers  # both kinds of layer are present
    assert outside[~sliding].min() > 0.0


def test_generation_is_unchanged_by_a_capture(smol):
    request = CompletionRequest("The capital of France is",
                                replace(GREEDY, max_tokens=12), session_id="att")

    def generate() -> str:
        done = [e for e in smol.complete(request, lambda: False) if isinstance(e, Done)][-1]
        return done.text

    before = generate()
    tokens = smol.tokenize("The capital of France is Paris, and it is", add_bos=True)
    smol.attention(tokens, len(tokens) - 1)
    assert generate() == before


def test_a_cancelled_capture_leaves_the_capture_usable(smol):
    tokens = smol.tokenize("One two three four five six seven eight nine ten.")
    smol.attention(tokens, 2)
    with pytest.raises(Cancelled):
        smol.attention(tokens, len(tokens) - 1, cancel=lambda: True)
    assert_distributions(smol.attention(tokens, len(tokens) - 1))


def test_bad_requests_are_refused(smol):
    tokens = smol.tokenize("Hello there")
    cases = [
        ((tokens, len(tokens)), ErrorKind.BAD_REQUEST),
        ((tokens, -1), ErrorKind.BAD_REQUEST),
        (([], 0), ErrorKind.BAD_REQUEST),
        (([10**7], 0), ErrorKind.BAD_REQUEST),
        ((list(tokens) * 1000, 1), ErrorKind.CONTEXT_OVERFLOW),
    ]
    for args, kind in cases:
        with pytest.raises(VersoError) as caught:
            smol.attention(*args)
        assert caught.value.kind is kind
    with pytest.raises(VersoError) as caught:
        Runtime().attention(tokens, 0)
    assert caught.value.kind is ErrorKind.NO_MODEL


def test_through_the_engine_process(smol, smol_path):
    tokens, _ = _repeated(smol)
    query = len(tokens) - 2
    with EngineClient() as client:
        with pytest.raises(VersoError) as caught:
            client.attention(tokens, query)
        assert caught.value.kind is ErrorKind.NO_MODEL
        for _ in client.load(LoadSettings(path=str(smol_path), n_ctx=1024, n_threads=1)):
            pass
        att = client.attention(tokens, query)
        with pytest.raises(VersoError) as caught:
            client.attention(tokens, len(tokens))
        assert caught.value.kind is ErrorKind.BAD_REQUEST
        assert client.alive()
    assert isinstance(att, AttentionMap)
    n_layers, n_heads, _ = _header(smol)
    assert att.weights.shape == (n_layers, n_heads, query + 1)
    assert_distributions(att)
    local = smol.attention(tokens, query)
    assert np.allclose(att.weights, local.weights, atol=1e-4)
    assert att.pieces == local.pieces
    copy = pickle.loads(pickle.dumps(att))
    assert np.array_equal(copy.weights, att.weights) and copy.pieces == att.pieces
