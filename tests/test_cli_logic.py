"""The `verso` commands' logic on the scripted fake engine (no model; the real-model CLI
tests are test_cli.py and test_cli_generation.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from engine.api import Capabilities, Feature
from engine.cli import main
from engine.cli.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from engine.events import ErrorKind
from engine.testing.fake_engine import FakeEngine

ROOT = Path(__file__).resolve().parents[1]


class BytesStdin(io.TextIOWrapper):
    """A stdin whose bytes may be invalid UTF-8, like a real pipe."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")


def run(argv: list[str], engine: FakeEngine | None = None, stdin: io.TextIOBase | None = None
        ) -> tuple[int, str, str, FakeEngine]:
    fake = engine or FakeEngine()
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdin=stdin or io.StringIO(""), out=out, err=err,
                engine_factory=lambda reproducible: fake)
    return code, out.getvalue(), err.getvalue(), fake


def test_generate_streams_the_engines_reply():
    code, out, err, fake = run(["generate", "--chat", "Hi", "--stats"],
                               FakeEngine(replies=("Hello there, friend.",)))
    assert code == EXIT_OK
    assert out == "Hello there, friend.\n"
    assert "finish: stop" in err
    assert fake.ops()[:2] == ["load", "chat"] and fake.ops()[-1] == "close"


def test_a_scripted_error_is_one_line_with_its_exit_code():
    fake = FakeEngine()
    fake.fail_next(ErrorKind.INTERNAL, "the server said no")
    code, _, err, _ = run(["generate", "--chat", "Hi"], fake)
    assert code == EXIT_ERROR
    assert err == "verso: error: the server said no\n"


def test_a_crash_mid_reply_keeps_the_partial_text_and_says_so():
    fake = FakeEngine(replies=("one two three four",))
    fake.crash_next(after_tokens=2)
    code, out, err, _ = run(["generate", "--chat", "count"], fake)
    assert code == EXIT_ERROR
    assert out == "one two\n"
    assert "crashed" in err and "Traceback" not in err


@pytest.mark.parametrize("flags, feature", [
    (["--logprobs", "2"], Feature.TOKEN_PROBS),
    (["--choice", "yes,no"], Feature.GRAMMAR),
    (["--ban", "dragon"], Feature.BAN_PHRASES),
    (["--logit-bias", "7=-5"], Feature.LOGIT_BIAS),
])
def test_a_flag_the_backend_cannot_honour_is_refused_before_loading(flags, feature):
    caps = Capabilities("an OpenAI-compatible server",
                        features=frozenset(Feature) - {feature})
    code, out, err, fake = run(["generate", "--chat", "Hi", *flags],
                               FakeEngine(capabilities=caps))
    assert code == EXIT_USAGE and out == ""
    assert "not available with an OpenAI-compatible server" in err
    assert feature.value.lower() in err.lower()
    assert "load" not in fake.ops()


def test_raw_completion_needs_the_capability():
    caps = Capabilities("a chat-only server", features=frozenset(Feature) - {
        Feature.RAW_COMPLETION})
    code, _, err, _ = run(["generate", "Once upon"], FakeEngine(capabilities=caps))
    assert code == EXIT_USAGE and "Raw completion is not available" in err


def test_classify_needs_scoring():
    caps = Capabilities("a server without log-probabilities",
                        features=frozenset(Feature) - {Feature.SCORE})
    code, _, err, fake = run(["classify", "--labels", "a,b"], FakeEngine(capabilities=caps),
                             stdin=io.StringIO("text\n"))
    assert code == EXIT_USAGE and "Scoring continuations" in err
    assert "load" not in fake.ops()


def test_classify_scores_each_line_on_the_engine():
    code, out, _, fake = run(["classify", "--labels", "good,not good at all", "--json",
                              "--no-calibrate"], stdin=io.StringIO("fine\nawful\n"))
    assert code == EXIT_OK
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == ["fine", "awful"]
    assert all(r["label"] == "good" for r in rows)  # the fake scores shorter labels higher
    assert all(not r["calibrated"] and r["prior"] is None for r in rows)
    assert all(r["raw_probabilities"] == r["probabilities"] for r in rows)
    assert fake.ops().count("score") == 2


def _leaning_scorer(prompt: str, continuation: str) -> float:
    """A model that prefers "meh" whatever the text; "great" lifts "good", not above it."""
    text = prompt.rsplit("<user>", 1)[-1]
    if continuation.strip().startswith("meh"):
        return -1.0
    return -3.0 + (1.5 if "great" in text and continuation.strip().startswith("good") else 0.0)


@pytest.mark.parametrize("flags", [[], ["--calibrate"]])
def test_classify_calibrates_by_default_and_says_so(flags):
    lines = "a great day\nanother great day\n"
    code, out, _, fake = run(["classify", "--labels", "good,meh", "--json", *flags],
                             FakeEngine(scorer=_leaning_scorer), stdin=io.StringIO(lines))
    assert code == EXIT_OK
    rows = [json.loads(line) for line in out.splitlines()]
    for row in rows:
        assert row["calibrated"] and row["label"] == "good" and row["raw_label"] == "meh"
        assert row["raw_probabilities"]["meh"] > row["raw_probabilities"]["good"]
        assert row["probabilities"]["good"] > 0.5 and row["prior"]["meh"] > 0.8
    assert fake.ops().count("score") == 3 + 2  # the content-free texts once, then each line
    code, out, _, _ = run(["classify", "--labels", "good,meh", "--no-calibrate"],
                          FakeEngine(scorer=_leaning_scorer), stdin=io.StringIO(lines))
    header, *rows_csv = [line.split(",") for line in out.splitlines()]
    assert header[:2] == ["text", "label"] and header[4:6] == ["calibrated", "raw_label"]
    assert [r[1] for r in rows_csv] == ["meh", "meh"] and rows_csv[0][4] == "false"


def test_invalid_utf8_on_stdin_names_the_byte_before_loading():
    code, _, err, fake = run(["generate", "-", "--max-tokens", "5"],
                             stdin=BytesStdin(b"Hello \xff\xfe world"))
    assert code == EXIT_USAGE
    assert "byte 0xff at offset 6" in err and "Traceback" not in err
    assert "load" not in fake.ops()


def test_invalid_utf8_in_classify_input_is_named():
    code, _, err, _ = run(["classify", "--labels", "a,b"], stdin=BytesStdin(b"ok\nbad \xc3\n"))
    assert code == EXIT_USAGE and "line 2 of standard input" in err


def test_out_of_range_load_settings_are_refused_before_an_engine_starts():
    code, _, err, fake = run(["generate", "Hi", "--threads", "100000"])
    assert code == EXIT_USAGE and "n_threads=100000" in err
    assert fake.ops() == []


@pytest.mark.parametrize("command", ["summarize", "translate"])
def test_reproducible_is_refused_for_document_tasks(tmp_path: Path, command):
    doc = tmp_path / "a.txt"
    doc.write_text("The river floods every spring.", encoding="utf-8")
    extra = ["--to", "de"] if command == "translate" else []
    code, _, err, fake = run([command, str(doc), *extra, "--reproducible"])
    assert code == EXIT_USAGE and "--reproducible is not available" in err
    assert fake.ops() == []


def test_summarize_and_translate_run_on_any_engine(tmp_path: Path):
    doc = tmp_path / "river.txt"
    doc.write_text("The river floods every spring. Farmers plant rice after it.\n\n"
                   "The town built a dam in 1962.", encoding="utf-8")
    code, out, err, _ = run(["summarize", str(doc), "--json"],
                            FakeEngine(replies=("- The river floods each spring [1]",)))
    assert code == EXIT_OK, err
    assert json.loads(out)["points"][0]["text"] == "The river floods each spring"
    code, out, err, _ = run(["translate", str(doc), "--to", "de", "--from", "en"],
                            FakeEngine(replies=("Der Fluss tritt über die Ufer.",)))
    assert code == EXIT_OK, err
    assert "Der Fluss tritt über die Ufer." in out


def test_context_policy_without_chat_is_refused():
    code, _, err, fake = run(["generate", "Hi", "--context-policy", "drop_oldest"])
    assert code == EXIT_USAGE and "--chat" in err
    assert fake.ops() == []
    code, _, _, _ = run(["generate", "Hi", "--chat", "--context-policy", "drop_oldest"])
    assert code == EXIT_OK


def test_gpu_layers_on_a_cpu_build_is_refused_not_ignored(monkeypatch):
    from engine.cli import common

    monkeypatch.setattr(common, "_gpu_offload", lambda: False)
    code, _, err, fake = run(["generate", "Hi", "--gpu-layers", "20"])
    assert code == EXIT_USAGE and "CPU only" in err and "--gpu-layers 20" in err
    assert fake.ops() == []
    monkeypatch.setattr(common, "_gpu_offload", lambda: True)
    assert run(["generate", "Hi", "--gpu-layers", "20"])[0] == EXIT_OK


def test_a_folder_given_as_a_document_is_named_as_a_folder(tmp_path: Path):
    code, _, err, _ = run(["summarize", str(tmp_path)])
    assert code == EXIT_USAGE and "is a folder" in err and "no such file" not in err
    code, _, err, _ = run(["summarize", str(tmp_path / "missing.txt")])
    assert code == EXIT_USAGE and "no such file" in err
