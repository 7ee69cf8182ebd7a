"""Extractive summaries: the document's own most central sentences, quoted verbatim.

Sentences are ranked with TextRank (PageRank over TF-IDF cosine similarity between
sentences): a sentence is central when it shares vocabulary with many other central
sentences. It needs no model, invents nothing, and every quote is a slice of a block's text,
so it carries that block's page and paragraph."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.documents import BlockKind, Document, split_sentences

_WORD = re.compile(r"\w+", re.UNICODE)
_MIN_WORDS = 4
_REDUNDANT = 0.6  # cosine above which a sentence repeats one already chosen
_DAMPING = 0.85
_STOPWORDS = frozenset(str.split(
    "a an and are as at be but by for from has have he her his in is it its of on or she "
    "that the their them they this to was were which with we you not no so if then than "
    "into out up down over under also been being had do does did can could would should "
    "will may might must i me my our us your"))
_QUOTABLE = (BlockKind.PARAGRAPH, BlockKind.LIST_ITEM, BlockKind.QUOTE)


@dataclass(frozen=True, slots=True)
class Extract:
    text: str  # == document.blocks[block].text[start:end]
    source: str  # document name
    document: int  # index into the documents given
    block: int
    start: int
    end: int
    page: int | None
    paragraph: int
    score: float


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and len(w) > 1]


def candidate_sentences(documents: Sequence[Document]) -> list[Extract]:
    """Sentences of at least ``_MIN_WORDS`` words (shorter ones are rarely worth quoting);
    all sentences with a word when a document has no longer ones."""
    found = []
    for d, document in enumerate(documents):
        for b, block in enumerate(document.blocks):
            if block.kind not in _QUOTABLE:
                continue
            for span in split_sentences(block.text):
                words = len(_WORD.findall(span.text))
                if words:
                    found.append((words, Extract(
                        span.text, document.name, d, b, span.start, span.end,
                        block.location.page, block.location.paragraph, 0.0)))
    long_enough = [e for words, e in found if words >= _MIN_WORDS]
    return long_enough or [e for _, e in found]


def _tfidf(sentences: Sequence[str]) -> np.ndarray:
    bags = [Counter(_words(s)) for s in sentences]
    vocab = {w: i for i, w in enumerate(sorted({w for bag in bags for w in bag}))}
    df = Counter(w for bag in bags for w in bag)
    n = len(sentences)
    matrix = np.zeros((n, max(1, len(vocab))))
    for i, bag in enumerate(bags):
        for word, count in bag.items():
            matrix[i, vocab[word]] = (1 + math.log(count)) * math.log((1 + n) / (1 + df[word]))
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def textrank(vectors: np.ndarray, iterations: int = 60) -> np.ndarray:
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, 0.0)
    out = similarity.sum(axis=1, keepdims=True)
    transition = similarity / np.where(out == 0, 1, out)
    n = len(vectors)
    rank = np.full(n, 1.0 / n)
    for _ in range(iterations):
        rank = (1 - _DAMPING) / n + _DAMPING * transition.T @ rank
    return rank


def extract(documents: Sequence[Document], count: int) -> list[Extract]:
    """The ``count`` most central, mutually non-redundant sentences, in document order."""
    candidates = candidate_sentences(documents)
    if not candidates:
        return []
    vectors = _tfidf([c.text for c in candidates])
    ranks = textrank(vectors)
    chosen: list[int] = []
    for i in np.argsort(-ranks, kind="stable"):
        if len(chosen) >= count:
            break
        if any(float(vectors[i] @ vectors[j]) > _REDUNDANT for j in chosen):
            continue
        chosen.append(int(i))
    chosen.sort(key=lambda i: (candidates[i].document, candidates[i].block, candidates[i].start))
    return [Extract(**{**_fields(candidates[i]), "score": float(ranks[i])}) for i in chosen]


def _fields(e: Extract) -> dict:
    return {name: getattr(e, name) for name in Extract.__slots__}
