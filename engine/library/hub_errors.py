"""What went wrong talking to the model hub, in words a user can act on.

``HubError.kind`` tells a caller what happened; ``message`` says it for the user, naming the
repository and what to do (set a token, accept the licence, wait, check the name)."""

from __future__ import annotations

from enum import StrEnum

import httpx2
from huggingface_hub import errors as hf_errors

from engine.library.download import DownloadError, DownloadErrorKind

TOKEN_HINT = "set one with `verso models token set` or the HF_TOKEN environment variable"


class HubErrorKind(StrEnum):
    NO_TOKEN = "no_token"  # the repository or file needs a token and none is set
    TOKEN_REFUSED = "token_refused"  # a token is set but the hub does not accept it
    GATED = "gated"  # the model's licence is not accepted by the token's account
    NOT_FOUND = "not_found"  # no such repository, revision or file
    RATE_LIMITED = "rate_limited"
    SERVER = "server"  # 5xx, or a reply that makes no sense
    NETWORK = "network"  # the hub cannot be reached (or stopped sending)
    INVALID = "invalid"  # the request itself is wrong (not a repository id, ...)


class HubError(Exception):
    def __init__(self, kind: HubErrorKind, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

    @property
    def message(self) -> str:
        return str(self)


def _host(endpoint: str) -> str:
    return endpoint.split("//", 1)[-1].rstrip("/")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _status(exc: hf_errors.HfHubHTTPError) -> int:
    response = getattr(exc, "response", None)
    return int(getattr(response, "status_code", 0) or 0)


def gated_message(repo_id: str, endpoint: str, has_token: bool) -> tuple[HubErrorKind, str]:
    page = f"{endpoint.rstrip('/')}/{repo_id}"
    if not has_token:
        return (HubErrorKind.NO_TOKEN,
                f"{repo_id} is a gated model: downloading it needs a Hugging Face access token "
                f"of an account that accepted its licence at {page} ({TOKEN_HINT}).")
    return (HubErrorKind.GATED,
            f"Licence not accepted: {repo_id} is a gated model and the account of your token "
            f"has not accepted its licence. Accept it at {page}, then try again.")


def from_hf(exc: Exception, *, repo_id: str | None, endpoint: str, has_token: bool,
            revision: str | None = None) -> HubError:
    """A huggingface_hub or httpx2 exception as a ``HubError``."""
    host = _host(endpoint)
    what = repo_id or "the model search"
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return HubError(HubErrorKind.NETWORK, f"Cannot reach {host}: HF_HUB_OFFLINE is set.")
    if isinstance(exc, hf_errors.HFValidationError):
        return HubError(HubErrorKind.INVALID, f"Not a repository id: {repo_id!r} ({exc}).")
    if isinstance(exc, hf_errors.GatedRepoError):
        kind, message = gated_message(repo_id or "", endpoint, has_token)
        return HubError(kind, message, status=_status(exc))
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return HubError(HubErrorKind.NOT_FOUND,
                        f"{repo_id} has no revision {revision!r} on {host} (a branch, tag or "
                        "commit sha).", status=_status(exc))
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        hint = ("" if has_token else
                f" If it is private, it needs an access token ({TOKEN_HINT}).")
        return HubError(HubErrorKind.NOT_FOUND,
                        f"No model repository {repo_id} on {host}: check the name "
                        f"(owner/name).{hint}", status=_status(exc))
    if isinstance(exc, hf_errors.HfHubHTTPError):
        status = _status(exc)
        if status == 401:
            if not has_token:
                return HubError(HubErrorKind.NO_TOKEN,
                                f"{host} asks for an access token for {what} ({TOKEN_HINT}).",
                                status=status)
            return HubError(HubErrorKind.TOKEN_REFUSED,
                            f"{host} refused your access token (401) for {what}: it may be "
                            f"mistyped, expired or revoked; {TOKEN_HINT}.", status=status)
        if status == 403:
            return HubError(HubErrorKind.TOKEN_REFUSED,
                            f"Access denied (403) by {host} to {what}: your token does not "
                            "have permission to read it.", status=status)
        if status == 404:
            return HubError(HubErrorKind.NOT_FOUND, f"Not found on {host}: {what}.",
                            status=status)
        if status == 429:
            response = getattr(exc, "response", None)
            headers = getattr(response, "headers", {}) or {}
            after = _retry_after(headers.get("Retry-After"))
            wait = f"retry in {after:g} s" if after is not None else "wait a while and retry"
            return HubError(HubErrorKind.RATE_LIMITED,
                            f"Rate limited (429) by {host} while asking about {what}: {wait}.",
                            status=status, retry_after=after)
        return HubError(HubErrorKind.SERVER,
                        f"Server error (HTTP {status}) from {host} while asking about {what}; "
                        "try again later.", status=status)
    if isinstance(exc, httpx2.TimeoutException):
        return HubError(HubErrorKind.NETWORK,
                        f"{host} did not answer in time about {what} (network or hub down).")
    if isinstance(exc, (httpx2.TransportError, OSError)):
        return HubError(HubErrorKind.NETWORK,
                        f"Cannot reach {host}: {str(exc).rstrip('.') or type(exc).__name__}.")
    return HubError(HubErrorKind.SERVER,
                    f"{host} sent a reply Verso cannot read about {what} ({exc}); is it a "
                    "Hugging Face hub (HF_ENDPOINT)?")


_DOWNLOAD_KINDS = {
    DownloadErrorKind.NOT_FOUND: HubErrorKind.NOT_FOUND,
    DownloadErrorKind.RATE_LIMITED: HubErrorKind.RATE_LIMITED,
    DownloadErrorKind.SERVER_ERROR: HubErrorKind.SERVER,
    DownloadErrorKind.HTTP_ERROR: HubErrorKind.SERVER,
    DownloadErrorKind.NETWORK: HubErrorKind.NETWORK,
    DownloadErrorKind.STALLED: HubErrorKind.NETWORK,
}


def from_download(exc: DownloadError, *, repo_id: str, endpoint: str, has_token: bool,
                  gated: bool) -> HubError | DownloadError:
    """A downloader error on a hub file: the hub's refusals and failures as ``HubError``;
    local problems (disk, verification, an existing file) stay ``DownloadError``."""
    if exc.kind is DownloadErrorKind.UNAUTHORIZED:
        if gated or not has_token:
            kind, message = gated_message(repo_id, endpoint, has_token) if gated else (
                HubErrorKind.NO_TOKEN,
                f"{repo_id} needs a Hugging Face access token (it is private or gated): "
                f"{TOKEN_HINT}.")
            return HubError(kind, message, status=exc.status)
        return HubError(HubErrorKind.TOKEN_REFUSED,
                        f"The hub refused your access token (401) for {repo_id}: it may be "
                        f"mistyped, expired or revoked; {TOKEN_HINT}.", status=exc.status)
    if exc.kind is DownloadErrorKind.GATED:
        kind, message = gated_message(repo_id, endpoint, has_token)
        return HubError(kind, message, status=exc.status)
    hub_kind = _DOWNLOAD_KINDS.get(exc.kind)
    if hub_kind is None:
        return exc
    return HubError(hub_kind, str(exc), status=exc.status, retry_after=exc.retry_after)
