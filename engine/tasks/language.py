"""Guessing a text's language from its script and, for Latin and Cyrillic text, from its
most common function words: good enough to pre-fill a "from" box; the user can override.

Checking a translation's output needs more: a segment is often one short sentence or a
heading with no function word in it. ``language_odds`` asks py3langid (a naive Bayes model
over byte n-grams, shipped in the package, 97 languages) which of two languages a text is
in, which stays reliable on a few words where the function-word count has nothing to go on."""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import Counter
from typing import Any

LANGUAGES = {
    "en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
    "pt": "Portuguese", "nl": "Dutch", "sv": "Swedish", "pl": "Polish", "ru": "Russian",
    "uk": "Ukrainian", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ar": "Arabic",
    "he": "Hebrew", "el": "Greek", "hi": "Hindi", "th": "Thai", "tr": "Turkish",
}

_STOPWORDS = {
    "en": str.split("the and of to in is that it for was on are with as be this by not"),
    "fr": str.split("le la les et des est une que dans pour pas qui sur du au il elle avec"),
    "de": str.split("der die das und ist nicht ein eine zu den mit sich auf für von dem ich"),
    "es": str.split("el la los las y de que en un una es por con para no se del al"),
    "it": str.split("il la di che e è un una per non con sono gli del della le"),
    "pt": str.split("o a os as de que e do da em um uma para com não é no na"),
    "nl": str.split("de het een en van is dat niet op te in met voor zijn er"),
    "sv": str.split("och att det som en är på för med inte av till den har"),
    "pl": str.split("i w na nie się z że do jest to jak po od przez"),
    "tr": str.split("ve bir bu da de için ile çok ne ama olarak gibi daha"),
    "ru": str.split("и в не на что с по как это он она они из за то"),
    "uk": str.split("і в не на що з як це він вона вони та до за"),
}

_SCRIPTS = (("HIRAGANA", "ja"), ("KATAKANA", "ja"), ("HANGUL", "ko"), ("CJK", "zh"),
            ("ARABIC", "ar"), ("HEBREW", "he"), ("GREEK", "el"), ("DEVANAGARI", "hi"),
            ("THAI", "th"), ("CYRILLIC", "cyrillic"), ("LATIN", "latin"))
_WORD = re.compile(r"\w+", re.UNICODE)


def _script(ch: str) -> str | None:
    name = unicodedata.name(ch, "")
    for prefix, script in _SCRIPTS:
        if name.startswith(prefix):
            return script
    return None


def detect_language(text: str, default: str = "en") -> str:
    """An ISO 639-1 code."""
    scripts = Counter(s for ch in text if ch.isalpha() and (s := _script(ch)))
    if not scripts:
        return default
    if scripts["ja"]:  # Japanese mixes kana with CJK ideographs
        return "ja"
    script = scripts.most_common(1)[0][0]
    if script not in ("latin", "cyrillic"):
        return script
    words = Counter(_WORD.findall(text.lower()))
    candidates = ("ru", "uk") if script == "cyrillic" else tuple(
        c for c in _STOPWORDS if c not in ("ru", "uk"))
    scores = {c: sum(words[w] for w in _STOPWORDS[c]) for c in candidates}
    best = max(scores, key=lambda c: scores[c])
    return best if scores[best] else default


def language_name(code: str) -> str:
    """English name for a code; unknown codes (or names) are returned as given."""
    return LANGUAGES.get(code.lower(), code)


def language_code(name_or_code: str) -> str:
    key = name_or_code.strip().lower()
    for code, name in LANGUAGES.items():
        if key in (code, name.lower()):
            return code
    return key


_lock = threading.Lock()
_loaded: list[Any] = []


def _identifier() -> Any:
    """py3langid's model, loaded once per process (about a second: it is LZMA-packed)."""
    with _lock:
        if not _loaded:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            _loaded.append(LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=False))
        return _loaded[0]


def warm_up() -> None:
    """Load the identifier in the background (a translation starts this while it decodes)."""
    if not _loaded:
        threading.Thread(target=_identifier, name="language-model", daemon=True).start()


def _function_words(text: str, code: str) -> int:
    words = _WORD.findall(text.lower())
    vocabulary = set(_STOPWORDS.get(code, ()))
    return sum(w in vocabulary for w in words)


def language_odds(text: str, first: str, second: str) -> float | None:
    """Probability that ``text`` is in language ``first`` rather than ``second`` (ISO 639-1
    codes), from py3langid's scores for those two languages alone; None when the model does
    not know one of them or the text has no letters."""
    if first == second or not any(ch.isalpha() for ch in text):
        return None
    if first in _STOPWORDS and second in _STOPWORDS:  # clear cases need no model
        ours, theirs = _function_words(text, first), _function_words(text, second)
        if theirs >= 2 and not ours:
            return 0.0
    identifier = _identifier()
    labels = identifier.nb_classes
    if first not in labels or second not in labels:
        return None
    scores = dict(identifier.rank(text))
    gap = scores[second] - scores[first]
    return 1.0 / (1.0 + math.exp(min(gap, 700.0)))
