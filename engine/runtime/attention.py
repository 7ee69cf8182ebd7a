"""Attention capture: the softmax attention weights of one query token, per layer and head.

llama.cpp names the attention-softmax tensor of layer ``il`` ``kq_soft_max-<il>``
(``llm_graph_context::build_attn_mha`` in src/llama-graph.cpp, ``cb(kq, "kq_soft_max", il)``,
named ``"%s-%d"`` by ``llama_context::graph_get_cb``). It only exists with flash attention
off; flash attention fuses the softmax away. Its layout is ``ne = [n_kv, n_tokens, n_head,
n_stream]``: one softmax row over the KV cells per query token of the ubatch and per query
head (``n_head``, not ``n_head_kv``: grouped-query attention broadcasts K over the heads).

The main context of the ``Runtime`` may run with flash attention and cannot get an eval
callback after construction, so the capture owns a second context on the same loaded model:

- flash attention off, F16 KV cache (a quantized V cache needs flash attention), full-size
  SWA cache (``swa_full``) so that on sliding-window layers KV cell ``i`` also holds position
  ``i``; a single sequence in a fresh cache fills cells in position order;
- the eval callback (``cb_eval``) asks for the ``kq_soft_max-*`` tensors only while the query
  token is decoded on its own, so each captured tensor holds exactly the query row
  (``n_tokens == 1``) and capture memory is ``n_layers * n_head * n_kv`` floats;
- the context is kept between captures and its KV cache reused from the longest common token
  prefix, so clicking through the tokens of one text re-evaluates almost nothing.

A capture checks its own assumptions: every row must sum to 1 and be 0 on KV cells after the
query position (the causal mask); if not, the cell-to-position mapping did not hold and it
raises instead of returning wrong weights.
"""

from __future__ import annotations

import ctypes
import logging
import pathlib
from collections.abc import Sequence

import numpy as np

from engine.errors import BadRequestError, Cancelled, VersoError
from engine.events import AttentionMap, ErrorKind
from engine.runtime.llama_plumbing import (
    GGML_TYPE_F16,
    GGML_TYPE_F32,
    AbortSwitch,
    CancelCheck,
    common_prefix,
    decode_failure,
    token_piece,
)

log = logging.getLogger(__name__)

SOFTMAX_PREFIX = b"kq_soft_max-"
_CTX_ROUND = 256  # the attention context grows in steps of this many tokens
_ROW_SUM_TOLERANCE = 1e-3
_KQ_BUDGET = 256 << 20  # bytes for one layer's attention matrix during prefix evaluation

# ---------------------------------------------------------------- ggml tensor (ctypes)

_GGML_MAX_DIMS = 4  # ggml.h: #define GGML_MAX_DIMS 4
_GGML_MAX_SRC = 10  # ggml.h: #define GGML_MAX_SRC 10
_GGML_MAX_OP_PARAMS = 64  # ggml.h: #define GGML_MAX_OP_PARAMS 64 (bytes)
_GGML_MAX_NAME = 64  # ggml.h: #define GGML_MAX_NAME 64
_GGML_OBJECT_SIZE = 32  # sizeof(struct ggml_object): offs, size, next, type + padding[4]


class GgmlTensor(ctypes.Structure):
    """Mirror of ``struct ggml_tensor`` in the ggml.h vendored by llama-cpp-python 0.3.36
    (ggml 0.25.3, installed as site-packages/include/ggml.h). ``check_layout`` compares it
    with the library at run time, so a changed layout fails loudly instead of reading junk."""

    _fields_ = [
        ("type", ctypes.c_int),  # enum ggml_type
        ("buffer", ctypes.c_void_p),  # struct ggml_backend_buffer *
        ("ne", ctypes.c_int64 * _GGML_MAX_DIMS),  # elements per dimension
        ("nb", ctypes.c_size_t * _GGML_MAX_DIMS),  # stride in bytes per dimension
        ("op", ctypes.c_int),  # enum ggml_op
        ("op_params", ctypes.c_int32 * (_GGML_MAX_OP_PARAMS // 4)),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * _GGML_MAX_SRC),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * _GGML_MAX_NAME),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


class _Ggml:
    """The few ggml-base functions the capture calls, from the library llama_cpp ships."""

    _instance: _Ggml | None = None

    def __init__(self) -> None:
        import llama_cpp
        from llama_cpp._ctypes_extensions import load_shared_library

        lib = load_shared_library("ggml-base",
                                  pathlib.Path(llama_cpp.__file__).parent / "lib")
        self.nbytes = lib.ggml_nbytes
        self.nbytes.argtypes = [ctypes.c_void_p]
        self.nbytes.restype = ctypes.c_size_t
        self.get_name = lib.ggml_get_name
        self.get_name.argtypes = [ctypes.c_void_p]
        self.get_name.restype = ctypes.c_char_p
        self.tensor_overhead = lib.ggml_tensor_overhead
        self.tensor_overhead.argtypes = []
        self.tensor_overhead.restype = ctypes.c_size_t
        # void ggml_backend_tensor_get(const struct ggml_tensor * tensor, void * data,
        #                              size_t offset, size_t size): works for any backend.
        self.tensor_get = lib.ggml_backend_tensor_get
        self.tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                    ctypes.c_size_t]
        self.tensor_get.restype = None
        self.check_layout()

    @classmethod
    def get(cls) -> _Ggml:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def check_layout(self) -> None:
        expected = self.tensor_overhead() - _GGML_OBJECT_SIZE
        if ctypes.sizeof(GgmlTensor) != expected:
            raise VersoError(f"This llama.cpp build's ggml_tensor is {expected} bytes, not "
                             f"{ctypes.sizeof(GgmlTensor)}; attention capture does not "
                             "support it.")

    def read(self, address: int) -> np.ndarray:
        """The tensor's data as a float32 array of shape ``ne`` reversed (numpy order:
        ``[ne3, ne2, ne1, ne0]``), honouring its byte strides (views may be non-contiguous)."""
        tensor = GgmlTensor.from_address(address)
        if self.get_name(address) != tensor.name:
            raise VersoError("The ggml_tensor layout does not match this llama.cpp build; "
                             "attention capture cannot read it.")
        dtypes = {GGML_TYPE_F32: np.float32, GGML_TYPE_F16: np.float16}
        if tensor.type not in dtypes:
            raise VersoError(f"Attention tensor {tensor.name.decode()} has ggml type "
                             f"{tensor.type}, expected F32 or F16.")
        dtype = np.dtype(dtypes[tensor.type])
        shape = tuple(int(n) for n in reversed(tensor.ne))
        strides = tuple(int(s) for s in reversed(tensor.nb))
        size = self.nbytes(address)
        span = dtype.itemsize + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
        if size != span:
            raise VersoError("The ggml_tensor layout does not match this llama.cpp build "
                             f"(nbytes {size} against {span} from ne/nb).")
        raw = np.empty(size // dtype.itemsize, dtype=dtype)
        self.tensor_get(address, raw.ctypes.data, 0, raw.nbytes)
        view = np.lib.stride_tricks.as_strided(raw, shape=shape, strides=strides)
        return np.array(view, dtype=np.float32)


# ---------------------------------------------------------------- capture


class AttentionCapture:
    """A second llama context on a loaded model, made for reading attention weights.

    ``model`` is the ``llama_model *`` of the runtime's ``Llama`` (``llm._model.model``),
    which must outlive this object; call ``close`` before the model is freed."""

    def __init__(self, model: ctypes.c_void_p, n_threads: int, n_threads_batch: int,
                 limit: int) -> None:
        import llama_cpp

        self._model = model
        self._threads = (n_threads, n_threads_batch)
        self.limit = limit  # most tokens a capture accepts (the runtime's context size)
        self.n_heads = llama_cpp.llama_model_n_head(model)
        self.n_kv_heads = llama_cpp.llama_model_n_head_kv(model)
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self._ggml = _Ggml.get()
        self._ctx = None
        self._n_ctx = 0
        self._kv_tokens: list[int] = []  # tokens in the capture context's KV cache, in order
        self._capturing = False
        self._captured: dict[int, np.ndarray] = {}
        self._callback_error: BaseException | None = None
        # ctypes callbacks must stay referenced as long as the context may call them. The
        # abort callback is always armed: this context only evaluates, so its cost per graph
        # node never slows generation; ``capture`` sets what it asks.
        self._eval_cb = llama_cpp.ggml_backend_sched_eval_callback(self._on_tensor)
        self._abort = AbortSwitch(armed=True)

    def close(self) -> None:
        import llama_cpp

        if self._ctx is not None:
            llama_cpp.llama_free(self._ctx)
        self._ctx = None
        self._n_ctx = 0
        self._kv_tokens = []

    # ------------------------------------------------------------ public

    def capture(self, tokens: Sequence[int], query_position: int,
                cancel: CancelCheck = lambda: False) -> AttentionMap:
        """Attention of the token at ``query_position`` over positions ``0..query_position``
        after decoding ``tokens[:query_position + 1]`` from the start of a sequence. To see
        what the model attended to when it *predicted* token ``i``, ask for ``i - 1``.
        Raises ``runtime.Cancelled`` when ``cancel`` returns true during evaluation."""
        tokens = [int(t) for t in tokens]
        if not tokens:
            raise BadRequestError("Attention capture needs at least one token.")
        if not 0 <= query_position < len(tokens):
            raise BadRequestError(f"The query position {query_position} is outside the "
                                  f"{len(tokens)} tokens (0 to {len(tokens) - 1}).")
        if len(tokens) > self.limit:
            raise VersoError(f"Attention capture got {len(tokens)} tokens but the model is "
                             f"loaded with a {self.limit}-token context.",
                             ErrorKind.CONTEXT_OVERFLOW)
        needed = tokens[: query_position + 1]
        # Sized for all the tokens, not only those needed now: the next capture is likely
        # another position in the same text, and it then reuses this context and its KV.
        self._ensure_context(len(tokens))
        self._abort.cancel = cancel
        try:
            keep = common_prefix(self._kv_tokens, needed[:-1])
            self._truncate(keep)
            if keep < query_position:
                self._decode(needed[keep:query_position])
            self._captured = {}
            self._callback_error = None
            self._capturing = True
            try:
                self._decode(needed[query_position:])
            finally:
                self._capturing = False
            if self._callback_error is not None:
                raise self._callback_error
            weights, layers = self._assemble(query_position)
        finally:
            self._abort.cancel = lambda: False
            self._captured = {}
        return AttentionMap(
            query_position=query_position,
            weights=weights,
            pieces=tuple(self.piece(t) for t in needed),
            tokens=tuple(needed),
            layers=layers,
            n_heads=self.n_heads,
            n_kv_heads=self.n_kv_heads,
        )

    def piece(self, token: int) -> str:
        """The token's text, special tokens shown by name (``<|im_start|>``)."""
        return token_piece(self._vocab, token, special=True).decode("utf-8", errors="replace")

    # ------------------------------------------------------------ context

    def _ensure_context(self, n_tokens: int) -> None:
        import llama_cpp

        if self._ctx is not None and n_tokens <= self._n_ctx:
            return
        self.close()
        n_ctx = -(-n_tokens // _CTX_ROUND) * _CTX_ROUND
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = _ubatch_size(n_ctx, self.n_heads)
        params.n_seq_max = 1
        params.n_threads, params.n_threads_batch = self._threads
        params.flash_attn_type = 0  # LLAMA_FLASH_ATTN_TYPE_DISABLED: keep kq_soft_max
        params.type_k = params.type_v = GGML_TYPE_F16
        params.swa_full = True  # KV cell i holds position i on sliding-window layers too
        params.no_perf = True
        params.cb_eval = self._eval_cb
        params.cb_eval_user_data = None
        params.abort_callback = self._abort.callback
        params.abort_callback_data = None
        from llama_cpp._utils import suppress_stdout_stderr

        with suppress_stdout_stderr(disable=False):  # llama.cpp logs the SWA cache choice
            ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not ctx:
            raise VersoError(f"llama.cpp could not create a {n_ctx}-token context for "
                             "attention capture (out of memory?).")
        self._ctx = ctx
        self._n_ctx = n_ctx
        self._batch_size = params.n_batch
        self._kv_tokens = []

    def _truncate(self, keep: int) -> None:
        import llama_cpp

        if keep < len(self._kv_tokens):
            memory = llama_cpp.llama_get_memory(self._ctx)
            if keep == 0:
                llama_cpp.llama_memory_clear(memory, True)
            else:
                llama_cpp.llama_memory_seq_rm(memory, 0, keep, -1)
            del self._kv_tokens[keep:]

    def _decode(self, tokens: list[int]) -> None:
        """Append ``tokens`` in batches (llama_batch_get_one: positions follow the cache,
        logits for the last token only)."""
        import llama_cpp

        for start in range(0, len(tokens), self._batch_size):
            chunk = tokens[start:start + self._batch_size]
            array = (llama_cpp.llama_token * len(chunk))(*chunk)
            rc = llama_cpp.llama_decode(self._ctx, llama_cpp.llama_batch_get_one(array,
                                                                                 len(chunk)))
            if rc != 0:
                # A failed or aborted decode may leave part of the chunk in the cache.
                llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
                self._kv_tokens = []
                # The eval callback aborts the graph too when it fails: an abort is a cancel
                # only if the cancel check says so, else the callback's error is the cause.
                failure = decode_failure(rc, "during attention capture",
                                         aborted_by_cancel=bool(self._abort.cancel()))
                if self._callback_error is not None and not isinstance(failure, Cancelled):
                    raise self._callback_error
                raise failure
            self._kv_tokens.extend(chunk)

    def _on_tensor(self, address: int, ask: bool, _user_data: int) -> bool:
        """``ggml_backend_sched_eval_callback``. With ``ask`` it answers whether the tensor's
        data is wanted; then it is called again with the data computed (returning False there
        would abort the graph)."""
        if not self._capturing:
            return not ask  # want nothing; keep computing
        try:
            name = GgmlTensor.from_address(address).name
            if ask:
                return name.startswith(SOFTMAX_PREFIX)
            if name.startswith(SOFTMAX_PREFIX):
                layer = int(name[len(SOFTMAX_PREFIX):])
                self._captured[layer] = self._ggml.read(address)
            return True
        except BaseException as exc:  # never let an exception unwind into C
            self._callback_error = exc
            return False  # not wanted (ask) / abort the graph (data)

    def _assemble(self, query_position: int) -> tuple[np.ndarray, tuple[int, ...]]:
        if not self._captured:
            raise VersoError("llama.cpp produced no attention-softmax tensors for this model "
                             "(its architecture may fuse attention); nothing to show.")
        layers = tuple(sorted(self._captured))
        n_keys = query_position + 1
        rows = []
        for layer in layers:
            data = self._captured[layer]  # [n_stream, n_head, n_tokens, n_kv]
            if data.shape[0] != 1 or data.shape[2] != 1:
                raise VersoError(f"Unexpected attention tensor shape {data.shape[::-1]} "
                                 f"(ggml order) in layer {layer}.")
            row = data[0, :, 0, :]  # [n_head, n_kv]
            if row.shape[1] < n_keys:
                raise VersoError(f"Layer {layer} attends over {row.shape[1]} KV cells, fewer "
                                 f"than the {n_keys} positions decoded.")
            beyond = float(np.abs(row[:, n_keys:]).max(initial=0.0))
            sums = row[:, :n_keys].sum(axis=1, dtype=np.float64)
            if beyond > _ROW_SUM_TOLERANCE or np.abs(sums - 1.0).max() > _ROW_SUM_TOLERANCE:
                raise VersoError(f"Layer {layer}'s attention does not map onto positions "
                                 f"0..{query_position} (row sums {sums.min():.4f}.."
                                 f"{sums.max():.4f}, weight {beyond:.4f} past the query).")
            rows.append(row[:, :n_keys])
        heads = {r.shape[0] for r in rows}
        if len(heads) != 1:
            raise VersoError(f"The layers have different head counts {sorted(heads)}; "
                             "attention capture does not support this model.")
        return np.ascontiguousarray(np.stack(rows), dtype=np.float32), layers


def _ubatch_size(n_ctx: int, n_heads: int) -> int:
    """Tokens per ubatch. Without flash attention each layer materializes an
    ``n_kv x n_ubatch x n_head`` float32 matrix; keep it under ``_KQ_BUDGET`` bytes (a
    32k-token context with 9 heads would otherwise need 600 MB for it)."""
    size = 512
    while size > 32 and n_ctx * size * n_heads * 4 > _KQ_BUDGET:
        size //= 2
    return min(size, n_ctx)
