"""The artifact store: models as skops files named by their sha256. Every load re-hashes the bytes and
refuses a mismatch, and skops loads only scikit-learn types and the few others named here — never pickle."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import skops.io as sio

from .datastore import DataFileError, confined_file, read_bounded

# Beyond what skops trusts by default (scikit-learn estimators, numpy arrays): what mlbus's models need.
TRUSTED_TYPES = frozenset({"numpy.dtype", "sklearn.tree._tree.Tree"})


class ArtifactRefused(Exception):
    """The artifact is missing, outside the store, too big, altered, not a skops file, or holds a type
    outside the allowlist."""


def save_model(root: Path, model: object) -> tuple[str, str]:
    """skops bytes into root/<sha256>.skops, written once; returns (uri, sha256)."""
    payload = sio.dumps(model)
    sha = hashlib.sha256(payload).hexdigest()
    target = root / f"{sha}.skops"
    if not target.exists():
        root.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(payload)
        os.replace(partial, target)
    return target.resolve().as_uri(), sha


@dataclass(frozen=True)
class ArtifactStore:
    """The models under root: regular files only, at most max_bytes, re-hashed at every read."""

    root: Path
    max_bytes: int

    @classmethod
    def from_settings(cls, settings) -> "ArtifactStore":
        return cls(settings.artifacts_dir, settings.max_artifact_bytes)

    def verify(self, uri: str, sha256: str) -> bytes:
        """The artifact's bytes, if they are the ones recorded."""
        try:
            path, size = confined_file(uri, self.root, self.max_bytes, what="artifact")
            payload = read_bounded(path, size)
        except DataFileError as error:
            raise ArtifactRefused(str(error)) from None
        except OSError as error:
            raise ArtifactRefused(f"artifact {uri} cannot be read: {type(error).__name__}: {error}") from None
        actual = hashlib.sha256(payload).hexdigest()
        if actual != sha256:
            raise ArtifactRefused(f"artifact {uri} has sha256 {actual}, the registry recorded {sha256}: refused")
        return payload

    def load(self, uri: str, sha256: str) -> object:
        payload = self.verify(uri, sha256)
        try:
            untrusted = set(sio.get_untrusted_types(data=payload)) - TRUSTED_TYPES
            if untrusted:
                raise ArtifactRefused(f"artifact {uri} holds types outside the allowlist: {sorted(untrusted)}")
            return sio.loads(payload, trusted=sorted(TRUSTED_TYPES))
        except ArtifactRefused:
            raise
        except Exception as error:      # noqa: BLE001 - zipfile, json and skops raise many types for a bad file
            raise ArtifactRefused(f"artifact {uri} is not a readable skops file: {type(error).__name__}: "
                                  f"{str(error)[:200]}") from None
