"""Summaries of one or several documents, with citations back to chunks and pages.

Abstractive: map-reduce. Each chunk (from ``segment``) is summarized on its own, all chunks
decoded together as parallel sequences sharing the instruction prefix; the notes are then
reduced to the requested form, hierarchically when they do not fit one prompt. Every step's
result is stored as soon as it exists (``JobStore``), so a cancelled or crashed job resumes
without recomputing finished chunks. Extractive: see ``engine.tasks.extractive``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from engine.api import Engine, without_missing_aids
from engine.documents import Chunk, Document, document_from_text, segment
from engine.errors import BadRequestError, Cancelled, VersoError
from engine.events import SeqDone
from engine.options import DOCUMENT_SAMPLING, GREEDY, BatchRequest, SamplingParams
from engine.store.jobs import JobStore, content_hash
from engine.tasks.citations import Note, Point, cite, merge_repeats, render_notes, without_markers
from engine.tasks.extractive import Extract, extract
from engine.tasks.jobs import (
    CancelCheck,
    TaskProgress,
    job_model,
    model_has_chat,
    prompt_item,
    run_batch,
)
from engine.tasks.resume import JobRecipe, make_recipe, sampling_from_json, summary_title
from engine.tasks.support import support
from engine.tasks.text_quality import cut_loop, degeneration, drop_repeated_sentences

_MIN_TOKENS = 4  # a small model may otherwise end a summary before writing anything


class Mode(StrEnum):
    ABSTRACTIVE = "abstractive"
    EXTRACTIVE = "extractive"


class Form(StrEnum):
    BULLETS = "bullets"
    PARAGRAPH = "paragraph"
    KEYPOINTS = "keypoints"  # key points, then action items


@dataclass(frozen=True, slots=True)
class SummarizeSettings:
    mode: Mode = Mode.ABSTRACTIVE
    form: Form = Form.BULLETS
    length: int = 5  # bullets (or sentences) for bullets/keypoints/extractive; words otherwise
    chunk_tokens: int = 512  # tokens of document text per map step
    note_tokens: int = 96  # most tokens of each map-step summary
    reduce_tokens: int = 1536  # most prompt tokens of one reduce step
    n_parallel: int = 4
    sampling: SamplingParams = DOCUMENT_SAMPLING

    def key(self) -> dict[str, Any]:
        """What determines the result (the job id hashes it)."""
        data = asdict(self)
        data.pop("n_parallel")
        data["sampling"] = asdict(self.sampling)
        return data

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "mode": str(self.mode), "form": str(self.form)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SummarizeSettings:
        names = {f.name for f in fields(cls)} - {"mode", "form", "sampling"}
        return cls(mode=Mode(data.get("mode", Mode.ABSTRACTIVE)),
                   form=Form(data.get("form", Form.BULLETS)),
                   sampling=sampling_from_json(data.get("sampling", {})) if "sampling" in data
                   else GREEDY, **{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True)
class ChunkRef:
    id: int  # 1-based, across all documents
    source: str
    first_page: int | None
    last_page: int | None
    first_paragraph: int
    last_paragraph: int


@dataclass(frozen=True, slots=True)
class SummaryResult:
    mode: Mode
    form: Form
    points: tuple[Point, ...] = ()
    extracts: tuple[Extract, ...] = ()
    chunks: tuple[ChunkRef, ...] = ()
    invalid_markers: tuple[int, ...] = ()  # markers the model wrote that name no chunk
    job_id: str = ""
    steps_computed: tuple[str, ...] = ()
    steps_reused: tuple[str, ...] = ()
    notes: dict[int, str] = field(default_factory=dict)  # chunk id -> its map summary
    # Why the points are not the model's final summary ("" when they are): a final step
    # that looped or gave no usable point is replaced by the notes on each chunk (or, for
    # a one-chunk document, its most central sentences).
    fallback: str = ""
    # Points of the final step left out because each looped on its own ("" when none).
    left_out: str = ""

    @property
    def unsupported(self) -> list[Point]:
        return [p for p in self.points if p.unsupported]

    def note_lines(self) -> list[tuple[int, str]]:
        """(chunk id, note) for each chunk with a non-empty note, in document order."""
        return [(int(cid), text.strip()) for cid, text in
                sorted(self.notes.items(), key=lambda item: int(item[0])) if text.strip()]

    def sources(self, point: Point) -> list[str]:
        by_id = {c.id: c for c in self.chunks}
        return sorted({by_id[i].source for i in point.chunks if i in by_id})

    def pages(self, point: Point) -> list[int]:
        by_id = {c.id: c for c in self.chunks}
        pages: set[int] = set()
        for i in point.chunks:
            c = by_id.get(i)
            if c and c.first_page is not None:
                pages.update(range(c.first_page, (c.last_page or c.first_page) + 1))
        return sorted(pages)

    def to_text(self) -> str:
        if self.mode is Mode.EXTRACTIVE:
            return "\n".join(f"- \"{e.text}\" ({_where(e.source, e.page, e.paragraph)})"
                             for e in self.extracts)
        lines = []
        for kind, title in (("point", "Key points"), ("action", "Action items")):
            points = [p for p in self.points if p.kind == kind]
            if self.form is Form.KEYPOINTS and points:
                lines.append(f"{title}:")
            for p in points:
                marks = "".join(f"[{i}]" for i in p.chunks) + \
                    (f" ({UNSUPPORTED_MARK})" if p.unsupported else "")
                lines.append(p.text + " " + marks if self.form is Form.PARAGRAPH
                             and not self.fallback else f"- {p.text} {marks}")
        if self.form is Form.PARAGRAPH and not self.fallback:
            return " ".join(lines)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["points"] = [{**asdict(p), "unsupported": p.unsupported, "sources": self.sources(p),
                           "pages": self.pages(p)} for p in self.points]
        return data


UNSUPPORTED_MARK = "unsupported"
UNSUPPORTED_TEXT = ("Few of this point's words occur in the chunk it cites, so the chunk may "
                    "not say this: check it against the source.")


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One run of the final step: its points, the invalid markers, why its text is a loop
    ("" when it is not), and which looping points were left out of it."""

    points: list[Point]
    invalid: list[int]
    degenerate: str = ""
    left_out: str = ""

    def failure(self) -> str:
        """Why this attempt cannot be the summary, or ""."""
        if self.degenerate:
            return self.degenerate
        return "" if self.points else "it gave no usable point"

    def to_json(self) -> dict[str, Any]:
        return {"points": [asdict(p) for p in self.points], "invalid": self.invalid,
                "degenerate": self.degenerate, "left_out": self.left_out}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Attempt:
        points = [Point(p["text"], tuple(p["chunks"]), p["kind"], p["inferred"])
                  for p in data["points"]]
        degenerate = data.get("degenerate")
        if degenerate is None:  # stored before the check existed
            loop = degeneration("\n".join(p.text for p in points))
            degenerate = loop.reason if loop else ""
        return cls(points, list(data["invalid"]), degenerate, data.get("left_out", ""))


def _attempt(text: str, notes: Sequence[Note], existing: set[int], paragraph: bool) -> _Attempt:
    """The final step's text as points. A text that loops fails, unless the loop is confined
    to lines that each loop on their own: those are left out and the rest is kept."""
    loop = degeneration(without_markers(text))
    left_out = ""
    if loop is not None:
        lines = text.splitlines()
        looping = [degeneration(without_markers(line)) for line in lines]
        kept = "\n".join(line for line, bad in zip(lines, looping, strict=True) if bad is None)
        reasons = [bad.reason for bad in looping if bad is not None]
        if reasons and kept.strip() and degeneration(without_markers(kept)) is None:
            count = "1 point" if len(reasons) == 1 else f"{len(reasons)} points"
            text, loop = kept, None
            left_out = f"{count} of the model's summary left out: {reasons[0]}."
    points, invalid = cite(text, notes, existing, paragraph)
    return _Attempt(points, invalid, loop.reason if loop else "", left_out)


def _where(source: str, page: int | None, paragraph: int) -> str:
    return f"{source}, " + (f"p. {page}, " if page else "") + f"¶ {paragraph}"


_FORM_TEXT = {
    Form.BULLETS: "as {n} short bullet points, one per line starting with '- '",
    Form.PARAGRAPH: "as one paragraph of about {n} words",
    Form.KEYPOINTS: "as up to {n} key points (lines starting with '- '), then a line "
                    "'Action items:' followed by the actions the text calls for",
}


def _map_prompt(chunk: Chunk, source: str, settings: SummarizeSettings) -> str:
    """The instruction first (shared by every chunk's prompt, evaluated once) and again
    after the excerpt: without the reminder, SmolLM2-135M mostly echoed the prompt's
    "Source:"/"Excerpt:" lines and the excerpt itself instead of summarizing."""
    return ("Summarize the excerpt below in two or three short sentences. Keep names, "
            "numbers and facts; add nothing that is not in it.\n\nExcerpt:\n"
            f"{chunk.text}\n\nEnd of excerpt. Now summarize it in two or three short "
            "sentences of your own.")


_ECHOED_LABEL = re.compile(r"^\s*(?:(?:Source\s*:[^\n]*|(?:Excerpt|Summary)\s*:\s*)\n+)+",
                           re.IGNORECASE)


def _clean_note(text: str) -> str:
    """A map step's note without prompt labels a small model echoed at its start, without
    the copies of a sentence it looped on, and cut where a run of words starts over."""
    cleaned = _ECHOED_LABEL.sub("", text.strip() + "\n").strip() or text.strip()
    return cut_loop(drop_repeated_sentences(cleaned))


def _reduce_prompt(notes: Sequence[Note], settings: SummarizeSettings, final: bool) -> str:
    form = _FORM_TEXT[settings.form if final else Form.BULLETS].format(
        n=settings.length if final else max(3, settings.length))
    return ("Below are numbered notes taken from one or more documents. Combine them into a "
            f"summary {form}. End every point with the number(s) of the notes it comes from "
            "in square brackets, like [2] or [1, 3]. Use only the notes.\n\nNotes:\n"
            + render_notes(notes))


def _merge(points: list[dict[str, Any]], group: Sequence[Note]) -> Note:
    """An intermediate reduce step's points as one note that keeps their markers."""
    text = " ".join(f"{p['text']} {''.join(f'[{c}]' for c in p['chunks'])}" for p in points)
    chunks = sorted({c for n in group for c in n.chunks})
    return Note(text or " ".join(n.text for n in group), tuple(chunks))


def source_chunks(client: Engine, documents: Sequence[Document],
                  settings: SummarizeSettings,
                  progress: Callable[[float], None] | None = None,
                  ) -> list[tuple[Chunk, ChunkRef]]:
    """The chunks a summary cites, numbered as its ``[n]`` markers (deterministic, so a
    viewer can recompute them to show a cited chunk's text). ``progress`` gets the fraction
    of the documents' text segmented so far."""
    if client.loaded is None:
        raise VersoError("Load a model before summarizing.")
    out: list[tuple[Chunk, ChunkRef]] = []
    total = sum(len(d.text) for d in documents) or 1
    before = 0
    for document in documents:
        share = len(document.text) / total

        def report(fraction: float, before: int = before, share: float = share) -> None:
            if progress is not None:
                progress(before / total + share * fraction)

        before += len(document.text)
        for chunk in segment(document, client.count_tokens, settings.chunk_tokens,
                             progress=report):
            ref = ChunkRef(len(out) + 1, document.name, chunk.first_page, chunk.last_page,
                           chunk.first_paragraph, chunk.last_paragraph)
            out.append((chunk, ref))
    return out


def summarize(client: Engine | None, documents: Sequence[Document],
              settings: SummarizeSettings = SummarizeSettings(),
              store: JobStore | None = None,
              cancel: CancelCheck = lambda: False,
              recipe: JobRecipe | None = None) -> Iterator[TaskProgress | SummaryResult]:
    """Stream progress, then one ``SummaryResult``. Raises ``Cancelled`` when cancelled
    (finished steps stay stored: the same call later resumes). Extractive mode needs no
    model (``client`` may be None). With a ``store`` the job keeps ``recipe`` (made from the
    documents and settings when not given), so it can be listed and resumed later."""
    if not documents:
        raise BadRequestError("Nothing to summarize: give at least one document.")
    if settings.length < 1:
        raise BadRequestError("The summary length must be at least 1.")
    if settings.mode is Mode.EXTRACTIVE:
        found = extract(documents, settings.length)
        if not found:
            names = ", ".join(d.name for d in documents)
            raise BadRequestError(f"Nothing to quote: {names} has no sentences with words "
                                  "in it.")
        yield TaskProgress("extract", 1, 1, 0.0)
        yield SummaryResult(settings.mode, settings.form, extracts=tuple(found))
        return
    if client is None:
        raise BadRequestError("Abstractive summaries need a loaded model.")
    chunks = yield from _segmenting(client, documents, settings, cancel)
    run = _Run(client, documents, settings, store, cancel, recipe, chunks)
    try:
        yield from run.execute()
    except Cancelled:
        run.finish("cancelled")
        raise
    except BaseException:
        run.finish("failed")
        raise


_SEGMENT_STEPS = 100
_SEGMENT_POLL_S = 0.25


def _segmenting(client: Engine, documents: Sequence[Document], settings: SummarizeSettings,
                cancel: CancelCheck) -> Generator[TaskProgress, None,
                                                  list[tuple[Chunk, ChunkRef]]]:
    """``source_chunks`` on a helper thread, reported as the "segment" stage in percent (a
    long text takes seconds per megabyte to cut into chunks); a cancel stops it."""
    fraction = [0.0]
    abandoned = [False]  # the caller stopped iterating: end the thread too

    def report(value: float) -> None:
        if abandoned[0] or cancel():
            raise Cancelled
        fraction[0] = value

    with ThreadPoolExecutor(1, thread_name_prefix="verso-segment") as pool:
        future = pool.submit(source_chunks, client, documents, settings, report)
        shown = -1
        try:
            while True:
                try:
                    return future.result(timeout=_SEGMENT_POLL_S)
                except FutureTimeout:
                    pass
                done = int(fraction[0] * _SEGMENT_STEPS)
                if done != shown:
                    shown = done
                    yield TaskProgress("segment", done, _SEGMENT_STEPS)
        finally:
            abandoned[0] = True


class _Run:
    def __init__(self, client: Engine, documents: Sequence[Document],
                 settings: SummarizeSettings, store: JobStore | None,
                 cancel: CancelCheck, recipe: JobRecipe | None,
                 chunks: list[tuple[Chunk, ChunkRef]]) -> None:
        self.client, self.settings, self.cancel = client, settings, cancel
        self.chat = model_has_chat(client)
        self.chunks = chunks
        self.documents = documents
        self.store = store
        model = job_model(client, recipe)
        inputs = content_hash([d.to_markdown() for d in documents],
                              [d.name for d in documents], model.identity())
        self.job = store.open_job("summarize", inputs, settings.key()) if store else None
        self.saved: dict[str, Any] = store.steps(self.job.id) if store and self.job else {}
        self.computed: list[str] = []
        self.reused: list[str] = []
        self.reduce_steps = 0  # planned so far, for the job's steps total
        if store and self.job:
            recipe = recipe or make_recipe(summary_title(documents), documents,
                                           settings.to_json(), model)
            store.record(self.job.id, recipe.title, recipe.to_json(), self._total(final=False))

    def _total(self, final: bool) -> int:
        """Map steps, reduce steps planned so far, and one more while the final reduce is
        not planned yet (the whole plan is known only once the notes exist)."""
        if len(self.chunks) == 1:
            return 1
        return len(self.chunks) + self.reduce_steps + (0 if final else 1)

    def finish(self, status: str, result: Any = None) -> None:
        if self.store and self.job:
            self.store.finish(self.job.id, status, result)

    def _save(self, step: str, value: Any) -> None:
        self.saved[step] = value
        self.computed.append(step)
        if self.store and self.job:
            self.store.save_step(self.job.id, step, value)

    def _generate(self, stage: str, steps: list[str], prompts: list[str], max_tokens: int,
                  parse: Callable[[int, str], Any]) -> Iterator[TaskProgress]:
        """Run the prompts whose step has no stored result; store each as it finishes."""
        todo = [i for i, s in enumerate(steps) if s not in self.saved]
        self.reused += [s for s in steps if s in self.saved]
        if not todo:
            yield TaskProgress(stage, len(steps), len(steps), 0.0)
            return
        request = BatchRequest(
            tuple(prompt_item(self.client, prompts[i], self.chat) for i in todo),
            sampling=without_missing_aids(self.client.capabilities, SamplingParams(
                **{**asdict(self.settings.sampling), "max_tokens": max_tokens})),
            n_parallel=self.settings.n_parallel, min_tokens=_MIN_TOKENS)

        def on_done(done: SeqDone) -> None:
            i = todo[done.index]
            self._save(steps[i], parse(i, done.text))

        yield from run_batch(self.client, request, stage, on_done, self.cancel,
                             done_before=len(steps) - len(todo), total=len(steps))

    def execute(self) -> Iterator[TaskProgress | SummaryResult]:
        s = self.settings
        existing = {ref.id for _, ref in self.chunks}
        single = len(self.chunks) == 1
        steps = [f"map:{ref.id}" for _, ref in self.chunks]
        prompts = [(_reduce_prompt([Note(chunk.text, (ref.id,))], s, final=True) if single
                    else _map_prompt(chunk, ref.source, s)) for chunk, ref in self.chunks]
        map_tokens = self._final_tokens() if single else s.note_tokens
        yield from self._generate("map", steps, prompts, map_tokens,
                                  lambda i, text: text.strip() if single else _clean_note(text))
        notes = [Note(self.saved[step], (ref.id,)) for step, (_, ref) in zip(steps, self.chunks,
                                                                               strict=True)]
        paragraph = s.form is Form.PARAGRAPH
        if single:
            attempt = _attempt(notes[0].text, notes, existing, paragraph)
        else:
            level = 1
            while True:
                groups = self._groups(notes)
                final = len(groups) == 1
                stage = "reduce" if final else f"reduce {level}"
                steps = [f"reduce:{level}:{g}" for g in range(len(groups))]
                prompts = [_reduce_prompt(group, s, final) for group in groups]
                self.reduce_steps += len(groups)
                if self.store and self.job:
                    self.store.set_total(self.job.id, self._total(final))

                def parse(i: int, text: str, groups: list[list[Note]] = groups,
                          final: bool = final) -> dict[str, Any]:
                    return _attempt(text, groups[i], existing, final and paragraph).to_json()

                tokens = self._final_tokens() if final else s.note_tokens * 2
                yield from self._generate(stage, steps, prompts, tokens, parse)
                parsed = [self.saved[step] for step in steps]
                if final:
                    attempt = _Attempt.from_json(parsed[0])
                    break
                # One note per group, so every level has fewer notes than the one before.
                notes = [_merge(result["points"], group)
                         for result, group in zip(parsed, groups, strict=True)]
                level += 1
        points, fallback = attempt.points, attempt.failure()
        if fallback:
            points, fallback = self._fallback(fallback)
        elif s.form is not Form.PARAGRAPH:
            points = [p for p in points if p.kind == "point"][:s.length] + \
                [p for p in points if p.kind == "action"]
        result = SummaryResult(
            s.mode, s.form, points=tuple(self._checked(points)),
            chunks=tuple(r for _, r in self.chunks), invalid_markers=tuple(attempt.invalid),
            job_id=self.job.id if self.job else "", steps_computed=tuple(self.computed),
            steps_reused=tuple(self.reused),
            notes={ref.id: self.saved[f"map:{ref.id}"] for _, ref in self.chunks},
            fallback=fallback, left_out="" if fallback else attempt.left_out)
        self.finish("done", result.to_json())
        yield result

    def _fallback(self, failure: str) -> tuple[list[Point], str]:
        """What stands in for a failed final step, and the explanation a user reads: the
        notes on each chunk, or for a one-chunk document its most central sentences."""
        if len(self.chunks) == 1:
            chunk, ref = self.chunks[0]
            quoted = extract([document_from_text(chunk.body, name=ref.source, markdown=True)],
                             self.settings.length)
            if quoted:
                return ([Point(e.text, (ref.id,)) for e in quoted],
                        f"The model's summary failed ({failure}), so the document's most "
                        "central sentences are quoted instead.")
            return [], f"The model's summary failed ({failure}) and no sentence could be quoted."
        notes = [Point(" ".join(_clean_note(self.saved[f"map:{ref.id}"]).split()), (ref.id,))
                 for _, ref in self.chunks if self.saved[f"map:{ref.id}"].strip()]
        return (merge_repeats(notes), f"The model's final step failed ({failure}), so its "
                "notes on each chunk are shown instead.")

    def _checked(self, points: Sequence[Point]) -> list[Point]:
        """Points with their support in the chunks they cite."""
        texts = {ref.id: chunk.text for chunk, ref in self.chunks}
        return [replace(p, support=round(support(p.text, [texts[c] for c in p.chunks
                                                          if c in texts]), 3))
                for p in points]

    def _final_tokens(self) -> int:
        s = self.settings
        if s.form is Form.PARAGRAPH:
            return int(s.length * 2) + 32
        return 40 * s.length + (80 if s.form is Form.KEYPOINTS else 0)

    def _groups(self, notes: list[Note]) -> list[list[Note]]:
        """Notes split into reduce prompts that fit ``reduce_tokens``, in order. Two notes
        per group at least, so each level shrinks."""
        budget = self.settings.reduce_tokens
        groups: list[list[Note]] = [[]]
        used = 0
        for note in notes:
            size = self.client.count_tokens(render_notes([note])) + 1
            if groups[-1] and used + size > budget and len(groups[-1]) >= 2:
                groups.append([])
                used = 0
            groups[-1].append(note)
            used += size
        if len(groups) > 1 and len(groups[-1]) == 1:
            last = groups.pop()
            groups[-1] += last
        return groups
