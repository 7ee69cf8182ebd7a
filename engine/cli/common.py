"""What every ``verso`` command shares: exit codes, errors, the engine factory, model and
sampling flags, reading input, streaming a reply.

Exit codes a script can rely on:
0 success, 1 engine or runtime error, 2 usage error, 3 model file error (missing, invalid,
too large for memory), 4 prompt does not fit in the context, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any, BinaryIO, TextIO

from engine.api import Capabilities, Engine, Feature, check_sampling, require
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
    finish_note,
    fold_rollbacks,
)
from engine.options import ContextPolicy, KVType, LoadSettings, SamplingParams
from engine.text_lists import escape, unescape

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_MODEL, EXIT_CONTEXT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

_EXIT_FOR_KIND = {
    ErrorKind.MODEL_INVALID: EXIT_MODEL,
    ErrorKind.MODEL_NOT_FOUND: EXIT_MODEL,
    ErrorKind.OUT_OF_MEMORY: EXIT_MODEL,
    ErrorKind.CONTEXT_OVERFLOW: EXIT_CONTEXT,
    ErrorKind.BAD_REQUEST: EXIT_USAGE,
    ErrorKind.UNSUPPORTED: EXIT_USAGE,
}

# Sampling fields that get their own flags (constraints) or none.
_SKIP_SAMPLING_FLAGS = {"stop", "grammar", "logit_bias", "n_probs", "ban_phrases", "ban_any_case"}

EngineFactory = Callable[[bool], Engine]
"""``reproducible`` -> a fresh engine (not yet started)."""


def default_engine(reproducible: bool) -> Engine:
    from engine.worker import EngineClient

    return EngineClient(batch_invariant=reproducible)


@dataclass(frozen=True, slots=True)
class Io:
    stdin: TextIO
    out: TextIO
    err: TextIO
    engine_factory: EngineFactory = default_engine


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def exit_code(kind: ErrorKind) -> int:
    return _EXIT_FOR_KIND.get(kind, EXIT_ERROR)


# ------------------------------------------------------------------ flags


def add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling")
    for f in fields(SamplingParams):
        if f.name in _SKIP_SAMPLING_FLAGS:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"].replace("%", "%%")
        if isinstance(f.default, bool):
            state = "on" if f.default else "off"
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                               dest=f.name, help=f"{help_text} (default {state})")
        elif isinstance(f.default, tuple):
            shown = " ".join("'" + escape(v) + "'" for v in f.default)
            group.add_argument(flag.rstrip("s"), action="append", default=None, dest=f.name,
                               help=f"{help_text} Repeatable; replaces the default ({shown}); "
                                    "'none' for none.")
        else:
            group.add_argument(flag, type=type(f.default), default=None, dest=f.name,
                               help=f"{help_text} (default {f.default})")
    group.add_argument("--stop", action="append", default=None,
                       help="Stop string (repeatable).")


def add_load_flags(parser: argparse.ArgumentParser, reproducible: bool = True) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("-m", "--model", default="default",
                       help="Model: 'default', a catalog name, or a path to a .gguf file; "
                            "with --endpoint, a model id on that server (default: its first).")
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
    if reproducible:
        group.add_argument("--reproducible", action="store_true",
                           help="Bit-exact greedy output whether or not the KV cache is "
                                "reused (turns flash attention off and re-evaluates generated "
                                "tokens).")
    group.add_argument("--context-policy", choices=[c.value for c in ContextPolicy],
                       default="refuse",
                       help="When the prompt does not fit: refuse, or drop the oldest turns.")
    from engine.cli.remote_flags import add_remote_flags

    add_remote_flags(group)


def sampling_from(args: argparse.Namespace, base: SamplingParams) -> SamplingParams:
    changes: dict[str, Any] = {}
    for f in fields(SamplingParams):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if f.name == "stop":
            value = tuple(value)
        elif isinstance(f.default, tuple):
            value = () if value == ["none"] else tuple(
                unescape(v) if f.metadata.get("escaped") else v for v in value)
        changes[f.name] = value
    sampling = replace(base, **changes)
    problems = sampling.validate()
    if problems:
        raise CliError("invalid sampling settings: " + "; ".join(problems), EXIT_USAGE)
    return sampling


def load_settings(args: argparse.Namespace) -> LoadSettings:
    """The load settings the flags ask for, checked before any engine starts."""
    from engine.catalog import resolve_model

    if getattr(args, "endpoint", None):
        from engine.cli.remote_flags import remote_load_settings, resolve_endpoint

        return remote_load_settings(args, resolve_endpoint(args)[0])
    try:
        path = resolve_model(args.model)
    except VersoError as exc:
        raise CliError(exc.message, exit_code(exc.kind)) from exc
    settings = LoadSettings(
        path=str(path), n_ctx=args.n_ctx, n_threads=args.threads,
        n_threads_batch=args.threads_batch,
        flash_attn=args.flash_attn and not getattr(args, "reproducible", False),
        n_gpu_layers=args.gpu_layers, kv_type=KVType(args.kv_type),
    )
    problems = settings.validate()
    if problems:
        raise CliError("invalid model settings: " + "; ".join(problems), EXIT_USAGE)
    if settings.n_gpu_layers and not _gpu_offload():
        raise CliError(f"--gpu-layers {settings.n_gpu_layers}: this build of llama.cpp runs on "
                       "the CPU only, so no layers can be offloaded (leave the flag out, or "
                       "see \"Building with a GPU\" in the README)", EXIT_USAGE)
    return settings


def _gpu_offload() -> bool:
    from engine.build_info import build_info

    return build_info().gpu_offload


# ------------------------------------------------------------------ input


def decode_input(data: bytes, what: str) -> str:
    """UTF-8 text, or a usage error that says which byte is invalid (never a traceback
    after the model has loaded)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start:exc.start + 1]
        raise CliError(f"{what} is not valid UTF-8: byte 0x{bad.hex()} at offset {exc.start} "
                       "(convert it to UTF-8 first, e.g. with iconv)", EXIT_USAGE) from None


def read_stream(stream: TextIO, what: str) -> str:
    buffer: BinaryIO | None = getattr(stream, "buffer", None)
    if buffer is not None:
        return decode_input(buffer.read(), what)
    return stream.read()


def read_file(path: str, what: str) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise CliError(f"cannot read the {what} {path}: {exc}", EXIT_USAGE) from exc
    return decode_input(data, f"the {what} {path}")


# ------------------------------------------------------------------ engine


@contextlib.contextmanager
def open_engine(args: argparse.Namespace, io: Io) -> Iterator[Engine]:
    """The engine a command runs on: Verso's own, or a server's (``--endpoint``)."""
    engine: Engine
    if getattr(args, "endpoint", None):
        from engine.cli.remote_flags import open_remote

        engine = open_remote(args)
    else:
        engine = io.engine_factory(bool(getattr(args, "reproducible", False)))
    try:
        yield engine
    finally:
        engine.close()


def require_features(capabilities: Capabilities, features: Iterable[Feature]) -> None:
    """Refuse flags the backend cannot honour, before a model is loaded."""
    try:
        for feature in features:
            require(capabilities, feature)
    except VersoError as exc:
        raise CliError(exc.message, EXIT_USAGE) from exc


def require_sampling(capabilities: Capabilities, sampling: SamplingParams) -> None:
    try:
        check_sampling(capabilities, sampling)
    except VersoError as exc:
        raise CliError(exc.message, EXIT_USAGE) from exc


def load(engine: Engine, settings: LoadSettings, err: TextIO, quiet: bool = False) -> ModelLoaded:
    for event in engine.load(settings):
        if isinstance(event, Error):
            raise CliError(event.message, exit_code(event.kind))
        if isinstance(event, ModelLoaded):
            if not quiet:
                print(f"[loaded {event.name}: n_ctx {event.n_ctx}, {event.load_seconds:.2f} s]",
                      file=err)
            if event.chat_template_problem:  # shown even when quiet: it changes the prompt
                print(f"note: chat prompts use the built-in ChatML format: "
                      f"{event.chat_template_problem}", file=err)
            return event
    raise CliError("the engine did not report a loaded model")


def stream(events: Iterable[Event], out: TextIO, err: TextIO, echo: bool = True,
           tokens: list[Token] | None = None) -> Done:
    """Print text as it streams (``echo``) and collect ``tokens`` (rolled-back ones removed)."""
    done: Done | None = None
    seen: list[Event] = []
    for event in events:
        if tokens is not None:
            seen.append(event)
        if isinstance(event, Token):
            if echo:
                out.write(event.text)
                out.flush()
        elif isinstance(event, Rollback) and echo and event.n_chars:
            print(f"\n[undone: the last {event.n_chars} characters above"
                  f"{' repeated earlier text' if event.repeating else ' held a banned phrase'}"
                  "; the text below replaces them]", file=err)
        elif isinstance(event, ContextTrimmed):
            print(f"\n[context full: dropped the {event.dropped_messages} oldest messages "
                  f"({event.dropped_tokens} tokens)]", file=err)
        elif isinstance(event, Error):
            if event.partial_text:  # what was not printed yet, or the line's end
                out.write("\n" if echo else event.partial_text + "\n")
            raise CliError(event.message, exit_code(event.kind))
        elif isinstance(event, Done):
            done = event
    if done is None:
        raise CliError("the engine ended the reply without a result")
    note = finish_note(done.finish_reason)
    if note:
        print(f"\n[{note}]", file=err)
    if tokens is not None:
        tokens.extend(t for t in fold_rollbacks(seen) if t.token_id >= 0)
    return done


def format_stats(stats: Stats, finish: str) -> str:
    return (f"[prompt {stats.prompt_tokens} tok ({stats.reused_tokens} reused, "
            f"{stats.evaluated_tokens} evaluated) | TTFT {stats.ttft_s * 1000:.0f} ms | "
            f"prompt {stats.prompt_tps:.1f} tok/s | gen {stats.generated_tokens} tok at "
            f"{stats.generation_tps:.1f} tok/s | context {stats.context_used}/{stats.n_ctx} | "
            f"finish: {finish}]")
