"""Batched generation, summaries (abstractive with citations and resume, extractive,
multi-document) and ``verso summarize``, with the real SmolLM2 model and real documents."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.documents import Document, load_document
from engine.errors import Cancelled
from engine.events import Done, FinishReason, SeqDone, SeqToken
from engine.options import GREEDY, BatchItem, BatchRequest, CompletionRequest, LoadSettings
from engine.runtime.batch import generate_batch
from engine.runtime.in_process import InProcessEngine
from engine.runtime.runtime import Runtime
from engine.store.jobs import JobStore
from engine.tasks.citations import Note, cite
from engine.tasks.jobs import TaskProgress
from engine.tasks.summarize import (
    Form,
    Mode,
    SummarizeSettings,
    SummaryResult,
    _clean_note,
    summarize,
)
from tests.test_documents import _make_docx, _make_pdf


@pytest.fixture(scope="module")
def runtime(smol_path: Path):
    rt = Runtime()
    for _ in rt.load(LoadSettings(path=str(smol_path), n_ctx=1024)):
        pass
    yield rt
    rt.unload()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("summarize-docs")
    return _make_pdf(folder / "printing.pdf"), _make_docx(folder / "notes.docx")


@pytest.fixture(scope="module")
def docs(files: tuple[Path, Path]) -> list[Document]:
    return [load_document(f) for f in files]


def _prompt(rt: Runtime, text: str) -> tuple[int, ...]:
    return tuple(rt.tokenize(text, add_bos=True, special=False))


# ------------------------------------------------------------------ batched generation


def test_single_sequence_equals_sequential_greedy(runtime: Runtime):
    sampling = replace(GREEDY, max_tokens=12)
    prompt = "The capital of France is"
    reference = next(e for e in runtime.complete(CompletionRequest(prompt, sampling),
                                                 lambda: False) if isinstance(e, Done))
    done = [e for e in generate_batch(runtime, BatchRequest(
        (BatchItem(_prompt(runtime, prompt)),), sampling, n_parallel=1))
        if isinstance(e, SeqDone)]
    assert done[0].text == reference.text and done[0].n_tokens == reference.stats.generated_tokens


def test_parallel_sequences_share_the_prefix_and_reuse_slots(runtime: Runtime):
    shared = "Answer briefly. Question: "
    questions = ["What is the sun?", "Why is the sky blue?", "What do bees make?"]
    items = tuple(BatchItem(_prompt(runtime, shared + q)) for q in questions)
    events = list(generate_batch(runtime, BatchRequest(items, replace(GREEDY, max_tokens=8),
                                                       n_parallel=2, logprobs=True)))
    done = sorted((e for e in events if isinstance(e, SeqDone)), key=lambda e: e.index)
    assert [d.index for d in done] == [0, 1, 2]  # three prompts through two slots
    for d in done:
        assert d.text.strip() and d.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
        assert d.mean_logprob is not None and d.mean_logprob < 0
        streamed = "".join(e.text for e in events if isinstance(e, SeqToken) and e.index == d.index)
        assert d.text.startswith(streamed)
    stats = events[-1].stats
    prefix = len(_prompt(runtime, shared))
    assert stats.reused_tokens >= 2 * (prefix - 2)  # the prefix was evaluated once, not thrice
    assert stats.generated_tokens == sum(d.n_tokens for d in done)


def test_parallel_sequences_decode_like_each_prompt_alone(runtime: Runtime):
    """Shared prefix copied into each KV stream, prompts admitted while others generate:
    greedy text matches each prompt decoded on its own."""
    shared = "Answer in a few words. Question: "
    questions = ["What is the sun?", "Why is the sky blue?", "What do bees make?",
                 "Where do penguins live?"]
    items = tuple(BatchItem(_prompt(runtime, shared + q)) for q in questions)
    sampling = replace(GREEDY, max_tokens=8)

    def texts(batch: tuple[BatchItem, ...], n_parallel: int) -> list[str]:
        done = [e for e in generate_batch(runtime, BatchRequest(batch, sampling,
                                                                n_parallel=n_parallel))
                if isinstance(e, SeqDone)]
        return [d.text for d in sorted(done, key=lambda d: d.index)]

    alone = [texts((item,), 1)[0] for item in items]
    assert texts(items, 2) == alone
    assert texts(items, 4) == alone


def test_a_required_text_starts_where_the_model_would_start_it(runtime: Runtime):
    from engine.runtime.batch import _OPPORTUNE, BatchDecoder, _Seq
    from engine.runtime.sampling import TokenSampler

    decoder = BatchDecoder(runtime, BatchRequest((BatchItem((1, 2)),)), lambda: False)
    seq = _Seq(index=0, slot=0, sampler=TokenSampler(GREEDY, 0, None, 1), stops=(),
               required=["Paris"])
    seq.raw = "The island of"
    spelled = runtime.tokenize(" Paris", add_bos=False, special=False)
    picked = runtime.tokenize(" Crete", add_bos=False, special=False)[0]
    logits = np.zeros(runtime._require_model().n_vocab(), dtype=np.float32)
    logits[picked] = 5.0
    logits[spelled[0]] = 5.0 + math.log(_OPPORTUNE * 2)  # likely enough: the term starts here
    assert decoder._opportune(seq, ["Paris"], logits, picked) == ("Paris", spelled)
    logits[spelled[0]] = 5.0 + math.log(_OPPORTUNE / 2)  # not likely enough: keep the pick
    assert decoder._opportune(seq, ["Paris"], logits, picked) is None
    # The model picking the term's first token itself forces the rest of it.
    assert decoder._opportune(seq, ["Paris"], logits, spelled[0]) == ("Paris", spelled)
    # A short generic first piece (" a" of "a cappella") is not taken as the start.
    short = runtime.tokenize(" a cappella", add_bos=False, special=False)
    logits[short[0]] = 5.0
    assert decoder._opportune(seq, ["a cappella"], logits, picked) is None


def test_required_text_is_forced_before_the_end(runtime: Runtime):
    item = BatchItem(_prompt(runtime, "The capital of France is"), required=("Zanzibar",))
    sampling = replace(GREEDY, max_tokens=10, stop=("\n",))
    done = next(e for e in generate_batch(runtime, BatchRequest((item,), sampling))
                if isinstance(e, SeqDone))
    assert "Zanzibar" in done.text and done.forced_tokens > 0


def test_cancel_between_steps(runtime: Runtime):
    items = tuple(BatchItem(_prompt(runtime, f"Count to ten: {i}")) for i in range(3))
    seen: list[SeqToken] = []
    events = []
    for event in generate_batch(runtime, BatchRequest(items, replace(GREEDY, max_tokens=64),
                                                      n_parallel=2), lambda: len(seen) >= 5):
        events.append(event)
        if isinstance(event, SeqToken):
            seen.append(event)
    assert len(seen) < 12
    done = [e for e in events if isinstance(e, SeqDone)]
    assert sorted(d.index for d in done) == [0, 1, 2]
    assert all(d.finish_reason is FinishReason.CANCELLED for d in done)
    assert events[-1].finish_reason is FinishReason.CANCELLED


# ------------------------------------------------------------------ extractive


def test_extractive_quotes_verbatim_with_locations(docs: list[Document]):
    events = list(summarize(None, docs, SummarizeSettings(mode=Mode.EXTRACTIVE, length=4)))
    result = events[-1]
    assert isinstance(result, SummaryResult) and len(result.extracts) == 4
    for e in result.extracts:
        document = docs[e.document]
        block = document.blocks[e.block]
        assert block.text[e.start:e.end] == e.text and e.text in document.text
        assert e.paragraph == block.location.paragraph and e.source == document.name
        if document.name.endswith(".pdf"):
            assert e.page == block.location.page and e.page >= 1
    order = [(e.document, e.block, e.start) for e in result.extracts]
    assert order == sorted(order)
    assert f'"{result.extracts[0].text}"' in result.to_text()


def test_extractive_of_short_sentences_quotes_them_and_of_no_words_says_so(tmp_path: Path,
                                                                          capsys):
    short = tmp_path / "short.txt"
    short.write_text("Go now. Stop here. Run fast. Be calm. Sit down.\n")
    assert main(["summarize", str(short), "--mode", "extractive", "--length", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('- "Go now."') and '- "Stop here."' in out
    marks = tmp_path / "marks.txt"
    marks.write_text("... !!! ---\n")
    assert main(["summarize", str(marks), "--mode", "extractive"]) == 2
    captured = capsys.readouterr()
    assert not captured.out.strip()
    assert "Nothing to quote: marks.txt has no sentences with words in it." in captured.err


# ------------------------------------------------------------------ citations


def test_invalid_markers_are_dropped_and_unmarked_points_inferred():
    notes = [Note("Gutenberg printed the Bible in Mainz.", (1,)),
             Note("Paper mills spread across Europe.", (2,))]
    text = ("- The Bible was printed in Mainz [1] [9]\n"
            "- Paper mills spread widely\n"
            "Action items:\n- Read more [2]")
    points, invalid = cite(text, notes, existing={1, 2})
    assert invalid == [9]
    assert [(p.text, p.chunks, p.kind, p.inferred) for p in points] == [
        ("The Bible was printed in Mainz", (1,), "point", False),
        ("Paper mills spread widely", (2,), "point", True),
        ("Read more", (2,), "action", False),
    ]


def test_points_made_only_of_numbers_or_a_cut_off_marker_are_not_statements():
    notes = [Note("Gutenberg printed the Bible in Mainz.", (1,))]
    text = "- [1, 2, 3, 4, 5, 6, 7\n- 1999, 2000\n- Printed in Mainz [1, 2"
    points, _ = cite(text, notes, existing={1, 2})
    assert [(p.text, p.chunks) for p in points] == [("Printed in Mainz", (1,))]


# ------------------------------------------------------------------ abstractive


def test_repeated_points_are_one_point_with_both_citations():
    notes = [Note("Gutenberg printed the Bible.", (1,)), Note("Presses spread.", (2,))]
    text = "- Gutenberg printed the Bible. [1]\n- gutenberg printed the Bible. [2]\n" \
           "- Presses spread. [2]"
    points, invalid = cite(text, notes, {1, 2})
    assert [(p.text, p.chunks) for p in points] == [
        ("Gutenberg printed the Bible.", (1, 2)), ("Presses spread.", (2,))]
    assert invalid == []


def test_prompt_labels_a_small_model_echoes_are_cut_from_its_notes():
    assert _clean_note("Source: a.md\n\nExcerpt:\n# Packaging\n\nIt builds.") == \
        "# Packaging\n\nIt builds."
    assert _clean_note("Summary:\nThe council met.") == "The council met."
    assert _clean_note("Summary: the council met.\nMore.") == "Summary: the council met.\nMore."
    assert _clean_note("Excerpt:") == "Excerpt:"  # nothing else: kept rather than emptied


def test_abstractive_multi_document_cancel_and_resume(runtime: Runtime, docs: list[Document],
                                                      tmp_path: Path):
    client = InProcessEngine(runtime)
    settings = SummarizeSettings(chunk_tokens=400, note_tokens=12, reduce_tokens=8, length=2,
                                 n_parallel=2)
    stop_after = 1
    with JobStore(tmp_path / "jobs.db") as store:
        seen: list[TaskProgress] = []
        with pytest.raises(Cancelled):
            for event in summarize(client, docs, settings, store,
                                   cancel=lambda: any(p.done >= stop_after for p in seen
                                                      if p.stage == "map")):
                seen.append(event)
        job = store.latest("summarize")
        assert job is not None and job.status == "cancelled"
        first_steps = store.steps(job.id)
        assert len(first_steps) >= stop_after

        events = list(summarize(client, docs, settings, store))
    result = events[-1]
    assert isinstance(result, SummaryResult)
    maps = [f"map:{c.id}" for c in result.chunks]
    assert len(maps) >= 4
    assert {c.source for c in result.chunks} == {d.name for d in docs}
    computed = [s for s in result.steps_computed if s.startswith("map:")]
    reused = [s for s in result.steps_reused if s.startswith("map:")]
    assert sorted(computed + reused) == sorted(maps)  # every chunk exactly once
    assert set(reused) == {s for s in first_steps if s.startswith("map:")}
    assert set(result.notes) == {c.id for c in result.chunks}
    assert any(p.stage == "reduce 1" for p in events if isinstance(p, TaskProgress))
    assert result.points and len([p for p in result.points if p.kind == "point"]) <= 2
    ids = {c.id for c in result.chunks}
    for point in result.points:
        assert point.chunks and set(point.chunks) <= ids
        assert set(result.sources(point)) <= {d.name for d in docs}
    assert all(m not in ids for m in result.invalid_markers)
    with JobStore(tmp_path / "jobs.db") as store:
        again = list(summarize(client, docs, settings, store))[-1]
        assert store.get(result.job_id).status == "done"
    assert not again.steps_computed and again.points == result.points


def test_single_chunk_paragraph_form(runtime: Runtime, docs: list[Document]):
    settings = SummarizeSettings(form=Form.PARAGRAPH, length=20, chunk_tokens=4096)
    result = list(summarize(InProcessEngine(runtime), docs[1:], settings))[-1]
    assert [c.id for c in result.chunks] == [1]
    assert result.points and all(p.chunks == (1,) for p in result.points)
    assert result.to_text() and "\n" not in result.to_text()


# ------------------------------------------------------------------ CLI


def test_cli_extractive_json_and_usage_errors(files: tuple[Path, Path], capsys):
    import json

    assert main(["summarize", str(files[0]), str(files[1]), "--mode", "extractive",
                 "--length", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["extracts"]) == 3
    assert main(["summarize", "missing.pdf", "--mode", "extractive"]) == 2
    assert main(["summarize", str(files[0]), "--length", "0"]) == 2


def test_cli_abstractive(files: tuple[Path, Path], smol_path: Path, capsys):
    code = main(["summarize", str(files[1]), "-m", str(smol_path), "--length", "2",
                 "--chunk-tokens", "4096", "--n-ctx", "1024"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip().startswith("- ") and "[1]" in captured.out
    assert "[map 1/1" in captured.err
