"""``verso chat``: an interactive conversation on stdin/stdout."""

from __future__ import annotations

import argparse

from engine.cli.common import (
    EXIT_OK,
    CliError,
    Io,
    add_load_flags,
    add_sampling_flags,
    format_stats,
    load,
    load_settings,
    open_engine,
    require_sampling,
    sampling_from,
    stream,
)
from engine.events import Done
from engine.options import ChatMessage, ChatRequest, ContextPolicy, SamplingParams


def add_parser(sub: argparse._SubParsersAction) -> None:
    chat = sub.add_parser("chat", help="Interactive chat (/reset, /system TEXT, /stats, /quit).")
    add_load_flags(chat)
    add_sampling_flags(chat)
    chat.add_argument("--system", default=None, help="System prompt.")


def run(args: argparse.Namespace, io: Io) -> int:
    stdin, out, err = io.stdin, io.out, io.err
    settings = load_settings(args)
    sampling = sampling_from(args, SamplingParams())
    system = args.system
    history: list[ChatMessage] = []
    last: Done | None = None
    interactive = stdin.isatty()
    with open_engine(args, io) as engine:
        require_sampling(engine.capabilities, sampling)
        loaded = load(engine, settings, err)
        print(f"Chatting with {loaded.name}. Commands: /reset, /system TEXT, /stats, /quit.",
              file=err)
        while True:
            if interactive:
                err.write("> ")
                err.flush()
            line = stdin.readline()
            if not line:
                break
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.startswith("/"):
                name, _, rest = line.partition(" ")
                if name in ("/quit", "/exit"):
                    break
                if name == "/reset":
                    history.clear()
                    print("[conversation cleared]", file=err)
                elif name == "/system":
                    system = rest.strip() or None
                    history.clear()
                    print(f"[system prompt {'set' if system else 'cleared'}; conversation "
                          "cleared]", file=err)
                elif name == "/stats":
                    print(format_stats(last.stats, last.finish_reason.value) if last
                          else "[no reply yet]", file=err)
                else:
                    print(f"[unknown command {name}]", file=err)
                continue
            history.append(ChatMessage("user", line))
            messages = ([ChatMessage("system", system)] if system else []) + history
            request = ChatRequest(tuple(messages), sampling,
                                  policy=ContextPolicy(args.context_policy))
            try:
                last = stream(engine.chat(request), out, err)
            except CliError as exc:
                history.pop()
                print(f"\nerror: {exc}", file=err)
                continue
            except KeyboardInterrupt:
                engine.cancel()
                print("\n[stopped]", file=err)
                history.pop()
                continue
            print(file=out)
            history.append(ChatMessage("assistant", last.text))
    return EXIT_OK
