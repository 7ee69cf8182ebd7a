"""The hub side of the model library against a loopback Hugging Face Hub (tests/hub_server.py,
set through HF_ENDPOINT) serving the bundled SmolLM2 GGUF and a split set made from it: search,
files, pull (resume in a new process, ignored ranges, bad checksums, stalls, 429/500, gated
files, a full disk, an incomplete set), and the pulled model loading and generating. No test
reaches the internet."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.catalog import list_models
from engine.cli.main import main
from engine.library import download as download_module
from engine.library.download import (
    Downloader,
    DownloadError,
    DownloadErrorKind,
    DownloadProgress,
    DownloadState,
)
from engine.library.hub import HubClient, HubError, HubErrorKind, HubFile
from engine.library.installed import STAGING, installed_path
from engine.library.pull import pull
from tests.hub_server import HubServer, file_sha256, make_split_set

ROOT = Path(__file__).resolve().parents[1]
REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
GATED = "acme/Gated-135M-GGUF"
BROKEN = "someone/Broken-Split-GGUF"
SINGLE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SPLIT_FIRST = "SmolLM2-135M-Instruct.Q4_1-00001-of-00003.gguf"
PROMPT = "The capital of France is"


@pytest.fixture(scope="session")
def split_parts(smol_path: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    parts = make_split_set(smol_path, tmp_path_factory.mktemp("split"), max_tensors=100)
    assert len(parts) == 3
    return parts


@pytest.fixture
def hub(smol_path: Path, split_parts: list[Path], monkeypatch: pytest.MonkeyPatch,
        verso_home: Path) -> Iterator[HubServer]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy", "HF_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    server = HubServer().start()
    server.page_size = 2  # the tree and search answers come in pages
    server.tokens = {"hf_accepted", "hf_not_accepted"}
    server.add(REPO, {SINGLE: smol_path, "README.md": ROOT / "README.md",
                      **{f"split/{p.name}": p for p in split_parts}},
               downloads=9000, likes=40, non_lfs={"README.md"},
               gguf={"total": 134515008, "architecture": "llama", "context_length": 8192})
    server.add(GATED, {"Gated-135M-Q4_1.gguf": smol_path}, gated=True, downloads=70,
               accepted={"hf_accepted"})
    server.add(BROKEN, {f"Q4_1/{p.name}": p for p in (split_parts[0], split_parts[2])},
               downloads=3)
    server.add("someone/not-a-gguf-repo", {"model.safetensors": ROOT / "README.md"},
               tags=["safetensors"], downloads=10**6)
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HOME", str(verso_home / "hf-home"))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(verso_home / "models", ignore_errors=True)  # 100 MB a test


def models_dir() -> Path:
    return Path(os.environ["VERSO_MODELS_DIR"])


def fast(**kw: Any) -> Downloader:
    opts: dict[str, Any] = {"stall_timeout": 1.0, "connect_timeout": 5.0, "max_attempts": 3,
                            "backoff_base": 0.01, "disk_margin": 0, "progress_interval": 0.0}
    return Downloader(models_dir(), **{**opts, **kw})


def hub_file(client: HubClient, name: str, repo: str = REPO) -> HubFile:
    return next(f for f in client.files(repo) if f.name == name)


def run_pull(f: HubFile, client: HubClient, **kw: Any) -> list[DownloadProgress]:
    return list(pull(f, client=client, downloader=fast(**kw)))


def cli(*args: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdin=io.StringIO(stdin), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def verso(*args: str, timeout: float = 180, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, **kw)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def nothing_left_behind() -> None:
    assert not (models_dir() / STAGING).exists() or not any(
        (models_dir() / STAGING).rglob("*"))


# ------------------------------------------------------------------ metadata


def test_search_lists_gguf_repositories_most_downloaded_first(hub: HubServer) -> None:
    models = HubClient().search("135M")
    assert [m.repo_id for m in models] == [REPO, GATED]
    assert models[0].downloads == 9000 and models[0].likes == 40
    assert models[0].last_modified.startswith("2026-11-20") and not models[0].gated
    assert models[1].gated and "gguf" in models[1].tags
    everything = HubClient().search("")
    assert "someone/not-a-gguf-repo" not in [m.repo_id for m in everything]
    assert [m.repo_id for m in everything] == [REPO, GATED, BROKEN]  # three pages of two
    assert len(hub.served("search")) == 1 + 2
    assert all("filter=gguf" in r.path for r in hub.served("search"))
    assert [m.repo_id for m in HubClient().search("", limit=1)] == [REPO]


def test_files_are_pinned_to_the_commit_and_a_split_set_is_one_entry(
        hub: HubServer, smol_path: Path, split_parts: list[Path]) -> None:
    hub.repos[REPO].security[f"split/{split_parts[1].name}"] = "unscanned"
    files = HubClient().files(REPO, revision="main")
    assert [f.name for f in files] == [SINGLE, SPLIT_FIRST]
    single, split = files
    sha = hub.repos[REPO].sha
    assert single.revision == split.revision == sha
    assert single.parts == (SINGLE,) and single.sizes == (smol_path.stat().st_size,)
    assert single.sha256s == (file_sha256(smol_path),) and single.quant == "Q4_1"
    assert single.security == "safe" and not single.split and single.available
    assert split.parts == tuple(f"split/{p.name}" for p in split_parts)
    assert split.sizes == tuple(p.stat().st_size for p in split_parts)
    assert split.sha256s == tuple(file_sha256(p) for p in split_parts)
    assert split.security == "unscanned" and split.quant == "Q4_1"
    # the listing read the tree page by page at the pinned sha, never at "main"
    trees = hub.served("tree")
    assert len(trees) >= 3 and all(f"/tree/{sha}" in r.path for r in trees)
    assert all(f"/paths-info/{sha}" in r.path for r in hub.served("paths"))
    model = HubClient().model(REPO)
    assert (model.sha, model.parameters, model.architecture, model.context_length) == (
        sha, 134515008, "llama", 8192)
    requests = HubClient(token="hf_accepted").download_requests(split)
    assert [r.url for r in requests] == [
        f"{hub.endpoint}/{REPO}/resolve/{sha}/split/{p.name}" for p in split_parts]
    assert all(r.token == "hf_accepted" and r.revision == sha for r in requests)


def test_unknown_repository_revision_and_bad_ids_have_their_own_messages(
        hub: HubServer) -> None:
    with pytest.raises(HubError) as err:
        HubClient().files("nobody/nothing-GGUF")
    assert err.value.kind is HubErrorKind.NOT_FOUND
    assert "No model repository nobody/nothing-GGUF" in err.value.message
    assert "private" in err.value.message  # no token: it may be private
    with pytest.raises(HubError) as err:
        HubClient().files(REPO, revision="v9")
    assert err.value.kind is HubErrorKind.NOT_FOUND and "no revision 'v9'" in err.value.message
    with pytest.raises(HubError) as err:
        HubClient().files("../etc/passwd")
    assert err.value.kind is HubErrorKind.INVALID
    with pytest.raises(HubError) as err:
        HubClient(token="hf_unknown").files(REPO)
    assert err.value.kind is HubErrorKind.TOKEN_REFUSED and "refused" in err.value.message


def test_metadata_rate_limit_server_error_and_network_are_told_apart(
        hub: HubServer) -> None:
    hub.api_faults["model"] = [{"status": 429, "retry_after": 30}, {"status": 500}]
    with pytest.raises(HubError) as err:
        HubClient().files(REPO)
    assert err.value.kind is HubErrorKind.RATE_LIMITED and err.value.retry_after == 30
    assert "Rate limited" in err.value.message and "30 s" in err.value.message
    with pytest.raises(HubError) as err:
        HubClient().files(REPO)
    assert err.value.kind is HubErrorKind.SERVER and "HTTP 500" in err.value.message
    closed = HubServer()  # closed before it starts: nothing answers on its port
    closed._api.server_close()
    closed._cdn.server_close()
    with pytest.raises(HubError) as err:
        HubClient(endpoint=closed.endpoint).files(REPO)
    assert err.value.kind is HubErrorKind.NETWORK and "Cannot reach" in err.value.message


# ------------------------------------------------------------------ pull


def test_pull_installs_a_verified_file_that_loads_and_generates(
        hub: HubServer, smol_path: Path) -> None:
    result = verso("models", "pull", REPO, SINGLE)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path == models_dir() / "HuggingFaceTB" / "SmolLM2-135M-Instruct-GGUF" / SINGLE
    assert sha256(path) == file_sha256(smol_path)
    assert "SHA-256 verified" in result.stderr and "Traceback" not in result.stderr
    nothing_left_behind()
    # the token never travels to the storage host the hub redirects to
    assert [r.auth for r in hub.served("cdn")] == [None]
    pulled = verso("generate", "--model", str(path), PROMPT, "--temperature", "0",
                   "--max-tokens", "12")
    bundled = verso("generate", "--model", "default", PROMPT, "--temperature", "0",
                    "--max-tokens", "12")
    assert pulled.returncode == 0, pulled.stderr
    assert "Paris" in pulled.stdout and pulled.stdout == bundled.stdout
    # pulling again checks the file in place without downloading it
    again = verso("models", "pull", REPO, SINGLE)
    assert again.returncode == 0 and "already downloaded and verified" in again.stderr
    assert len(hub.served("cdn")) == 1


def test_a_split_set_appears_only_whole_and_loads_in_llama_cpp(
        hub: HubServer, split_parts: list[Path]) -> None:
    client = HubClient()
    f = hub_file(client, SPLIT_FIRST)
    seen_while_downloading: list[list[str]] = []
    events = []
    for event in pull(f, client=client, downloader=fast()):
        events.append(event)
        if event.message.startswith("part 3 of 3") and not seen_while_downloading:
            seen_while_downloading.append([e.path.name for e in list_models()
                                           if e.source == "models_dir"])
    assert seen_while_downloading == [[]]  # parts 1 and 2 are verified but not installed
    done = events[-1]
    assert done.state is DownloadState.DONE and done.total == f.size
    folder = models_dir() / "HuggingFaceTB" / "SmolLM2-135M-Instruct-GGUF" / \
        "SmolLM2-135M-Instruct.Q4_1"
    assert done.path == folder / SPLIT_FIRST
    assert sorted(p.name for p in folder.iterdir()) == [p.name for p in split_parts]
    assert all(sha256(folder / p.name) == file_sha256(p) for p in split_parts)
    assert installed_path(f) == done.path
    nothing_left_behind()
    progress = [e.bytes_done for e in events if e.state is DownloadState.DOWNLOADING]
    assert progress == sorted(progress) and progress[-1] == f.size
    assert {e.total for e in events} == {f.size}
    result = verso("generate", "--model", str(done.path), PROMPT, "--temperature", "0",
                   "--max-tokens", "12")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


def test_an_interrupted_pull_resumes_in_a_new_process(hub: HubServer,
                                                      smol_path: Path) -> None:
    hub.always = {"delay": 0.05}
    child = subprocess.Popen([sys.executable, "-m", "engine", "models", "pull", REPO, SINGLE],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=ROOT)
    staging = models_dir() / STAGING / "HuggingFaceTB--SmolLM2-135M-Instruct-GGUF"
    part = staging / (SINGLE + ".part")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not part.exists() or part.stat().st_size < 4 << 20):
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "Traceback" not in err and "run the same command again to resume" in err
    kept = part.stat().st_size
    assert 4 << 20 <= kept < smol_path.stat().st_size
    assert (staging / (SINGLE + ".part.json")).exists()
    assert not any(p.suffix == ".gguf" for p in models_dir().rglob("*.gguf")
                   if STAGING not in p.parts)
    listing = verso("models")
    assert f"unfinished download: {REPO} {SINGLE}" in listing.stdout
    hub.always = {}
    result = verso("models", "pull", REPO, SINGLE)
    assert result.returncode == 0, result.stderr
    last = hub.served("cdn")[-1]
    assert (last.range, last.status) == (f"bytes={kept}-", 206)
    assert last.sent == smol_path.stat().st_size - kept
    assert sha256(Path(result.stdout.strip())) == file_sha256(smol_path)
    nothing_left_behind()


def test_a_server_that_ignores_range_restarts_the_file_cleanly(hub: HubServer,
                                                               smol_path: Path) -> None:
    hub.plan = [{"drop_after": 5 << 20}, {"ignore_range": True}]
    client = HubClient()
    events = run_pull(hub_file(client, SINGLE), client)
    assert events[-1].state is DownloadState.DONE
    first, second = hub.served("cdn")
    assert first.range is None and first.sent == 5 << 20
    assert second.range is not None and second.status == 200
    assert second.sent == smol_path.stat().st_size
    assert sha256(events[-1].path) == file_sha256(smol_path)


def test_a_wrong_checksum_is_deleted_and_names_the_file(hub: HubServer,
                                                        smol_path: Path) -> None:
    hub.plan = [{"corrupt": True}]
    client = HubClient()
    with pytest.raises(DownloadError) as err:
        run_pull(hub_file(client, SINGLE), client)
    assert err.value.kind is DownloadErrorKind.VERIFY_FAILED
    assert SINGLE in err.value.message and file_sha256(smol_path) in err.value.message
    assert not [p for p in models_dir().rglob("*") if p.is_file()]
    assert not [e for e in list_models() if e.source == "models_dir"]
    hub.plan = [{"corrupt": True}]
    code, _, err_text = cli("models", "pull", REPO, SINGLE, "--quiet")
    assert code == 3 and "failed verification" in err_text


def test_a_stall_is_retried_from_what_is_on_disk(hub: HubServer, smol_path: Path) -> None:
    hub.plan = [{"stall_after": 3 << 20, "stall_s": 5}]
    client = HubClient()
    events = run_pull(hub_file(client, SINGLE), client)
    assert events[-1].state is DownloadState.DONE
    retry = [e for e in events if e.state is DownloadState.RETRYING]
    assert retry and "no data for 1 s" in retry[0].message
    first, second = hub.served("cdn")
    assert first.sent == 3 << 20 and second.range == f"bytes={3 << 20}-"
    assert sha256(events[-1].path) == file_sha256(smol_path)


def test_server_errors_are_retried_and_429_is_reported(hub: HubServer) -> None:
    client = HubClient()
    f = hub_file(client, SINGLE)
    hub.plan = [{"status": 500}, {"status": 503}]
    events = run_pull(f, client)
    assert events[-1].state is DownloadState.DONE
    assert [e.message.split(";")[0] for e in events if e.state is DownloadState.RETRYING] == [
        "server error (HTTP 500)", "server error (HTTP 503)"]
    shutil.rmtree(models_dir())
    hub.always = {"status": 500}
    with pytest.raises(HubError) as err:
        run_pull(f, client)
    assert err.value.kind is HubErrorKind.SERVER and "gave up after 3 attempts" in err.value.message
    hub.always = {"status": 429, "retry_after": 7}
    with pytest.raises(HubError) as err:
        run_pull(f, client)
    assert err.value.kind is HubErrorKind.RATE_LIMITED and err.value.retry_after == 7
    assert "retry in 7 s" in err.value.message
    code, _, text = cli("models", "pull", REPO, SINGLE, "--quiet")
    assert code == 1 and "Rate limited (429)" in text
    nothing_left_behind()


def test_gated_files_need_a_token_whose_account_accepted_the_licence(
        hub: HubServer, verso_home: Path) -> None:
    name = "Gated-135M-Q4_1.gguf"
    anonymous = HubClient()
    f = hub_file(anonymous, name, GATED)  # metadata is public, as on the hub
    assert f.gated
    with pytest.raises(HubError) as err:
        run_pull(f, anonymous)
    assert err.value.kind is HubErrorKind.NO_TOKEN and err.value.status == 401
    assert "gated model" in err.value.message and "verso models token set" in err.value.message
    refused = HubClient(token="hf_not_accepted")
    with pytest.raises(HubError) as err:
        run_pull(f, refused)
    assert err.value.kind is HubErrorKind.GATED and err.value.status == 403
    assert err.value.message.startswith("Licence not accepted")
    assert f"{hub.endpoint}/{GATED}" in err.value.message
    assert hub.served("cdn") == []
    nothing_left_behind()
    # the token from the keyring, set through the CLI in another process
    token_set = verso("models", "token", "set", input="hf_accepted\n")
    assert token_set.returncode == 0, token_set.stderr
    assert "hf_accepted" not in token_set.stdout + token_set.stderr
    status = verso("models", "token", "status")
    assert "saved in the system keyring" in status.stdout and "hf_accepted" not in status.stdout
    result = verso("models", "pull", GATED, name)
    assert result.returncode == 0, result.stderr
    resolve = [r for r in hub.served("resolve") if r.status == 302]
    assert [r.auth for r in resolve] == ["Bearer hf_accepted"]
    assert hub.served("cdn")[-1].auth is None
    for path in (verso_home / "config").rglob("*"):
        assert not path.is_file() or "hf_accepted" not in path.read_text("utf-8")
    assert verso("models", "token", "clear").returncode == 0
    assert "no token" in verso("models", "token", "status").stdout


def test_a_split_set_with_a_missing_part_is_reported_not_offered(hub: HubServer) -> None:
    client = HubClient()
    (f,) = client.files(BROKEN)
    assert not f.available and f.problem is not None
    assert "SmolLM2-135M-Instruct.Q4_1-00002-of-00003.gguf" in f.problem
    with pytest.raises(HubError) as err:
        run_pull(f, client)
    assert err.value.kind is HubErrorKind.NOT_FOUND and "incomplete split set" in err.value.message
    code, out, _ = cli("models", "files", BROKEN)
    assert code == 0 and "UNAVAILABLE: incomplete split set" in out
    code, _, err_text = cli("models", "pull", BROKEN, SPLIT_FIRST)
    assert code == 3 and "incomplete split set" in err_text
    assert hub.served("resolve") == []
    assert not list(models_dir().rglob("*.gguf"))


def test_a_disk_that_fills_up_keeps_the_part_and_resumes(
        hub: HubServer, smol_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """A 120 MB tmpfs holds the models folder; 20 MB into the download another file takes
    all the free space. Without permission to mount, the write fails with ENOSPC instead."""
    size = smol_path.stat().st_size
    mount = tmp_path / "small-disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120m", "tmpfs", str(mount)],
                             capture_output=True).returncode == 0
    filler = mount / "other-program.bin"
    try:
        monkeypatch.setenv("VERSO_MODELS_DIR", str(mount / "models"))
        injecting = [not mounted]
        if mounted:
            def fill() -> None:
                with filler.open("wb") as out:
                    try:
                        while True:
                            out.write(b"\0" * (1 << 20))
                            out.flush()
                    except OSError:
                        pass  # the disk is full now
            hub.plan = [{"after_bytes": (20 << 20, fill), "delay": 0.01}]
        else:
            real = download_module._write_all
            written = [0]

            def full(f: Any, data: bytes) -> None:
                if injecting[0] and written[0] > 20 << 20:
                    raise OSError(errno.ENOSPC, "No space left on device")
                written[0] += len(data)
                real(f, data)
            monkeypatch.setattr(download_module, "_write_all", full)
        client = HubClient()
        f = hub_file(client, SINGLE)
        with pytest.raises(DownloadError) as err:
            run_pull(f, client)
        assert err.value.kind is DownloadErrorKind.DISK_FULL
        assert "disk is full" in err.value.message and "kept in" in err.value.message
        part = mount / "models" / STAGING / "HuggingFaceTB--SmolLM2-135M-Instruct-GGUF" / \
            (SINGLE + ".part")
        kept = part.stat().st_size
        assert 0 < kept < size and installed_path(f) is None
        filler.unlink(missing_ok=True)
        injecting[0] = False
        events = list(pull(f, client=client, downloader=Downloader(
            mount / "models", disk_margin=0, backoff_base=0.01)))
        assert events[0].state is DownloadState.CHECKING
        assert sha256(events[-1].path) == file_sha256(smol_path)
        assert hub.served("cdn")[-1].range == f"bytes={kept}-"
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)], check=False)


def test_a_set_that_cannot_fit_whole_does_not_start(hub: HubServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    client = HubClient()
    f = hub_file(client, SPLIT_FIRST)
    largest = max(f.sizes)
    real = shutil.disk_usage

    def small(path: Any) -> Any:
        return real(path)._replace(free=largest + 1000)  # each part fits, the set does not
    monkeypatch.setattr(shutil, "disk_usage", small)
    with pytest.raises(DownloadError) as err:
        run_pull(f, client)
    assert err.value.kind is DownloadErrorKind.NO_SPACE
    assert SPLIT_FIRST in err.value.message and "Not enough free space" in err.value.message
    assert hub.served("resolve") == []
    nothing_left_behind()


# ------------------------------------------------------------------ CLI


def test_cli_search_files_pull_errors_and_rm(hub: HubServer, split_parts: list[Path]) -> None:
    code, out, _ = cli("models", "search", "smollm2")
    assert code == 0 and REPO in out and "DOWNLOADS" in out and "9,000" in out
    code, out, _ = cli("models", "files", REPO)
    assert code == 0
    assert f"{REPO} at {hub.repos[REPO].sha[:12]}" in out
    assert SINGLE in out and SPLIT_FIRST in out and "3 parts" in out and "98.4 MB" in out
    code, _, err = cli("models", "pull", REPO, "Q4_1")
    assert code == 2 and "matches several files" in err
    code, _, err = cli("models", "pull", REPO, "Q8_0")
    assert code == 3 and f"available: {SINGLE}, {SPLIT_FIRST}" in err
    code, _, err = cli("models", "files", "not an id")
    assert code == 2 and "Not a repository id" in err
    code, _, err = cli("models", "files", "nobody/none")
    assert code == 3 and "No model repository" in err
    code, out, err = cli("models", "pull", REPO, f"split/{split_parts[1].name}", "--quiet")
    assert code == 0, err
    installed = Path(out.strip())
    code, out, _ = cli("models", "files", REPO)
    assert "3 parts, installed" in out
    code, out, err = cli("models", "rm", installed.name)
    assert code == 0, err
    assert sorted(Path(line.removeprefix("removed ")).name for line in out.splitlines()) == [
        p.name for p in split_parts]
    assert not any(models_dir().rglob("*.gguf"))
    assert not (models_dir() / "HuggingFaceTB").exists()  # empty folders go too
    code, _, err = cli("models", "rm", "default")
    assert code == 2 and "bundled" in err
    code, _, err = cli("models", "rm", "no-such-model")
    assert code == 3
    code, out, _ = cli("models", "mirror")
    assert code == 0 and f"Hub: {hub.endpoint} (from HF_ENDPOINT)" in out
    code, _, err = cli("models", "mirror", "set", "ftp://nowhere")
    assert code == 2 and "not an http" in err
