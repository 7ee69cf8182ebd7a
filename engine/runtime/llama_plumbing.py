"""The llama.cpp plumbing every context owner here shares: the generation context of
``Runtime``, the batched context of ``BatchDecoder`` and the attention context of
``AttentionCapture``. One home for each rule about llama.cpp's C interface, so the three
cannot drift apart:

- ``AbortSwitch``: the abort callback, armed only while a prompt is evaluated;
- ``DECODE_ABORTED`` and ``decode_failure``: what a non-zero ``llama_decode`` means;
- ``logits_row``, ``token_piece``: reading logits and token bytes through ctypes;
- ``ggml_kv_type``, ``thread_counts``: context parameters from ``LoadSettings``;
- ``common_prefix``, ``shared_prefix``, ``logsumexp``: token and logit arithmetic.

It imports ``llama_cpp`` only inside functions, like the modules that use it, and imports no
other ``engine.runtime`` module.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from engine.api import CancelCheck
from engine.errors import Cancelled, VersoError
from engine.events import ErrorKind
from engine.options import KVType, LoadSettings
from engine.system import physical_cores

# llama_decode's return value (llama.h): 0 done, 1 no KV slot for the batch, 2 aborted (the
# abort callback returned true, or an eval callback returned false), -1 invalid batch, < -1
# another error.
DECODE_ABORTED = 2

# ggml_type values (ggml.h ``enum ggml_type``).
GGML_TYPE_F32 = 0
GGML_TYPE_F16 = 1
GGML_TYPE_Q4_0 = 2
GGML_TYPE_Q8_0 = 8

_KV_GGML_TYPES = {KVType.F16: GGML_TYPE_F16, KVType.Q8_0: GGML_TYPE_Q8_0,
                  KVType.Q4_0: GGML_TYPE_Q4_0}


def _never() -> bool:
    return False


# ---------------------------------------------------------------- cancelling


class AbortSwitch:
    """llama.cpp's abort callback for a context, asking ``cancel`` while ``armed``.

    llama.cpp calls the callback once per graph node; during generation that costs about
    5 % of throughput, so a context that generates arms it (``arm``/``armed_on``) only while
    evaluating a prompt and removes it again after; generation checks for cancellation
    between tokens instead. A context that only evaluates (attention capture) starts it
    ``armed`` and passes ``callback`` in its context parameters.

    Keep the switch referenced as long as a context may call ``callback``."""

    def __init__(self, cancel: CancelCheck = _never, armed: bool = False) -> None:
        import llama_cpp

        self.cancel = cancel
        self.armed = armed
        self.callback = llama_cpp.ggml_abort_callback(self._should_abort)

    def _should_abort(self, _data: ctypes.c_void_p) -> bool:
        return self.armed and bool(self.cancel())

    def arm(self, ctx: ctypes.c_void_p, on: bool) -> None:
        """Install the callback on ``ctx`` (a ``llama_context *``) or remove it."""
        import llama_cpp

        self.armed = on
        callback = self.callback if on else ctypes.cast(None, llama_cpp.ggml_abort_callback)  # type: ignore[arg-type]  # a NULL callback; ctypes accepts None
        llama_cpp.llama_set_abort_callback(ctx, callback, None)

    @contextmanager
    def armed_on(self, ctx: ctypes.c_void_p, cancel: CancelCheck | None = None
                 ) -> Iterator[None]:
        """Armed on ``ctx`` for the ``with`` block (asking ``cancel`` when given)."""
        if cancel is not None:
            self.cancel = cancel
        self.arm(ctx, True)
        try:
            yield
        finally:
            self.arm(ctx, False)


def decode_failure(rc: int, where: str, *, aborted_by_cancel: bool = True,
                   kind: ErrorKind = ErrorKind.INTERNAL) -> Exception:
    """The exception to raise for a ``llama_decode`` that returned ``rc`` (non-zero):
    ``Cancelled`` when it was aborted by the caller's cancel check, else a ``VersoError``
    saying ``where`` it failed. An abort is the cancel check's doing by default (a context
    whose only abort source is an ``AbortSwitch``); a context that an eval callback can also
    abort passes whether the cancel check is set."""
    if rc == DECODE_ABORTED and aborted_by_cancel:
        return Cancelled()
    return VersoError(f"llama_decode failed with code {rc} {where}.", kind)


# ---------------------------------------------------------------- reading results


def logits_row(ctx: ctypes.c_void_p, index: int, n_vocab: int) -> np.ndarray:
    """The logits of batch entry ``index`` (-1: the last one with logits) of the last decode:
    a writable view of llama.cpp's buffer, valid until the next decode on ``ctx``."""
    import llama_cpp

    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(n_vocab,))


def token_piece(vocab: ctypes.c_void_p, token: int, special: bool = False) -> bytes:
    """The token's bytes; ``special`` renders control tokens by name (``<|im_start|>``).
    ``LlamaModel.token_to_piece`` returns its whole 32-byte buffer (NUL padded), so call
    llama.cpp directly and keep only the bytes it wrote, growing the buffer if asked."""
    import llama_cpp

    size = 32
    while True:
        buffer = ctypes.create_string_buffer(size)
        written = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, special)
        if written >= 0:
            return buffer.raw[:written]
        size = -written


# ---------------------------------------------------------------- context parameters


def ggml_kv_type(kv_type: KVType | str) -> int:
    """The ggml type of a KV cache of ``kv_type`` (``type_k``/``type_v``)."""
    return _KV_GGML_TYPES[KVType(kv_type)]


def thread_counts(settings: LoadSettings | None) -> tuple[int, int]:
    """``(n_threads, n_threads_batch)``: the settings' counts, 0 meaning the physical cores
    for generation and the generation count for prompt batches."""
    threads = (settings.n_threads if settings else 0) or physical_cores()
    return threads, (settings.n_threads_batch if settings else 0) or threads


# ---------------------------------------------------------------- token and logit arithmetic


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def shared_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens shared by all prompts, leaving each at least one token of its own (so each
    still has a last token to evaluate for its logits); 0 for fewer than two prompts."""
    if len(prompts) < 2:
        return 0
    first = prompts[0]
    shared = min(common_prefix(first, p) for p in prompts[1:])
    return max(0, min(shared, min(len(p) for p in prompts) - 1))


def logsumexp(values: np.ndarray) -> float:
    """``log(sum(exp(values)))`` without overflow: subtracting it from a logit gives that
    token's log-probability."""
    top = float(values.max())
    return top + math.log(float(np.exp(values - top).sum()))
