"""Secrets go to the keyring, or to this session only when there is no secure keyring."""

from __future__ import annotations

import keyring
import keyring.backends.fail
import pytest

from engine import secrets
from engine.testing.test_keyring import FileKeyring


@pytest.fixture(autouse=True)
def _forget_session() -> None:
    secrets._session.clear()


def test_secret_round_trips_through_the_keyring() -> None:
    stored = secrets.store_secret("endpoint:lab", "sk-123")
    assert stored.in_keyring
    assert FileKeyring().get_password(secrets.SERVICE, "endpoint:lab") == "sk-123"
    assert secrets.get_secret("endpoint:lab") == "sk-123"
    secrets.delete_secret("endpoint:lab")
    assert secrets.get_secret("endpoint:lab") is None


def test_without_a_keyring_the_secret_is_kept_for_the_session_only() -> None:
    keyring.set_keyring(keyring.backends.fail.Keyring())
    stored = secrets.store_secret("hub-token", "hf_abc")
    assert not stored.in_keyring
    assert "session only" in stored.message and "keyring" in stored.message
    assert secrets.get_secret("hub-token") == "hf_abc"
    assert FileKeyring().get_password(secrets.SERVICE, "hub-token") is None


def test_a_plain_text_file_backend_is_not_a_keyring() -> None:
    class PlaintextKeyring(FileKeyring):
        pass

    PlaintextKeyring.__module__ = "keyrings.alt.file"
    PlaintextKeyring.__qualname__ = "PlaintextKeyring"
    keyring.set_keyring(PlaintextKeyring())
    assert secrets.keyring_problem() is not None
    assert not secrets.store_secret("k", "v").in_keyring
