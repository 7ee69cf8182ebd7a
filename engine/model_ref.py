"""What identifies a model: a local GGUF file by its content, or a model on a server.

Conversations, job recipes and job ids record a ``ModelRef``, never a bare path, so a model
that is moved or re-downloaded is still the same model, and a remote model has an identity
at all. A local file's SHA-256 is computed once per (path, size, mtime) and cached
(``engine.model_hash``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any


class ModelKind(StrEnum):
    LOCAL = "local"  # a GGUF file run by Verso's own engine
    REMOTE = "remote"  # a model served by an OpenAI-compatible server


@dataclass(frozen=True, slots=True)
class ModelRef:
    kind: ModelKind
    location: str  # local: absolute file path; remote: the endpoint's base URL
    model_id: str = ""  # remote: the server's model id; local: the file name
    sha256: str = ""  # local: SHA-256 of the file ("" when unknown, e.g. a migrated row)

    @classmethod
    def local(cls, path: str | Path, sha256: str = "") -> ModelRef:
        p = Path(path).absolute()
        return cls(ModelKind.LOCAL, str(p), p.name, sha256)

    @classmethod
    def remote(cls, endpoint: str, model_id: str) -> ModelRef:
        return cls(ModelKind.REMOTE, endpoint.rstrip("/"), model_id)

    @property
    def is_local(self) -> bool:
        return self.kind is ModelKind.LOCAL

    @property
    def local_path(self) -> str | None:
        return self.location if self.is_local else None

    @property
    def label(self) -> str:
        """Short text for the user: the file name, or ``model id @ endpoint``."""
        return self.model_id if self.is_local else f"{self.model_id} @ {self.location}"

    def identity(self) -> str:
        """The string job ids hash. A local file known only by its path (rows migrated from
        before model references) is identified by that path, as job ids then were."""
        if self.is_local:
            return f"sha256:{self.sha256}" if self.sha256 else self.location
        return f"remote:{self.location}#{self.model_id}"

    def same_model(self, other: ModelRef | None) -> bool:
        """Whether ``other`` is this model: equal content hashes when both are known, else
        the same file path; remote models by endpoint and model id."""
        if other is None or other.kind is not self.kind:
            return False
        if self.is_local:
            if self.sha256 and other.sha256:
                return self.sha256 == other.sha256
            return Path(self.location) == Path(other.location)
        return (self.location, self.model_id) == (other.location, other.model_id)

    def to_json(self) -> dict[str, str]:
        return {"kind": str(self.kind), "location": self.location, "model_id": self.model_id,
                "sha256": self.sha256}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelRef:
        return cls(ModelKind(data.get("kind", ModelKind.LOCAL)), str(data.get("location", "")),
                   str(data.get("model_id", "")), str(data.get("sha256", "")))

    @classmethod
    def parse(cls, value: str | dict[str, Any] | None) -> ModelRef | None:
        """A stored reference: its JSON, or (rows written before references) a bare path."""
        if not value:
            return None
        if isinstance(value, dict):
            return cls.from_json(value)
        if value.lstrip().startswith("{"):
            try:
                return cls.from_json(json.loads(value))
            except (ValueError, TypeError):
                pass
        return cls.local(value)
