"""How a segment is put to the model, in a few formats that were measured against each other
(bench/quality_translate.py ``--formats``).

``system`` (the default) gives the instruction as the system message and the segment alone as
the user message: nothing in the turn the model answers looks like a line to continue, and
the glossary is not in the prompt at all (its terms are placed after decoding, see
``term_placement``), so there is no "Glossary: ..." line to echo. ``instruction`` puts the
instruction in the user message above the segment; ``glossary_hint`` adds the glossary line
to that, as Verso did before.

A model without a chat template (a base model such as Gemma 3 270M) gets a completion prompt
(``English: ...`` / ``German:``) that starts with two example pairs when the languages are
English and one of ``EXAMPLES``' languages: Gemma 3 270M left all three probe segments in
English without them and translated two with them. The examples sit in the shared prefix,
so they are evaluated once per run, not per segment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.api import Engine, Feature
from engine.options import BatchItem, ChatMessage
from engine.tasks.glossary import GlossaryEntry
from engine.tasks.language import language_code

FORMATS = ("system", "instruction", "glossary_hint")
DEFAULT_FORMAT = "system"

_ENGLISH = ("The weather was cold, so we stayed at home.",
            "Each member of the committee signed the agreement.")
EXAMPLES = {
    "de": ("Das Wetter war kalt, also blieben wir zu Hause.",
           "Jedes Mitglied des Ausschusses unterzeichnete die Vereinbarung."),
    "fr": ("Il faisait froid, alors nous sommes restés à la maison.",
           "Chaque membre du comité a signé l'accord."),
    "es": ("Hacía frío, así que nos quedamos en casa.",
           "Cada miembro del comité firmó el acuerdo."),
    "it": ("Faceva freddo, quindi siamo rimasti a casa.",
           "Ogni membro del comitato ha firmato l'accordo."),
    "pt": ("Estava frio, então ficamos em casa.",
           "Cada membro do comitê assinou o acordo."),
    "nl": ("Het was koud, dus we bleven thuis.",
           "Elk lid van de commissie ondertekende de overeenkomst."),
}


@dataclass(frozen=True, slots=True)
class SegmentPrompt:
    tokens: tuple[int, ...]  # () on a backend without exact tokens: then messages or text
    instructions: tuple[str, ...]  # the prompt's lines other than the segment (echo check)
    labels: tuple[str, ...]  # answer prefixes a model may write ("German:")
    messages: tuple[ChatMessage, ...] = ()
    text: str = ""

    def item(self) -> BatchItem:
        return BatchItem(self.tokens, messages=self.messages, text=self.text)


def _instruction(source: str, target: str) -> str:
    return (f"Translate the {source} text into {target}. Reply with the {target} translation "
            "only, on one line.")


def _examples(source: str, target: str) -> str:
    """Two example pairs ending in a blank line, or "" when there are none for the pair."""
    pairs = EXAMPLES.get(language_code(target))
    if language_code(source) != "en" or pairs is None:
        return ""
    return "\n" + "".join(f"{source}: {e}\n{target}: {t}\n\n"
                          for e, t in zip(_ENGLISH, pairs, strict=True))


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
        shots = _examples(source, target)
        prompt = "\n".join(lines) + "\n" + shots + f"{source}: {text}\n{target}:"
        echoes = tuple(lines) + tuple(x for x in shots.split("\n") if x)
        if not client.capabilities.has(Feature.EXACT_TOKENS):
            return SegmentPrompt((), echoes, labels, text=prompt)
        return SegmentPrompt(tuple(client.tokenize(prompt, add_bos=True, special=False)),
                             echoes, labels)
    if form == "system":
        messages = [ChatMessage("system", instruction), ChatMessage("user", text)]
        lines = [instruction]
    else:
        lines = [instruction]
        if form == "glossary_hint" and terms:
            lines.append(glossary_line(terms))
        messages = [ChatMessage("user", "\n".join(lines) + "\n\n" + text)]
    if not client.capabilities.has(Feature.EXACT_TOKENS):
        return SegmentPrompt((), tuple(lines), labels, messages=tuple(messages))
    return SegmentPrompt(client.chat_prompt(messages).tokens, tuple(lines), labels)
