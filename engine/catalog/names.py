"""The name a person recognises for a model file.

GGUF's ``general.name`` is often a training-run label ("Smollm2 135M 8k Lc100K Mix1 Ep2" for
SmolLM2-135M-Instruct). A file name that its publisher cased by hand ("SmolLM2-135M-Instruct
.Q4_1.gguf") is the better name once the quantization and split suffixes are cut; an
all-lowercase one ("gemma-3-270m-q4_k_m.gguf") is a slug, and the metadata's
``general.name`` when it says what the slug says ("Qwen2.5 7B Instruct"), else
``general.basename`` and ``general.size_label`` ("gemma-3", "270M") read better. The
quantization is shown separately, so it is never part of the name.
"""

from __future__ import annotations

import re

_SPLIT = re.compile(r"-\d{5}-of-\d{5}$", re.IGNORECASE)
_QUANT = re.compile(
    r"[.\-_](?:I?Q\d(?:_[0-9A-Z]+)*|F16|F32|BF16|FP16|FP32|MXFP4)(?:[.\-_]\w+)?$",
    re.IGNORECASE)


def _cleaned_stem(file_name: str) -> str:
    stem = file_name[:-5] if file_name.lower().endswith(".gguf") else file_name
    stem = _SPLIT.sub("", stem)
    stem = _QUANT.sub("", stem)
    return " ".join(re.split(r"[-_\s]+", stem)).strip()


def _title(word: str) -> str:
    return word if any(c.isupper() for c in word) else word[:1].upper() + word[1:]


def display_name(file_name: str, basename: str | None, size_label: str | None,
                 metadata_name: str | None) -> str:
    stem = _cleaned_stem(file_name)
    if any(c.isupper() for c in stem):
        return stem
    slug = set(stem.lower().split())
    if metadata_name and set(metadata_name.lower().split()) <= slug:
        return metadata_name  # the metadata says what the file name says, cased
    if basename:
        words = [_title(w) for w in re.split(r"[-_\s]+", basename.strip()) if w]
        if size_label and size_label.lower() not in (w.lower() for w in words):
            words.append(size_label)
        return " ".join(words)
    return metadata_name or stem or file_name
