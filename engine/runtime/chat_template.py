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
                messages=[{"role": m.role, "content": m.content} for m in messages],
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
