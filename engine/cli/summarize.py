"""``verso summarize``: abstractive (map-reduce, cited) or extractive summaries."""

from __future__ import annotations

import argparse
import json

from engine.api import LOCAL_CAPABILITIES
from engine.cli.advice_note import note_advice
from engine.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Io,
    add_load_flags,
    load,
    load_settings,
    open_engine,
)
from engine.cli.document_io import last_result, read_documents, refuse_reproducible
from engine.options import MAX_CTX

FALLBACK_ADVICE = ("A larger model, or a longer --chunk-tokens (fewer notes to combine), "
                   "usually does better.")


def add_parser(sub: argparse._SubParsersAction) -> None:
    summarize = sub.add_parser("summarize", help="Summarize one or more documents.")
    summarize.add_argument("files", nargs="+", metavar="FILE")
    summarize.add_argument("--mode", choices=["abstractive", "extractive"],
                           default="abstractive")
    summarize.add_argument("--length", type=int, default=5,
                           help="Bullets or sentences (words for --form paragraph).")
    summarize.add_argument("--form", choices=["bullets", "paragraph", "keypoints"],
                           default="bullets")
    summarize.add_argument("--chunk-tokens", type=int, default=512,
                           help="Document tokens per map step.")
    summarize.add_argument("--parallel", type=int, default=4,
                           help="Chunks decoded together.")
    summarize.add_argument("--json", action="store_true", help="Print the result as JSON.")
    add_load_flags(summarize)


def run(args: argparse.Namespace, io: Io) -> int:
    from engine.store.jobs import JobStore
    from engine.tasks.summarize import (
        UNSUPPORTED_MARK,
        UNSUPPORTED_TEXT,
        Form,
        Mode,
        SummarizeSettings,
        SummaryResult,
        summarize,
    )

    refuse_reproducible(args, "summary")
    if args.length < 1 or not 64 <= args.chunk_tokens <= MAX_CTX or \
            not 1 <= args.parallel <= LOCAL_CAPABILITIES.max_parallel:
        raise CliError(f"--length must be positive, --parallel between 1 and "
                       f"{LOCAL_CAPABILITIES.max_parallel}, --chunk-tokens between 64 and "
                       f"{MAX_CTX:,}", EXIT_USAGE)
    documents = read_documents(args.files)
    settings = SummarizeSettings(mode=Mode(args.mode), form=Form(args.form), length=args.length,
                                 chunk_tokens=args.chunk_tokens, n_parallel=args.parallel)
    if settings.mode is Mode.EXTRACTIVE:
        result = last_result(summarize(None, documents, settings), io.err)
    else:
        load_with = load_settings(args)
        with open_engine(args, io) as engine, JobStore() as store:
            note_advice("summarize", load(engine, load_with, io.err), io.err)
            result = last_result(summarize(engine, documents, settings, store), io.err)
    assert isinstance(result, SummaryResult)
    if args.json:
        json.dump(result.to_json(), io.out, indent=2, ensure_ascii=False)
        print(file=io.out)
    else:
        if result.fallback:
            print(f"{result.fallback} {FALLBACK_ADVICE}", file=io.err)
        if result.repeating:
            print(result.repeating_note(), file=io.err)
        if result.left_out:
            print(result.left_out, file=io.err)
        print(result.to_text(), file=io.out)
        if result.unsupported:
            print(f"{len(result.unsupported)} point(s) marked ({UNSUPPORTED_MARK}): "
                  f"{UNSUPPORTED_TEXT}", file=io.err)
    return EXIT_OK
