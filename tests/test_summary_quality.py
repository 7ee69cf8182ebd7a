"""Fast tests of the summary guards' logic: loop measures, near-repeat merging, support in
the cited chunk, the fallback and the unsupported flag in every output form."""

from __future__ import annotations

import json
from dataclasses import replace

from engine.tasks.citations import Note, Point, cite, is_repeat, merge_repeats
from engine.tasks.summarize import ChunkRef, Form, Mode, SummaryResult, _Attempt, _attempt
from engine.tasks.support import content_words, is_supported, support
from engine.tasks.text_quality import (
    degeneration,
    distinct_ngram_ratio,
    drop_repeated_sentences,
    most_repeated_ngram,
    repeated_sentences,
    words,
)

LOOP = "The suffix tree is sorted by the literal, and the suffix tree is sorted by the literal."
APACHE = ("Subject to the terms and conditions of this License, each Contributor hereby grants "
          "to You a perpetual, worldwide, non-exclusive, no-charge, royalty-free, irrevocable "
          "copyright license to reproduce, prepare Derivative Works of, publicly display, "
          "publicly perform, sublicense, and distribute the Work and such Derivative Works in "
          "Source or Object form.")


# ------------------------------------------------------------------ loop measures


def test_repeated_sentences_count_the_extra_copies_ignoring_case_and_punctuation():
    assert repeated_sentences(" ".join([LOOP] * 5)) == 4
    assert repeated_sentences("It rains hard. IT RAINS HARD! It snows.") == 1
    assert repeated_sentences("Yes. Yes. Yes.") == 0  # too short to be a loop
    assert repeated_sentences("- One point here\n- One point here") == 1  # lines are sentences


def test_distinct_trigram_ratio():
    assert distinct_ngram_ratio("a b c d e") == 1.0
    assert distinct_ngram_ratio("a b c a b c a b c") == 3 / 7
    assert distinct_ngram_ratio("two words") == 1.0  # no trigram: nothing repeats
    assert distinct_ngram_ratio(" ".join([LOOP] * 10)) < 0.2
    assert distinct_ngram_ratio(APACHE) == 1.0


def test_words_split_unspaced_scripts_into_characters():
    assert words("Ünïcode ÄB, x1") == ["ünïcode", "äb", "x1"]
    assert words("日本語です") == ["日", "本", "語", "で", "す"]
    assert distinct_ngram_ratio("日本語" * 10) < 0.2


def test_most_repeated_ngram_counts_non_overlapping_occurrences():
    assert most_repeated_ngram("a a a a a a a a a", 3) == ("a a a", 3)
    gram, count = most_repeated_ngram(" ".join([LOOP] * 4))
    assert count >= 4 and gram.startswith(("the suffix", "suffix", "tree", "is", "sorted"))
    assert most_repeated_ngram("short", 8) == ("", 0)


def test_degeneration_names_what_repeats():
    loop = degeneration(" ".join([LOOP] * 30))
    assert loop is not None
    assert "repeated the sentence “The suffix tree is sorted by the literal" in loop.reason
    assert "30 times" in loop.reason
    assert loop.repeated_sentences == 29 and loop.distinct_trigrams < 0.1
    # A long phrase repeated without sentence breaks.
    phrase = "granted by this License to any person obtaining a copy of the Work"
    assert "repeated the words" in degeneration(", ".join([phrase] * 4)).reason
    # Ordinary bullets, including two with a common opening, pass.
    good = ("- The license grants a copyright license to reproduce the Work [1]\n"
            "- The license grants a patent license for contributions [2]\n"
            "- Redistribution must keep the NOTICE file [3]")
    assert degeneration(good) is None
    assert degeneration(APACHE) is None
    assert degeneration("") is None


def test_drop_repeated_sentences_keeps_the_first_copy_and_the_lines():
    text = f"{LOOP} {LOOP} Other words here.\n\n- Point one is here. Point one is here."
    assert drop_repeated_sentences(text) == f"{LOOP} Other words here.\n\n- Point one is here."
    assert drop_repeated_sentences("Yes. Yes.") == "Yes. Yes."


# ------------------------------------------------------------------ merging near repeats


def test_a_point_that_mostly_repeats_another_is_merged_with_both_citations():
    assert is_repeat("The Work may be redistributed in Source or Object form",
                     "The Work may be redistributed in Source or Object form, with notices")
    assert is_repeat("Contributors grant a patent license.", "contributors grant a PATENT license")
    assert not is_repeat("Contributors grant a patent license.",
                         "Trademarks are not licensed.")
    notes = [Note("Copyright license to reproduce the Work.", (1,)),
             Note("Patent license from each Contributor.", (2,)),
             Note("Trademarks are excluded.", (3,))]
    text = ("- Each Contributor grants a copyright license to reproduce the Work [1]\n"
            "- Each Contributor grants a copyright license to reproduce the Work in any form [2]\n"
            "- Trademarks are not licensed [3]\n"
            "- Each contributor grants a copyright license to reproduce the work")
    points, _ = cite(text, notes, {1, 2, 3})
    assert [(p.text, p.chunks, p.inferred) for p in points] == [
        ("Each Contributor grants a copyright license to reproduce the Work in any form",
         (1, 2), False),
        ("Trademarks are not licensed", (3,), False)]


def test_merge_keeps_the_models_markers_over_inferred_ones_and_kinds_apart():
    points = [Point("Keep the NOTICE file with the Work", (4,), inferred=True),
              Point("Keep the NOTICE file with the Work", (2,)),
              Point("Keep the NOTICE file with the Work", (3,), kind="action")]
    assert [(p.chunks, p.kind, p.inferred) for p in merge_repeats(points)] == [
        ((2,), "point", False), ((3,), "action", False)]


def test_a_point_repeating_its_own_sentence_keeps_one_copy():
    points, _ = cite(f"- {LOOP} {LOOP} {LOOP} [1]", [Note("x", (1,))], {1})
    assert [p.text for p in points] == [LOOP]


# ------------------------------------------------------------------ support


def test_support_is_the_share_of_content_words_found_in_the_cited_chunks():
    assert content_words("The Work is licensed by the Licensor.") == \
        ["work", "licensed", "licensor"]
    # Inflected forms match by prefix; numbers must match exactly.
    assert support("Contributors grant licenses to reproduce works", [APACHE]) == 1.0
    assert support("The license was signed in 1999", [APACHE]) == 1 / 3
    assert support("Bananas are yellow fruit grown in Ecuador", [APACHE]) == 0.0
    assert support("The Work may be distributed", ["Nothing.", APACHE]) == 1.0
    assert support("It is so.", [APACHE]) == 1.0  # no content word: nothing to check
    assert support("Mahlon and Chilion died in Moab", []) == 0.0
    assert is_supported(0.5) and not is_supported(0.49)


def test_support_matches_german_inflections():
    chunk = "Der Lizenzgeber gewährt jedem Nutzer eine unbefristete Lizenz für das Werk."
    assert support("Lizenzen für Werke werden unbefristet gewährt", [chunk]) == 1.0
    assert support("Der Vertrag endet nach zwei Jahren", [chunk]) == 0.0


def test_points_flag_low_support():
    assert Point("x", (1,), support=0.2).unsupported
    assert not Point("x", (1,), support=0.8).unsupported
    assert not Point("x", (1,)).unsupported  # unchecked


# ------------------------------------------------------------------ attempts and results


def test_an_attempt_fails_when_it_loops_or_gives_no_point():
    notes = [Note("Notes.", (1,)), Note("More notes.", (2,))]
    looped = _attempt(" ".join([LOOP] * 12) + " [1]", notes, {1, 2}, False)
    assert looped.points and "repeated the sentence" in looped.failure()
    assert _attempt("- [1, 2, 3]\n- 1999", notes, {1, 2}, False).failure() == \
        "it gave no usable point"
    ok = _attempt("- The tree is sorted [1]\n- Globs match names [2]", notes, {1, 2}, False)
    assert ok.failure() == "" and ok.left_out == ""
    # The same point on every bullet is a loop of the whole step.
    same = "".join(f"- The tree is sorted by the literal [{i}]\n" for i in (1, 2, 1, 2))
    assert "4 times" in _attempt(same, notes, {1, 2}, False).failure()
    # Markers repeated on every bullet are not a loop.
    many = "".join(f"- Point number {w} here [1, 2, 1, 2, 1, 2, 1, 2]\n"
                   for w in ("one", "two", "three", "four"))
    assert _attempt(many, notes, {1, 2}, False).failure() == ""
    assert _Attempt.from_json(json.loads(json.dumps(looped.to_json()))) == looped
    # Steps stored before the check: the loop is found in the stored points.
    old = {"points": [{"text": " ".join([LOOP] * 5), "chunks": [1], "kind": "point",
                       "inferred": False}], "invalid": []}
    assert "repeated the sentence" in _Attempt.from_json(old).failure()


def test_a_point_that_loops_on_its_own_is_left_out_and_the_rest_kept():
    notes = [Note("Notes.", (1,)), Note("More notes.", (2,))]
    loop = "The Excerpt is a legal document that is a legal document that is " * 6
    text = f"- The tree is sorted [1]\n- {loop} [2]\n- Globs match file names [2]"
    attempt = _attempt(text, notes, {1, 2}, False)
    assert attempt.failure() == ""
    assert [p.text for p in attempt.points] == ["The tree is sorted", "Globs match file names"]
    assert attempt.left_out.startswith("1 point of the model's summary left out: it repeated")
    # Nothing left but the loop: the step fails.
    assert _attempt(f"- {loop} [2]", notes, {1, 2}, False).failure()


def _result(**kw) -> SummaryResult:
    refs = tuple(ChunkRef(i, "spec.pdf", i, i, i, i) for i in (1, 2))
    return SummaryResult(Mode.ABSTRACTIVE, Form.BULLETS, chunks=refs, **kw)


def test_unsupported_points_and_the_fallback_in_text_and_json():
    points = (Point("The tree is sorted", (1,), support=1.0),
              Point("Bananas grow in Ecuador", (2,), support=0.0))
    result = _result(points=points)
    assert result.to_text() == "- The tree is sorted [1]\n- Bananas grow in Ecuador [2] " \
                               "(unsupported)"
    data = json.loads(json.dumps(result.to_json()))
    assert [p["unsupported"] for p in data["points"]] == [False, True]
    assert [p["support"] for p in data["points"]] == [1.0, 0.0]
    assert data["fallback"] == ""
    fallback = replace(result, fallback="The model's final step failed (it looped).")
    assert fallback.to_json()["fallback"].startswith("The model's final step failed")
    paragraph = replace(fallback, form=Form.PARAGRAPH)
    assert paragraph.to_text().startswith("- The tree is sorted [1]\n")  # notes stay a list


# ------------------------------------------------------------------ the pipeline (fake engine)

CHUNKS = ["The suffix tree is sorted by the literal byte values of each glob suffix.",
          "Magic rules match file contents at given offsets with a priority.",
          "Aliases map old MIME type names onto the canonical type names."]


def _summarize(final: str, form: Form = Form.BULLETS) -> SummaryResult:
    from engine.documents import document_from_text
    from engine.options import LoadSettings
    from engine.tasks.summarize import SummarizeSettings, summarize
    from engine.testing.fake_engine import FakeEngine

    def respond(prompt: str) -> str:
        if "numbered notes" in prompt:
            return final
        excerpt = prompt.split("Excerpt:")[1]
        return next(c for c in CHUNKS if c in excerpt)

    engine = FakeEngine(respond=respond)
    list(engine.load(LoadSettings(path="/fake-models/fake-model.gguf")))
    document = document_from_text("\n\n".join(CHUNKS), name="spec.md")
    settings = SummarizeSettings(chunk_tokens=16, form=form, n_parallel=1)
    result = list(summarize(engine, [document], settings))[-1]
    assert isinstance(result, SummaryResult) and len(result.chunks) == 3
    return result


def test_a_looping_final_step_falls_back_to_the_notes_with_the_reason():
    result = _summarize(" ".join(["- The suffix tree is sorted by the literal [1]."] * 20))
    assert result.fallback.startswith("The model's final step failed (it repeated the "
                                      "sentence “The suffix tree is sorted by the literal")
    assert result.fallback.endswith("so its notes on each chunk are shown instead.")
    assert [(p.text, p.chunks) for p in result.points] == [(c, (i,)) for i, c in
                                                          enumerate(CHUNKS, 1)]
    assert all(p.support == 1.0 for p in result.points)
    assert result.to_json()["fallback"] == result.fallback
    assert result.to_text().splitlines()[0] == f"- {CHUNKS[0]} [1]"


def test_an_empty_final_step_falls_back_too():
    result = _summarize("[1, 2, 3]")
    assert "(it gave no usable point)" in result.fallback
    assert len(result.points) == 3
    paragraph = _summarize("", Form.PARAGRAPH)
    assert paragraph.fallback and paragraph.to_text().count("\n") == 2


def test_each_point_is_checked_against_the_chunk_it_cites():
    result = _summarize("- Suffix trees are sorted by literal byte values [1]\n"
                        "- Bananas grow in Ecuador and Peru [2]\n"
                        "- Magic rules match contents at offsets [2]\n"
                        "- Magic rules match contents at offsets with priorities [3]")
    assert result.fallback == ""
    assert [(p.chunks, p.unsupported) for p in result.points] == [
        ((1,), False), ((2,), True), ((2, 3), False)]  # the repeat merged, both citations
    assert result.points[1].support == 0.0
    assert "Bananas grow in Ecuador and Peru [2] (unsupported)" in result.to_text()
    assert [p["unsupported"] for p in result.to_json()["points"]] == [False, True, False]


def test_a_note_is_cut_where_a_run_of_words_starts_over():
    from engine.tasks.summarize import _clean_note
    from engine.tasks.text_quality import cut_loop

    looped = ("And they lifted up their voice, and wept again: and Orpah kissed her mother in "
              "law, and Ruth the Moabitess in law, and Ruth the Moabitess in law, and Ruth the "
              "Moabitess in law")
    assert cut_loop(looped) == ("And they lifted up their voice, and wept again: and Orpah "
                                "kissed her mother in law, and Ruth the Moabitess…")
    assert cut_loop(APACHE) == APACHE
    assert cut_loop("") == ""
    assert _clean_note(f"Summary:\n{looped}").endswith("and Ruth the Moabitess…")
