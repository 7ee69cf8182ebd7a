"""What ``verso summarize`` and ``verso translate`` share: reading the documents, printing
progress to stderr, taking the task's result, and what ``--reproducible`` means for them.

Results go to stdout (or ``-o``), progress to stderr. A summary or translation interrupted
with Ctrl-C resumes from its stored steps when run again."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO, TypeVar

from engine.cli.common import EXIT_USAGE, CliError
from engine.documents import Document, load_document
from engine.tasks.jobs import TaskProgress

_R = TypeVar("_R")

NOT_REPRODUCIBLE = (
    "--reproducible is not available for {command}: its chunks are decoded as parallel "
    "sequences, and llama.cpp's batched kernels can change the last bits of a result with "
    "the batch around it, and a run resumes from steps stored by earlier runs. For the same "
    "{what} again, run it again: finished steps are reused exactly.")


def refuse_reproducible(args: argparse.Namespace, what: str) -> None:
    if getattr(args, "reproducible", False):
        raise CliError(NOT_REPRODUCIBLE.format(command=f"verso {args.command}", what=what),
                       EXIT_USAGE)


def read_documents(paths: Iterable[str]) -> list[Document]:
    documents = []
    for path in paths:
        if Path(path).is_dir():
            raise CliError(f"{path} is a folder: give the documents in it by name "
                           f"(e.g. {Path(path) / '*.pdf'})", EXIT_USAGE)
        if not Path(path).exists():
            raise CliError(f"no such file: {path}", EXIT_USAGE)
        documents.append(load_document(path))
    return documents


def print_progress(event: TaskProgress, err: TextIO) -> None:
    eta = f", about {event.eta_s:.0f} s left" if event.eta_s else ""
    done = (f"{event.done}%" if event.stage == "segment"
            else f"{event.done}/{event.total}")
    print(f"[{event.stage} {done}{eta}]", file=err, flush=True)


def last_result(events: Iterable[TaskProgress | _R], err: TextIO) -> _R:
    """The task's result (its last event), printing its progress on the way."""
    result: _R | None = None
    for event in events:
        if isinstance(event, TaskProgress):
            print_progress(event, err)
        else:
            result = event
    if result is None:
        raise CliError("the task ended without a result")
    return result
