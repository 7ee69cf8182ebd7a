"""The task advice (``engine.tasks.advice``) as a note on stderr for ``verso translate`` and
``verso summarize``: the run goes ahead, the user learns why the output may be poor."""

from __future__ import annotations

from typing import TextIO

from engine.errors import VersoError
from engine.events import ModelLoaded
from engine.tasks.advice import Task, advice_for


def note_advice(task: Task, loaded: ModelLoaded, err: TextIO, target: str | None = None,
                source: str | None = None) -> None:
    if loaded.local_path is None:  # a remote model: its metadata is not at hand
        return
    from engine.catalog import read_model_info

    try:
        info = read_model_info(loaded.local_path)
    except VersoError:
        return
    advice = advice_for(task, info, target, source)
    if advice is not None:
        print(f"note: {advice.text.replace('(Models panel)', '(see `verso models`)')}",
              file=err)
