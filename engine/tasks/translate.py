"""Document translation, segment by segment, keeping the document's structure.

Each text block (heading, paragraph, list item, quote, table row) is one segment, split at
sentence ends when it is too long; code is copied unchanged. Segments are decoded together
as parallel sequences that share the instruction prefix (``translate_prompt``).

Each raw output is then reviewed (``translate_review``): echoed prompt lines are stripped,
each required glossary translation is placed over the model's word for its source term (the
model's own translation of each term alone, ``renderings``, helps find it), never appended
and never more often than the term occurs, and an output in the source language or a copy of
the source is flagged as untranslated. Confidence is the mean log-probability of the
segment's tokens under the model; a segment below ``low_confidence``, untranslated or empty
is flagged low, and every problem carries a plain explanation (``Segment.flags``).

With a ``JobStore`` every segment is stored as soon as it is translated, so running the same
translation again after a cancel or a crash translates only the segments still missing."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace

from engine.api import Engine, without_missing_aids
from engine.documents import Block, BlockKind, Document, split_sentences
from engine.errors import BadRequestError, Cancelled, VersoError
from engine.events import FinishReason, SeqDone
from engine.options import DOCUMENT_SAMPLING, GREEDY, BatchRequest, SamplingParams
from engine.store.jobs import JobStore, content_hash
from engine.tasks.glossary import Glossary, GlossaryEntry
from engine.tasks.jobs import (
    CancelCheck,
    TaskProgress,
    job_model,
    model_has_chat,
    run_batch,
)
from engine.tasks.language import detect_language, language_code, language_name, warm_up
from engine.tasks.resume import JobRecipe, make_recipe, sampling_from_json, translation_title
from engine.tasks.term_placement import TermResult
from engine.tasks.translate_prompt import DEFAULT_FORMAT, FORMATS, SegmentPrompt, segment_prompt
from engine.tasks.translate_review import EMPTY, UNTRANSLATED, ReviewFlag, review

_UNTRANSLATED = (BlockKind.CODE, BlockKind.PAGE_BREAK)


@dataclass(frozen=True, slots=True)
class TranslateSettings:
    target: str  # language code or English name
    source: str | None = None  # None: detected from the document
    glossary: Glossary = field(default_factory=Glossary)
    segment_tokens: int = 200  # longer blocks are split at sentence ends
    low_confidence: float = -1.5  # mean token log-probability below which a segment is flagged
    n_parallel: int = 4
    sampling: SamplingParams = DOCUMENT_SAMPLING
    max_ratio: float = 3.0  # most output tokens per source token (plus a margin)
    prompt_format: str = DEFAULT_FORMAT  # one of translate_prompt.FORMATS

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
    flags: tuple[ReviewFlag, ...] = ()  # problems found in the output, plainly explained
    leaked: tuple[str, ...] = ()  # echoed prompt text removed from the output
    terms: tuple[TermResult, ...] = ()  # how each required glossary term was placed

    @property
    def untranslated(self) -> bool:
        return any(f.kind in (UNTRANSLATED, EMPTY) for f in self.flags)

    @property
    def needs_review(self) -> bool:
        """Low confidence, untranslated, stopped for repeating, or a glossary term not
        placed as required (an echo that was removed cleanly is only noted)."""
        return (self.low_confidence or self.stopped_repeating
                or any(f.kind != "prompt_echo" for f in self.flags))

    @property
    def stopped_repeating(self) -> bool:
        """The degeneration guard ended this segment: the model kept repeating itself."""
        return self.finish_reason == FinishReason.REPEATING


@dataclass(frozen=True, slots=True)
class Translation:
    source_language: str
    target_language: str
    document_name: str
    segments: tuple[Segment, ...]
    segments_reused: int = 0  # segments taken from a stored, interrupted run of the same job
    renderings: tuple[tuple[str, str], ...] = ()  # (glossary term, the model's own translation)

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


def _prompts(client: Engine, texts: Sequence[str], settings: TranslateSettings,
             source: str, target: str) -> list[SegmentPrompt]:
    if settings.prompt_format not in FORMATS:
        raise BadRequestError(f"Unknown prompt format {settings.prompt_format!r}: use one of "
                              + ", ".join(FORMATS) + ".")
    chat = model_has_chat(client)
    return [segment_prompt(client, text, language_name(source), language_name(target),
                           settings.glossary.applicable(text), chat, settings.prompt_format)
            for text in texts]


def _request(client: Engine, texts: Sequence[str], prompts: Sequence[SegmentPrompt],
             settings: TranslateSettings, sampling: SamplingParams) -> BatchRequest:
    longest = max(client.count_tokens(t) for t in texts)
    max_tokens = int(longest * settings.max_ratio) + 16
    items = tuple(p.item() for p in prompts)
    sampling = without_missing_aids(client.capabilities, sampling)
    return BatchRequest(items, replace(sampling, max_tokens=max_tokens, stop=("\n",)),
                        n_parallel=settings.n_parallel, logprobs=True)


def _finished(segment: Segment, done: SeqDone, prompt: SegmentPrompt,
              settings: TranslateSettings, source: str, target: str,
              renderings: dict[str, tuple[str, ...]]) -> Segment:
    entries = settings.glossary.applicable(segment.source)
    checked = review(segment.source, done.text.strip(), source, target, prompt.instructions,
                     prompt.labels, entries, renderings)
    mean = done.mean_logprob
    failed = any(f.kind in (UNTRANSLATED, EMPTY) for f in checked.flags)
    low = not checked.text or mean is None or mean < settings.low_confidence or failed
    return replace(segment, text=checked.text, mean_logprob=mean, low_confidence=low,
                   required=tuple(e.target for e in entries), forced_tokens=done.forced_tokens,
                   finish_reason=str(done.finish_reason), flags=checked.flags,
                   leaked=checked.leaked, terms=checked.terms)


def _renderings(client: Engine, settings: TranslateSettings, texts: Sequence[str],
                source: str, target: str, cancel: CancelCheck) -> tuple[tuple[str, str], ...]:
    """The model's own translation of each glossary term used in ``texts``, alone."""
    terms = sorted({e.source for t in texts for e in settings.glossary.applicable(t)})
    if not terms:
        return ()
    prompts = _prompts(client, terms, replace(settings, glossary=Glossary()), source, target)
    request = _request(client, terms, prompts, replace(settings, max_ratio=4.0), GREEDY)
    found: dict[int, str] = {}
    for _ in run_batch(client, request, "glossary", lambda d: found.update({d.index: d.text}),
                       cancel):
        pass
    return tuple((term, " ".join(found.get(i, "").split())) for i, term in enumerate(terms))


def _rendering_map(pairs: Sequence[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    return {term: (text,) for term, text in pairs if text}


def _restore(saved: dict) -> dict:
    """A stored segment step as ``Segment`` fields."""
    saved = dict(saved)
    saved["required"] = tuple(saved.get("required", ()))
    saved["flags"] = tuple(ReviewFlag(**f) for f in saved.get("flags", ()))
    saved["leaked"] = tuple(saved.get("leaked", ()))
    saved["terms"] = tuple(TermResult(**t) for t in saved.get("terms", ()))
    return saved


def _languages(document: Document, settings: TranslateSettings) -> tuple[str, str]:
    source = language_code(settings.source) if settings.source else detect_language(
        document.text[:5000])
    target = language_code(settings.target)
    if not target:
        raise BadRequestError("Give the language to translate into.")
    return source, target


_STORED = ("text", "mean_logprob", "low_confidence", "required", "forced_tokens",
           "finish_reason", "flags", "leaked", "terms")


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
    warm_up()

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
                results[index] = replace(results[index], **_restore(saved))
    translatable = [s for s in segments if s.translated]
    todo = [s for s in translatable if not results[s.index].finish_reason]
    reused = len(translatable) - len(todo)
    renderings: tuple[tuple[str, str], ...] = ()

    def finish(status: str) -> None:
        if store is not None and job is not None:
            store.finish(job.id, status)

    try:
        if todo:
            renderings = _renderings(client, settings, [s.source for s in todo], source,
                                     target, cancel)
            by_term = _rendering_map(renderings)
            texts = [s.source for s in todo]
            prompts = _prompts(client, texts, settings, source, target)
            request = _request(client, texts, prompts, settings, settings.sampling)

            def on_done(done: SeqDone) -> None:
                segment = _finished(todo[done.index], done, prompts[done.index], settings,
                                    source, target, by_term)
                results[segment.index] = segment
                if store is not None and job is not None:
                    store.save_step(job.id, f"segment:{segment.index}",
                                    {k: v for k, v in asdict(segment).items() if k in _STORED})

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
                      tuple(results[i] for i in range(len(segments))), segments_reused=reused,
                      renderings=renderings)


def retranslate(client: Engine, translation: Translation, index: int,
                settings: TranslateSettings, sampling: SamplingParams | None = None,
                cancel: CancelCheck = lambda: False) -> Translation:
    """The translation with segment ``index`` translated again (e.g. with sampling on, to
    get another candidate)."""
    segment = translation.segments[index]
    if not segment.translated:
        return translation
    source, target = translation.source_language, translation.target_language
    prompts = _prompts(client, [segment.source], settings, source, target)
    request = _request(client, [segment.source], prompts, settings,
                       sampling or settings.sampling)
    by_term = _rendering_map(translation.renderings)
    found: list[Segment] = []
    for _ in run_batch(client, request, "retranslate",
                       lambda d: found.append(_finished(segment, d, prompts[0], settings, source,
                                                        target, by_term)), cancel):
        pass
    segments = list(translation.segments)
    segments[index] = found[0]
    return replace(translation, segments=tuple(segments))
