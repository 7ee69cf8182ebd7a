"""Constraints on a generated output, described as data and compiled into ``SamplingParams``.

What the runtime enforces while decoding:
- a GBNF grammar: hand-written, from a JSON Schema, or from a list of choices (only one; with
  choices, ``max_tokens`` is raised if needed so that the longest choice always fits);
- banned phrases: rolled back and resampled when they appear (see ``events.Rollback``);
- a logit-bias table keyed by token id or by word.

A word in the bias table applies to the *first token* of the word tokenized on its own and
after a space ("cat" and " cat" are different tokens in most vocabularies; both get the
bias). A word of several tokens therefore also nudges other words starting with the same
token; to forbid a word outright, ban it instead. A key made only of digits is a token id.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from engine.api import Engine
from engine.errors import BadRequestError
from engine.grammar_check import grammar_problems
from engine.options import SamplingParams
from engine.tasks.gbnf import choice_grammar, schema_to_grammar

Tokenize = Callable[[str], Sequence[int]]
"""Text to token ids, without BOS and without parsing special tokens."""

BiasKey = int | str


def validate_grammar(text: str) -> list[str]:
    """Problems with a GBNF grammar, checked by llama.cpp's parser; empty when valid.
    Without a model, token references (``<|im_end|>``) cannot be resolved: for those use
    ``Engine.validate_grammar``, which checks against the loaded model."""
    return grammar_problems(text)


def client_tokenizer(client: Engine) -> Tokenize:
    """``Tokenize`` for an engine."""
    return lambda text: client.tokenize(text, add_bos=False, special=False)


def parse_bias_key(key: str) -> BiasKey:
    key = key.strip()
    if not key:
        raise BadRequestError("A logit-bias entry needs a token id or a word.")
    return int(key) if key.isdigit() else key


def word_tokens(word: str, tokenize: Tokenize) -> list[int]:
    """The token ids a bias on ``word`` applies to (see the module docstring)."""
    bare = word.lstrip(" ")
    found: list[int] = []
    for variant in (bare, " " + bare):
        ids = list(tokenize(variant))
        if ids and ids[0] not in found:
            found.append(ids[0])
    return found


def resolve_logit_bias(entries: Mapping[BiasKey, float] | Iterable[tuple[BiasKey, float]],
                       tokenize: Tokenize | None) -> tuple[tuple[int, float], ...]:
    """(token id, bias) pairs for a table keyed by token id or word; later entries win."""
    items = entries.items() if isinstance(entries, Mapping) else entries
    biases: dict[int, float] = {}
    for key, bias in items:
        bias = float(bias)
        if math.isnan(bias):
            raise BadRequestError(f"The logit bias for {key!r} is not a number.")
        if isinstance(key, int):
            if key < 0:
                raise BadRequestError(f"Token id {key} is negative.")
            ids = [key]
        else:
            if tokenize is None:
                raise BadRequestError(f"Biasing the word {key!r} needs a tokenizer.")
            ids = word_tokens(key, tokenize)
            if not ids:
                raise BadRequestError(f"The word {key!r} has no tokens.")
        for token in ids:
            biases[token] = bias
    return tuple(biases.items())


@dataclass(frozen=True, slots=True)
class Constraints:
    grammar: str | None = None  # GBNF text
    json_schema: Mapping[str, Any] | str | None = None  # a dict or JSON text
    choices: tuple[str, ...] = ()
    ban: tuple[str, ...] = ()
    ban_any_case: bool = False
    logit_bias: tuple[tuple[BiasKey, float], ...] = ()

    def compiled_grammar(self) -> str | None:
        given = [name for name, value in (("a grammar", self.grammar),
                                          ("a JSON schema", self.json_schema),
                                          ("choices", self.choices)) if value]
        if len(given) > 1:
            raise BadRequestError(f"Use only one of {' and '.join(given)}: each one is a "
                                  "grammar for the whole output.")
        if self.json_schema:
            return schema_to_grammar(self.json_schema)
        if self.choices:
            return choice_grammar(self.choices)
        return self.grammar or None

    def apply(self, sampling: SamplingParams, tokenize: Tokenize | None = None
              ) -> SamplingParams:
        """``sampling`` with these constraints added. ``tokenize`` is needed only for words
        in the logit-bias table (see ``client_tokenizer``)."""
        bias = dict(sampling.logit_bias)
        bias.update(resolve_logit_bias(self.logit_bias, tokenize))
        phrases = tuple(dict.fromkeys(p for p in sampling.ban_phrases + self.ban if p))
        # Every token adds at least one byte, so this many tokens always fit a whole choice.
        longest = max((len(c.encode("utf-8")) for c in self.choices), default=0)
        return replace(
            sampling,
            max_tokens=max(sampling.max_tokens, longest + 1),
            grammar=self.compiled_grammar() or sampling.grammar,
            logit_bias=tuple(bias.items()),
            ban_phrases=phrases,
            ban_any_case=sampling.ban_any_case or self.ban_any_case,
        )
