"""The artifact store: models as skops files named by their sha256. Every load re-hashes the bytes and
refuses a mismatch, and skops loads only scikit-learn types and the few others named here — never pickle."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import skops.io as sio

from services.domain import ArtifactRefused

from .blobs import BlobStore, DataFileError

# Beyond what skops trusts by default (scikit-learn estimators, numpy arrays): what mlbus's models need.
TRUSTED_TYPES = frozenset({"numpy.dtype", "sklearn.tree._tree.Tree"})


def save_model(root: str | Path, model: object) -> tuple[str, str]:
    """skops bytes into the store (a folder or fsspec URL) as <sha256>.skops, written once; (uri, sha256)."""
    payload = sio.dumps(model)
    sha = hashlib.sha256(payload).hexdigest()
    return BlobStore(root).put_bytes(f"{sha}.skops", payload), sha


@dataclass(frozen=True)
class ArtifactStore:
    """The models under root (a folder or fsspec URL): files only, at most max_bytes, re-hashed at every read."""

    root: str | Path
    max_bytes: int

    @classmethod
    def from_settings(cls, settings) -> "ArtifactStore":
        store = cls(settings.storage.artifacts_store, settings.storage.max_artifact_bytes)
        store.blobs.fs                                     # a misconfigured store fails at start (ConfigError)
        return store

    @cached_property
    def blobs(self) -> BlobStore:
        return BlobStore(self.root)

    def verify(self, uri: str, sha256: str) -> bytes:
        """The artifact's bytes, if they are the ones recorded."""
        try:
            payload = self.blobs.read(uri, self.max_bytes, what="artifact")
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
