"""GPU offload check: the same model with 0 and all layers offloaded, through the engine
process. Prints the build's backends and generation/prompt speed for each; writes
bench/results/gpu_offload.json (or to the folder given with --out).

Run on a CUDA or Metal build of llama-cpp-python (see README, "Building with a GPU").
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

from common import default_model, save, table

from engine.build_info import build_info
from engine.events import Done, Error, ModelLoaded
from engine.options import GREEDY, CompletionRequest, LoadSettings
from engine.worker import EngineClient

PROMPT = "Here is a long story about a journey across the mountains. Chapter 1. " * 20


def measure(model: str, gpu_layers: int, tokens: int) -> dict:
    with EngineClient() as client:
        loaded = None
        for event in client.load(LoadSettings(path=model, n_ctx=4096, n_gpu_layers=gpu_layers)):
            if isinstance(event, Error):
                raise SystemExit(event.message)
            if isinstance(event, ModelLoaded):
                loaded = event
        results = []
        for i in range(2):  # the first run warms up kernels
            request = CompletionRequest(PROMPT, replace(GREEDY, max_tokens=tokens),
                                        session_id=f"r{i}")
            for event in client.complete(request):
                if isinstance(event, Error):
                    raise SystemExit(event.message)
                if isinstance(event, Done):
                    results.append(event)
        stats = results[-1].stats
        return {"gpu_layers_requested": gpu_layers, "gpu_layers": loaded.gpu_layers,
                "load_s": loaded.load_seconds, "prompt_tokens": stats.prompt_tokens,
                "prompt_tps": stats.prompt_tps, "generated": stats.generated_tokens,
                "generation_tps": stats.generation_tps, "ttft_s": stats.ttft_s,
                "text": results[-1].text[:80]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--out", default=None, help="Folder for the JSON result.")
    args = parser.parse_args()
    info = build_info()
    print("\n".join(info.lines()))
    model = args.model or default_model()
    rows = [measure(model, layers, args.tokens) for layers in (0, -1)]
    print(table(["gpu layers", "prompt tok/s", "gen tok/s", "TTFT ms", "load s"],
                [[r["gpu_layers"], r["prompt_tps"], r["generation_tps"], r["ttft_s"] * 1000,
                  r["load_s"]] for r in rows]))
    data = {"build": asdict(info), "runs": rows}
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_offload.json").write_text(json.dumps(data, indent=2))
    else:
        print(f"wrote {save('gpu_offload', data)}")


if __name__ == "__main__":
    main()
