"""Branch a completion at one of its tokens: keep the output before it, put an alternative
token there (one of ``Token.alternatives``), and let the model continue from it.

The kept tokens and the alternative go to the runtime as forced tokens, so the prompt's KV
cache is reused up to the branch point and only the new token onwards is evaluated; they
are streamed back first (``echo_forced``), so the events of a branch describe the whole
new output: the kept tokens, the alternative, then the continuation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from engine.errors import BadRequestError
from engine.events import Event, fold_rollbacks
from engine.options import CompletionRequest


def output_tokens(events: Sequence[Event]) -> list[int]:
    """The token ids of an output, as its ``Token`` and ``Rollback`` events leave it."""
    return [t.token_id for t in fold_rollbacks(events) if t.token_id >= 0]


def branch_request(request: CompletionRequest, output: Sequence[int], position: int,
                   token_id: int) -> CompletionRequest:
    """The request that replaces ``output[position]`` with ``token_id`` and continues.

    ``output`` are the token ids the original request streamed (``output_tokens``). If it
    echoed forced tokens they are part of ``output``; if it forced tokens without echoing
    them, they are kept in front and are echoed by the branch."""
    if not 0 <= position <= len(output):
        raise BadRequestError(f"Branch position {position} is outside the output "
                              f"(0 to {len(output)}).")
    kept = tuple(output[:position])
    base = () if request.echo_forced else request.forced_prefix_tokens
    return replace(request, forced_prefix_tokens=base + kept + (token_id,), echo_forced=True)

