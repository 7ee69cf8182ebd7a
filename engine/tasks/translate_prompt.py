"""How a segment is put to the model, in a few formats that were measured against each other
(bench/quality_translate.py ``--formats``).

``system`` (the default) gives the instruction as the system message and the segment alone as
the user message: nothing in the turn the model answers looks like a line to continue, and
the glossary is not in the prompt at all (its terms are placed after decoding, see
``term_placement``), so there is no "Glossary: ..." line to echo. ``instruction`` puts the
instruction in the user message above the segment; ``glossary_hint`` adds the glossary line
to that, as Verso did before. A model without a chat template gets a completion prompt
(``English: ...`` / ``German:``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.api import Engine
from engine.options import ChatMessage
from engine.tasks.glossary import GlossaryEntry

FORMATS = ("system", "instruction", "glossary_hint")
DEFAULT_FORMAT = "system"


@dataclass(frozen=True, slots=True)
class SegmentPrompt:
    tokens: tuple[int, ...]
    instructions: tuple[str, ...]  # the prompt's lines other than the segment (echo check)
    labels: tuple[str, ...]  # answer prefixes a model may write ("German:")


def _instruction(source: str, target: str) -> str:
    return (f"Translate the {source} text into {target}. Reply with the {target} translation "
            "only, on one line.")


def glossary_line(terms: Sequence[GlossaryEntry]) -> str:
    return "Glossary: " + "; ".join(f"{e.source} = {e.target}" for e in terms)


def segment_prompt(client: Engine, text: str, source: str, target: str,
                   terms: Sequence[GlossaryEntry], chat: bool,
                   form: str = DEFAULT_FORMAT) -> SegmentPrompt:
    """The prompt for one segment; ``source`` and ``target`` are language names."""
    if form not in FORMATS:
        raise ValueError(f"unknown prompt format {form!r}")
    instruction = _instruction(source, target)
    labels = (target, source, "Translation")
    if not chat:
        lines = [f"Translate from {source} to {target}."]
        if form == "glossary_hint" and terms:
            lines.append(glossary_line(terms))
        prompt = "\n".join(lines) + f"\n{source}: {text}\n{target}:"
        return SegmentPrompt(tuple(client.tokenize(prompt, add_bos=True, special=False)),
                             tuple(lines), labels)
    if form == "system":
        messages = [ChatMessage("system", instruction), ChatMessage("user", text)]
        lines = [instruction]
    else:
        lines = [instruction]
        if form == "glossary_hint" and terms:
            lines.append(glossary_line(terms))
        messages = [ChatMessage("user", "\n".join(lines) + "\n\n" + text)]
    return SegmentPrompt(client.chat_prompt(messages).tokens, tuple(lines), labels)
