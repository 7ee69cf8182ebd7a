"""Multi-turn chat: TTFT of turns 1..10 (about 100 new tokens each) with KV reuse, against the
same conversation re-prefilled from scratch every turn. Both through the engine process.

Targets: turn-10 TTFT within 1.5x of turn 1; at least 8x faster than re-prefill at turn 10.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from common import default_model, save, table

from engine.events import Done, Error
from engine.options import GREEDY, ChatMessage, ChatRequest, LoadSettings
from engine.worker import EngineClient

TOPICS = ["rivers", "mountains", "bread", "bridges", "clocks", "violins", "glaciers", "bees",
          "lighthouses", "comets"]


def user_turn(i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    return (f"Question {i + 1}. I am writing a short school report about {topic}. Please give "
            f"me three interesting facts about {topic}, explain briefly why each fact matters, "
            f"and suggest one simple experiment or observation a student could make about "
            f"{topic} at home or outdoors. Keep the tone friendly and the answer concise, and "
            f"avoid repeating anything you already told me in earlier answers about other "
            f"topics in this conversation.")


def run_conversation(client: EngineClient, turns: int, reply_tokens: int) -> list[dict]:
    messages = [ChatMessage("system", "You are a helpful assistant.")]
    rows = []
    for i in range(turns):
        messages.append(ChatMessage("user", user_turn(i)))
        request = ChatRequest(tuple(messages), replace(GREEDY, max_tokens=reply_tokens),
                              session_id="bench")
        done = None
        for event in client.chat(request):
            if isinstance(event, Error):
                raise SystemExit(event.message)
            if isinstance(event, Done):
                done = event
        assert done is not None
        messages.append(ChatMessage("assistant", done.text))
        s = done.stats
        rows.append({"turn": i + 1, "prompt_tokens": s.prompt_tokens,
                     "evaluated": s.evaluated_tokens, "reused": s.reused_tokens,
                     "ttft_s": s.ttft_s})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--reply-tokens", type=int, default=48)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    settings = LoadSettings(path=args.model or default_model(), n_ctx=4096)
    results = {}
    for label, reuse in (("reuse", True), ("reprefill", False)):
        with EngineClient(reuse_kv=reuse) as client:
            for _ in client.load(settings):
                pass
            results[label] = run_conversation(client, args.turns, args.reply_tokens)
    rows = []
    for a, b in zip(results["reuse"], results["reprefill"], strict=True):
        rows.append([a["turn"], a["prompt_tokens"], a["evaluated"], a["ttft_s"] * 1000,
                     b["evaluated"], b["ttft_s"] * 1000, b["ttft_s"] / a["ttft_s"]])
    print(table(["turn", "prompt tok", "eval (reuse)", "TTFT reuse ms", "eval (re-prefill)",
                 "TTFT re-prefill ms", "speed-up"], rows))
    last, first = results["reuse"][-1], results["reuse"][0]
    flat = last["ttft_s"] / first["ttft_s"]
    speedup = results["reprefill"][-1]["ttft_s"] / last["ttft_s"]
    print(f"\nturn-{args.turns} TTFT / turn-1 TTFT with reuse: {flat:.2f}x (target <= 1.5x)")
    print(f"turn-{args.turns} re-prefill / reuse: {speedup:.1f}x (target >= 8x)")
    path = save("multiturn", {"turns": results, "turn_last_over_first": flat,
                              "speedup_at_last_turn": speedup})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
