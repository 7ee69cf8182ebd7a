"""``verso``: headless commands over the same engine and tasks as the desktop app.

Exit codes a script can rely on:
0 success, 1 engine or runtime error, 2 usage error, 3 model file error (missing, invalid,
too large for memory), 4 prompt does not fit in the context, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, fields, replace
from typing import TYPE_CHECKING, Any, TextIO

from engine.errors import VersoError
from engine.events import (
    ContextTrimmed,
    Done,
    Error,
    ErrorKind,
    Event,
    ModelLoaded,
    Rollback,
    Stats,
    Token,
)
from engine.options import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    ContextPolicy,
    KVType,
    LoadSettings,
    SamplingParams,
)
from engine.text_lists import split_list

if TYPE_CHECKING:
    from engine.tasks.constraints import Constraints

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_MODEL, EXIT_CONTEXT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

_EXIT_FOR_KIND = {
    ErrorKind.MODEL_INVALID: EXIT_MODEL,
    ErrorKind.MODEL_NOT_FOUND: EXIT_MODEL,
    ErrorKind.OUT_OF_MEMORY: EXIT_MODEL,
    ErrorKind.CONTEXT_OVERFLOW: EXIT_CONTEXT,
    ErrorKind.BAD_REQUEST: EXIT_USAGE,
}

_SKIP_SAMPLING_FLAGS = {"stop", "grammar", "logit_bias", "n_probs", "ban_phrases", "ban_any_case"}


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def _exit_code(kind: ErrorKind) -> int:
    return _EXIT_FOR_KIND.get(kind, EXIT_ERROR)


# ------------------------------------------------------------------ arguments


def _add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling")
    for f in fields(SamplingParams):
        if f.name in _SKIP_SAMPLING_FLAGS:
            continue
        flag = "--" + f.name.replace("_", "-")
        group.add_argument(flag, type=type(f.default), default=None, dest=f.name,
                           help=f"{f.metadata['help']} (default {f.default})")
    group.add_argument("--stop", action="append", default=None,
                       help="Stop string (repeatable).")


def _add_load_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("-m", "--model", default="default",
                       help="Model: 'default', a catalog name, or a path to a .gguf file.")
    group.add_argument("--n-ctx", type=int, default=0,
                       help="Context size in tokens (0: the model's, capped at 8192).")
    group.add_argument("--threads", type=int, default=0, help="Threads (0: physical cores).")
    group.add_argument("--threads-batch", type=int, default=0,
                       help="Threads for prompt evaluation (0: same as --threads).")
    group.add_argument("--flash-attn", action=argparse.BooleanOptionalAction, default=False,
                       help="Flash attention (default off: on 2 x86 cores it evaluated prompts "
                            "about 30 %% slower at equal generation speed).")
    group.add_argument("--gpu-layers", type=int, default=0,
                       help="Layers to offload to the GPU (-1: all; needs a GPU build).")
    group.add_argument("--kv-type", choices=[k.value for k in KVType], default="f16",
                       help="KV cache type (quantized types save memory).")
    group.add_argument("--reproducible", action="store_true",
                       help="Bit-exact greedy output whether or not the KV cache is reused "
                            "(turns flash attention off and re-evaluates generated tokens).")
    group.add_argument("--context-policy", choices=[c.value for c in ContextPolicy],
                       default="refuse",
                       help="When the prompt does not fit: refuse, or drop the oldest turns.")


def _add_constraint_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("constraints")
    shape = group.add_mutually_exclusive_group()
    # dest names differ from SamplingParams fields, which _sampling_from copies from args.
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


def _read_file(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read the {what} {path}: {exc}", EXIT_USAGE) from exc


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
        grammar=_read_file(args.grammar_file, "grammar file") if args.grammar_file else None,
        json_schema=_read_file(args.schema_file, "JSON Schema file") if args.schema_file
        else None,
        choices=choices,
        ban=tuple(p for words in args.ban for p in split_list(words)),
        ban_any_case=args.ban_any_case,
        logit_bias=tuple(bias),
    )
    constraints.compiled_grammar()  # raises now, before a model is loaded
    return constraints


def _sampling_from(args: argparse.Namespace, base: SamplingParams) -> SamplingParams:
    changes: dict[str, Any] = {}
    for f in fields(SamplingParams):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        changes[f.name] = tuple(value) if f.name == "stop" else value
    sampling = replace(base, **changes)
    problems = sampling.validate()
    if problems:
        raise CliError("invalid sampling settings: " + "; ".join(problems), EXIT_USAGE)
    return sampling


def _load_settings(args: argparse.Namespace) -> LoadSettings:
    from engine.catalog import resolve_model

    try:
        path = resolve_model(args.model)
    except VersoError as exc:
        raise CliError(exc.message, _exit_code(exc.kind)) from exc
    return LoadSettings(
        path=str(path), n_ctx=args.n_ctx, n_threads=args.threads,
        n_threads_batch=args.threads_batch,
        flash_attn=args.flash_attn and not args.reproducible,
        n_gpu_layers=args.gpu_layers, kv_type=KVType(args.kv_type),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verso", description="Local language models, headless.")
    parser.add_argument("--version", action="store_true", help="Print versions and exit.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log engine details.")
    sub = parser.add_subparsers(dest="command")

    models = sub.add_parser("models", help="List models, or inspect one.")
    models.add_argument("--inspect", metavar="MODEL", help="Show one model's metadata.")
    models.add_argument("--json", action="store_true", help="Machine-readable output.")
    models.add_argument("--n-ctx", type=int, default=0,
                        help="Context size for the memory estimate (0: model default).")
    models.add_argument("--kv-type", choices=[k.value for k in KVType], default="f16")

    chat = sub.add_parser("chat", help="Interactive chat (/reset, /system TEXT, /stats, /quit).")
    _add_load_flags(chat)
    _add_sampling_flags(chat)
    chat.add_argument("--system", default=None, help="System prompt.")

    generate = sub.add_parser("generate", help="Generate from a prompt ('-' reads stdin).")
    generate.add_argument("prompt")
    generate.add_argument("--chat", action="store_true",
                          help="Wrap the prompt as a user message in the model's chat template.")
    generate.add_argument("--system", default=None, help="System prompt (with --chat).")
    generate.add_argument("--stats", action="store_true", help="Print timing stats to stderr.")
    generate.add_argument("--json", action="store_true",
                          help="Print one JSON object with text, finish reason and stats.")
    _add_load_flags(generate)
    _add_sampling_flags(generate)
    _add_constraint_flags(generate)

    classify = sub.add_parser(
        "classify", help="Classify texts (one per line) into labels; CSV with probabilities.")
    classify.add_argument("file", nargs="?", help="Texts, one per line (default: stdin).")
    classify.add_argument("--labels", required=True, metavar="A,B,...",
                          help="The labels (comma-separated; '\\,' for a comma inside one).")
    classify.add_argument("--instruction", default=None,
                          help="Instruction before the text ('{labels}' lists the labels).")
    classify.add_argument("--example", action="append", default=[], metavar="TEXT=LABEL",
                          help="A few-shot example (repeatable).")
    classify.add_argument("--chat", action=argparse.BooleanOptionalAction, default=None,
                          help="Prompt as a conversation (default: if the model has a chat "
                               "template).")
    classify.add_argument("--json", action="store_true",
                          help="One JSON object per line instead of CSV.")
    _add_load_flags(classify)
    from engine.cli_documents import add_document_parsers
    add_document_parsers(sub)
    return parser


# ------------------------------------------------------------------ commands


def cmd_version(out: TextIO) -> int:
    from engine.build_info import build_info

    for line in build_info().lines():
        print(line, file=out)
    return EXIT_OK


def _fmt_bytes(n: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def cmd_models(args: argparse.Namespace, out: TextIO) -> int:
    from engine.catalog import estimate_memory, list_models, read_model_info, resolve_model

    kv = KVType(args.kv_type)
    if args.inspect:
        try:
            info = read_model_info(resolve_model(args.inspect))
        except VersoError as exc:
            raise CliError(exc.message, _exit_code(exc.kind)) from exc
        n_ctx = args.n_ctx or min(info.context_length or 8192, 8192)
        estimate = estimate_memory(info, n_ctx, kv)
        data = info.to_dict()
        data["memory_estimate"] = {"n_ctx": n_ctx, "kv_type": kv.value, **asdict(estimate)}
        if args.json:
            json.dump(data, out, indent=2, default=str)
            print(file=out)
            return EXIT_OK
        for key, value in data.items():
            if key == "chat_template":
                value = f"{len(value)} characters" if value else "none"
            if key == "memory_estimate":
                value = (f"{_fmt_bytes(estimate.total_bytes)} at n_ctx={n_ctx} "
                         f"(weights {_fmt_bytes(estimate.weights_bytes)}, "
                         f"KV cache {_fmt_bytes(estimate.kv_bytes)} {kv.value})")
            print(f"{key:>20}: {value}", file=out)
        return EXIT_OK
    entries = list_models()
    if args.json:
        rows = []
        for entry in entries:
            row = {"path": str(entry.path), "source": entry.source, "error": entry.error,
                   "info": entry.info.to_dict() if entry.info else None}
            if entry.info:
                n_ctx = args.n_ctx or min(entry.info.context_length or 8192, 8192)
                row["memory_estimate"] = asdict(estimate_memory(entry.info, n_ctx, kv))
            rows.append(row)
        json.dump(rows, out, indent=2, default=str)
        print(file=out)
        return EXIT_OK
    if not entries:
        print("No models found.", file=out)
        return EXIT_OK
    for entry in entries:
        if entry.info is None:
            print(f"{entry.path.name:<44} UNUSABLE: {entry.error}", file=out)
            continue
        info = entry.info
        n_ctx = args.n_ctx or min(info.context_length or 8192, 8192)
        total = estimate_memory(info, n_ctx, kv).total_bytes
        print(f"{entry.path.name:<44} {info.architecture:<10} {info.quantization:<8} "
              f"{_fmt_bytes(info.file_size):>9}  ~{_fmt_bytes(total)} at {n_ctx} ctx  "
              f"[{entry.source}]", file=out)
    return EXIT_OK


def _load(client, settings: LoadSettings, err: TextIO, quiet: bool = False) -> ModelLoaded:
    for event in client.load(settings):
        if isinstance(event, Error):
            raise CliError(event.message, _exit_code(event.kind))
        if isinstance(event, ModelLoaded):
            if not quiet:
                print(f"[loaded {event.name}: n_ctx {event.n_ctx}, {event.load_seconds:.2f} s]",
                      file=err)
            return event
    raise CliError("the engine did not report a loaded model")


def _stream(events: Iterable[Event], out: TextIO, err: TextIO, echo: bool = True,
            tokens: list[Token] | None = None) -> Done:
    """Print text as it streams (``echo``) and collect ``tokens`` (rolled-back ones removed)."""
    done: Done | None = None
    for event in events:
        if isinstance(event, Token):
            if tokens is not None and event.token_id >= 0:
                tokens.append(event)
            if echo:
                out.write(event.text)
                out.flush()
        elif isinstance(event, Rollback):
            if tokens is not None:
                del tokens[len(tokens) - event.n_tokens:]
        elif isinstance(event, ContextTrimmed):
            print(f"\n[context full: dropped the {event.dropped_messages} oldest messages "
                  f"({event.dropped_tokens} tokens)]", file=err)
        elif isinstance(event, Error):
            if echo and event.partial_text:
                out.write("\n")
            raise CliError(event.message, _exit_code(event.kind))
        elif isinstance(event, Done):
            done = event
    if done is None:
        raise CliError("the engine ended the reply without a result")
    return done


def _format_stats(stats: Stats, finish: str) -> str:
    return (f"[prompt {stats.prompt_tokens} tok ({stats.reused_tokens} reused, "
            f"{stats.evaluated_tokens} evaluated) | TTFT {stats.ttft_s * 1000:.0f} ms | "
            f"prompt {stats.prompt_tps:.1f} tok/s | gen {stats.generated_tokens} tok at "
            f"{stats.generation_tps:.1f} tok/s | context {stats.context_used}/{stats.n_ctx} | "
            f"finish: {finish}]")


def _token_json(token: Token) -> dict[str, Any]:
    return {"id": token.token_id, "text": token.text, "logprob": token.logprob,
            "top": [{"id": a.token_id, "text": a.text, "logprob": a.logprob}
                    for a in token.alternatives]}


def cmd_generate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from engine.tasks.constraints import client_tokenizer
    from engine.worker import EngineClient

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    settings = _load_settings(args)
    if args.logprobs is not None:
        args.n_probs = args.logprobs
        args.json = True
    sampling = _sampling_from(args, SamplingParams())
    constraints = _constraints_from(args)
    tokens: list[Token] | None = [] if args.logprobs is not None else None
    with EngineClient(batch_invariant=args.reproducible) as client:
        _load(client, settings, err, quiet=True)
        sampling = constraints.apply(sampling, client_tokenizer(client))
        if args.chat:
            messages = [ChatMessage("user", prompt)]
            if args.system:
                messages.insert(0, ChatMessage("system", args.system))
            events: Iterator[Event] = client.chat(ChatRequest(
                tuple(messages), sampling, policy=ContextPolicy(args.context_policy)))
        else:
            events = client.complete(CompletionRequest(prompt, sampling))
        streaming = not args.json and not sampling.ban_phrases
        done = _stream(events, out, err, echo=streaming, tokens=tokens)
    if args.json:
        result: dict[str, Any] = {"text": done.text, "finish_reason": done.finish_reason.value,
                                  "stats": asdict(done.stats)}
        if tokens is not None:
            result["tokens"] = [_token_json(t) for t in tokens]
        json.dump(result, out, indent=2)
        print(file=out)
    else:
        print(("" if streaming else done.text), file=out)
    if args.stats:
        print(_format_stats(done.stats, done.finish_reason.value), file=err)
    return EXIT_OK


def _texts(path: str | None, stdin: TextIO) -> Iterator[str]:
    """Non-empty lines: a file is read at once (a missing one fails before the model loads),
    stdin as it arrives."""
    lines = stdin if path is None else _read_file(path, "input file").splitlines()
    return (line.rstrip("\r\n") for line in lines if line.strip())


def cmd_classify(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    from engine.tasks.classify import check_labels, classify_many, write_csv
    from engine.worker import EngineClient

    examples = []
    for entry in args.example:
        text, sep, label = entry.rpartition("=")
        if not sep or not text.strip() or not label.strip():
            raise CliError(f"--example needs TEXT=LABEL, got {entry!r}", EXIT_USAGE)
        examples.append((text, label))
    labels = check_labels(split_list(args.labels), examples)
    settings = _load_settings(args)
    texts = _texts(args.file, stdin)
    with EngineClient(batch_invariant=args.reproducible) as client:
        _load(client, settings, err, quiet=True)
        rows = classify_many(client, texts, labels, examples, args.instruction, args.chat)
        if args.json:
            for text, result in rows:
                json.dump({"text": text, "label": result.label,
                           "probabilities": result.probabilities}, out)
                print(file=out, flush=True)
        else:
            write_csv(rows, labels, out)
    return EXIT_OK


def cmd_chat(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    from engine.worker import EngineClient

    settings = _load_settings(args)
    sampling = _sampling_from(args, SamplingParams())
    system = args.system
    history: list[ChatMessage] = []
    last: Done | None = None
    interactive = stdin.isatty()
    with EngineClient(batch_invariant=args.reproducible) as client:
        loaded = _load(client, settings, err)
        print(f"Chatting with {loaded.name}. Commands: /reset, /system TEXT, /stats, /quit.",
              file=err)
        while True:
            if interactive:
                err.write("> ")
                err.flush()
            line = stdin.readline()
            if not line:
                break
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.startswith("/"):
                name, _, rest = line.partition(" ")
                if name in ("/quit", "/exit"):
                    break
                if name == "/reset":
                    history.clear()
                    print("[conversation cleared]", file=err)
                elif name == "/system":
                    system = rest.strip() or None
                    history.clear()
                    print(f"[system prompt {'set' if system else 'cleared'}; conversation "
                          "cleared]", file=err)
                elif name == "/stats":
                    print(_format_stats(last.stats, last.finish_reason.value) if last
                          else "[no reply yet]", file=err)
                else:
                    print(f"[unknown command {name}]", file=err)
                continue
            history.append(ChatMessage("user", line))
            messages = ([ChatMessage("system", system)] if system else []) + history
            request = ChatRequest(tuple(messages), sampling,
                                  policy=ContextPolicy(args.context_policy))
            try:
                last = _stream(client.chat(request), out, err)
            except CliError as exc:
                history.pop()
                print(f"\nerror: {exc}", file=err)
                continue
            except KeyboardInterrupt:
                client.cancel()
                print("\n[stopped]", file=err)
                history.pop()
                continue
            print(file=out)
            history.append(ChatMessage("assistant", last.text))
    return EXIT_OK


def main(argv: list[str] | None = None, stdin: TextIO | None = None,
         out: TextIO | None = None, err: TextIO | None = None) -> int:
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="verso %(levelname)s %(message)s")
    try:
        if args.version:
            return cmd_version(out)
        if args.command == "models":
            return cmd_models(args, out)
        if args.command == "generate":
            return cmd_generate(args, out, err)
        if args.command == "chat":
            return cmd_chat(args, stdin, out, err)
        if args.command == "classify":
            return cmd_classify(args, stdin, out, err)
        if args.command in ("summarize", "translate"):
            from engine.cli_documents import run_document_command
            return run_document_command(args, out, err)
        parser.print_help(err)
        return EXIT_USAGE
    except CliError as exc:
        print(f"verso: error: {exc}", file=err)
        return exc.code
    except VersoError as exc:
        print(f"verso: error: {exc.message}", file=err)
        return _exit_code(exc.kind)
    except KeyboardInterrupt:
        print("\nverso: interrupted", file=err)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
