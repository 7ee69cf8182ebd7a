"""Unit tests of the translation output checks: echo stripping, glossary term placement and
the untranslated flag. The outputs are the kinds SmolLM2 and Gemma 3 270M produced on the
Apache-2.0 license text (see bench/quality_translate.py)."""

from __future__ import annotations

from engine.tasks.glossary import GlossaryEntry
from engine.tasks.language import language_odds
from engine.tasks.prompt_echo import strip_echo
from engine.tasks.term_placement import appended, place_terms
from engine.tasks.translate_review import ECHO, GLOSSARY, UNTRANSLATED, review, untranslated_reason

INSTRUCTIONS = ["Translate the English text into German. Reply with the German translation "
                "only, on one line.", "Glossary: License = Lizenz-XQ; Work = Werk-XQ"]
LABELS = ["German", "English", "Translation"]
LICENSE = GlossaryEntry("License", "Lizenz-XQ")
WORK = GlossaryEntry("Work", "Werk-XQ")
DEFINITION = ('"License" shall mean the terms and conditions for use, reproduction, and '
              'distribution as defined by Sections 1 through 9 of this document.')
GERMAN = ('"Lizenz" bezeichnet die Bedingungen für die Nutzung, Vervielfältigung und '
          'Verbreitung gemäß den Abschnitten 1 bis 9 dieses Dokuments.')


def test_glossary_line_alone_is_stripped_to_nothing():
    echo = strip_echo("Glossary: License = Lizenz-XQ; Work = Werk-XQ", INSTRUCTIONS,
                      DEFINITION, LABELS)
    assert echo.text == ""
    assert echo.removed == ("Glossary: License = Lizenz-XQ; Work = Werk-XQ",)


def test_echo_after_and_before_a_translation_is_stripped():
    assert strip_echo(GERMAN + " Glossary: License = Lizenz-XQ", INSTRUCTIONS, DEFINITION,
                      LABELS).text == GERMAN
    echo = strip_echo("German: Translate the English text into German: " + GERMAN,
                      INSTRUCTIONS, DEFINITION, LABELS)
    assert echo.text == GERMAN and len(echo.removed) == 2
    # SmolLM2's words: the lead-in around the echoed words goes too.
    echo = strip_echo("The German translation of the English text would be: " + GERMAN,
                      INSTRUCTIONS, DEFINITION, LABELS)
    assert echo.text == GERMAN
    # A pair of the glossary without its "Glossary:" label is still an echo.
    assert strip_echo("License = Lizenz-XQ. " + GERMAN, INSTRUCTIONS, DEFINITION).text == GERMAN


def test_a_translation_that_uses_the_terms_or_quotes_the_source_is_kept():
    text = '"Lizenz-XQ" bezeichnet die Bedingungen für das Werk-XQ.'
    assert strip_echo(text, INSTRUCTIONS, DEFINITION, LABELS).removed == ()
    # Words the source itself has are not an echo even when an instruction has them too.
    source = "Translate the English text into German before you reply."
    assert strip_echo(source, INSTRUCTIONS, source).removed == ()


def test_term_placed_over_the_models_word_in_position():
    placement = place_terms(DEFINITION, GERMAN, [LICENSE], {"License": ("Lizenz",)})
    assert placement.text == GERMAN.replace('"Lizenz"', '"Lizenz-XQ"')
    (term,) = placement.terms
    assert (term.expected, term.placed, term.missing, term.removed) == (1, 1, 0, 0)


def test_term_appended_at_the_end_is_moved_into_place():
    tacked = GERMAN + " Lizenz-XQ"
    assert appended(DEFINITION, tacked, LICENSE) != []
    placement = place_terms(DEFINITION, tacked, [LICENSE])
    assert placement.text.startswith('"Lizenz-XQ" bezeichnet')
    assert placement.text.count("Lizenz-XQ") == 1 and placement.text.endswith("Dokuments.")
    assert placement.terms[0].removed == 1


def test_term_never_placed_more_often_than_the_source_has_it():
    source = "This License applies to any Work. The Work is licensed."
    text = "Diese Lizenz gilt für jedes Werk. Das Werk ist lizenziert, wie jedes Werk."
    placement = place_terms(source, text, [WORK, LICENSE])
    assert placement.text.count("Werk-XQ") == 2
    assert placement.text.count("Lizenz-XQ") == 1
    assert placement.text == ("Diese Lizenz-XQ gilt für jedes Werk-XQ. Das Werk-XQ ist "
                              "lizenziert, wie jedes Werk.")
    # A third "Werk-XQ" the model wrote itself is reported, not hidden.
    again = place_terms(source, placement.text.replace("jedes Werk.", "jedes Werk-XQ."), [WORK])
    assert again.terms[0].excess == 1 and "appears 3 times" in again.terms[0].problem()


def test_compound_and_untranslated_source_word_are_candidates():
    assert place_terms("Grant of Copyright License.", "Erteilung der Urheberrechtslizenz.",
                       [LICENSE]).text == "Erteilung der Urheberrechts-Lizenz-XQ."
    assert place_terms("See the License.", "Siehe die License.",
                       [LICENSE]).text == "Siehe die Lizenz-XQ."


def test_term_that_cannot_be_placed_is_flagged_with_the_reason():
    result = review(DEFINITION, "Die Bedingungen für die Nutzung gelten gemäß Abschnitt 1.",
                    "en", "de", INSTRUCTIONS, LABELS, [LICENSE])
    assert "Lizenz-XQ" not in result.text
    (flag,) = [f for f in result.flags if f.kind == GLOSSARY]
    assert "could not be placed" in flag.message and "“License”" in flag.message


def test_untranslated_output_is_flagged():
    assert language_odds(DEFINITION, "en", "de") > 0.99
    assert language_odds(GERMAN, "en", "de") < 0.01
    copy = untranslated_reason(DEFINITION, DEFINITION, "en", "de")
    assert "copy of the source" in copy
    english = untranslated_reason(DEFINITION, "The License means the conditions of use and "
                                  "of distribution of this document.", "en", "de")
    assert "in English, not German" in english
    assert untranslated_reason(DEFINITION, GERMAN, "en", "de") == ""
    # Nothing to translate (an address, a number): a copy is right.
    assert untranslated_reason("http://www.apache.org/licenses/",
                               "http://www.apache.org/licenses/", "en", "de") == ""
    # A copy with the required term placed is still a copy.
    result = review("The License applies to you.", "The Lizenz-XQ applies to you.", "en", "de",
                    INSTRUCTIONS, LABELS, [LICENSE])
    assert [f.kind for f in result.flags] == [UNTRANSLATED]


def test_review_strips_echo_places_terms_and_flags_nothing_for_a_good_output():
    result = review(DEFINITION, "German: " + GERMAN + " Glossary: License = Lizenz-XQ",
                    "en", "de", INSTRUCTIONS, LABELS, [LICENSE], {"License": ("Lizenz",)})
    assert result.text == GERMAN.replace('"Lizenz"', '"Lizenz-XQ"')
    assert [f.kind for f in result.flags] == [ECHO]
    assert result.leaked


def test_flags_and_placements_are_stored_with_the_job_and_reused(tmp_path):
    from engine.documents import document_from_text
    from engine.options import LoadSettings
    from engine.store.jobs import JobStore
    from engine.tasks.glossary import Glossary
    from engine.tasks.translate import TranslateSettings, translate
    from engine.testing.fake_engine import FakeEngine

    def respond(prompt: str) -> str:  # English left as English, and the term alone
        return "The License applies to you." if "applies" in prompt else "Lizenz"

    engine = FakeEngine(respond=respond)
    list(engine.load(LoadSettings(path="/models/fake.gguf")))
    document = document_from_text("The License applies to you.")
    settings = TranslateSettings(target="de", source="en",
                                 glossary=Glossary.from_pairs([("License", "Lizenz-XQ")]))
    with JobStore(tmp_path / "jobs.db") as store:
        first = list(translate(engine, document, settings, store=store))[-1]
        again = list(translate(engine, document, settings, store=store))[-1]
    (segment,) = first.segments
    assert segment.text == "The Lizenz-XQ applies to you." and segment.untranslated
    assert segment.terms[0].placed == 1
    assert again.segments_reused == 1 and again.segments == first.segments
