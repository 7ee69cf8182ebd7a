"""GBNF grammar checks with llama.cpp's own parser.

``llama_sampler_init_grammar`` returns NULL on a bad grammar and explains why only on the
process's stderr (parse errors, via ``fprintf``) or through the log callback (a missing root
rule, left recursion). Both are captured for the duration of the call (well under a
millisecond) so the reason can be shown to the user instead of a bare "invalid grammar";
anything another thread writes to stderr in that window is captured with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

from engine import native_log

_lock = threading.Lock()
_log_lines: list[str] = []
_log_callback = None  # kept referenced: llama.cpp holds a pointer to it
_PARSE_ERROR = "error parsing grammar: "


def _collecting_callback():
    global _log_callback
    import llama_cpp

    if _log_callback is None:
        _log_callback = llama_cpp.llama_log_callback(
            lambda _level, text, _data: _log_lines.append(text.decode("utf-8", "replace")))
    return _log_callback


@contextlib.contextmanager
def _native_messages() -> Iterator[list[str]]:
    """Collect what llama.cpp writes meanwhile: fd 2 first, then its log lines."""
    import llama_cpp

    messages: list[str] = []
    with _lock, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        _log_lines.clear()
        llama_cpp.llama_log_set(_collecting_callback(), ctypes.c_void_p(0))
        os.dup2(sink.fileno(), 2)
        try:
            yield messages
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            llama_cpp.llama_log_set(native_log.callback(), ctypes.c_void_p(0))
            sink.seek(0)
            messages.append(sink.read().decode("utf-8", errors="replace"))
            messages.extend(_log_lines)
            _log_lines.clear()


def _position(text: str, rest: str) -> str:
    """'line L, column C' of where ``rest`` (the unparsed remainder llama.cpp quotes) starts."""
    if not rest or not text.endswith(rest):
        return "the end of the grammar" if not rest else "an unknown position"
    offset = len(text) - len(rest)
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def _explain(text: str, captured: str) -> list[str]:
    problems: list[str] = []
    start = captured.find(_PARSE_ERROR)
    if start >= 0:
        detail = captured[start + len(_PARSE_ERROR):]
        echo = "\n\n" + text + "\n"
        if echo in detail:
            detail = detail[: detail.rindex(echo)]
        match = re.match(r"(.*?) at (.*)\Z", detail, re.DOTALL)
        if match:
            problems.append(f"{match.group(1)} at {_position(text, match.group(2))}")
        else:
            problems.append(detail.strip())
    for line in captured.splitlines():
        line = line.strip()
        if "left recursion" in line:
            problems.append("left recursion: a rule starts with itself, directly or through "
                            "other rules; rewrite it with repetition, e.g. list ::= item "
                            '("," item)*')
        elif "does not contain a" in line:
            problems.append(line)
    return problems


def grammar_problems(text: str, vocab: object = None, root: str = "root") -> list[str]:
    """Problems with a GBNF grammar as sentences; empty when llama.cpp accepts it.

    ``vocab`` is a loaded model's ``llama_vocab`` pointer; without it, token references such as
    ``<|im_end|>`` cannot be resolved and are reported as errors."""
    import llama_cpp

    if not text.strip():
        return ["The grammar is empty."]
    with _native_messages() as messages:
        sampler = llama_cpp.llama_sampler_init_grammar(
            vocab, text.encode("utf-8"), root.encode("utf-8"))
    if sampler:
        llama_cpp.llama_sampler_free(sampler)
        if messages[0].strip():  # not about the grammar: another thread's output
            sys.stderr.write(messages[0])
        return []
    problems: list[str] = []
    if not re.search(rf"(?m)^\s*{re.escape(root)}\s*::=", text):
        problems.append(f"The grammar has no '{root}' rule ('{root} ::= ...'); generation "
                        "starts from it.")
    for problem in _explain(text, "".join(messages)):
        duplicate_root = bool(problems) and "does not contain a" in problem
        if problem not in problems and not duplicate_root:
            problems.append(problem)
    if not problems:
        said = " ".join(m.strip() for m in messages if m.strip())
        problems.append(f"llama.cpp rejected the grammar ({said or 'no reason given'}).")
    return problems
