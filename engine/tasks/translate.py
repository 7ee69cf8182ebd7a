"""Document translation, segment by segment, keeping the document's structure.

Each text block (heading, paragraph, list item, quote, table row) is one segment, split at
sentence ends when it is too long; code is copied unchanged. Segments are decoded together
as parallel sequences that share the instruction prefix. Glossary translations that apply to
a segment are enforced while decoding (``BatchItem.required``: forced before the segment
may end), not merely asked for. Confidence is the mean log-probability of the segment's
tokens under the model; segments below ``low_confidence`` are flagged.

With a ``JobStore`` every segment is stored as soon as it is translated, so running the same
translation again after a cancel or a crash translates only the segments still missing."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace

from engine.api import Engine
from engine.documents import Block, BlockKind, Document, split_sentences
from engine.errors import BadRequestError, Cancelled, VersoError
from engine.events import SeqDone
from engine.options import GREEDY, BatchRequest, SamplingParams
from engine.store.jobs import JobStore, content_hash
from engine.tasks.glossary import Glossary, GlossaryEntry
from engine.tasks.jobs import (
    CancelCheck,
    TaskProgress,
    job_model,
    model_has_chat,
    prompt_item,
    run_batch,
)
from engine.tasks.language import detect_language, language_code, language_name
from engine.tasks.resume import JobRecipe, make_recipe, sampling_from_json, translation_title

_UNTRANSLATED = (BlockKind.CODE, BlockKind.PAGE_BREAK)


@dataclass(frozen=True, slots=True)
class TranslateSettings:
    target: str  # language code or English name
    source: str | None = None  # None: detected from the document
    glossary: Glossary = field(default_factory=Glossary)
    segment_tokens: int = 200  # longer blocks are split at sentence ends
    low_confidence: float = -1.5  # mean token log-probability below which a segment is flagged
    n_parallel: int = 4
    sampling: SamplingParams = GREEDY
    max_ratio: float = 3.0  # most output tokens per source token (plus a margin)

    def key(self) -> dict:
        """What determines the result (the job id hashes it)."""
        data = asdict(self)
        data.pop("n_parallel")
        return data

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TranslateSettings:
        names = {f.name for f in fields(cls)} - {"glossary", "sampling"}
        entries = (data.get("glossary") or {}).get("entries", ())
        glossary = Glossary(tuple(GlossaryEntry(e["source"], e["target"]) for e in entries))
        sampling = sampling_from_json(data["sampling"]) if "sampling" in data else GREEDY
        return cls(glossary=glossary, sampling=sampling,
                   **{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True)
class Segment:
    index: int
    block: int  # index into document.blocks
    kind: BlockKind
    level: int
    ordered: bool
    source: str
    text: str  # the translation ("" until translated; the source for code)
    mean_logprob: float | None = None
    low_confidence: bool = False
    required: tuple[str, ...] = ()  # glossary translations this segment had to contain
    forced_tokens: int = 0  # tokens the glossary enforcement inserted
    finish_reason: str = ""
    translated: bool = True  # False for code, copied verbatim


@dataclass(frozen=True, slots=True)
class Translation:
    source_language: str
    target_language: str
    document_name: str
    segments: tuple[Segment, ...]
    segments_reused: int = 0  # segments taken from a stored, interrupted run of the same job

    def blocks(self) -> list[tuple[Segment, str]]:
        """(first segment of the block, the block's whole translation), in order."""
        out: list[tuple[Segment, str]] = []
        last_block = None
        for s in self.segments:
            if s.block == last_block:
                out[-1] = (out[-1][0], out[-1][1] + " " + s.text)
            else:
                out.append((s, s.text))
            last_block = s.block
        return out

    def to_json(self) -> dict:
        return asdict(self)


def _split(block: Block, count: Callable[[str], int], limit: int) -> list[str]:
    text = " ".join(block.text.split()) if block.kind is not BlockKind.CODE else block.text
    if block.kind in _UNTRANSLATED or count(text) <= limit:
        return [text]
    parts: list[str] = []
    for span in split_sentences(text):
        if parts and count(parts[-1] + " " + span.text) <= limit:
            parts[-1] += " " + span.text
        else:
            parts.append(span.text)
    return parts


def segments_of(document: Document, count: Callable[[str], int], limit: int) -> list[Segment]:
    out: list[Segment] = []
    for b, block in enumerate(document.blocks):
        if block.kind is BlockKind.PAGE_BREAK or not block.text.strip():
            continue
        for part in _split(block, count, limit):
            code = block.kind is BlockKind.CODE
            out.append(Segment(len(out), b, block.kind, block.level, block.ordered, part,
                               part if code else "", translated=not code))
    return out


def _prompt(segment: Segment, source: str, target: str, glossary: Glossary, chat: bool) -> str:
    terms = glossary.applicable(segment.source)
    hint = ("Glossary: " + "; ".join(f"{e.source} = {e.target}" for e in terms) + "\n"
            if terms else "")
    if chat:
        return (f"Translate the {source} text below into {target}. Reply with the translation "
                f"only, on one line.\n{hint}\n{segment.source}")
    return f"Translate from {source} to {target}.\n{hint}{source}: {segment.source}\n{target}:"


def _request(client: Engine, segments: Sequence[Segment], settings: TranslateSettings,
             source: str, target: str, sampling: SamplingParams) -> BatchRequest:
    chat = model_has_chat(client)
    items = []
    longest = 0
    for s in segments:
        required = tuple(e.target for e in settings.glossary.applicable(s.source))
        items.append(prompt_item(client, _prompt(s, source, target, settings.glossary, chat),
                                 chat, required))
        longest = max(longest, client.count_tokens(s.source))
    max_tokens = int(longest * settings.max_ratio) + 16
    return BatchRequest(tuple(items), replace(sampling, max_tokens=max_tokens, stop=("\n",)),
                        n_parallel=settings.n_parallel, logprobs=True)


def _finished(segment: Segment, done: SeqDone, required: tuple[str, ...],
              threshold: float) -> Segment:
    text = done.text.strip()
    mean = done.mean_logprob
    low = not text or mean is None or mean < threshold
    return replace(segment, text=text, mean_logprob=mean, low_confidence=low, required=required,
                   forced_tokens=done.forced_tokens, finish_reason=str(done.finish_reason))


def _languages(document: Document, settings: TranslateSettings) -> tuple[str, str]:
    source = language_code(settings.source) if settings.source else detect_language(
        document.text[:5000])
    target = language_code(settings.target)
    if not target:
        raise BadRequestError("Give the language to translate into.")
    return source, target


_STORED = ("text", "mean_logprob", "low_confidence", "required", "forced_tokens",
           "finish_reason")


def translate(client: Engine, document: Document, settings: TranslateSettings,
              cancel: CancelCheck = lambda: False,
              store: JobStore | None = None,
              recipe: JobRecipe | None = None) -> Iterator[TaskProgress | Translation]:
    """Stream progress, then one ``Translation``. Raises ``Cancelled`` when cancelled
    (with a ``store``, the segments finished so far are kept for the next run, and the job
    keeps ``recipe``, made from the document and settings when not given)."""
    if client.loaded is None:
        raise VersoError("Load a model before translating.")
    source, target = _languages(document, settings)

    segments = segments_of(document, client.count_tokens, settings.segment_tokens)
    results = {s.index: s for s in segments}
    job = None
    if store is not None:
        model = job_model(client, recipe)
        inputs = content_hash(document.to_markdown(), document.name, model.identity(),
                              source, target)
        job = store.open_job("translate", inputs, settings.key())
        recipe = recipe or make_recipe(translation_title(document, language_name(target)),
                                       [document], settings.to_json(), model)
        store.record(job.id, recipe.title, recipe.to_json(),
                     sum(s.translated for s in segments))
        for step, saved in store.steps(job.id).items():
            index = int(step.removeprefix("segment:"))
            if index in results:
                saved["required"] = tuple(saved["required"])
                results[index] = replace(results[index], **saved)
    translatable = [s for s in segments if s.translated]
    todo = [s for s in translatable if not results[s.index].finish_reason]
    reused = len(translatable) - len(todo)

    def finish(status: str) -> None:
        if store is not None and job is not None:
            store.finish(job.id, status)

    try:
        if todo:
            request = _request(client, todo, settings, language_name(source),
                               language_name(target), settings.sampling)

            def on_done(done: SeqDone) -> None:
                segment = _finished(todo[done.index], done, request.items[done.index].required,
                                    settings.low_confidence)
                results[segment.index] = segment
                if store is not None and job is not None:
                    store.save_step(job.id, f"segment:{segment.index}",
                                    {k: getattr(segment, k) for k in _STORED})

            yield from run_batch(client, request, "translate", on_done, cancel,
                                 done_before=reused, total=len(translatable))
        elif translatable:
            yield TaskProgress("translate", reused, reused, 0.0)
    except Cancelled:
        finish("cancelled")
        raise
    except BaseException:
        finish("failed")
        raise
    finish("done")
    yield Translation(source, target, document.name,
                      tuple(results[i] for i in range(len(segments))), segments_reused=reused)


def retranslate(client: Engine, translation: Translation, index: int,
                settings: TranslateSettings, sampling: SamplingParams | None = None,
                cancel: CancelCheck = lambda: False) -> Translation:
    """The translation with segment ``index`` translated again (e.g. with sampling on, to
    get another candidate)."""
    segment = translation.segments[index]
    if not segment.translated:
        return translation
    request = _request(client, [segment], settings, language_name(translation.source_language),
                       language_name(translation.target_language), sampling or settings.sampling)
    found: list[Segment] = []
    for _ in run_batch(client, request, "retranslate",
                       lambda d: found.append(_finished(segment, d, request.items[0].required,
                                                        settings.low_confidence)), cancel):
        pass
    segments = list(translation.segments)
    segments[index] = found[0]
    return replace(translation, segments=tuple(segments))
