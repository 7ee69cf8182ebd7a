"""First reply after a restart of Verso on a ~3,000-token conversation: TTFT when the
conversation's KV snapshot is restored from disk against re-evaluating its history (what
happens without snapshots, and what llama-server does after a restart: its prompt cache is in
memory only). Each "restart" is a new engine process. Target: at least 20x faster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from dataclasses import replace

from common import default_model, save, table

from engine.events import Done, Error
from engine.options import GREEDY, ChatMessage, ChatRequest, LoadSettings
from engine.worker import EngineClient


def conversation() -> list[ChatMessage]:
    notes = ("Here are my notes on the design of suspension bridges: the cables, the towers, "
             "the anchorages, the deck, wind and resonance, the materials, and the failures "
             "that taught engineers most. ")
    messages = [ChatMessage("system", "You are a patient tutor.")]
    for i in range(8):
        messages += [ChatMessage("user", notes * 9 + f"Part {i}: what matters most here?"),
                     ChatMessage("assistant", "The balance of forces between the cables and "
                                              "the towers matters most. " * 3)]
    return messages


def first_reply(messages: list[ChatMessage], persist: bool, n_ctx: int) -> Done:
    """A fresh engine process (a restarted Verso) answers the next turn."""
    with EngineClient(persist_sessions=persist) as client:
        for _ in client.load(LoadSettings(path=default_model(), n_ctx=n_ctx)):
            pass
        request = ChatRequest(tuple(messages), replace(GREEDY, max_tokens=8),
                              session_id="bench-restart")
        for event in client.chat(request):
            if isinstance(event, Error):
                raise SystemExit(event.message)
            if isinstance(event, Done):
                return event
    raise SystemExit("no reply")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ["VERSO_HOME"] = tempfile.mkdtemp(prefix="verso-bench-restart-")
    history = conversation()
    n_ctx = 4096
    built = first_reply(history, persist=True, n_ctx=n_ctx)  # the session before quitting
    history = [*history, ChatMessage("assistant", built.text)]
    results = {"snapshot": [], "re-prefill": []}
    for r in range(args.repeats):
        ask = [*history, ChatMessage("user", f"Follow-up {r}: and the anchorages?")]
        results["snapshot"].append(first_reply(ask, persist=True, n_ctx=n_ctx))
        results["re-prefill"].append(first_reply(ask, persist=False, n_ctx=n_ctx))
    rows, out = [], {}
    for mode, dones in results.items():
        ttft = statistics.median(d.stats.ttft_s for d in dones)
        rows.append([mode, dones[0].stats.prompt_tokens,
                     statistics.median(d.stats.evaluated_tokens for d in dones),
                     all(d.stats.restored_snapshot for d in dones), f"{ttft * 1000:.0f}"])
        out[mode] = {"ttft_s": ttft, "prompt_tokens": dones[0].stats.prompt_tokens,
                     "evaluated": [d.stats.evaluated_tokens for d in dones],
                     "restored": [d.stats.restored_snapshot for d in dones]}
    ratio = out["re-prefill"]["ttft_s"] / out["snapshot"]["ttft_s"]
    print(table(["after a restart", "prompt tokens", "evaluated", "restored", "TTFT ms"], rows))
    print(f"snapshot is {ratio:.1f}x faster (target 20x)")
    save("restart", {**out, "ratio": ratio})


if __name__ == "__main__":
    main()
