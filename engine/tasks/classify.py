"""Zero- and few-shot classification by scoring each label, not by parsing a generated answer.

For each label the model's log-probability of the whole label continuation after the
prompt is computed (``score``: the sum over the label's tokens); a softmax over the labels
turns those into probabilities that add up to 1. Nothing is sampled, so the result is
deterministic and every label gets a probability, even ones the model would rarely write.

With a chat model the prompt is a conversation (instruction as the system message, the
few-shot examples as user/assistant turns) and each label is scored as the assistant's whole
reply, end-of-turn marker included, so a label that is a prefix of another ("good" vs "good
enough") is not favoured. With a base model the prompt is plain ``Text: ...`` / ``Label:``
lines and each label is scored with the newline that ends it.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

from engine.api import Engine, Feature, require
from engine.errors import BadRequestError
from engine.options import ChatMessage

DEFAULT_INSTRUCTION = ("Classify the text. Answer with exactly one of these labels and "
                       "nothing else: {labels}.")


@dataclass(frozen=True, slots=True)
class ClassifyResult:
    label: str  # the most probable label
    probabilities: dict[str, float]  # per label, summing to 1
    logprobs: dict[str, float]  # per label: the model's log-probability of the continuation


def softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    weights = [math.exp(v - top) for v in values]
    total = sum(weights)
    return [w / total for w in weights]


def check_labels(labels: Sequence[str],
                 few_shot: Sequence[tuple[str, str]] = ()) -> list[str]:
    """The labels, stripped; raises ``BadRequestError`` if they cannot be used."""
    clean = [label.strip() for label in labels]
    if len(clean) < 2:
        raise BadRequestError("Classification needs at least two labels.")
    if any(not label for label in clean):
        raise BadRequestError("Labels must not be empty.")
    if len(set(clean)) != len(clean):
        raise BadRequestError("Labels must be different from each other.")
    for text, label in few_shot:
        if label.strip() not in clean:
            raise BadRequestError(f"The example {text!r} has the label {label!r}, which is "
                                  "not one of the labels.")
    return clean


def _continuation(client: Engine, prompt_text: str, reply_text: str,
                  special: bool) -> list[int]:
    """Tokens of ``reply_text`` as they follow ``prompt_text``: tokenized together when the
    prompt's tokens stay a prefix (so the boundary is tokenized as the model would see it),
    else on its own."""
    base = client.tokenize(prompt_text, add_bos=False, special=special)
    joint = client.tokenize(prompt_text + reply_text, add_bos=False, special=special)
    if joint[:len(base)] == base and len(joint) > len(base):
        return joint[len(base):]
    return client.tokenize(reply_text, add_bos=False, special=special)


def _chat_messages(instruction: str, few_shot: Sequence[tuple[str, str]], text: str,
                   with_system: bool) -> list[ChatMessage]:
    turns: list[ChatMessage] = []
    for example, label in few_shot:
        turns += [ChatMessage("user", example), ChatMessage("assistant", label.strip())]
    turns.append(ChatMessage("user", text))
    if with_system:
        return [ChatMessage("system", instruction), *turns]
    first = turns[0]
    return [ChatMessage("user", f"{instruction}\n\n{first.content}"), *turns[1:]]


def _chat_candidates(client: Engine, instruction: str, labels: list[str],
                     few_shot: Sequence[tuple[str, str]], text: str
                     ) -> tuple[list[int], list[list[int]]]:
    try:
        messages = _chat_messages(instruction, few_shot, text, with_system=True)
        prompt = client.chat_prompt(messages)
    except BadRequestError:  # a template without a system role
        messages = _chat_messages(instruction, few_shot, text, with_system=False)
        prompt = client.chat_prompt(messages)
    continuations = []
    for label in labels:
        full = client.chat_prompt([*messages, ChatMessage("assistant", label)],
                                  add_generation_prompt=False).text
        reply = full[len(prompt.text):].rstrip() if full.startswith(prompt.text) else label
        continuations.append(_continuation(client, prompt.text, reply, special=True))
    return list(prompt.tokens), continuations


def _base_candidates(client: Engine, instruction: str, labels: list[str],
                     few_shot: Sequence[tuple[str, str]], text: str
                     ) -> tuple[list[int], list[list[int]]]:
    def one_line(s: str) -> str:
        return " ".join(s.split())

    examples = "".join(f"Text: {one_line(t)}\nLabel: {label.strip()}\n\n"
                       for t, label in few_shot)
    prompt_text = f"{instruction}\n\n{examples}Text: {one_line(text)}\nLabel:"
    prompt = client.tokenize(prompt_text, add_bos=True, special=False)
    continuations = [_continuation(client, prompt_text, f" {label}\n", special=False)
                     for label in labels]
    return prompt, continuations


def classify(client: Engine, text: str, labels: Sequence[str],
             few_shot: Sequence[tuple[str, str]] = (), instruction: str | None = None,
             chat: bool | None = None) -> ClassifyResult:
    """Classify ``text`` into one of ``labels``. ``few_shot`` are (text, label) examples;
    ``instruction`` may use ``{labels}``; ``chat`` None uses the chat form when the model
    has a chat template."""
    clean = check_labels(labels, few_shot)
    loaded = client.loaded
    if loaded is None:
        raise BadRequestError("Load a model before classifying.")
    require(client.capabilities, Feature.SCORE)
    use_chat = loaded.has_chat_template if chat is None else chat
    prompt_instruction = (instruction or DEFAULT_INSTRUCTION).replace(
        "{labels}", ", ".join(clean))
    build = _chat_candidates if use_chat else _base_candidates
    prompt, continuations = build(client, prompt_instruction, clean, few_shot, text)
    logprobs = client.score(prompt, continuations)
    probabilities = softmax(logprobs)
    best = max(range(len(clean)), key=probabilities.__getitem__)
    return ClassifyResult(clean[best], dict(zip(clean, probabilities, strict=True)),
                          dict(zip(clean, logprobs, strict=True)))


def classify_many(client: Engine, texts: Iterable[str], labels: Sequence[str],
                  few_shot: Sequence[tuple[str, str]] = (), instruction: str | None = None,
                  chat: bool | None = None) -> Iterator[tuple[str, ClassifyResult]]:
    """``classify`` each text in turn, lazily (a caller can show progress or stop early).
    The prompt before the text is the same every time, so its KV cache is reused."""
    for text in texts:
        yield text, classify(client, text, labels, few_shot, instruction, chat)


def write_csv(rows: Iterable[tuple[str, ClassifyResult]], labels: Sequence[str],
              out: TextIO) -> None:
    """CSV with the columns text, label, p_<label>... written as rows arrive."""
    clean = [label.strip() for label in labels]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["text", "label", *(f"p_{label}" for label in clean)])
    for text, result in rows:
        writer.writerow([text, result.label,
                         *(f"{result.probabilities[label]:.6f}" for label in clean)])
        out.flush()
