import jinja2
import pytest

from engine.catalog import read_model_info
from engine.errors import BadRequestError
from engine.options import ChatMessage
from engine.runtime.chat_template import CHATML_TEMPLATE, ChatTemplate

CONVERSATION = [
    ChatMessage("system", "You are terse."),
    ChatMessage("user", "Hi there"),
    ChatMessage("assistant", "Hello."),
    ChatMessage("user", "Name a colour."),
]


def _reference_render(template: str, messages, **extra) -> str:
    """How Hugging Face renders chat templates: a plain Jinja environment with the same
    whitespace options."""
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(
        messages=[{"role": m.role, "content": m.content} for m in messages],
        add_generation_prompt=True, **extra)


def test_smollm2_template_matches_reference_rendering(smol_path):
    info = read_model_info(smol_path)
    assert info.chat_template
    template = ChatTemplate.from_model(info.chat_template, "", "<|im_end|>")
    assert template.source == "model"
    ours = template.render(CONVERSATION)
    assert ours == _reference_render(info.chat_template, CONVERSATION, bos_token="",
                                     eos_token="<|im_end|>")
    assert ours == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
        "<|im_start|>user\nName a colour.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_gemma_template_matches_reference_rendering(gemma_path):
    info = read_model_info(gemma_path)
    if not info.chat_template:
        pytest.skip("this Gemma build has no chat template")
    template = ChatTemplate.from_model(info.chat_template, "<bos>", "<eos>")
    ours = template.render(CONVERSATION)
    assert ours == _reference_render(info.chat_template, CONVERSATION, bos_token="<bos>",
                                     eos_token="<eos>",
                                     raise_exception=lambda m: (_ for _ in ()).throw(
                                         ValueError(m)))
    assert ours.startswith("<bos>")


def test_model_without_template_falls_back_to_chatml():
    template = ChatTemplate.from_model(None, "", "")
    assert template.source.startswith("fallback")
    assert template.template == CHATML_TEMPLATE
    assert template.render([ChatMessage("user", "x")]) == (
        "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("payload", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ messages.append(1) }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
])
def test_hostile_templates_are_refused_by_the_sandbox(payload):
    template = ChatTemplate.from_model(payload, "", "")
    with pytest.raises(BadRequestError):
        template.render([ChatMessage("user", "x")])


def test_template_raise_exception_becomes_a_clear_error():
    template = ChatTemplate.from_model("{{ raise_exception('roles must alternate') }}", "", "")
    with pytest.raises(BadRequestError, match="roles must alternate"):
        template.render([ChatMessage("user", "x")])
