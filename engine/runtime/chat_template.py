"""Chat prompts rendered from the model's own ``tokenizer.chat_template``.

Templates come from model files, which are untrusted input: they render only in Jinja's
``ImmutableSandboxedEnvironment`` (the fix for CVE-2024-34359; jinja2>=3.1.6 closes later
sandbox escapes). Models without a template fall back to ChatML, said so in ``source``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import BadRequestError
from engine.options import ChatMessage

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


@dataclass(frozen=True)
class ChatTemplate:
    source: str  # "model" or "fallback (ChatML)"
    template: str
    bos_token: str = ""
    eos_token: str = ""

    @classmethod
    def from_model(cls, template: str | None, bos_token: str, eos_token: str) -> ChatTemplate:
        if template:
            return cls("model", template, bos_token, eos_token)
        return cls("fallback (ChatML)", CHATML_TEMPLATE, bos_token, eos_token)

    def render(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        return self._render([m.content for m in messages], messages, add_generation_prompt)

    def render_prompt(self, messages: Sequence[ChatMessage],
                      add_generation_prompt: bool = True) -> RenderedPrompt:
        """``render`` with the spans of the messages' text. Each content is rendered as a
        placeholder first, so the spans are exact even when the template adds text around
        it; a template that alters its placeholders (rare) is matched by searching for each
        content in order instead."""
        marks = [f"{_OPEN}{i}{_CLOSE}" for i in range(len(messages))]
        skeleton = self._render(marks, messages, add_generation_prompt)
        text, spans, at = [], [], 0
        length = 0
        for i, mark in enumerate(marks):
            found = skeleton.find(mark, at)
            if found < 0 or skeleton.count(mark) != 1:
                return self._render_by_search(messages, add_generation_prompt)
            text.append(skeleton[at:found])
            length += found - at
            spans.append((length, length + len(messages[i].content)))
            text.append(messages[i].content)
            length += len(messages[i].content)
            at = found + len(mark)
        text.append(skeleton[at:])
        markers_only = skeleton
        for mark in marks:
            markers_only = markers_only.replace(mark, "")
        if _OPEN in markers_only or _CLOSE in markers_only:  # a placeholder was taken apart
            return self._render_by_search(messages, add_generation_prompt)
        return RenderedPrompt("".join(text), tuple(spans))

    def _render_by_search(self, messages: Sequence[ChatMessage],
                          add_generation_prompt: bool) -> RenderedPrompt:
        text = self.render(messages, add_generation_prompt)
        spans, at = [], 0
        for message in messages:
            content = message.content.strip()
            found = text.find(content, at) if content else -1
            if found >= 0:
                spans.append((found, found + len(content)))
                at = found + len(content)
        return RenderedPrompt(text, tuple(spans))

    def _render(self, contents: Sequence[str], messages: Sequence[ChatMessage],
                add_generation_prompt: bool) -> str:
        env = ImmutableSandboxedEnvironment(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[_IgnoreGenerationTags, jinja2.ext.loopcontrols],
        )
        env.filters["tojson"] = _tojson
        try:
            compiled = env.from_string(self.template)
            return compiled.render(
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
