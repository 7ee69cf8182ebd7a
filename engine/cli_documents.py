"""``verso summarize`` and ``verso translate``: the document tasks from the command line.

Results go to stdout (or ``-o``), progress to stderr; exit codes as in ``engine.cli``. A
summary or translation interrupted with Ctrl-C resumes from its stored steps when run again."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from engine.cli import EXIT_OK, EXIT_USAGE, CliError, _add_load_flags, _load, _load_settings
from engine.documents import Document, load_document
from engine.tasks.jobs import TaskProgress

COMMANDS = ("summarize", "translate")


def add_document_parsers(sub: argparse._SubParsersAction) -> None:
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
    _add_load_flags(summarize)

    translate = sub.add_parser("translate", help="Translate a document.")
    translate.add_argument("file", metavar="FILE")
    translate.add_argument("--to", required=True, dest="target", help="Target language.")
    translate.add_argument("--from", dest="source", default=None,
                           help="Source language (default: detected).")
    translate.add_argument("--glossary", metavar="CSV", default=None,
                           help="term,translation pairs enforced in the output.")
    translate.add_argument("-o", "--output", default=None,
                           help="Write to .md, .txt or .docx (default: Markdown on stdout).")
    translate.add_argument("--parallel", type=int, default=4, help="Segments decoded together.")
    translate.add_argument("--json", action="store_true", help="Print segments as JSON.")
    _add_load_flags(translate)


def _documents(paths: Iterable[str]) -> list[Document]:
    documents = []
    for path in paths:
        if not Path(path).is_file():
            raise CliError(f"no such file: {path}", EXIT_USAGE)
        documents.append(load_document(path))
    return documents


NOTES_ONLY = ("The model's final summary step gave no usable points; printing its notes on "
              "each chunk instead. A larger model, or a longer --chunk-tokens (fewer notes to "
              "combine), usually does better.")


def _progress(event: TaskProgress, err: TextIO) -> None:
    eta = f", about {event.eta_s:.0f} s left" if event.eta_s else ""
    print(f"[{event.stage} {event.done}/{event.total}{eta}]", file=err, flush=True)


def cmd_summarize(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from engine.store.jobs import JobStore
    from engine.tasks.summarize import Form, Mode, SummarizeSettings, SummaryResult, summarize
    from engine.worker import EngineClient

    if args.length < 1 or args.chunk_tokens < 64 or args.parallel < 1:
        raise CliError("--length and --parallel must be positive, --chunk-tokens at least 64",
                       EXIT_USAGE)
    documents = _documents(args.files)
    settings = SummarizeSettings(mode=Mode(args.mode), form=Form(args.form), length=args.length,
                                 chunk_tokens=args.chunk_tokens, n_parallel=args.parallel)
    result: SummaryResult | None = None
    if settings.mode is Mode.EXTRACTIVE:
        events = summarize(None, documents, settings)
        result = _last_result(events, err)
    else:
        with EngineClient() as client, JobStore() as store:
            _load(client, _load_settings(args), err)
            result = _last_result(summarize(client, documents, settings, store), err)
    if args.json:
        json.dump(result.to_json(), out, indent=2, ensure_ascii=False)
        print(file=out)
    else:
        if result.notes_only:
            print(NOTES_ONLY, file=err)
        print(result.to_text(), file=out)
    return EXIT_OK


def _last_result(events, err: TextIO):
    result = None
    for event in events:
        if isinstance(event, TaskProgress):
            _progress(event, err)
        else:
            result = event
    return result


def cmd_translate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from engine.store.jobs import JobStore
    from engine.tasks.glossary import Glossary, load_csv
    from engine.tasks.translate import TranslateSettings, translate
    from engine.tasks.translate_export import EXPORT_SUFFIXES, export, to_markdown
    from engine.worker import EngineClient

    if args.output and Path(args.output).suffix.lower() not in EXPORT_SUFFIXES:
        raise CliError("-o must end in " + ", ".join(EXPORT_SUFFIXES), EXIT_USAGE)
    if args.parallel < 1:
        raise CliError("--parallel must be at least 1", EXIT_USAGE)
    glossary = load_csv(args.glossary) if args.glossary else Glossary()
    document = _documents([args.file])[0]
    settings = TranslateSettings(target=args.target, source=args.source, glossary=glossary,
                                 n_parallel=args.parallel)
    with EngineClient() as client, JobStore() as store:
        _load(client, _load_settings(args), err)
        translation = _last_result(translate(client, document, settings, store=store), err)
    low = [s.index for s in translation.segments if s.low_confidence]
    if low:
        print(f"[low confidence: segments {', '.join(map(str, low))}]", file=err)
    if args.json:
        json.dump(translation.to_json(), out, indent=2, ensure_ascii=False, default=str)
        print(file=out)
    elif args.output:
        print(f"[wrote {export(translation, args.output)}]", file=err)
    else:
        out.write(to_markdown(translation))
    return EXIT_OK


def run_document_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command == "summarize":
        return cmd_summarize(args, out, err)
    return cmd_translate(args, out, err)
