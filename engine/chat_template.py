"""Chat prompts rendered from the model's own ``tokenizer.chat_template`` (by the runtime
for a local model, and by the remote engine for a llama.cpp server's ``/props`` template,
so a model's prompts are the same text wherever it runs).

Templates come from model files, which are untrusted input: they render only in Jinja's
``ImmutableSandboxedEnvironment`` (the fix for CVE-2024-34359; jinja2>=3.1.6 closes later
sandbox escapes), within time, size and memory limits (``template_guard``). Models without
a template, or whose template fails a trial rendering at load (it breaks a limit, fails, or
leaves the user's message out), fall back to ChatML; ``source`` and ``problem`` say so.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

import jinja2
import jinja2.ext

from engine.errors import BadRequestError
from engine.options import ChatMessage
from engine.template_guard import GuardedEnvironment

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class _IgnoreGenerationTags(jinja2.ext.Extension):
    """Pass-through for Hugging Face's ``{% generation %}`` tag."""

    tags = {"generation"}  # noqa: RUF012 - jinja's own class attribute

    def parse(self, parser: Any) -> Any:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise BadRequestError(f"The model's chat template refused the conversation: {message}")


_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use marks around a content placeholder
_MARK = re.compile(f"{_OPEN}(\\d+){_CLOSE}")
log = logging.getLogger(__name__)


def _align(text: str, literals: Sequence[str]) -> tuple[tuple[int, int], ...] | None:
    """The content spans of ``text`` between ``literals`` (the template's own parts, in
    order), when matching them from the left and from the right agree; else None.
    Adjacent placeholders (an empty literal between them) make one span."""
    first, *middle, last = literals if len(literals) > 1 else (literals[0], "")
    if len(literals) == 1:
        return () if text == first else None
    if not text.startswith(first) or not text.endswith(last) or \
            len(first) + len(last) > len(text):
        return None
    middle = [part for part in middle if part]
    lo, hi = len(first), len(text) - len(last)

    def boundaries(from_left: bool) -> list[tuple[int, int]] | None:
        found: list[tuple[int, int]] = []
        if from_left:
            at = lo
            for part in middle:
                j = text.find(part, at, hi)
                if j < 0:
                    return None
                found.append((j, j + len(part)))
                at = j + len(part)
            return found
        at = hi
        for part in reversed(middle):
            j = text.rfind(part, lo, at)
            if j < 0:
                return None
            found.append((j, j + len(part)))
            at = j
        return found[::-1]

    left, right = boundaries(True), boundaries(False)
    if left is None or left != right:
        return None
    edges = [lo, *[x for pair in left for x in pair], hi]
    return tuple((edges[i], edges[i + 1]) for i in range(0, len(edges), 2))


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """A rendered conversation and where the messages' own text lies in it. Only the text
    outside ``content_spans`` (the template's markers) may become control tokens: text a
    user or a document wrote (``<|im_end|>`` typed in a message) is tokenized as plain text,
    so it cannot close a turn or open a system message."""

    text: str
    content_spans: tuple[tuple[int, int], ...] = ()

    def pieces(self, start: int = 0) -> list[tuple[str, bool]]:
        """``text[start:]`` as (piece, is_content) in order; empty pieces left out."""
        out: list[tuple[str, bool]] = []
        at = start
        for lo, hi in self.content_spans:
            lo, hi = max(lo, start), max(hi, start)
            if lo > at:
                out.append((self.text[at:lo], False))
            if hi > lo:
                out.append((self.text[lo:hi], True))
            at = max(at, hi)
        if at < len(self.text):
            out.append((self.text[at:], False))
        return out

    def __add__(self, content: str) -> RenderedPrompt:
        """This prompt followed by more message text (a reply being continued)."""
        end = len(self.text)
        return RenderedPrompt(self.text + content, (*self.content_spans, (end, end + len(content))))


FALLBACK = "fallback (ChatML)"
_PROBE = (ChatMessage("user", "Hello, how are you?"),)
_OUTPUT_FLOOR = 1 << 20  # characters a rendering may produce beyond 4x the messages' text


@dataclass(frozen=True)
class ChatTemplate:
    source: str  # "model" or FALLBACK
    template: str
    bos_token: str = ""
    eos_token: str = ""
    problem: str = ""  # why the model's own template is not used, for the user

    @classmethod
    def from_model(cls, template: object, bos_token: str, eos_token: str) -> ChatTemplate:
        """The model's template if it renders a trial conversation with the user's message
        in it; else ChatML, with the reason in ``problem``."""
        if not template:
            return cls(FALLBACK, CHATML_TEMPLATE, bos_token, eos_token)
        if not isinstance(template, str):
            return cls(FALLBACK, CHATML_TEMPLATE, bos_token, eos_token,
                       "the model's chat template is not text")
        own = cls("model", template, bos_token, eos_token)
        try:
            rendered = own.render_prompt(_PROBE)
        except BadRequestError as exc:
            return cls(FALLBACK, CHATML_TEMPLATE, bos_token, eos_token, str(exc))
        if _PROBE[0].content not in rendered.text:
            return cls(FALLBACK, CHATML_TEMPLATE, bos_token, eos_token,
                       "The model's chat template leaves the user's message out of the "
                       "prompt.")
        return own

    def render(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        return self._render([m.content for m in messages], messages, add_generation_prompt)

    def render_prompt(self, messages: Sequence[ChatMessage],
                      add_generation_prompt: bool = True) -> RenderedPrompt:
        """``render`` with the spans of the messages' text, failing closed.

        The text is the template's own output (its filters apply: trimmed content, reasoning
        stripped from earlier turns). To find where the messages are in it, the template is
        rendered once more with a placeholder for each message; the text between the
        placeholders (the template's literal parts) is then matched in the real output, and
        a match is used only when it is unambiguous: the same from the left and from the
        right, so a message that repeats a literal part cannot move a boundary. Otherwise
        the placeholders are filled with the messages' text as given; a template that took
        its placeholders apart gets no control tokens at all. Message text is never read
        for control tokens."""
        text = self.render(messages, add_generation_prompt)
        marks = [f"{_OPEN}{i}{_CLOSE}" for i in range(len(messages))]
        skeleton = self._render(marks, messages, add_generation_prompt)
        found = list(_MARK.finditer(skeleton))
        literals = [skeleton[: found[0].start()] if found else skeleton,
                    *[skeleton[a.end():b.start()] for a, b in pairwise(found)],
                    *([skeleton[found[-1].end():]] if found else [])]
        if any(_OPEN in part or _CLOSE in part for part in literals):
            log.warning("the chat template altered its placeholders; the prompt is tokenized "
                        "without control tokens")
            return RenderedPrompt(text, ((0, len(text)),))
        spans = _align(text, literals)
        if spans is not None:
            return RenderedPrompt(text, spans)
        out, spans_list, length = [literals[0]], [], len(literals[0])
        for match, literal in zip(found, literals[1:], strict=True):
            content = messages[int(match.group(1))].content
            spans_list.append((length, length + len(content)))
            out += [content, literal]
            length += len(content) + len(literal)
        return RenderedPrompt("".join(out), tuple(spans_list))

    def _render(self, contents: Sequence[str], messages: Sequence[ChatMessage],
                add_generation_prompt: bool) -> str:
        env = GuardedEnvironment(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[_IgnoreGenerationTags, jinja2.ext.loopcontrols],
            max_output=_OUTPUT_FLOOR + 4 * sum(len(c) for c in contents),
        )
        env.filters["tojson"] = _tojson
        try:
            return env.render_bounded(
                self.template,
                messages=[{"role": m.role, "content": c} for m, c in zip(messages, contents,
                                                                          strict=True)],
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                add_generation_prompt=add_generation_prompt,
                raise_exception=_raise_exception,
                strftime_now=lambda fmt: datetime.now().strftime(fmt),
            )
        except BadRequestError:
            raise
        except jinja2.TemplateError as exc:
            raise BadRequestError(f"The model's chat template failed to render: {exc}") from exc
        except Exception as exc:  # untrusted code: any failure is the template's
            raise BadRequestError(f"The model's chat template failed to render "
                                  f"({type(exc).__name__}: {exc})") from exc
