"""Turning stored conversations into engine requests, and describing message versions.
No widgets here, so the rules are easy to test."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.settings import AppSettings, sampling_from
from engine.options import ChatMessage, ChatRequest
from engine.store import Conversation, Message

TITLE_CHARS = 48


@dataclass(frozen=True, slots=True)
class Version:
    index: int  # 0-based
    count: int
    siblings: tuple[str, ...]  # message ids, oldest first

    def label(self) -> str:
        return f"{self.index + 1}/{self.count}"

    def neighbour(self, step: int) -> str | None:
        target = self.index + step
        return self.siblings[target] if 0 <= target < self.count else None


def versions(all_messages: Sequence[Message]) -> dict[str, Version]:
    """For every message, its position among the versions sharing its parent and role."""
    groups: dict[tuple[str | None, str], list[str]] = {}
    for message in all_messages:  # the store returns them oldest first
        groups.setdefault((message.parent_id, message.role), []).append(message.id)
    result: dict[str, Version] = {}
    for ids in groups.values():
        for index, message_id in enumerate(ids):
            result[message_id] = Version(index, len(ids), tuple(ids))
    return result


def title_from(text: str) -> str:
    line = " ".join(text.split())
    if len(line) <= TITLE_CHARS:
        return line or "New chat"
    return line[:TITLE_CHARS].rsplit(" ", 1)[0].rstrip(",.;:") + "…"


def chat_messages(conversation: Conversation, thread: Sequence[Message]) -> list[ChatMessage]:
    messages = []
    if conversation.system_prompt and conversation.system_prompt.strip():
        messages.append(ChatMessage("system", conversation.system_prompt))
    messages += [ChatMessage(m.role, m.content) for m in thread]
    return messages


def conversation_sampling(conversation: Conversation | None) -> dict[str, Any]:
    if conversation is None:
        return {}
    sampling = conversation.settings.get("sampling", {})
    return sampling if isinstance(sampling, dict) else {}


def build_request(settings: AppSettings, conversation: Conversation,
                  thread: Sequence[Message], continue_last: bool = False) -> ChatRequest:
    """The request for a reply after ``thread`` (which ends with the user's message, or with
    the assistant message to continue). The conversation id is the engine session, so its
    KV cache is kept and restored when switching between conversations."""
    return ChatRequest(
        messages=tuple(chat_messages(conversation, thread)),
        sampling=sampling_from(settings.sampling, conversation_sampling(conversation)),
        session_id=conversation.id,
        policy=settings.policy(),
        continue_last=continue_last,
    )


def stats_tooltip(stats: dict[str, Any] | None, model: str | None = None) -> str:
    if not stats:
        return ""
    lines = []
    if model:
        lines.append(f"Model: {model}")
    prompt = int(stats.get("prompt_tokens", 0))
    reused = int(stats.get("reused_tokens", 0))
    lines.append(f"Prompt: {prompt:,} tokens ({reused:,} reused from the cache, "
                 f"{int(stats.get('evaluated_tokens', prompt - reused)):,} evaluated)")
    lines.append(f"Time to first token: {float(stats.get('ttft_s', 0.0)) * 1000:,.0f} ms")
    lines.append(f"Generated: {int(stats.get('generated_tokens', 0)):,} tokens at "
                 f"{float(stats.get('generation_tps', 0.0)):.1f} tok/s")
    if stats.get("n_ctx"):
        lines.append(f"Context: {int(stats.get('context_used', 0)):,} / "
                     f"{int(stats['n_ctx']):,} tokens")
    if stats.get("dropped_messages"):
        lines.append(f"Dropped to fit: {int(stats['dropped_messages'])} oldest messages")
    if stats.get("restored_snapshot"):
        lines.append("KV cache restored from this conversation's snapshot")
    lines.append(f"Finish reason: {stats.get('finish_reason', 'unknown')}")
    return "\n".join(lines)


def trimmed_notice(dropped_messages: int, dropped_tokens: int | None = None) -> str:
    tokens = f" ({dropped_tokens:,} tokens)" if dropped_tokens else ""
    noun = "message" if dropped_messages == 1 else "messages"
    return (f"The context was full: the {dropped_messages} oldest {noun}{tokens} were left "
            f"out of the prompt for this reply.")
