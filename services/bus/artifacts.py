"""The artifact store: models as skops files named by their sha256. Every load re-hashes the bytes and
refuses a mismatch, and skops loads only scikit-learn types and the few others named here — never pickle."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import skops.io as sio

from .datastore import local_path

# Beyond what skops trusts by default (scikit-learn estimators, numpy arrays): what mlbus's models need.
TRUSTED_TYPES = frozenset({"numpy.dtype", "sklearn.tree._tree.Tree"})


class ArtifactRefused(Exception):
    """The artifact is missing, altered, or holds a type outside the allowlist."""


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


def verify(uri: str, sha256: str) -> bytes:
    """The artifact's bytes, if they are the ones recorded."""
    path = local_path(uri)
    if not path.exists():
        raise ArtifactRefused(f"artifact {uri} does not exist")
    payload = path.read_bytes()
    actual = hashlib.sha256(payload).hexdigest()
    if actual != sha256:
        raise ArtifactRefused(f"artifact {uri} has sha256 {actual}, the registry recorded {sha256}: refused")
    return payload


def load_model(uri: str, sha256: str) -> object:
    payload = verify(uri, sha256)
    untrusted = set(sio.get_untrusted_types(data=payload)) - TRUSTED_TYPES
    if untrusted:
        raise ArtifactRefused(f"artifact {uri} holds types outside the allowlist: {sorted(untrusted)}")
    return sio.loads(payload, trusted=sorted(TRUSTED_TYPES))
