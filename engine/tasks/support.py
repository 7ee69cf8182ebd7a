"""Is a summary point backed by the chunks it cites? Content-word overlap: the share of the
point's content words (stop words dropped) that occur in the cited text.

Words are compared by a short prefix (the first ``_STEM`` characters, after a common ending
such as -s, -ed, -ing, -en or -e is cut), which matches inflected forms in English and the
other Latin-script languages the bundled models write ("licensed"/"licence",
"Lizenz"/"Lizenzen", "Werk"/"Werke") without a stemmer per language; numbers must match
exactly. It cannot tell a true sentence from a false one made of the chunk's own
words, but it catches what small models most often add: points about things the chunk never
mentions, and generic filler."""

from __future__ import annotations

from collections.abc import Iterable

from engine.tasks.text_quality import words

SUPPORTED = 0.5  # share of a point's content words found in its chunks, at least
_STEM = 5
_ENDINGS = ("ing", "es", "ed", "en", "er", "s", "e")
_STOPWORDS = frozenset(str.split(
    # English
    "a an and are as at be been being but by can could did do does doing for from had has "
    "have having he her here hers him his how i if in into is it its itself me more most my "
    "no nor not of off on once only or other our ours out over own same she should so some "
    "such than that the their theirs them then there these they this those through to too "
    "under until up very was we were what when where which while who whom why will with "
    "would you your yours also any all each both few just may might must shall upon about "
    "above after again against before below between during further one two three document "
    "text excerpt note notes summary point points section describes discusses explains "
    "states mentions says provides includes following "
    # German, French, Spanish, Italian, Portuguese: articles, pronouns, common particles
    "der die das den dem des ein eine einer eines einem und oder ist sind nicht mit von zu "
    "werden wird wurde hat haben "
    "im auf für als auch es sie er wir le la les un une des et ou est sont pas avec pour "
    "dans sur du au aux ce cette il elle nous vous el los las unos unas y o es son con por "
    "para en lo se su sus il lo gli le uno una e di da che per non os um uma é são com"))


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in _STOPWORDS and (len(w) > 1 or w.isdigit())]


def _stem(word: str) -> str:
    if word.isdigit():
        return word
    ending = next((e for e in _ENDINGS if word.endswith(e) and len(word) - len(e) >= 3), "")
    return word[:len(word) - len(ending)][:_STEM]


def support(point: str, cited: Iterable[str]) -> float:
    """Share of ``point``'s content words found in the ``cited`` texts (1.0 for a point with
    no content word: nothing to check)."""
    wanted = {_stem(w) for w in content_words(point)}
    if not wanted:
        return 1.0
    found = {_stem(w) for text in cited for w in content_words(text)}
    return len(wanted & found) / len(wanted)


def is_supported(score: float) -> bool:
    return score >= SUPPORTED
