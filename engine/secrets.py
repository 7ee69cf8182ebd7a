"""Secrets (API keys, hub tokens) live in the system keyring, never in a file Verso writes.

Where no secure keyring backend exists (a bare Linux without a Secret Service, or only a
plain-text file backend), a secret is kept in this process's memory for the session only, and
``store_secret`` says so, so the user is told rather than surprised at the next start."""

from __future__ import annotations

from dataclasses import dataclass

import keyring
import keyring.backend
import keyring.errors

SERVICE = "verso"

# Backends that would write the secret in plain text: not a keyring in any sense a user means.
_INSECURE = frozenset({"keyrings.alt.file.PlaintextKeyring"})

_session: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class StoredSecret:
    in_keyring: bool  # False: kept for this session only
    message: str  # for the user: where the secret went


def _qualified(backend: keyring.backend.KeyringBackend) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def keyring_problem() -> str | None:
    """Why secrets cannot be kept across sessions here, or None when a secure keyring works."""
    try:
        backend = keyring.get_keyring()
    except Exception as e:  # a broken keyring install is a reason, not a crash
        return f"the system keyring could not be opened ({e})"
    backends = getattr(backend, "backends", None)
    candidates = list(backends) if backends is not None else [backend]
    usable = [b for b in candidates
              if b.priority > 0 and _qualified(b) not in _INSECURE
              and _qualified(b) != "keyring.backends.fail.Keyring"]
    if not usable:
        return ("no system keyring is available (on Linux, install and unlock GNOME Keyring or "
                "KWallet)")
    return None


def get_secret(name: str) -> str | None:
    if name in _session:
        return _session[name]
    if keyring_problem() is not None:
        return None
    try:
        return keyring.get_password(SERVICE, name)
    except keyring.errors.KeyringError:
        return None


def store_secret(name: str, value: str) -> StoredSecret:
    problem = keyring_problem()
    if problem is None:
        try:
            keyring.set_password(SERVICE, name, value)
            _session.pop(name, None)
            return StoredSecret(True, "Saved in the system keyring.")
        except keyring.errors.KeyringError as e:
            problem = f"the system keyring refused it ({e})"
    _session[name] = value
    return StoredSecret(False, f"Kept for this session only: {problem}.")


def delete_secret(name: str) -> None:
    _session.pop(name, None)
    if keyring_problem() is not None:
        return
    try:
        keyring.delete_password(SERVICE, name)
    except keyring.errors.PasswordDeleteError:
        pass
    except keyring.errors.KeyringError:
        pass
