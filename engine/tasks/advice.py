"""Whether the loaded model suits a task, from what the model says about itself: its
parameter count, the languages its GGUF metadata lists (``general.languages``; SmolLM2 says
``en``) and whether it carries a chat template. Never from a list of model names.

The thresholds come from runs on real documents: SmolLM2 135M loops and copies instead of
translating or summarizing, and Gemma 3 270M (multilingual, but tiny) leaves English text
untranslated; models from about a billion parameters translate usefully.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.catalog.gguf_info import ModelInfo
from engine.tasks.language import language_code, language_name

Task = Literal["translate", "summarize"]

TRANSLATE_MIN_PARAMETERS = 1_000_000_000
SUMMARIZE_MIN_PARAMETERS = 500_000_000
HUB_SEARCH = "Instruct"  # where the Models panel's hub search starts for a better model


@dataclass(frozen=True, slots=True)
class Advice:
    task: Task
    model: str
    problems: tuple[str, ...]  # what the model says about itself that makes it a poor fit
    suggestion: str  # what kind of model to get instead
    language: str | None = None  # the language the task needs besides English, if any

    @property
    def text(self) -> str:
        doing = "translating" if self.task == "translate" else "summarizing"
        reasons = "; ".join(self.problems)
        return f"{self.model} is a poor fit for {doing}: {reasons}. {self.suggestion}"


def parameters_label(info: ModelInfo) -> str:
    count = info.parameter_count
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B parameters"
    return f"{count / 1e6:.0f}M parameters"


def _template_problem(info: ModelInfo) -> list[str]:
    if info.has_chat_template:
        return []
    return ["it has no chat template, so Verso falls back to ChatML, which it may not "
            "have been trained on (instructions can be ignored)"]


def translate_advice(info: ModelInfo, target: str | None = None,
                     source: str | None = None) -> Advice | None:
    """None when nothing in the model's metadata speaks against it translating."""
    problems: list[str] = []
    wanted = [language_code(x) for x in (source, target) if x]
    foreign = next((code for code in wanted if code != "en"), None)
    declared = {code.lower() for code in info.languages}
    if declared == {"en"}:
        problems.append("its metadata says it knows only English (general.languages: en)")
    elif declared and foreign and foreign not in declared:
        listed = ", ".join(sorted(declared))
        problems.append(f"its metadata lists {listed} but not {language_name(foreign)}")
    if info.parameter_count < TRANSLATE_MIN_PARAMETERS:
        problems.append(f"it is too small to translate reliably ({parameters_label(info)}; "
                        "translations need about 1B or more)")
    problems += _template_problem(info)
    if not problems:
        return None
    language = f" that knows {language_name(foreign)}" if foreign else ""
    return Advice("translate", info.name, tuple(problems),
                  f"Load a multilingual instruction-tuned model of 1B parameters or more"
                  f"{language} (Models panel).", foreign)


def summarize_advice(info: ModelInfo) -> Advice | None:
    problems: list[str] = []
    if info.parameter_count < SUMMARIZE_MIN_PARAMETERS:
        problems.append(f"it is very small ({parameters_label(info)}): summaries from models "
                        "this size repeat themselves and copy lines instead of condensing")
    problems += _template_problem(info)
    if not problems:
        return None
    return Advice("summarize", info.name, tuple(problems),
                  "Load an instruction-tuned model of 1B parameters or more (Models panel).")


def advice_for(task: Task, info: ModelInfo, target: str | None = None,
               source: str | None = None) -> Advice | None:
    if task == "translate":
        return translate_advice(info, target, source)
    return summarize_advice(info)
