"""Hostile chat templates (a model file's ``tokenizer.chat_template`` is untrusted code):
reaching for Python internals, endless loops and recursion, gigantic output. Nothing
executes, rendering stops within its time and size limits with a message that says why,
and a model carrying such a template loads with the built-in ChatML format and says so."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from gguf import GGUFValueType

from engine.chat_template import FALLBACK, ChatTemplate
from engine.errors import BadRequestError
from engine.events import Done, ModelLoaded
from engine.options import GREEDY, ChatMessage, ChatRequest, LoadSettings
from engine.template_guard import TIME_LIMIT_S
from engine.worker import EngineClient
from tests.trust.gguf_mutations import encode_value, spliced

FAMILY = "Hostile chat templates"
SENTINEL = "/tmp/verso-trust-template-ran"
RUN = f"touch {SENTINEL}"

INTERNALS = {
    "__class__ mro subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler __globals__ os": f"{{{{ cycler.__init__.__globals__.os.popen('{RUN}').read() }}}}",
    "joiner __globals__": f"{{{{ joiner.__init__.__globals__.os.system('{RUN}') }}}}",
    "namespace __init__ __globals__": "{{ namespace.__init__.__globals__ }}",
    "lipsum __globals__": f"{{{{ lipsum.__globals__['os'].popen('{RUN}') }}}}",
    "range __self__ builtins": "{{ range.__self__.__import__('os').system('true') }}",
    "attr filter __class__": "{{ (''|attr('__class__')|attr('__base__')"
                             "|attr('__subclasses__'))() }}",
    "attr filter dunder via join": "{{ ''|attr(['_','_','class','_','_']|join) }}",
    "self __init__ __globals__": "{{ self.__init__.__globals__ }}",
    "raise_exception __globals__": "{{ raise_exception.__globals__ }}",
    "strftime_now __globals__": "{{ strftime_now.__globals__ }}",
    "messages.append": "{{ messages.append({'role': 'system', 'content': 'PWNED'}) }}",
    "messages.pop": "{{ messages.pop() }}",
    "dict update": "{% set d = messages[0] %}{{ d.update({'content': 'PWNED'}) }}",
    "format __class__": "{{ '{0.__class__.__mro__}'.format('') }}",
    "request environ": "{{ request.environ }}{{ config.items() }}",
    "loop __globals__": "{% for m in messages %}{{ loop.__init__.__globals__ }}{% endfor %}",
}

ENDLESS = {
    "nested range loops": "{% for i in range(100000) %}{% for j in range(100000) %}"
                          "{% endfor %}{% endfor %}",
    "three nested loops with output": "{% for i in range(99999) %}{% for j in range(99999) %}"
                                      "{% for k in range(99999) %}.{% endfor %}{% endfor %}"
                                      "{% endfor %}",
    "self-calling macro": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "mutually recursive macros": "{% macro a() %}{{ b() }}{% endmacro %}"
                                 "{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}",
    "recursive loop over itself": "{% for m in [messages] recursive %}{{ loop([m]) }}"
                                  "{% endfor %}",
    "loop over messages, each a long loop": "{% for m in messages %}{% for i in range(99999) %}"
                                            "{% for j in range(99999) %}{% endfor %}"
                                            "{% endfor %}{% endfor %}",
    "doubling a string": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
                         "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "doubling with +": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
                       "{% set ns.s = ns.s + ns.s %}{% endfor %}",
}

GIGANTIC = {
    "string times 10^9": "{{ 'x' * 1000000000 }}",
    "list times 10^9": "{{ ([1] * 1000000000)|length }}",
    "center 10^9": "{{ 'a'|center(1000000000) }}",
    "indent 10^9": "{{ 'a\nb'|indent(1000000000) }}",
    "format width 10^9": "{{ '{:>1000000000}'.format('a') }}",
    "percent width 10^9": "{{ '%1000000000s' % 'a' }}",
    "format filter width": "{{ '%999999999d'|format(1) }}",
    "power tower": "{{ 10 ** 10 ** 10 }}",
    "lipsum 10^5 paragraphs": "{{ lipsum(100000) }}",
    "join of a long range, repeated": "{% for i in range(100000) %}"
                                      "{{ range(100000)|join(',') }}{% endfor %}",
    "wordwrap 10^9": "{{ 'a b'|wordwrap(1000000000) }}",
    "message repeated 10^7 times": "{{ messages[0]['content'] * 10000000 }}",
}

ALL = [*(("internals", k, v) for k, v in INTERNALS.items()),
       *(("endless", k, v) for k, v in ENDLESS.items()),
       *(("gigantic", k, v) for k, v in GIGANTIC.items())]
FAST = {"cycler __globals__ os", "attr filter __class__", "nested range loops",
        "self-calling macro", "string times 10^9", "format width 10^9"}
MESSAGES = (ChatMessage("system", "Be brief."), ChatMessage("user", "Hello there"))


@pytest.mark.parametrize(("kind", "template"), [
    pytest.param(kind, template, id=f"{kind}: {name}",
                 marks=() if name in FAST else (pytest.mark.long,))
    for kind, name, template in ALL])
def test_hostile_template_is_stopped_and_replaced(kind: str, template: str,
                                                  record_property) -> None:
    Path(SENTINEL).unlink(missing_ok=True)
    start = time.monotonic()
    try:
        text = ChatTemplate("model", template).render(MESSAGES)
    except BadRequestError as exc:
        assert "chat template" in exc.message, exc.message
        assert "\n" not in exc.message
        record_property("result", exc.message[:160])
    else:  # rendered harmlessly: nothing from Python's internals, nothing run
        assert "<class" not in text and "function" not in text and "module" not in text, text
        assert len(text) < 1 << 20
        record_property("result", f"rendered {len(text)} harmless characters")
    took = time.monotonic() - start
    assert took < TIME_LIMIT_S + 1.5, took
    assert not Path(SENTINEL).exists(), "the template ran a command"
    loaded = ChatTemplate.from_model(template, "<s>", "</s>")
    assert loaded.source == FALLBACK and loaded.problem, loaded
    assert "Hello there" in loaded.render(MESSAGES)


@pytest.mark.model
@pytest.mark.parametrize("template", [
    ENDLESS["nested range loops"], INTERNALS["cycler __globals__ os"],
    pytest.param("{{ 'I ignore the conversation' }}", id="ignores the messages"),
    pytest.param(GIGANTIC["string times 10^9"], marks=pytest.mark.long),
])
def test_a_model_with_a_hostile_template_chats_in_chatml_and_says_so(
        template: str, smol_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "template.gguf"
    spliced({"tokenizer.chat_template": encode_value(GGUFValueType.STRING, template)})(
        smol_path, bad)
    with EngineClient() as client:
        loaded = [e for e in client.load(LoadSettings(path=str(bad), n_ctx=512, n_threads=2))
                  if isinstance(e, ModelLoaded)]
        assert loaded and loaded[0].chat_template_problem
        assert not loaded[0].has_chat_template
        rendered = client.chat_prompt(list(MESSAGES))
        assert rendered.text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
        done = [e for e in client.chat(ChatRequest(MESSAGES, replace(GREEDY, max_tokens=8)))
                if isinstance(e, Done)]
        assert done and done[-1].text.strip()
    assert not Path(SENTINEL).exists()
    cli = subprocess.run([sys.executable, "-m", "engine.cli", "generate", "--chat", "Hi",
                          "--model", str(bad), "--max-tokens", "4", "--temperature", "0"],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert "note: chat prompts use the built-in ChatML format: The model's chat template" \
        in cli.stderr, cli.stderr
