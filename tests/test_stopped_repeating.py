"""Outputs the degeneration guard ended (``FinishReason.REPEATING``) are reported by the
document tasks: which summary steps stopped, kept across a resume, in the result's JSON and
its Markdown export; which translated segments stopped, flagged for review with the reason.
The fake engine is scripted to finish REPEATING (the real guard's own tests are
``test_loop_guard*.py``)."""

from __future__ import annotations

import json

from engine.documents import document_from_text
from engine.events import FinishReason
from engine.options import LoadSettings
from engine.store.jobs import JobStore
from engine.tasks.summarize import SummarizeSettings, SummaryResult, summarize
from engine.tasks.translate import TranslateSettings, Translation, translate
from engine.tasks.translate_export import review_notes, segment_notes
from engine.testing.fake_engine import FakeEngine

PARAGRAPHS = ["The river was wide and calm where it met the sea near the old harbour town.",
              "Birds flew over the water every morning, and fishermen counted them.",
              "The library in the town opened at nine and closed at five in winter."]
SETTINGS = SummarizeSettings(chunk_tokens=20, note_tokens=16, n_parallel=1)


def _respond(prompt: str) -> str:
    if "numbered notes" in prompt:
        return "- The river meets the sea. [1]\n- Birds fly over it. [2]"
    if "German" in prompt:
        return "Die Bibliothek öffnet um neun Uhr."
    return "The river meets the sea."


def _loaded(engine: FakeEngine) -> FakeEngine:
    list(engine.load(LoadSettings(path="/fake-models/fake-model.gguf")))
    return engine


def _summary(engine: FakeEngine, store: JobStore | None = None) -> SummaryResult:
    document = document_from_text("\n\n".join(PARAGRAPHS), name="town.txt")
    result = list(summarize(engine, [document], SETTINGS, store))[-1]
    assert isinstance(result, SummaryResult)
    return result


def test_a_summary_says_which_steps_stopped_repeating_and_keeps_it_on_resume(tmp_path):
    def finish(prompt: str) -> FinishReason | None:
        looping = "numbered notes" in prompt or "Birds flew" in prompt
        return FinishReason.REPEATING if looping else None

    with JobStore(tmp_path / "jobs.db") as store:
        result = _summary(_loaded(FakeEngine(respond=_respond, finisher=finish)), store)
        assert len(result.chunks) == 3
        assert result.final_step in result.repeating
        assert "map:2" in result.repeating and "map:1" not in result.repeating
        note = result.repeating_note()
        assert note == ("Stopped: the model was repeating itself (in the final summary step, "
                        "which was cut short; in its note on chunk 2).")
        assert json.loads(json.dumps(result.to_json()))["repeating"] == list(result.repeating)
        assert result.notes[2] == "The river meets the sea."  # the note, not its wrapper
        # Every step is stored: the rerun computes nothing and still knows what stopped.
        again = _summary(_loaded(FakeEngine(respond=_respond)), store)
    assert again.steps_computed == () and again.repeating == result.repeating


def test_an_ordinary_summary_reports_nothing():
    result = _summary(_loaded(FakeEngine(respond=_respond)))
    assert result.repeating == () and result.repeating_note() == ""


def test_a_translated_segment_that_stopped_repeating_is_flagged_for_review():
    engine = _loaded(FakeEngine(respond=_respond, finisher=lambda p: FinishReason.REPEATING
                                if "library" in p else None))
    document = document_from_text("\n\n".join(PARAGRAPHS), name="town.txt")
    translation = list(translate(engine, document, TranslateSettings(target="de",
                                                                     source="en")))[-1]
    assert isinstance(translation, Translation)
    stopped = [s for s in translation.segments if s.stopped_repeating]
    assert [s.source for s in stopped] == [PARAGRAPHS[2]]
    assert stopped[0].needs_review
    reason = ("Stopped: the model was repeating itself, so the translation may be cut "
              "short.")
    assert reason in segment_notes(stopped[0])
    assert reason in review_notes(translation)
    assert all(reason not in segment_notes(s) for s in translation.segments
               if not s.stopped_repeating)


def test_a_model_without_a_chat_template_gets_prompts_that_end_with_a_cue():
    """A base model continues whatever text it is given: without "Summary:" at the end,
    Gemma 3 270M went on writing the license (or invented articles) instead of notes."""
    prompts: list[str] = []

    def respond(prompt: str) -> str:
        prompts.append(prompt)
        return _respond(prompt)

    base = _loaded(FakeEngine(respond=respond, has_chat_template=False))
    result = _summary(base)
    assert len(prompts) == len(result.chunks) + 1
    assert all(p.endswith("\n\nSummary:") for p in prompts[:-1])
    assert prompts[-1].endswith("\n\nSummary:\n") and "numbered notes" in prompts[-1]
    prompts.clear()
    _summary(_loaded(FakeEngine(respond=respond)))
    assert prompts and not any("Summary:" in p for p in prompts)
