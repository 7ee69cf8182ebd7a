"""``verso generate``: one completion or chat turn, with constraints."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from engine.api import Feature
from engine.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Io,
    add_load_flags,
    add_sampling_flags,
    format_stats,
    load,
    load_settings,
    open_engine,
    read_file,
    read_stream,
    require_features,
    require_sampling,
    sampling_from,
    stream,
)
from engine.errors import VersoError
from engine.events import Event, Token
from engine.options import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    ContextPolicy,
    SamplingParams,
)
from engine.text_lists import split_list

if TYPE_CHECKING:
    from engine.tasks.constraints import Constraints


def add_parser(sub: argparse._SubParsersAction) -> None:
    generate = sub.add_parser("generate", help="Generate from a prompt ('-' reads stdin).")
    generate.add_argument("prompt")
    generate.add_argument("--chat", action="store_true",
                          help="Wrap the prompt as a user message in the model's chat template.")
    generate.add_argument("--system", default=None, help="System prompt (with --chat).")
    generate.add_argument("--stats", action="store_true", help="Print timing stats to stderr.")
    generate.add_argument("--json", action="store_true",
                          help="Print one JSON object with text, finish reason and stats.")
    add_load_flags(generate)
    add_sampling_flags(generate)
    _add_constraint_flags(generate)


def _add_constraint_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("constraints")
    shape = group.add_mutually_exclusive_group()
    # dest names differ from SamplingParams fields, which sampling_from copies from args.
    shape.add_argument("--grammar", metavar="FILE", dest="grammar_file",
                       help="GBNF grammar the output must follow.")
    shape.add_argument("--json-schema", metavar="FILE", dest="schema_file",
                       help="JSON Schema the output must be valid against (output is JSON).")
    shape.add_argument("--choice", metavar="A,B,...",
                       help="The output is exactly one of these (comma-separated; '\\,' for "
                            "a comma inside one).")
    group.add_argument("--ban", action="append", default=[], metavar="WORDS",
                       help="Words or phrases that never appear (comma-separated, repeatable). "
                            "The text is printed when complete, since banned phrases are "
                            "undone while generating.")
    group.add_argument("--ban-any-case", action="store_true",
                       help="Ban those phrases in any casing.")
    group.add_argument("--logit-bias", action="append", default=[], dest="bias_entries",
                       metavar="TOKEN_OR_WORD=BIAS",
                       help="Add BIAS to a token id, or to the first token of a word with and "
                            "without a leading space (repeatable; -100 all but forbids it).")
    group.add_argument("--logprobs", type=int, default=None, metavar="N",
                       help="Report each token's log-probability and top N alternatives "
                            "(in the JSON output; implies --json).")


def _constraints_from(args: argparse.Namespace) -> Constraints:
    """The requested constraints; a bad schema or choice list fails here, before a model is
    loaded (a GBNF grammar is checked by the engine, against the model's vocabulary)."""
    from engine.tasks.constraints import Constraints, parse_bias_key

    bias = []
    for entry in args.bias_entries:
        key, sep, value = entry.rpartition("=")
        try:
            bias.append((parse_bias_key(key), float(value)))
        except (ValueError, VersoError):
            sep = ""
        if not sep:
            raise CliError(f"--logit-bias needs TOKEN_OR_WORD=BIAS, got {entry!r}", EXIT_USAGE)
    choices = tuple(split_list(args.choice)) if args.choice is not None else ()
    if args.choice is not None and not choices:
        raise CliError("--choice needs at least one choice", EXIT_USAGE)
    constraints = Constraints(
        grammar=read_file(args.grammar_file, "grammar file") if args.grammar_file else None,
        json_schema=read_file(args.schema_file, "JSON Schema file") if args.schema_file
        else None,
        choices=choices,
        ban=tuple(p for words in args.ban for p in split_list(words)),
        ban_any_case=args.ban_any_case,
        logit_bias=tuple(bias),
    )
    constraints.compiled_grammar()  # raises now, before a model is loaded
    return constraints


def _needed_features(args: argparse.Namespace, constraints: Constraints) -> list[Feature]:
    needed = []
    if constraints.json_schema:
        needed.append(Feature.JSON_SCHEMA)
    elif constraints.grammar or constraints.choices:
        needed.append(Feature.GRAMMAR)
    if constraints.ban:
        needed.append(Feature.BAN_PHRASES)
    if constraints.logit_bias:
        needed.append(Feature.LOGIT_BIAS)
    if args.logprobs is not None:
        needed.append(Feature.TOKEN_PROBS)
    if not args.chat:
        needed.append(Feature.RAW_COMPLETION)
    return needed


def _token_json(token: Token) -> dict[str, Any]:
    return {"id": token.token_id, "text": token.text, "logprob": token.logprob,
            "top": [{"id": a.token_id, "text": a.text, "logprob": a.logprob}
                    for a in token.alternatives]}


def run(args: argparse.Namespace, io: Io) -> int:
    from engine.tasks.constraints import client_tokenizer

    prompt = read_stream(io.stdin, "standard input") if args.prompt == "-" else args.prompt
    if args.context_policy != ContextPolicy.REFUSE and not args.chat:
        raise CliError("--context-policy applies to chat prompts (--chat): a plain completion "
                       "has no turns to drop", EXIT_USAGE)
    settings = load_settings(args)
    if args.logprobs is not None:
        args.n_probs = args.logprobs
        args.json = True
    sampling = sampling_from(args, SamplingParams())
    constraints = _constraints_from(args)
    tokens: list[Token] | None = [] if args.logprobs is not None else None
    with open_engine(args, io) as engine:
        require_features(engine.capabilities, _needed_features(args, constraints))
        require_sampling(engine.capabilities, sampling)
        load(engine, settings, io.err, quiet=True)
        sampling = constraints.apply(sampling, client_tokenizer(engine))
        schema = (constraints.json_schema if isinstance(constraints.json_schema, str | None)
                  else json.dumps(constraints.json_schema))
        if args.chat:
            messages = [ChatMessage("user", prompt)]
            if args.system:
                messages.insert(0, ChatMessage("system", args.system))
            events: Iterator[Event] = engine.chat(ChatRequest(
                tuple(messages), sampling, policy=ContextPolicy(args.context_policy),
                json_schema=schema))
        else:
            events = engine.complete(CompletionRequest(prompt, sampling, json_schema=schema))
        # Undone text cannot be taken back from a file or a pipe: print it when complete.
        streaming = not args.json and not sampling.ban_phrases and (
            not sampling.loop_guard or _is_terminal(io.out))
        done = stream(events, io.out, io.err, echo=streaming, tokens=tokens)
    if args.json:
        result: dict[str, Any] = {"text": done.text, "finish_reason": done.finish_reason.value,
                                  "stats": asdict(done.stats)}
        if tokens is not None:
            result["tokens"] = [_token_json(t) for t in tokens]
        json.dump(result, io.out, indent=2)
        print(file=io.out)
    else:
        print(("" if streaming else done.text), file=io.out)
    if args.stats:
        print(format_stats(done.stats, done.finish_reason.value), file=io.err)
    return EXIT_OK


def _is_terminal(out: object) -> bool:
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())
