"""Switching between conversations: three conversations of about 1,500 tokens each, visited
round-robin with a short follow-up each time. TTFT after a switch with per-conversation KV
snapshots against re-prefilling the history. Target: at least 20x faster.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

from common import default_model, save, table

from engine.events import Done, Error
from engine.options import GREEDY, ChatMessage, ChatRequest, LoadSettings
from engine.worker import EngineClient

SUBJECTS = ["the history of paper making", "how tides work", "the design of suspension bridges"]


def history(subject: str) -> list[ChatMessage]:
    paragraph = (f"Here are my notes on {subject}. They cover the origins, the main ideas, the "
                 f"people involved, the tools and materials, the problems that had to be solved, "
                 f"and what we still do not know. ")
    return [ChatMessage("system", "You are a patient tutor."),
            ChatMessage("user", paragraph * 36 + "Please summarise them.")]


def ask(client: EngineClient, session: str, messages: list[ChatMessage]) -> Done:
    request = ChatRequest(tuple(messages), replace(GREEDY, max_tokens=16), session_id=session)
    for event in client.chat(request):
        if isinstance(event, Error):
            raise SystemExit(event.message)
        if isinstance(event, Done):
            return event
    raise SystemExit("no reply")


def run(reuse: bool, rounds: int) -> list[dict]:
    model = default_model()
    conversations = {f"c{i}": history(s) for i, s in enumerate(SUBJECTS)}
    rows = []
    with EngineClient(reuse_kv=reuse) as client:
        for _ in client.load(LoadSettings(path=model, n_ctx=4096)):
            pass
        for session, messages in conversations.items():  # build the three histories
            done = ask(client, session, messages)
            messages.append(ChatMessage("assistant", done.text))
        for r in range(rounds):
            for session, messages in conversations.items():
                messages.append(ChatMessage("user", f"Follow-up {r}: one more detail?"))
                done = ask(client, session, messages)
                messages.append(ChatMessage("assistant", done.text))
                rows.append({"round": r, "session": session, "ttft_s": done.stats.ttft_s,
                             "prompt_tokens": done.stats.prompt_tokens,
                             "evaluated": done.stats.evaluated_tokens,
                             "restored": done.stats.restored_snapshot})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    snap = run(True, args.rounds)
    full = run(False, args.rounds)
    rows = [[a["session"], a["prompt_tokens"], a["evaluated"], a["ttft_s"] * 1000,
             b["evaluated"], b["ttft_s"] * 1000, b["ttft_s"] / a["ttft_s"]]
            for a, b in zip(snap, full, strict=True)]
    print(table(["conv", "prompt tok", "eval (snapshot)", "TTFT snapshot ms",
                 "eval (re-prefill)", "TTFT re-prefill ms", "speed-up"], rows))
    ratio = statistics.median(b["ttft_s"] for b in full) / statistics.median(
        a["ttft_s"] for a in snap)
    print(f"\nmedian TTFT re-prefill / snapshot: {ratio:.1f}x (target >= 20x); all restored: "
          f"{all(a['restored'] for a in snap)}")
    path = save("switch", {"snapshot": snap, "reprefill": full, "ratio_of_medians": ratio})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
