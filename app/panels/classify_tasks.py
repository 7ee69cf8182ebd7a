"""What the Workbench's Classify tab asks of the engine, as task functions for
``EngineBridge.run_task``: one text, or many texts in turn with progress.

Each function runs in the bridge's engine thread and yields ``Classified`` records (and
``TaskProgress`` for a batch). A cancel between texts, or one that interrupts the scoring of
a text, ends the task with ``Cancelled``; rows already yielded stay with the panel."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from app.bridge import TaskFn
from engine.errors import Cancelled, VersoError
from engine.tasks.classify import ClassifyResult, classify
from engine.tasks.jobs import CancelCheck, TaskProgress

STAGE = "classify"


@dataclass(frozen=True)
class ClassifySpec:
    labels: tuple[str, ...]
    few_shot: tuple[tuple[str, str], ...] = ()
    instruction: str | None = None
    calibrate: bool = True  # divide out the content-free prior (engine.tasks.classify)


@dataclass(frozen=True)
class Classified:
    index: int  # position of the text in the batch (0 for a single text)
    text: str
    result: ClassifyResult


def _classify(client, spec: ClassifySpec, text: str,
              cancelled: CancelCheck) -> ClassifyResult:
    try:
        return classify(client, text, spec.labels, spec.few_shot, spec.instruction,
                        calibrated=None if spec.calibrate else False)
    except Cancelled:
        raise
    except VersoError:
        if cancelled():  # a cancel that landed on a tokenize or template call
            raise Cancelled from None
        raise


def classify_text(text: str, spec: ClassifySpec) -> TaskFn:
    def run(client, cancelled) -> Iterator[object]:
        yield Classified(0, text, _classify(client, spec, text, cancelled))
    return run


def classify_texts(texts: Sequence[str], spec: ClassifySpec) -> TaskFn:
    """Classify ``texts`` in order; progress (with time left) after each one."""
    items = tuple(texts)

    def run(client, cancelled) -> Iterator[object]:
        total = len(items)
        yield TaskProgress(STAGE, 0, total)
        started = time.monotonic()
        for index, text in enumerate(items):
            if cancelled():
                raise Cancelled
            yield Classified(index, text, _classify(client, spec, text, cancelled))
            done = index + 1
            eta = (time.monotonic() - started) / done * (total - done)
            yield TaskProgress(STAGE, done, total, eta)
    return run


def read_lines(path: str) -> list[str]:
    """The non-empty lines of a UTF-8 text file, as ``verso classify FILE`` reads them.
    Raises ``OSError`` or ``UnicodeDecodeError``."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    return [line.rstrip("\r\n") for line in lines if line.strip()]
