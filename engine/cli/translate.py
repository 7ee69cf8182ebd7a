"""``verso translate``: a document, segment by segment, with an enforced glossary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    add_load_flags(translate)


def run(args: argparse.Namespace, io: Io) -> int:
    from engine.store.jobs import JobStore
    from engine.tasks.glossary import Glossary, load_csv
    from engine.tasks.translate import TranslateSettings, Translation, translate
    from engine.tasks.translate_export import (
        EXPORT_SUFFIXES,
        export,
        segment_notes,
        to_markdown,
    )

    refuse_reproducible(args, "translation")
    if args.output and Path(args.output).suffix.lower() not in EXPORT_SUFFIXES:
        raise CliError("-o must end in " + ", ".join(EXPORT_SUFFIXES), EXIT_USAGE)
    if not 1 <= args.parallel <= LOCAL_CAPABILITIES.max_parallel:
        raise CliError(f"--parallel must be between 1 and {LOCAL_CAPABILITIES.max_parallel}",
                       EXIT_USAGE)
    glossary = load_csv(args.glossary) if args.glossary else Glossary()
    document = read_documents([args.file])[0]
    settings = TranslateSettings(target=args.target, source=args.source, glossary=glossary,
                                 n_parallel=args.parallel)
    load_with = load_settings(args)
    with open_engine(args, io) as engine, JobStore() as store:
        note_advice("translate", load(engine, load_with, io.err), io.err, target=args.target,
                    source=args.source)
        translation = last_result(translate(engine, document, settings, store=store), io.err)
    assert isinstance(translation, Translation)
    for segment in translation.segments:
        notes = segment_notes(segment)
        if notes:
            print(f"[segment {segment.index + 1} needs review: {' '.join(notes)}]", file=io.err)
    if args.json:
        json.dump(translation.to_json(), io.out, indent=2, ensure_ascii=False, default=str)
        print(file=io.out)
    elif args.output:
        print(f"[wrote {export(translation, args.output)}]", file=io.err)
    else:
        io.out.write(to_markdown(translation))
    return EXIT_OK
