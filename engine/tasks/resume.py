"""Interrupted document jobs: what is needed to run one again, and whether it still can be.

When a summary or translation starts, its job row gets a *recipe* (``JobRecipe``): a short
title, the sources (the file's path with its size, modification time and SHA-256, or the
pasted text itself), the settings and the model. After a cancel, a crash or closing the app,
the app lists the job and can run it again from the recipe: the same documents and settings
give the same job id, so the stored steps are reused.

Before that, ``check_sources`` says specifically which file was moved, deleted or changed
(a changed file gives other chunks, so the stored steps would not apply), and once the files
are read again ``changed_documents`` compares what was read with what the job was made from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.documents import Document
from engine.model_hash import file_sha256
from engine.model_ref import ModelRef
from engine.options import SamplingParams
from engine.store.jobs import JobInfo, JobStore, content_hash

RECIPE_VERSION = 1
TITLE_CHARS = 80


@dataclass(frozen=True, slots=True)
class JobSource:
    name: str  # the document's name (part of the job id)
    path: str = ""  # the file it was read from; "" for pasted text
    text: str | None = None  # pasted text itself
    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None  # of the file's bytes
    digest: str = ""  # of the document as read (its Markdown), see ``document_digest``

    @property
    def pasted(self) -> bool:
        return self.text is not None


@dataclass(frozen=True, slots=True)
class JobRecipe:
    title: str
    sources: tuple[JobSource, ...]
    settings: dict[str, Any]  # the task's settings as JSON (``*Settings.to_json``)
    model: ModelRef | None  # the model the job ran with (its identity is part of the job id)

    def to_json(self) -> dict[str, Any]:
        return {"version": RECIPE_VERSION, "title": self.title,
                "model": self.model.to_json() if self.model else None,
                "settings": self.settings, "sources": [asdict(s) for s in self.sources]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecipe:
        names = {f.name for f in fields(JobSource)}
        sources = tuple(JobSource(**{k: v for k, v in s.items() if k in names})
                        for s in data.get("sources", ()))
        return cls(data.get("title", ""), sources, dict(data.get("settings", {})),
                   ModelRef.parse(data.get("model")))


@dataclass(frozen=True, slots=True)
class InterruptedJob:
    info: JobInfo
    recipe: JobRecipe | None  # None: recorded by a Verso without recipes; open it by hand

    @property
    def id(self) -> str:
        return self.info.id


class ProblemKind(StrEnum):
    MISSING = "missing"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class SourceProblem:
    source: JobSource
    kind: ProblemKind
    message: str  # for the user


def document_digest(document: Document) -> str:
    return content_hash(document.name, document.to_markdown())


def source_of(document: Document, pasted_text: str | None = None) -> JobSource:
    """Where ``document`` came from. A pasted document keeps ``pasted_text`` (the text as
    given; its Markdown when the original is not known)."""
    digest = document_digest(document)
    if document.source:
        path = Path(document.source)
        try:
            stat = path.stat()
            sha = file_sha256(path)
        except OSError:
            return JobSource(document.name, str(path), digest=digest)
        return JobSource(document.name, str(path), None, stat.st_size, stat.st_mtime_ns, sha,
                         digest)
    text = pasted_text if pasted_text is not None else document.to_markdown()
    return JobSource(document.name, text=text, digest=digest)


def make_recipe(title: str, documents: Sequence[Document], settings: dict[str, Any],
                model: ModelRef, pasted: Sequence[str | None] | None = None) -> JobRecipe:
    texts = list(pasted) if pasted is not None else [None] * len(documents)
    return JobRecipe(_short(title), tuple(source_of(d, t) for d, t in
                                          zip(documents, texts, strict=True)),
                     settings, model)


def summary_title(documents: Sequence[Document]) -> str:
    """"Summary of a.pdf, b.docx", or "Summary of a.pdf and 4 more" when that is too long."""
    names = [d.name for d in documents]
    for shown in range(len(names), 0, -1):
        rest = len(names) - shown
        title = "Summary of " + ", ".join(names[:shown]) + (f" and {rest} more" if rest else "")
        if len(title) <= TITLE_CHARS:
            return title
    more = f" and {len(names) - 1} more" if len(names) > 1 else ""
    return "Summary of " + _short(names[0], TITLE_CHARS - len("Summary of ") - len(more)) + more


def translation_title(document: Document, target: str) -> str:
    return _short(f"{document.name} → {target}")


def _short(text: str, limit: int = TITLE_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _what(kind: str) -> str:
    return {"summarize": "summary", "translate": "translation"}.get(kind, "job")


def check_sources(recipe: JobRecipe, kind: str = "") -> list[SourceProblem]:
    """Files of the recipe that were moved, deleted or changed since the job started. A file
    whose time stamp changed but whose bytes did not is fine."""
    problems = []
    what = _what(kind)
    for source in recipe.sources:
        if source.pasted or not source.path:
            continue
        path = Path(source.path)
        try:
            stat = path.stat()
        except FileNotFoundError:
            problems.append(SourceProblem(source, ProblemKind.MISSING,
                            f"{source.name} is no longer at {path} (moved or deleted), so "
                            f"this {what} cannot be resumed. Put it back, or Discard the job."))
            continue
        except OSError as exc:
            problems.append(SourceProblem(source, ProblemKind.MISSING,
                            f"{source.name} cannot be read at {path} ({exc.strerror or exc})."))
            continue
        if not path.is_file():
            problems.append(SourceProblem(source, ProblemKind.MISSING,
                            f"{path} is no longer a file, so this {what} cannot be resumed."))
            continue
        if (stat.st_size, stat.st_mtime_ns) == (source.size, source.mtime_ns):
            continue
        try:
            same = source.sha256 is not None and file_sha256(path) == source.sha256
        except OSError:
            same = False
        if not same:
            problems.append(SourceProblem(source, ProblemKind.CHANGED, _changed(source, what)))
    return problems


def _changed(source: JobSource, what: str) -> str:
    where = f" ({source.path})" if source.path else ""
    return (f"{source.name}{where} has changed since this {what} started, so its finished "
            "steps no longer apply. Discard the job, or start a new one.")


def changed_documents(recipe: JobRecipe, documents: Sequence[Document],
                      kind: str = "") -> list[SourceProblem]:
    """Sources whose document, read again, differs from the one the job was made from."""
    what = _what(kind)
    problems = []
    for i, source in enumerate(recipe.sources):
        document = documents[i] if i < len(documents) else None
        if document is None:
            problems.append(SourceProblem(source, ProblemKind.MISSING,
                            f"{source.name} could not be read again."))
        elif source.digest and document_digest(document) != source.digest:
            problems.append(SourceProblem(source, ProblemKind.CHANGED, _changed(source, what)))
    return problems


def interrupted_jobs(store: JobStore, kind: str, exclude: Sequence[str] = ()) -> list[
        InterruptedJob]:
    """Unfinished jobs of ``kind`` (cancelled, failed, or left running by a crash), newest
    first; ``exclude``: job ids running now in this process."""
    out = []
    for info in store.unfinished(kind):
        if info.id in exclude:
            continue
        recipe = None
        if info.recipe is not None:
            try:
                recipe = JobRecipe.from_json(info.recipe)
            except (TypeError, ValueError, AttributeError):
                recipe = None
        out.append(InterruptedJob(info, recipe))
    return out


def sampling_from_json(data: dict[str, Any]) -> SamplingParams:
    """``SamplingParams`` from its ``asdict`` form read back from JSON (lists -> tuples)."""
    tuples = {f.name for f in fields(SamplingParams) if isinstance(f.default, tuple)}
    names = {f.name for f in fields(SamplingParams)}
    values = {k: v for k, v in data.items() if k in names}
    for key in tuples & values.keys():
        values[key] = tuple(values[key])
    if "logit_bias" in values:
        values["logit_bias"] = tuple((int(t), float(b)) for t, b in values["logit_bias"])
    return SamplingParams(**values)
