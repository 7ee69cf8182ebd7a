"""``verso classify``: texts (one per line) into labels, as CSV or JSON lines, calibrated
against the model's content-free prior unless ``--no-calibrate``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator

from engine.api import Feature
from engine.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Io,
    add_load_flags,
    decode_input,
    load,
    load_settings,
    open_engine,
    read_file,
    require_features,
)
from engine.text_lists import split_list


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    classify.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None,
                          help="Correct the model's bias toward some labels by dividing out "
                               "its label probabilities for content-free texts (\"\", "
                               "\"N/A\", \"[MASK]\"). By default only when that bias is "
                               "steady (the same label favoured on each of them); --calibrate "
                               "always, --no-calibrate never. The output keeps the raw "
                               "probabilities beside the calibrated ones.")
    classify.add_argument("--json", action="store_true",
                          help="One JSON object per line instead of CSV.")
    add_load_flags(classify)


def _stdin_lines(io: Io) -> Iterator[str]:
    """Lines of stdin as they arrive; invalid UTF-8 is a usage error naming the byte."""
    buffer = getattr(io.stdin, "buffer", None)
    if buffer is None:
        yield from io.stdin
        return
    for number, raw in enumerate(buffer, start=1):
        yield decode_input(raw, f"line {number} of standard input")


def _texts(path: str | None, io: Io) -> Iterator[str]:
    """Non-empty lines: a file is read at once (a missing one fails before the model loads),
    stdin as it arrives."""
    lines = _stdin_lines(io) if path is None else iter(read_file(path, "input file")
                                                         .splitlines())
    return (line.rstrip("\r\n") for line in lines if line.strip())


def run(args: argparse.Namespace, io: Io) -> int:
    from engine.tasks.classify import check_labels, classify_many, write_csv

    examples = []
    for entry in args.example:
        text, sep, label = entry.rpartition("=")
        if not sep or not text.strip() or not label.strip():
            raise CliError(f"--example needs TEXT=LABEL, got {entry!r}", EXIT_USAGE)
        examples.append((text, label))
    labels = check_labels(split_list(args.labels), examples)
    settings = load_settings(args)
    texts = _texts(args.file, io)
    with open_engine(args, io) as engine:
        require_features(engine.capabilities, [Feature.SCORE])
        load(engine, settings, io.err, quiet=True)
        rows = classify_many(engine, texts, labels, examples, args.instruction, args.chat,
                             calibrated=args.calibrate)
        if args.json:
            for text, result in rows:
                json.dump({"text": text, "label": result.label,
                           "probabilities": result.probabilities,
                           "calibrated": result.calibrated, "raw_label": result.raw_label,
                           "raw_probabilities": result.raw_probabilities,
                           "prior": result.prior,
                           "not_calibrated": result.not_calibrated}, io.out)
                print(file=io.out, flush=True)
        else:
            write_csv(rows, labels, io.out)
    return EXIT_OK
