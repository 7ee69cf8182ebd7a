"""Token sampling: a llama.cpp sampler chain built from ``SamplingParams``, plus a grammar
that is checked lazily.

Applying a grammar to every candidate costs ~12 ms per token for a 49k vocabulary (several
times the rest of sampling). As llama.cpp's own ``common_sampler`` does, a token is first
sampled without the grammar and kept if the grammar accepts it; only when it does not is the
grammar applied to all candidates and the token resampled. Without truncation samplers this
is exactly the constrained distribution (a rejected draw is redrawn from the renormalised
valid set); greedy gives the same token either way. Mirostat keeps state across calls, so
with it the grammar is always applied first.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np

from engine.errors import BadRequestError
from engine.options import SamplingParams

_CANDIDATE = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class TokenSampler:
    def __init__(self, sampling: SamplingParams, seed: int, vocab: object, n_vocab: int,
                 n_ctx: int = 4096) -> None:
        """``n_ctx``: the context, which ``dry_penalty_last_n=-1`` scans."""
        import llama_cpp
        from llama_cpp._internals import LlamaSampler

        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._candidates = np.empty(n_vocab, dtype=_CANDIDATE)  # refilled for every draw
        self._chain = chain = LlamaSampler()
        self._free = llama_cpp.llama_sampler_free  # kept: close() may run at interpreter exit
        self._grammar = None
        self._grammar_first = sampling.mirostat != 0
        if sampling.grammar:
            self._grammar = llama_cpp.llama_sampler_init_grammar(
                vocab, sampling.grammar.encode("utf-8"), b"root")
            if not self._grammar:
                raise BadRequestError("The grammar is not valid GBNF (llama.cpp rejected it).")
        if sampling.logit_bias:
            chain.add_logit_bias(n_vocab, dict(sampling.logit_bias))
        if (sampling.repeat_penalty != 1.0 or sampling.presence_penalty
                or sampling.frequency_penalty):
            chain.add_penalties(n_vocab, sampling.repeat_last_n, sampling.repeat_penalty,
                                sampling.frequency_penalty, sampling.presence_penalty)
        if sampling.dry_multiplier > 0 and sampling.dry_penalty_last_n != 0:
            last_n = n_ctx if sampling.dry_penalty_last_n < 0 else sampling.dry_penalty_last_n
            self._add_dry(sampling, vocab, last_n)
        # llama.cpp's order: penalties, DRY, truncation, XTC, temperature. XTC draws from
        # its own generator, seeded like the final draw.
        xtc = sampling.xtc_probability > 0 and sampling.xtc_threshold <= 0.5
        if sampling.temperature <= 0:
            if xtc:
                chain.add_xtc(sampling.xtc_probability, sampling.xtc_threshold, 1, seed)
            chain.add_greedy()
        elif sampling.mirostat in (1, 2):
            if xtc:
                chain.add_xtc(sampling.xtc_probability, sampling.xtc_threshold, 1, seed)
            chain.add_temp(sampling.temperature)
            if sampling.mirostat == 1:
                chain.add_mirostat(n_vocab, seed, sampling.mirostat_tau, sampling.mirostat_eta,
                                   100)
            else:
                chain.add_mirostat_v2(seed, sampling.mirostat_tau, sampling.mirostat_eta)
        else:
            if sampling.top_k > 0:
                chain.add_top_k(sampling.top_k)
            if sampling.typical_p < 1.0:
                chain.add_typical(sampling.typical_p, 1)
            if sampling.top_p < 1.0:
                chain.add_top_p(sampling.top_p, 1)
            if sampling.min_p > 0.0:
                chain.add_min_p(sampling.min_p, 1)
            if xtc:
                chain.add_xtc(sampling.xtc_probability, sampling.xtc_threshold, 1, seed)
            chain.add_temp(sampling.temperature)
            chain.add_dist(seed)

    def _add_dry(self, sampling: SamplingParams, vocab: object, last_n: int) -> None:
        """llama-cpp-python's ``add_dry`` wants a model object; the raw call takes the vocab.
        The breaker strings are copied by llama.cpp during the call."""
        import llama_cpp

        breakers = [b.encode("utf-8") for b in sampling.dry_sequence_breakers]
        array = (ctypes.c_char_p * max(1, len(breakers)))(*breakers)
        dry = llama_cpp.llama_sampler_init_dry(
            vocab, sampling.dry_multiplier, sampling.dry_base, sampling.dry_allowed_length,
            last_n, array, len(breakers))
        if not dry:
            raise BadRequestError("llama.cpp could not set up the DRY sampler.")
        llama_cpp.llama_sampler_chain_add(self._chain.sampler, dry)

    def close(self) -> None:
        if self._grammar is not None:
            self._free(self._grammar)
            self._grammar = None
        self._chain.close()

    def __del__(self) -> None:
        self.close()

    def allows(self, token: int) -> bool:
        """Whether the grammar (if any), in its current state, accepts ``token`` next."""
        import llama_cpp

        if self._grammar is None:
            return True
        data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
        candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(candidates))
        return math.isfinite(data[0].logit)

    def accept(self, token: int) -> None:
        """Advance the grammar and the penalty window past ``token``. A token the grammar
        does not allow must never get here: llama.cpp aborts the process on it."""
        import llama_cpp

        if self._grammar is not None:
            llama_cpp.llama_sampler_accept(self._grammar, token)
        llama_cpp.llama_sampler_accept(self._chain.sampler, token)

    def sample(self, logits: np.ndarray) -> int:
        """Choose the next token from ``logits`` (not accepted yet: see ``accept``)."""
        if self._grammar is not None and not self._grammar_first:
            token = self._apply(logits, grammar=False)
            if self.allows(token):
                return token
        return self._apply(logits, grammar=self._grammar is not None)

    def _apply(self, logits: np.ndarray, grammar: bool) -> int:
        import llama_cpp

        candidates = self._candidates
        candidates["id"] = self._ids
        candidates["logit"] = logits
        candidates["p"] = 0.0
        array = llama_cpp.llama_token_data_array(
            candidates.ctypes.data_as(llama_cpp.llama_token_data_p), len(candidates), -1, False)
        if grammar:
            llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(self._chain.sampler, ctypes.byref(array))
        if not 0 <= array.selected < array.size:
            raise RuntimeError("the sampler chain selected no token")
        return int(array.data[array.selected].id)
