"""`audit verify` and `audit check-proof`'s keys and witness from the command line: keys pinned there are the only
ones trusted (else those declared on the identities topic). The walk itself is services/adapters/log_checks.py."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.bus.errors import BadInput
from services.bus.settings import PROJECT_ROOT
from services.domain import Cosignature, TreeHead, key_id, read_public_key, witness_problem


def proof_witness_problem(document: dict, keys: dict[str, bytes], witness_keys: dict[str, bytes]) -> str | None:
    """Why a proof document's head is not co-signed by a pinned witness key (the head it proves against: an
    inclusion proof's, a consistency proof's second)."""
    try:
        head = TreeHead.from_json(document.get("tree_head") or document["second"])
        found = [Cosignature.from_json(c) for c in document.get("cosignatures") or []]
    except (KeyError, TypeError, ValueError) as error:
        return f"the proof's co-signatures are malformed: {error!r}"
    return witness_problem(head, found, witness_keys, keys)


def key_files(paths: list[Path], option: str = "--key") -> dict[str, bytes]:
    """Public keys given on the command line (PEM or raw base64), by key id."""
    keys = {}
    for path in paths:
        try:
            public = read_public_key(path.read_bytes())
        except (OSError, ValueError) as error:
            raise BadInput(f"{option} {path}: {error}") from None
        keys[key_id(public)] = public
    return keys


def run_witness() -> int:
    """`mlbus audit witness`: the witness in the foreground, as its own principal (python -m services.witness)."""
    return subprocess.run([sys.executable, "-m", "services.witness"], cwd=PROJECT_ROOT).returncode
