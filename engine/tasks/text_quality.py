"""Measures of a model's output that flag degenerate text: repeated sentences, long
repeated word sequences and a low share of distinct trigrams (the "X, and X. X, and X."
loops small models fall into). The summary guard and ``bench/quality_summary.py`` use the
same functions, so what the benchmark counts is what the product refuses.

Words are ``\\w+`` runs, casefolded; in scripts written without spaces (Chinese, Japanese,
Thai...) each character is a word, so the measures do not collapse to one "word" per line.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from engine.documents import split_sentences

_WORD = re.compile(r"\w+", re.UNICODE)
_UNSPACED = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf"
                       r"\u4e00-\u9fff\uf900-\ufaff]")

MIN_SENTENCE_WORDS = 3  # "Yes." twice is not a loop
LOOP_NGRAM = 8  # words in a sequence that, seen LOOP_COUNT times, is a loop
LOOP_COUNT = 3
MIN_DISTINCT_TRIGRAMS = 0.5  # below this share, over MIN_RATIO_WORDS words, text loops
MIN_RATIO_WORDS = 40
CUT_NGRAM = 6  # a note is cut where a sequence of this many words comes back


def words(text: str) -> list[str]:
    """Casefolded words; characters of unspaced scripts count one each."""
    out: list[str] = []
    for match in _WORD.finditer(unicodedata.normalize("NFKC", text).casefold()):
        word = match[0]
        if _UNSPACED.search(word):
            out += [ch for ch in word]
        else:
            out.append(word)
    return out


def sentence_key(sentence: str) -> str:
    """A sentence as compared for repeats: its words, ignoring case and punctuation."""
    return " ".join(words(sentence))


def sentence_counts(text: str) -> Counter[str]:
    """How often each sentence of ``text`` (of at least MIN_SENTENCE_WORDS words) occurs;
    lines count as sentence boundaries too (bullets often end without a full stop)."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        for span in split_sentences(line):
            key = sentence_key(span.text)
            if len(key.split()) >= MIN_SENTENCE_WORDS:
                counts[key] += 1
    return counts


def repeated_sentences(text: str) -> int:
    """Sentences that repeat an earlier one of the same text (extra copies counted)."""
    return sum(n - 1 for n in sentence_counts(text).values())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_ngram_ratio(text: str, n: int = 3) -> float:
    """Distinct word n-grams over all word n-grams; 1.0 when the text is too short to have
    any (nothing repeats)."""
    grams = ngrams(words(text), n)
    return len(set(grams)) / len(grams) if grams else 1.0


def most_repeated_ngram(text: str, n: int = LOOP_NGRAM) -> tuple[str, int]:
    """The ``n``-word sequence seen most often (non-overlapping occurrences) and its count."""
    tokens = words(text)
    last_end: dict[tuple[str, ...], int] = {}
    counts: Counter[tuple[str, ...]] = Counter()
    for i, gram in enumerate(ngrams(tokens, n)):
        if last_end.get(gram, -1) <= i:
            counts[gram] += 1
            last_end[gram] = i + n
    if not counts:
        return "", 0
    gram, count = counts.most_common(1)[0]
    return " ".join(gram), count


@dataclass(frozen=True, slots=True)
class Degeneration:
    """Why a text counts as degenerate, in words a user can read."""

    reason: str
    repeated_sentences: int
    distinct_trigrams: float


def _quote(text: str, limit: int = 60) -> str:
    text = re.sub(r"\s+([.,;:!?])", r"\1", " ".join(text.split())).lstrip("-*•+ ")
    return f"“{text[:limit].rstrip()}…”" if len(text) > limit else f"“{text}”"


def degeneration(text: str) -> Degeneration | None:
    """None when ``text`` reads as ordinary prose; otherwise what repeats."""
    counts = sentence_counts(text)
    repeats = sum(n - 1 for n in counts.values())
    ratio = distinct_ngram_ratio(text)
    sentence, times = counts.most_common(1)[0] if counts else ("", 0)
    if times >= LOOP_COUNT:
        original = _original_sentence(text, sentence)
        return Degeneration(f"it repeated the sentence {_quote(original)} {times} times",
                            repeats, ratio)
    gram, gram_times = most_repeated_ngram(text)
    if gram_times >= LOOP_COUNT:
        return Degeneration(f"it repeated the words {_quote(gram)} {gram_times} times",
                            repeats, ratio)
    if len(words(text)) >= MIN_RATIO_WORDS and ratio < MIN_DISTINCT_TRIGRAMS:
        return Degeneration(f"it kept repeating itself (only {ratio:.0%} of its word "
                            "triples are distinct)", repeats, ratio)
    return None


def _original_sentence(text: str, key: str) -> str:
    for line in text.splitlines():
        for span in split_sentences(line):
            if sentence_key(span.text) == key:
                return span.text
    return key


def drop_repeated_sentences(text: str) -> str:
    """``text`` with every sentence that repeats an earlier one removed (line breaks and the
    first copy of each sentence kept)."""
    seen: set[str] = set()
    lines = []
    for line in text.splitlines():
        kept = []
        for span in split_sentences(line):
            key = sentence_key(span.text)
            if len(key.split()) >= MIN_SENTENCE_WORDS and key in seen:
                continue
            seen.add(key)
            kept.append(span.text)
        if kept or not line.strip():
            lines.append(" ".join(kept))
    return "\n".join(lines).strip()


def cut_loop(text: str, n: int = CUT_NGRAM) -> str:
    """``text`` cut where it starts to loop: before the second occurrence of any ``n``-word
    sequence (not overlapping the first), with "…" in place of the rest. Text that never
    repeats such a sequence is returned as it is."""
    spans = [(m.start(), m[0]) for m in _WORD.finditer(text)]
    tokens = [w.casefold() for _, w in spans]
    first: dict[tuple[str, ...], int] = {}
    for i, gram in enumerate(ngrams(tokens, n)):
        seen = first.setdefault(gram, i)
        if seen + n <= i:
            kept = text[:spans[i][0]].rstrip(" ,;:-–—")
            if not kept:
                return text
            return kept if kept.endswith((".", "!", "?", "…")) else kept + "…"
    return text
